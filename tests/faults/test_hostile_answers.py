"""Issue 10, cases 2 and 3: answers that used to be unrecordable, unbounded or endless.

Seen before: a NUL byte in an answer made the attempt unrecordable on PostgreSQL (resent
every lease, invisibly, 0 attempts shown); a 10 MB gzip bomb took a worker from 107 MB to
2,135 MB; a 1-byte/s drip pinned a thread forever and made SIGTERM take 20 minutes.

The promise for each hostile answer: every attempt is recorded (its reason, the answer
as safe text), it is retried per the policy and no more, and the delivery ends in the
failed collection with its reason; the worker's memory stays bounded while reading; a
drip ends at the attempt's deadline, and so does the worker's shutdown.
"""

from __future__ import annotations

from collections.abc import Callable

from .hostile_crm import NUL_BODY, HostileCrm, Received
from .processes import Service, ServiceFailed, wait_until
from .promises import Findings, check_promises, unanswered
from .stack import ATTEMPT_DEADLINE, BODY_EXPECTED, Sizes, Stack, dumps, retry_policy

POLICY = 3
#: Hostile answers that are transient failures, by the mode (and options) of the CRM.
TRANSIENT = {
    "drip": "/drip/leads?interval_ms=100",
    "reset": "/reset/leads",
    "short_body": "/short_body/leads",
    "nul": "/nul/leads?status=500",
}
#: How much the worker's peak resident memory may grow while it reads bombs and huge bodies.
RSS_BOUND_MB = 40.0


def _wait_settled(stack: Stack, timeout: float) -> None:
    try:
        wait_until(stack.ledger.settled, timeout=timeout, what="every delivery to settle",
                   deployment=stack.deployment, every=0.2)
    except ServiceFailed as exc:
        unsettled = [
            {k: d[k] for k in ("id", "integration_id", "state", "total_attempts", "last_reason")}
            for d in stack.ledger.deliveries() if d["state"] not in ("delivered", "not_integrated")
        ]
        raise ServiceFailed(f"unsettled: {dumps(unsettled)}\n{exc}") from None


def _failed_per_policy(stack: Stack, deliveries: list[int], requests: list[Received],
                       mode: str) -> None:
    """Each delivery: ``POLICY`` attempts, each recorded with its reason, then failed."""
    for delivery in deliveries:
        row = stack.ledger.delivery(delivery)
        attempts = stack.ledger.attempts(delivery)
        assert row["state"] == "not_integrated", (mode, dumps([row]))
        assert [a["number"] for a in attempts] == list(range(1, POLICY + 1)), (
            mode, dumps(attempts))
        assert all(a["outcome"] != "accepted" and a["reason"] and a["exchanges"]
                   for a in attempts), (mode, dumps(attempts))
        assert row["last_reason"] == attempts[-1]["reason"]
        mine = [r for r in requests if r.idempotency_key == row["idempotency_key"]]
        assert len(mine) == POLICY, (mode, len(mine))


def _row(figures: Callable[..., None], order: int, scenario: str, stack: Stack,
         findings: Findings, measured: str) -> None:
    figures(order, scenario, stack.backend, findings, POLICY, measured)


def test_hostile_answers_are_recorded_retried_per_policy_then_failed_with_their_reason(
    stack: Stack, make_hostile_crm: Callable[..., HostileCrm], sizes: Sizes,
    figures: Callable[..., None],
) -> None:
    # Given one integration per hostile answer, and one whose CRM accepts with NUL bytes
    crm = make_hostile_crm("ok")
    forms = {mode: stack.integration(crm.url_for(path), retry=retry_policy(POLICY, 1.0))[0]
             for mode, path in TRANSIENT.items()}
    nul_ok, _ = stack.integration(crm.url_for("/nul/leads"), retry=retry_policy(POLICY, 1.0))
    stack.start(workers=1, scheduler=False)  # retries come back through the broker alone

    # When leads are sent to each
    sent = {mode: stack.submit(form, sizes.hostile_leads) for mode, form in forms.items()}
    accepted = stack.submit(nul_ok, sizes.hostile_leads)

    # Then every one settles: the hostile ones failed after the policy's attempts
    _wait_settled(stack, timeout=60)
    received = crm.received
    for mode, deliveries in sent.items():
        _failed_per_policy(stack, deliveries, received, mode)
        outcomes = {a["outcome"] for d in deliveries for a in stack.ledger.attempts(d)}
        assert outcomes == {"transient"}, (mode, outcomes)
    # a drip ends at the attempt's deadline, with no whole answer
    drips = [a for d in sent["drip"] for a in stack.ledger.attempts(d)]
    assert all(unanswered(a) for a in drips)
    slowest = max(a["duration_ms"] for a in drips) / 1000
    assert slowest < ATTEMPT_DEADLINE + 0.5, dumps(drips)
    # NUL bytes and invalid UTF-8 are stored as safe text, with the raw byte count, in the
    # failing attempts and the accepted ones alike
    for delivery in sent["nul"] + accepted:
        for a in stack.ledger.attempts(delivery):
            response = a["exchanges"][-1]["response"]
            assert "\x00" not in response["body"] and "nul" in response["body"], response
            assert response["bytes"] == len(NUL_BODY), response
    for delivery in accepted:
        assert stack.ledger.delivery(delivery)["state"] == "delivered"
        assert [a["outcome"] for a in stack.ledger.attempts(delivery)] == ["accepted"]

    check_promises(stack.ledger, received, max_attempts=POLICY, creates_on_every_request=False)
    for mode, deliveries in sent.items():
        findings = check_promises(stack.ledger, received, max_attempts=POLICY,
                                  creates_on_every_request=False, only=deliveries)
        reason = stack.ledger.delivery(deliveries[0])["last_reason"]
        measured = f'"{reason[:50]}"'
        if mode == "drip":
            measured = f"each attempt ended by {slowest:.2f} s (deadline {ATTEMPT_DEADLINE:g} s)"
        _row(figures, 2 if mode == "nul" else 3, f"CRM answer: {mode}", stack, findings,
             measured)
    findings = check_promises(stack.ledger, received, max_attempts=POLICY, only=accepted)
    _row(figures, 2, "CRM answer: 200 with NUL and invalid UTF-8", stack, findings,
         "stored escaped, delivered once")


