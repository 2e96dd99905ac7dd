"""Figures from the ledger for monitoring: deliveries by state and outcome, the queue's
depth, and attempts as they finish.

The ledger is the truth for every process (API processes, workers on other
machines), so these are read from it rather than counted in one process.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, func, select

from .ledger import SENDING, Attempt, Delivery, DeliveryState, Integration, Ledger


@dataclass(frozen=True)
class FinishedAttempt:
    """One attempt with its verdict: what a latency histogram needs."""

    id: int
    connector: str
    lane: str
    outcome: str
    seconds: float


def delivery_counts(ledger: Ledger) -> dict[tuple[str, str], int]:
    """Deliveries per (state, last outcome); ``""`` for "no attempt yet"."""
    with ledger.transaction() as conn:
        rows = conn.execute(_COUNTS).all()
    return {(state, outcome or ""): int(n) for state, outcome, n in rows}


def queue_depth(ledger: Ledger, now: datetime) -> int:
    """Deliveries due now and waiting for a worker."""
    with ledger.transaction() as conn:
        return int(conn.execute(_DUE, {"now": now}).scalar_one())


def latest_attempt_id(ledger: Ledger) -> int:
    """The id of the newest attempt (0 for none): where a tail starts."""
    with ledger.transaction() as conn:
        return int(conn.execute(_LATEST).scalar_one() or 0)


class AttemptTail:
    """Attempts that finished since the last call, each returned once.

    An attempt's row is written when it starts (outcome ``sending``) and gets its
    verdict later, so rows finish out of id order: the tail keeps its place at the
    oldest attempt still sending and remembers which newer ones it has returned.
    """

    def __init__(self, ledger: Ledger, *, start_after: int | None = None, batch: int = 5000):
        self.ledger = ledger
        self.batch = batch
        self._low = latest_attempt_id(ledger) if start_after is None else start_after
        self._returned: set[int] = set()

    def finished(self) -> list[FinishedAttempt]:
        """Attempts finished since the last call (at most ``batch`` rows looked at)."""
        with self.ledger.transaction() as conn:
            rows = conn.execute(_TAIL, {"low": self._low, "n": self.batch}).all()
        done: list[FinishedAttempt] = []
        low, blocked = self._low, False
        for row in rows:
            if row.outcome == SENDING:
                blocked = True
                continue
            if row.id not in self._returned:
                done.append(FinishedAttempt(row.id, row.connector, row.lane, row.outcome,
                                            float(row.duration_ms) / 1000))
                self._returned.add(row.id)
            if not blocked:
                low = row.id
        self._low = low
        self._returned = {i for i in self._returned if i > low}
        return done


_A, _D = cast(Table, Attempt.__table__), cast(Table, Delivery.__table__)
_I = cast(Table, Integration.__table__)
_COUNTS = select(_D.c.state, _D.c.last_outcome, func.count()).group_by(
    _D.c.state, _D.c.last_outcome
)
_DUE = select(func.count()).where(
    _D.c.state == DeliveryState.PENDING.value, _D.c.next_due_at <= bindparam("now")
)
_LATEST = select(func.max(_A.c.id))
_TAIL = (
    select(_A.c.id, _A.c.outcome, _A.c.lane, _A.c.duration_ms, _I.c.connector)
    .join(_D, _D.c.id == _A.c.delivery_id)
    .join(_I, _I.c.id == _D.c.integration_id)
    .where(_A.c.id > bindparam("low"))
    .order_by(_A.c.id)
    .limit(bindparam("n"))
)
