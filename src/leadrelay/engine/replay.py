"""Replaying the failed collection: chosen "not integrated" deliveries go round again.

A replay starts a new round of attempts for each chosen delivery (the retry
policy counts afresh) and keeps its idempotency key and its attempt history.
A dry run renders what would be sent, and sends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select, update

from .clock import Clock
from .delivery import envelope_for
from .errors import LeadrelayError
from .ledger import Delivery, DeliveryState, Integration, Lead, Ledger
from .report import DeliveryFilter
from .runtime import RuntimeCache


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay chose, and (for a dry run) what it would send."""

    delivery_ids: tuple[int, ...]
    dry_run: bool
    previews: tuple[dict[str, Any], ...] = ()
    #: The integration of each delivery, in the order of ``delivery_ids``.
    integration_ids: tuple[int, ...] = ()

    def deliveries(self) -> list[tuple[int | None, int]]:
        """``(integration id, delivery id)`` of each delivery replayed."""
        if len(self.integration_ids) != len(self.delivery_ids):
            return [(None, d) for d in self.delivery_ids]
        return list(zip(self.integration_ids, self.delivery_ids, strict=True))

    @property
    def count(self) -> int:
        """How many deliveries the replay covers."""
        return len(self.delivery_ids)


class Replayer:
    """Puts failed deliveries back into the ledger's queue."""

    def __init__(self, ledger: Ledger, runtimes: RuntimeCache, clock: Clock) -> None:
        self.ledger = ledger
        self.runtimes = runtimes
        self.clock = clock

    def replay(
        self, flt: DeliveryFilter, *, dry_run: bool = False, queued: bool = True
    ) -> ReplayPlan:
        """Replay the failed deliveries matching ``flt`` (its state is forced to not integrated).

        ``queued=False``: no broker message will follow; the sweeper sends them at once.
        """
        flt = replace(flt, state=DeliveryState.NOT_INTEGRATED.value)
        query = flt.apply(
            select(Delivery, Lead, Integration)
            .join(Lead, Lead.id == Delivery.lead_id)
            .join(Integration, Integration.id == Delivery.integration_id)
            .order_by(Delivery.id)
        )
        now = self.clock.now()
        with self.ledger.session() as s:
            rows = list(s.execute(query))
            ids = tuple(d.id for d, _, _ in rows)
            if dry_run:
                return ReplayPlan(ids, True, tuple(self._preview(*row) for row in rows))
            if ids:
                s.execute(
                    update(Delivery)
                    .where(
                        Delivery.id.in_(ids), Delivery.state == DeliveryState.NOT_INTEGRATED.value
                    )
                    .values(
                        state=DeliveryState.PENDING.value,
                        attempts_count=0,
                        in_doubt=0,
                        next_due_at=now,
                        queued_for=now if queued else None,
                        finished_at=None,
                        replays=Delivery.replays + 1,
                    )
                    .execution_options(synchronize_session=False)
                )
        return ReplayPlan(
            ids, False, integration_ids=tuple(d.integration_id for d, _, _ in rows)
        )

    def _preview(self, d: Delivery, lead: Lead, integration: Integration) -> dict[str, Any]:
        base: dict[str, Any] = {
            "delivery_id": d.id,
            "integration": integration.name,
            "last_reason": d.last_reason,
        }
        try:
            runtime = self.runtimes.get(integration)
            rendered = runtime.connector.render(
                envelope_for(lead, d)
            )
        except LeadrelayError as exc:
            return {**base, "error": str(exc)}
        redact = runtime.redactor
        return {
            **base,
            "request": {
                "method": rendered.method,
                "url": redact.text(rendered.url),
                "headers": redact.headers(rendered.headers),
                "body": redact.text(rendered.body_text()),
            },
        }