def test_a_gzip_bomb_and_a_huge_answer_leave_the_worker_memory_bounded(
    stack: Stack, make_hostile_crm: Callable[..., HostileCrm], sizes: Sizes,
    figures: Callable[..., None],
) -> None:
    # Given integrations whose expectations need the body, and a warmed-up worker
    crm = make_hostile_crm("ok")
    warm, _ = stack.integration(crm.url_for("/leads"), expectations=BODY_EXPECTED)
    bomb, _ = stack.integration(crm.url_for(f"/gzip_bomb/leads?bomb_bytes={sizes.bomb_bytes}"),
                                expectations=BODY_EXPECTED, retry=retry_policy(POLICY, 1.0))
    huge, _ = stack.integration(crm.url_for(f"/huge/leads?huge_bytes={sizes.huge_bytes}"),
                                expectations=BODY_EXPECTED, retry=retry_policy(POLICY, 1.0))
    [worker] = stack.start(workers=1, scheduler=False)
    stack.submit(warm, 4)
    _wait_settled(stack, timeout=30)
    before = worker.peak_rss_mb()

    # When it is answered with gzip bombs and huge bodies
    bombs = stack.submit(bomb, sizes.hostile_leads)
    huges = stack.submit(huge, sizes.hostile_leads)
    _wait_settled(stack, timeout=90)

    # Then each is recorded, retried per policy, failed with its reason
    received = crm.received
    _failed_per_policy(stack, bombs, received, "gzip_bomb")
    _failed_per_policy(stack, huges, received, "huge")
    # and the worker's memory never grew by more than the bound
    growth = _growth(worker, before)
    assert growth < RSS_BOUND_MB, (
        f"peak RSS grew {growth:.0f} MB reading {sizes.bomb_bytes >> 20} MiB bombs and "
        f"{sizes.huge_bytes >> 20} MiB bodies\n{stack.deployment.logs_text()}")
    check_promises(stack.ledger, received, max_attempts=POLICY, creates_on_every_request=False)
    for name, deliveries, size in (("gzip bomb", bombs, sizes.bomb_bytes),
                                   ("huge body", huges, sizes.huge_bytes)):
        findings = check_promises(stack.ledger, received, max_attempts=POLICY,
                                  creates_on_every_request=False, only=deliveries)
        outcome = stack.ledger.delivery(deliveries[0])["last_outcome"]
        _row(figures, 3, f"CRM answer: {name} ({size >> 20} MiB)", stack, findings,
             f"peak RSS +{growth:.0f} MB over {before:.0f} MB (bound {RSS_BOUND_MB:g}); "
             f"{outcome}")


def _growth(worker: Service, before: float) -> float:
    return worker.peak_rss_mb() - before


def test_sigterm_during_a_drip_stops_within_the_attempt_deadline_and_loses_nothing(
    stack: Stack, make_hostile_crm: Callable[..., HostileCrm], figures: Callable[..., None],
) -> None:
    # Given a CRM that drips its answer a byte every 100 ms
    crm = make_hostile_crm("drip", interval=0.1)
    form, _ = stack.integration(crm.url_for("/leads"), retry=retry_policy(POLICY, 1.0))
    # (no scheduler: the retry must survive the shutdown in the broker, not be found later)
    [worker] = stack.start(workers=1, scheduler=False)
    [delivery] = stack.submit(form)
    wait_until(lambda: crm.count() == 1, timeout=30, what="the send",
               deployment=stack.deployment)

    # When the worker is asked to stop in the middle of the drip
    took = worker.terminate(timeout=60)

    # Then it stops once the attempt reached its deadline, which is recorded
    assert took < ATTEMPT_DEADLINE + 5, f"SIGTERM took {took:.1f} s"
    [first] = stack.ledger.attempts(delivery)
    assert first["outcome"] == "transient" and unanswered(first), dumps([first])
    # and the lead is not lost: pending, due for its next attempt, which the next worker
    # makes (embedded, the next `serve` would find it by its sweeper, 30 s after the
    # retry's message was due and lost with the process: not waited for here)
    row = stack.ledger.delivery(delivery)
    assert row["state"] == "pending" and row["next_due_at"] is not None, dumps([row])
    if not stack.embedded:
        crm.set_mode("ok")
        stack.restart_worker()
        wait_until(lambda: stack.ledger.delivery(delivery)["state"] == "delivered",
                   timeout=30, what="the retry", deployment=stack.deployment)
    findings = check_promises(stack.ledger, crm.received, max_attempts=POLICY,
                              settled=not stack.embedded)
    _row(figures, 3, "SIGTERM during a drip", stack, findings,
         f"stopped {took:.1f} s after SIGTERM (deadline {ATTEMPT_DEADLINE:g} s)")
