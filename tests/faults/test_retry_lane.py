"""Issue 10, case 7: a due retry does not wait behind the whole backlog of new leads.

Seen before: with a 2 s retry policy, attempt 2 started a median 43 s after attempt 1 —
retries queued behind new leads. The promise: a retry starts close to its due time
while a backlog is still being worked through (a generous bound: the priority lanes of
the bulk-flow issue are the fine tuning).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from .hostile_crm import HostileCrm
from .processes import wait_until
from .promises import check_promises
from .stack import Sizes, Stack, dumps, retry_policy

DELAY = 2.0
#: How late attempt 2 may start after its due time.
LATE_BOUND = 2.0


def test_a_due_retry_starts_close_to_its_due_time_behind_a_backlog(
    stack: Stack, make_hostile_crm: Callable[..., HostileCrm], sizes: Sizes,
    figures: Callable[..., None],
) -> None:
    # Given a CRM that fails a lead once, and another that takes a moment per lead
    failing = make_hostile_crm("ok", status=500)
    busy = make_hostile_crm("slow", slow_seconds=0.1 if not sizes.full else 0.02)
    retry_form, _ = stack.integration(failing.url_for("/leads"),
                                      retry=retry_policy(3, DELAY))
    backlog_form, _ = stack.integration(busy.url_for("/leads"))
    stack.start(workers=1, scheduler=False)  # retries are the workers' own business

    # When its first attempt fails, and a backlog of new leads arrives right after
    [retried] = stack.submit(retry_form)
    wait_until(lambda: failing.count() == 1, timeout=30, what="attempt 1",
               deployment=stack.deployment)
    failing.set_mode(None, {"status": ["200"]})
    backlog = stack.submit(backlog_form, sizes.backlog)
    backlog_at = time.monotonic()

    # Then the retry is delivered while the backlog is still being worked through
    wait_until(lambda: stack.ledger.delivery(retried)["state"] == "delivered",
               timeout=60 + sizes.backlog / 20, what="the retry", deployment=stack.deployment)
    wait_until(stack.ledger.settled, timeout=60 + sizes.backlog / 20, what="the backlog",
               deployment=stack.deployment, every=0.2)
    drained = time.monotonic() - backlog_at
    first, second = stack.ledger.attempts(retried)
    due = first["started_at"] + timedelta(milliseconds=first["duration_ms"], seconds=DELAY)
    late = (second["started_at"] - due).total_seconds()
    backlog_attempts = [a for a in stack.ledger.attempts() if a["delivery_id"] in set(backlog)]
    after = sum(1 for a in backlog_attempts if a["started_at"] > second["started_at"])
    assert after > 0, "the backlog was gone before the retry was due: nothing was measured"
    assert late < LATE_BOUND, (
        f"attempt 2 started {late:.1f} s after its due time, {after} of {len(backlog)} "
        f"backlog leads still to go\n{dumps([first, second])}")
    received = [*failing.received, *busy.received]
    check_promises(stack.ledger, received, max_attempts=3, creates_on_every_request=False)
    findings = check_promises(stack.ledger, received, max_attempts=3, only=backlog)
    assert findings.delivered == len(backlog) and findings.duplicates == 0
    figures(7, "a due retry behind a backlog of new leads", stack.backend, findings, 3,
            f"attempt 2 started {late:+.2f} s from its due time ({DELAY:g} s retry), "
            f"{after} of {len(backlog)} backlog leads after it; backlog drained in "
            f"{drained:.0f} s")
