"""The promises leadrelay makes, checked on what a scenario left behind.

Every scenario ends with :func:`check_promises` over the whole ledger (with its audit
log) and everything the CRM received:

- **nothing lost**: every delivery ended delivered or not integrated, the latter with
  its reason, and no attempt is left ``sending``;
- **never back from delivered**: no delivery ever left ``delivered`` (or the failed
  collection: no scenario replays);
- **one record per attempt**: attempt numbers and claims are unique per delivery, and
  an attempt's verdict is written once — ``sending`` → verdict, or ``sending`` →
  ``in_doubt`` (the lease ran out) → the stale sender's verdict, marked stale;
- **within the policy**: verdicts per delivery at most ``max_attempts``, attempts in
  doubt in a row at most :data:`MAX_IN_DOUBT`;
- **intent before send**: every request the CRM received carries the idempotency key of
  a delivery with at least as many attempts on record as requests (no send nobody knows);
- **duplicates only where an answer was lost**: a CRM that creates a lead on every
  request it receives got a delivery's lead more than once only as often as an attempt
  of that delivery lost its answer — ended in doubt, was recorded by a stale sender, or
  got no answer (a timeout) — always under the delivery's idempotency key; and
  every resend of an attempt in doubt names it (``resend_of``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from .hostile_crm import Received
from .ledger_view import LedgerView
from .stack import dumps

#: Attempts in a row that may end in doubt before a delivery is parked.
MAX_IN_DOUBT = 3
FINAL = {"delivered", "not_integrated"}
IN_DOUBT = "in_doubt"
SENDING = "sending"


@dataclass(frozen=True)
class Findings:
    """What a scenario's ledger and CRM show, for its assertions and the report."""

    leads: int
    deliveries: int
    delivered: int
    not_integrated: int
    #: Pending and due for their next attempt, in a scenario that stops before they end
    #: (``settled=False``): durable, not lost.
    pending: int
    crm_requests: int
    #: Requests beyond the first per delivery, at a CRM that creates on every request.
    duplicates: int
    #: Attempts whose answer was lost (in doubt, stale, timed out).
    lost_answers: int
    stale: int
    #: The most attempts any delivery had, all kinds counted.
    max_attempts: int
    attempts: int

    def row(self) -> dict[str, Any]:
        """The figures of the report's table."""
        return {
            "deliveries": self.deliveries,
            "delivered": self.delivered,
            "not_integrated": self.not_integrated,
            "lost": self.deliveries - self.delivered - self.not_integrated - self.pending,
            "crm_requests": self.crm_requests,
            "duplicates": self.duplicates,
            "lost_answers": self.lost_answers,
            "stale": self.stale,
            "max_attempts": self.max_attempts,
        }


def in_doubt(attempt: dict[str, Any]) -> bool:
    """Whether the attempt's sender never got to record its answer in time: the lease
    ran out (in doubt) or its late record was kept as stale."""
    return attempt["outcome"] == IN_DOUBT or bool(attempt["stale"])


def unanswered(attempt: dict[str, Any]) -> bool:
    """Whether the attempt's request left and no whole answer came back (a timeout, a
    reset, a body cut short): the CRM may have the lead."""
    exchanges = attempt["exchanges"] or []
    if not exchanges:
        return False
    last = exchanges[-1]
    return last.get("response") is None or bool(last.get("error"))


def lost_answer(attempt: dict[str, Any]) -> bool:
    """Whether the CRM may have the lead though the attempt did not see it accepted: in
    doubt, or sent without an answer (see :func:`unanswered`)."""
    return in_doubt(attempt) or (attempt["outcome"] != "accepted" and unanswered(attempt))


