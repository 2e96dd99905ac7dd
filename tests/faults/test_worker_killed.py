"""Issue 10, cases 2 and 4: a worker killed (``kill -9``) while the CRM holds its request.

The CRM may have created the lead; nobody knows. The promise: the attempt is on record
before the request left, so the kill leaves an attempt *in doubt*, not a send nobody
knows about; the resend carries the same idempotency key and names the attempt it
resends; the delivery ends delivered. And a lead that kills every worker sending it is
not resent forever: after three attempts in doubt in a row it is parked in the failed
collection with "worker died while sending".
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .hostile_crm import HostileCrm
from .processes import wait_until
from .promises import IN_DOUBT, MAX_IN_DOUBT, check_promises
from .stack import Stack, dumps, retry_policy

#: Seconds the CRM holds each request: the window in which the worker is killed.
HOLD = 0.5


def test_a_worker_killed_mid_send_leaves_an_attempt_in_doubt_and_the_resend_names_it(
    stack: Stack, make_hostile_crm: Callable[..., HostileCrm], figures: Callable[..., None],
) -> None:
    # Given a CRM that holds each request a while, and the processes running
    crm = make_hostile_crm("slow", slow_seconds=HOLD)
    form, _ = stack.integration(crm.url_for("/leads"), retry=retry_policy(3, 1.0))
    [worker, *_] = stack.start()

    # When a lead is sent and its worker is killed while the CRM holds the request
    [delivery] = stack.submit(form)
    wait_until(lambda: crm.count() == 1, timeout=20, what="the CRM to receive the lead",
               deployment=stack.deployment)
    worker.kill()
    # (the CRM answers, into a dead connection: had it created the lead, nobody knows)
    stack.restart_worker()

    # Then once the lease has run out the lead is resent, and delivered
    stack.expire_lease(delivery)
    expired_at = time.monotonic()
    wait_until(lambda: stack.ledger.delivery(delivery)["state"] == "delivered", timeout=30,
               what="the resend to be delivered", deployment=stack.deployment)
    resent_after = crm.received[1].at - expired_at
    attempts = stack.ledger.attempts(delivery)
    row = stack.ledger.delivery(delivery)
    summary = [(a["number"], a["outcome"], a["resend_of"], a["stale"]) for a in attempts]
    # attempt 1 in doubt (its sender never came back); attempt 2 resends it, accepted,
    # under a later claim (taking the delivery back took one too) which is the current one
    assert summary == [(1, IN_DOUBT, None, False), (2, "accepted", 1, False)], dumps(attempts)
    assert attempts[0]["claim"] < attempts[1]["claim"] == row["claims"]
    assert "lease" in attempts[0]["reason"]
    # the same idempotency key on both requests, on both attempts, and the delivery's
    key = row["idempotency_key"]
    assert crm.idempotency_keys() == [key, key]
    assert {a["idempotency_key"] for a in attempts} == {key}
    findings = check_promises(stack.ledger, crm.received, max_attempts=3)
    assert findings.duplicates == 1 and findings.lost_answers == 1
    figures(4, "kill -9 while the CRM holds the request", stack.backend, findings, 3,
            f"resent {resent_after:.1f} s after the lease ran out")


def test_a_lead_that_kills_every_worker_is_parked_after_three_attempts_in_doubt(
    pg_stack: Stack, make_hostile_crm: Callable[..., HostileCrm], figures: Callable[..., None],
) -> None:
    stack = pg_stack  # the sweeper's rule is the same SQL on both backends: one suffices
    # Given a CRM that holds each request, and a worker
    crm = make_hostile_crm("slow", slow_seconds=HOLD)
    form, _ = stack.integration(crm.url_for("/leads"), retry=retry_policy(3, 1.0))
    [worker, *_] = stack.start()
    [delivery] = stack.submit(form)

    # When every worker that sends the lead dies while sending it
    for sent in range(1, MAX_IN_DOUBT + 1):
        wait_until(lambda n=sent: crm.count() == n, timeout=30,  # type: ignore[misc]
                   what=f"send {sent} of the lead", deployment=stack.deployment)
        worker.kill()
        worker = stack.restart_worker()
        stack.expire_lease(delivery)

    # Then, the third lease run out, it is parked in the failed collection
    wait_until(lambda: stack.ledger.delivery(delivery)["state"] == "not_integrated",
               timeout=30, what="the delivery to be parked", deployment=stack.deployment)
    row = stack.ledger.delivery(delivery)
    attempts = stack.ledger.attempts(delivery)
    assert "worker died while sending" in row["last_reason"]
    assert [(a["number"], a["outcome"], a["resend_of"]) for a in attempts] == [
        (1, IN_DOUBT, None), (2, IN_DOUBT, 1), (3, IN_DOUBT, 2)], dumps(attempts)
    # and it is not sent again (a sweep or two later, still three sends)
    time.sleep(1.0)
    assert crm.count() == MAX_IN_DOUBT
    assert crm.idempotency_keys() == [row["idempotency_key"]] * MAX_IN_DOUBT
    findings = check_promises(stack.ledger, crm.received, max_attempts=3)
    figures(4, "a lead that kills every worker sending it", stack.backend, findings, 3,
            f"parked: \"{row['last_reason'][:40]}…\"")
