"""The sweeper: finds in the ledger what the broker lost, and sends it again.

It reclaims deliveries whose worker died mid-send (lease expired) and
re-announces due deliveries whose message never came. Duplicated messages are
harmless: a delivery is claimed by one conditional UPDATE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update

from .clock import Clock
from .ledger import Delivery, DeliveryState, Ledger


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did."""

    reclaimed: int
    enqueued: int


class Sweeper:
    """Re-enqueues due deliveries from the ledger."""

    def __init__(
        self,
        ledger: Ledger,
        clock: Clock,
        announce: Callable[[list[tuple[int | None, int]]], None],
        *,
        grace_seconds: float = 30.0,
        batch: int = 1000,
    ) -> None:
        self.ledger = ledger
        self.clock = clock
        self.announce = announce
        self.grace = timedelta(seconds=grace_seconds)
        self.batch = batch

    def sweep(self) -> SweepReport:
        """One pass: reclaim expired leases, then enqueue what is due and not on its way."""
        now = self.clock.now()
        with self.ledger.session() as s:
            reclaimed = s.execute(
                update(Delivery)
                .where(Delivery.state == DeliveryState.SENDING.value, Delivery.lease_until < now)
                .values(
                    state=DeliveryState.PENDING.value,
                    next_due_at=now,
                    queued_for=None,
                    lease_until=None,
                )
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            due = list(
                s.execute(
                    select(Delivery.integration_id, Delivery.id)
                    .where(
                        Delivery.state == DeliveryState.PENDING.value,
                        Delivery.next_due_at <= now,
                        or_(Delivery.queued_for.is_(None), Delivery.queued_for < now - self.grace),
                    )
                    .order_by(Delivery.next_due_at)
                    .limit(self.batch)
                )
            )
            if due:
                s.execute(
                    update(Delivery)
                    .where(Delivery.id.in_([d for _, d in due]))
                    .values(queued_for=now)
                    .execution_options(synchronize_session=False)
                )
        self.announce([(i, d) for i, d in due])
        return SweepReport(reclaimed=reclaimed or 0, enqueued=len(due))