def check_promises(
    ledger: LedgerView,
    received: Sequence[Received],
    *,
    max_attempts: int,
    creates_on_every_request: bool = True,
    only: Collection[int] | None = None,
    settled: bool = True,
) -> Findings:
    """Assert every promise of the module docstring; what was found.

    :param received: every request the CRM(s) received.
    :param max_attempts: the retry policy's.
    :param creates_on_every_request: the CRM would have created a lead for each request
        (it answered, or would have, with success): then a second request is a duplicate.
    :param only: check these deliveries (and the requests carrying their keys) alone.
    :param settled: every delivery has ended by now; with False, one still pending must be
        due for its next attempt (durable, not lost), and none may be claimed.
    """
    deliveries = ledger.deliveries()
    attempts = ledger.attempts()
    states = ledger.state_log()
    outcome_log = ledger.attempt_log()
    if only is not None:
        wanted = set(only)
        keys = {d["idempotency_key"] for d in deliveries if d["id"] in wanted}
        deliveries = [d for d in deliveries if d["id"] in wanted]
        attempts = [a for a in attempts if a["delivery_id"] in wanted]
        states = [s for s in states if s["delivery_id"] in wanted]
        outcome_log = [e for e in outcome_log if e["delivery_id"] in wanted]
        received = [r for r in received if r.idempotency_key in keys]
    context = (f"\ndeliveries: {dumps(deliveries)}\nattempts: {dumps(_brief(attempts))}"
               f"\nstate log: {dumps(states)}\noutcome log: {dumps(outcome_log)}")
    by_delivery: dict[int, list[dict[str, Any]]] = {d["id"]: [] for d in deliveries}
    for a in attempts:
        by_delivery[a["delivery_id"]].append(a)

    # Nothing lost.
    unsettled = [d for d in deliveries if d["state"] not in FINAL]
    if not settled:
        unsettled = [d for d in unsettled if d["state"] != "pending" or d["next_due_at"] is None]
    assert not unsettled, f"deliveries not settled: {dumps(unsettled)}{context}"
    unexplained = [d for d in deliveries if d["state"] == "not_integrated" and not d["last_reason"]]
    assert not unexplained, f"failed without a reason: {dumps(unexplained)}{context}"
    sending = [a for a in attempts if a["outcome"] == SENDING]
    assert not sending, f"attempts left 'sending': {dumps(_brief(sending))}{context}"

    # Never back from delivered (or from the failed collection).
    back = [s for s in states if s["old_state"] in FINAL]
    assert not back, f"a settled delivery moved again: {dumps(back)}{context}"

    # One record per attempt.
    for delivery_id, mine in by_delivery.items():
        numbers = Counter(a["number"] for a in mine)
        claims = Counter(a["claim"] for a in mine)
        twice = {n: c for n, c in numbers.items() if c > 1}
        assert not twice, f"delivery {delivery_id}: attempt numbers twice {twice}{context}"
        twice = {n: c for n, c in claims.items() if c > 1}
        assert not twice, f"delivery {delivery_id}: claims with two attempts {twice}{context}"
    _check_outcome_history(outcome_log, context)

    # Within the policy.
    for delivery_id, mine in by_delivery.items():
        verdicts = [a for a in mine if a["outcome"] != IN_DOUBT and not a["stale"]]
        assert len(verdicts) <= max_attempts, (
            f"delivery {delivery_id}: {len(verdicts)} verdicts > policy {max_attempts}{context}")
        run = longest = 0
        for a in mine:
            run = run + 1 if in_doubt(a) else 0
            longest = max(longest, run)
        assert longest <= MAX_IN_DOUBT, (
            f"delivery {delivery_id}: {longest} attempts in doubt in a row{context}")

    # Intent before send; the key every attempt carries is its delivery's.
    key_of = {d["idempotency_key"]: d["id"] for d in deliveries}
    for d in deliveries:
        wrong = [a for a in by_delivery[d["id"]] if a["idempotency_key"] != d["idempotency_key"]]
        assert not wrong, f"attempts with another key than their delivery's: {wrong}{context}"
    requests = Counter(r.idempotency_key for r in received)
    unknown = {k: n for k, n in requests.items() if k not in key_of}
    assert not unknown, f"the CRM received leads of no delivery: {unknown}{context}"
    for key, count in requests.items():
        delivery_id = key_of[key]
        on_record = len(by_delivery[delivery_id])
        assert count <= on_record, (
            f"delivery {delivery_id}: the CRM received it {count} times, {on_record} attempts "
            f"on record (a send without its attempt){context}")

    # Duplicates only where an answer was lost, and then visible.
    duplicates = 0
    for delivery_id, mine in by_delivery.items():
        lost = [a for a in mine if lost_answer(a)]
        for a in mine:
            previous = [b for b in mine if b["number"] == a["number"] - 1]
            if previous and in_doubt(previous[0]):
                assert a["resend_of"] == previous[0]["number"], (
                    f"delivery {delivery_id}: attempt {a['number']} resends in-doubt attempt "
                    f"{previous[0]['number']} without saying so{context}")
        accepted = [a for a in mine if a["outcome"] == "accepted" and not a["stale"]]
        assert len(accepted) <= 1, f"delivery {delivery_id}: accepted twice{context}"
        if creates_on_every_request:
            key = next(d["idempotency_key"] for d in deliveries if d["id"] == delivery_id)
            extra = max(0, requests.get(key, 0) - 1)
            duplicates += extra
            assert extra <= len(lost), (
                f"delivery {delivery_id}: the CRM got it {extra + 1} times, only {len(lost)} "
                f"answer(s) lost{context}")

    counts = Counter(d["state"] for d in deliveries)
    return Findings(
        leads=len({d["lead_id"] for d in deliveries}),
        deliveries=len(deliveries),
        delivered=counts["delivered"],
        not_integrated=counts["not_integrated"],
        pending=0 if settled else sum(
            1 for d in deliveries if d["state"] == "pending" and d["next_due_at"] is not None),
        crm_requests=len(received),
        duplicates=duplicates,
        lost_answers=sum(1 for a in attempts if lost_answer(a)),
        stale=sum(1 for a in attempts if a["stale"]),
        max_attempts=max((len(m) for m in by_delivery.values()), default=0),
        attempts=len(attempts),
    )


def _check_outcome_history(log: list[dict[str, Any]], context: str) -> None:
    """An attempt's verdict is written once: the allowed histories of one attempt row."""
    history: dict[tuple[int, int, int], list[dict[str, Any]]] = {}
    for entry in log:
        history.setdefault((entry["delivery_id"], entry["number"], entry["claim"]), []).append(
            entry)
    for (delivery_id, number, claim), entries in history.items():
        outcomes = [e["new_outcome"] for e in entries]
        where = f"delivery {delivery_id} attempt {number} (claim {claim}): {outcomes}"
        assert entries[0]["old_outcome"] is None and outcomes[0] == SENDING, (
            f"{where}: not written as 'sending' before it was sent{context}")
        rest = entries[1:]
        if not rest:
            continue
        first = rest[0]
        if first["new_outcome"] == IN_DOUBT:
            # The lease ran out; the sender may come back once, and is then stale.
            assert len(rest) <= 2, f"{where}: rewritten after it was in doubt{context}"
            if len(rest) == 2:
                assert rest[1]["stale"], f"{where}: a late record not marked stale{context}"
        else:
            assert first["new_outcome"] != SENDING and len(rest) == 1, (
                f"{where}: its verdict was written more than once{context}")


def _brief(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attempts without their exchanges (long), for failure messages."""
    return [{k: v for k, v in a.items() if k != "exchanges"} for a in attempts]
