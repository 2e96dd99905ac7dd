"""The sweeper: finds in the ledger what the broker lost, and sends it again.

It reclaims deliveries whose sender's lease ran out (the worker died, hung or lost
the database mid-send) and re-announces due deliveries whose message never came.
Duplicated messages are harmless: a delivery is claimed by one conditional UPDATE.

Reclaiming takes the claim back: the delivery gets the next claim number, so the old
sender, should it come back, can record its attempt (kept, marked stale) but no longer
move the delivery. Its attempt — written before the request left — is marked
``in_doubt``: the CRM may or may not have the lead, and the resend, under the same
idempotency key, names it. A delivery whose attempts keep ending in doubt (a lead that
kills the worker sending it) is parked in the failed collection after
:data:`~.delivery.MAX_IN_DOUBT` of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import case, or_, select, update

from .clock import Clock
from .delivery import MAX_IN_DOUBT
from .held import DELETED_REASON
from .ledger import (
    IN_DOUBT,
    SENDING,
    Attempt,
    Delivery,
    DeliveryState,
    Integration,
    Lead,
    Ledger,
)

#: The reason on an attempt whose sender never recorded an outcome.
IN_DOUBT_REASON = (
    "no outcome recorded: the sender's lease ran out while sending (worker died, hung or "
    "lost the database); the CRM may have the lead, the resend uses the same idempotency key"
)
#: The reason of a delivery parked after too many attempts in doubt.
PARKED_REASON = (
    f"worker died while sending: {MAX_IN_DOUBT} attempts in a row ended without a "
    "recorded outcome"
)


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did."""

    reclaimed: int
    enqueued: int
    held: int = 0


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
        bulk: Callable[[list[tuple[int | None, int]]], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.clock = clock
        self.announce = announce
        #: Announces deliveries of imported leads and replays, on the bulk lane (default:
        #: ``announce``).
        self.bulk = bulk or announce
        self.grace = timedelta(seconds=grace_seconds)
        self.batch = batch

    def sweep(self) -> SweepReport:
        """One pass: reclaim expired leases, then enqueue what is due and not on its way.

        Housekeeping, so bulk work for the ledger's writer: a live lead's write never
        waits behind a sweep queued for it."""
        now = self.clock.now()
        with self.ledger.bulk(), self.ledger.session() as s:
            expired = (
                Delivery.state == DeliveryState.SENDING.value,
                Delivery.lease_until < now,
            )
            s.execute(
                update(Attempt)
                .where(
                    Attempt.outcome == SENDING,
                    Attempt.delivery_id.in_(select(Delivery.id).where(*expired)),
                )
                .values(outcome=IN_DOUBT, reason=IN_DOUBT_REASON, decided_by="lease expired")
                .execution_options(synchronize_session=False)
            )
            parked = Delivery.in_doubt + 1 >= MAX_IN_DOUBT
            reclaimed = s.execute(
                update(Delivery)
                .where(*expired)
                .values(
                    state=case(
                        (parked, DeliveryState.NOT_INTEGRATED.value),
                        else_=DeliveryState.PENDING.value,
                    ),
                    next_due_at=case((parked, None), else_=now),
                    finished_at=case((parked, now), else_=None),
                    last_outcome=case((parked, IN_DOUBT), else_=Delivery.last_outcome),
                    last_reason=case((parked, PARKED_REASON), else_=Delivery.last_reason),
                    in_doubt=Delivery.in_doubt + 1,
                    claims=Delivery.claims + 1,
                    queued_for=None,
                    lease_until=None,
                )
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            # Deliveries that came back pending (a retry recorded) after their integration
            # was deleted are discarded, as deletion discarded the others; after it was
            # switched off, they are held, as deactivation held the others.
            s.execute(
                update(Delivery)
                .where(
                    Delivery.state == DeliveryState.PENDING.value,
                    Delivery.integration_id.in_(
                        select(Integration.id).where(Integration.archived_at.is_not(None))
                    ),
                )
                .values(state=DeliveryState.DISCARDED.value, last_outcome="discarded",
                        last_reason=f"discarded: {DELETED_REASON}", next_due_at=None,
                        queued_for=None, finished_at=now)
                .execution_options(synchronize_session=False)
            )
            held = s.execute(
                update(Delivery)
                .where(
                    Delivery.state == DeliveryState.PENDING.value,
                    Delivery.integration_id.in_(
                        select(Integration.id).where(Integration.active.is_(False))
                    ),
                )
                .values(state=DeliveryState.HELD.value, queued_for=None)
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            # Imported leads and replayed deliveries are the bulk lane's work.
            bulk_work = or_(Lead.import_id.is_not(None), Delivery.replays > 0)
            due = list(
                s.execute(
                    select(Delivery.integration_id, Delivery.id, bulk_work)
                    .join(Lead, Lead.id == Delivery.lead_id)
                    .where(
                        Delivery.state == DeliveryState.PENDING.value,
                        Delivery.next_due_at <= now,
                        or_(Delivery.queued_for.is_(None), Delivery.queued_for < now - self.grace),
                    )
                    # Live leads first: a backlog of imports and replays never holds them back.
                    .order_by(bulk_work, Delivery.next_due_at)
                    .limit(self.batch)
                )
            )
            if due:
                s.execute(
                    update(Delivery)
                    .where(Delivery.id.in_([d for _, d, _ in due]))
                    .values(queued_for=now)
                    .execution_options(synchronize_session=False)
                )
        self.announce([(i, d) for i, d, is_bulk in due if not is_bulk])
        bulk: list[tuple[int | None, int]] = [(i, d) for i, d, is_bulk in due if is_bulk]
        if bulk:
            self.bulk(bulk)
        return SweepReport(reclaimed=reclaimed or 0, enqueued=len(due), held=held or 0)
