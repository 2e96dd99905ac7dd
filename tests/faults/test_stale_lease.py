"""Issue 10, case 1: a sender whose lease ran out must not overwrite what happened since.

Two ways a sender outlives its lease:

- the CRM answers after the lease (seen with defaults: a CRM answering after 130 s got
  the lead twice, both recorded as "attempt 1"). The attempt's deadline now ends it
  long before the lease can run out: it is recorded under its own claim and retried;
- the sender itself stops (a paused VM, a process swapped out) while the CRM holds its
  request, and comes back after the lease: meanwhile the sweeper took the delivery back
  and another worker delivered it. Its late result is kept on its attempt, marked stale,
  and changes nothing — the delivery never moves back from delivered.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .hostile_crm import HostileCrm
from .processes import wait_until
from .promises import IN_DOUBT, check_promises, unanswered
from .stack import ATTEMPT_DEADLINE, Stack, dumps, retry_policy


def test_a_crm_answering_after_the_lease_times_out_at_the_deadline_and_is_retried(
    pg_stack: Stack, make_hostile_crm: Callable[..., HostileCrm], figures: Callable[..., None],
) -> None:
    stack = pg_stack
    # Given a CRM that holds the first request long past the attempt's deadline, a worker
    # and the scheduler (whose sweeper would take the delivery back, were the lease to run
    # out while the attempt waits)
    hold = 5.0
    crm = make_hostile_crm("slow", slow_seconds=hold)
    form, _ = stack.integration(crm.url_for("/leads"), retry=retry_policy(3, 1.0))
    stack.start(workers=1)

    # When a lead is sent (and the CRM answers the later requests at once)
    [delivery] = stack.submit(form)
    wait_until(lambda: crm.count() == 1, timeout=20, what="the first send",
               deployment=stack.deployment)
    crm.set_mode("ok")

    # Then the first attempt ends at its deadline, is retried, and the lead delivered
    wait_until(lambda: stack.ledger.delivery(delivery)["state"] == "delivered", timeout=20,
               what="delivery after the timeout", deployment=stack.deployment)
    # past the CRM's late answer: it changes nothing either
    time.sleep(max(0.0, hold - (time.monotonic() - crm.received[0].at) + 0.5))
    attempts = stack.ledger.attempts(delivery)
    first, second = attempts
    assert first["outcome"] == "transient" and unanswered(first), dumps(attempts)
    assert first["duration_ms"] < (ATTEMPT_DEADLINE + 0.5) * 1000
    assert (second["number"], second["outcome"]) == (2, "accepted")
    # nothing was in doubt: the attempt ended well inside its lease, under its own claim
    assert not any(a["stale"] or a["outcome"] == IN_DOUBT for a in attempts)
    key = stack.ledger.delivery(delivery)["idempotency_key"]
    assert crm.idempotency_keys() == [key, key]
    findings = check_promises(stack.ledger, crm.received, max_attempts=3)
    figures(1, "CRM answers after the deadline", stack.backend, findings, 3,
            f"attempt 1 ended at {first['duration_ms'] / 1000:.2f} s "
            f"(deadline {ATTEMPT_DEADLINE:g} s, CRM answered at {hold:g} s), retried")


def test_a_sender_back_after_its_lease_is_recorded_stale_and_changes_nothing(
    pg_stack: Stack, make_hostile_crm: Callable[..., HostileCrm], figures: Callable[..., None],
) -> None:
    stack = pg_stack
    # Given a CRM that holds each request a moment, one worker and the scheduler
    crm = make_hostile_crm("slow", slow_seconds=0.4)
    form, _ = stack.integration(crm.url_for("/leads"), retry=retry_policy(3, 1.0))
    [first_worker, _] = stack.start(workers=1)

    # When the worker freezes while the CRM holds its request
    [delivery] = stack.submit(form)
    wait_until(lambda: crm.count() == 1, timeout=20, what="the first send",
               deployment=stack.deployment)
    first_worker.pause()
    paused_at = time.monotonic()
    crm.set_mode("ok")
    # and, its lease run out, another worker delivers the lead
    stack.restart_worker()
    stack.expire_lease(delivery)
    wait_until(lambda: stack.ledger.delivery(delivery)["state"] == "delivered", timeout=20,
               what="the second worker to deliver", deployment=stack.deployment)
    frozen = time.monotonic() - paused_at

    # And the frozen worker comes back and records what it got
    first_worker.resume()
    wait_until(lambda: stack.ledger.attempts(delivery)[0]["stale"], timeout=15,
               what="the late sender's record", deployment=stack.deployment)

    # Then its attempt is kept, marked stale, and the delivery stays delivered
    attempts = stack.ledger.attempts(delivery)
    first, second = attempts
    assert (first["number"], first["stale"]) == (1, True), dumps(attempts)
    assert (second["number"], second["outcome"], second["resend_of"], second["stale"]) == (
        2, "accepted", 1, False), dumps(attempts)
    row = stack.ledger.delivery(delivery)
    assert row["state"] == "delivered"
    assert first["claim"] < second["claim"] == row["claims"]
    outcomes = [e["new_outcome"] for e in stack.ledger.attempt_log(delivery)
                if e["number"] == 1]
    assert outcomes[:2] == ["sending", IN_DOUBT], outcomes
    assert crm.idempotency_keys() == [row["idempotency_key"]] * 2
    findings = check_promises(stack.ledger, crm.received, max_attempts=3)
    assert findings.stale == 1 and findings.duplicates == 1
    figures(1, "sender frozen past its lease, then back", stack.backend, findings, 3,
            f"frozen {frozen:.1f} s; late record stale ({first['outcome']}), "
            "delivery stayed delivered")
