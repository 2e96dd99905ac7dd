"""Held deliveries: kept, never sent, while their integration is switched off.

Deactivating an integration holds its pending and retrying deliveries at once (one
whose attempt is being sent finishes it; if it comes back pending, the sweeper holds
it). The claim never takes a held delivery, so a message already on its way when the
integration was switched off sends nothing. Re-activating releases them all, due at
once, announced in the order they arrived. An operator may instead discard them with a
reason: they stay in the ledger, inspectable, state ``discarded``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .errors import BadInput
from .ledger import Delivery, DeliveryState

#: The reason of held deliveries discarded because their integration was deleted.
DELETED_REASON = "integration deleted"


def hold(s: Session, integration_id: int) -> int:
    """Hold the integration's pending deliveries; how many."""
    held = s.execute(
        update(Delivery)
        .where(Delivery.integration_id == integration_id,
               Delivery.state == DeliveryState.PENDING.value)
        .values(state=DeliveryState.HELD.value, queued_for=None)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    return int(held or 0)


def release(s: Session, integration_id: int, now: datetime, *, queued: bool) -> list[int]:
    """Make the integration's held deliveries pending and due now; their ids in arrival
    order (to announce after commit; ``queued``: they will be)."""
    ids = list(s.scalars(
        select(Delivery.id)
        .where(Delivery.integration_id == integration_id,
               Delivery.state == DeliveryState.HELD.value)
        .order_by(Delivery.id)
        .with_for_update()
    ))
    if ids:
        s.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids), Delivery.state == DeliveryState.HELD.value)
            .values(state=DeliveryState.PENDING.value, next_due_at=now,
                    queued_for=now if queued else None)
            .execution_options(synchronize_session=False)
        )
    return ids


def check_reason(reason: object) -> str:
    """A discard reason: 1 to 500 characters."""
    if not isinstance(reason, str) or not reason.strip():
        raise BadInput("reason: say why the held deliveries are discarded", field="reason")
    if len(reason) > 500:
        raise BadInput("reason: at most 500 characters", field="reason")
    return reason.strip()


def discard(
    s: Session, integration_id: int, reason: str, now: datetime,
    delivery_ids: Sequence[int] | None = None, *, pending_too: bool = False,
) -> int:
    """Discard the integration's held deliveries (only ``delivery_ids`` of them, when
    given; with ``pending_too`` its pending ones as well); how many."""
    states = [DeliveryState.HELD.value]
    if pending_too:
        states.append(DeliveryState.PENDING.value)
    q = (
        update(Delivery)
        .where(Delivery.integration_id == integration_id, Delivery.state.in_(states))
        .values(state=DeliveryState.DISCARDED.value, last_outcome="discarded",
                last_reason=f"discarded: {reason}", next_due_at=None, queued_for=None,
                finished_at=now)
        .execution_options(synchronize_session=False)
    )
    if delivery_ids is not None:
        q = q.where(Delivery.id.in_(list(delivery_ids)))
    return int(s.execute(q).rowcount or 0)  # type: ignore[attr-defined]
