"""Issue 10, case 4: the database goes away between the CRM's answer and the commit.

Seen before: a 20 s PostgreSQL outage there left no trace of the send, and the lead was
sent again after the lease (16 duplicate creates in one probe). The promise: the CRM's
answer is not dropped — recording it is retried through the outage and lands once the
database is back, under the same claim; the lead is not sent again.

The processes (worker and scheduler alike) reach PostgreSQL through a forwarder that the
test cuts while the CRM holds the request; the lease (the default, minutes) is longer
than the outage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from .hostile_crm import HostileCrm
from .processes import wait_until
from .promises import check_promises
from .stack import Sizes, Stack, dumps, retry_policy

#: Seconds the CRM holds the request (inside the read timeout): the cut comes meanwhile.
HOLD = 0.4


def test_an_answer_that_arrives_during_a_database_outage_is_recorded_after_it_and_not_resent(
    cut_stack: Stack, make_hostile_crm: Callable[..., HostileCrm], sizes: Sizes,
    figures: Callable[..., None],
) -> None:
    stack = cut_stack
    forwarder = stack.forwarder
    assert forwarder is not None
    # Given a CRM that takes a moment to answer (the lease, minutes, outlasts the outage)
    crm = make_hostile_crm("slow", slow_seconds=HOLD)
    form, _ = stack.integration(crm.url_for("/leads"), retry=retry_policy(3, 1.0))
    stack.start(workers=1)

    # When the database is cut while the CRM holds the request
    [delivery] = stack.submit(form)
    wait_until(lambda: crm.count() == 1, timeout=60, what="the send",
               deployment=stack.deployment)
    forwarder.cut()
    cut_at = time.monotonic()
    # (the CRM answers 200 meanwhile: the worker holds an answer it cannot record)
    time.sleep(sizes.db_cut_seconds)
    assert stack.ledger.delivery(delivery)["state"] == "sending"
    forwarder.restore()
    restored_at, restored_wall = time.monotonic(), datetime.now(UTC)

    # Then the answer is recorded once the database is back
    wait_until(lambda: stack.ledger.delivery(delivery)["state"] == "delivered",
               timeout=sizes.db_cut_seconds + 30, what="the record after the outage",
               deployment=stack.deployment, every=0.02)
    landed = time.monotonic() - restored_at
    outage = restored_at - cut_at
    attempts = stack.ledger.attempts(delivery)
    # as one attempt, accepted, under its own claim: nothing in doubt, nothing resent
    assert [(a["number"], a["outcome"], a["stale"], a["resend_of"]) for a in attempts] == [
        (1, "accepted", False, None)], dumps(attempts)
    assert stack.ledger.delivery(delivery)["claims"] == 1
    # the CRM had answered during the outage; the record was committed after it
    assert crm.received[0].at + HOLD < restored_at
    [delivered] = [e for e in stack.ledger.state_log(delivery) if e["new_state"] == "delivered"]
    assert delivered["at"] >= restored_wall - timedelta(seconds=0.1)
    # and the CRM got the lead once
    time.sleep(1.0)
    assert crm.count() == 1
    findings = check_promises(stack.ledger, crm.received, max_attempts=3)
    assert findings.duplicates == 0
    figures(4, "database cut between the CRM's answer and the commit", stack.backend,
            findings, 3,
            f"cut {outage:.0f} s; recorded {landed:.1f} s after it came back, not resent")
