"""Reading the ledger: delivery listings and the integration object of one delivery.

The integration object is everything known about one delivery — lead,
integration (config redacted), every attempt with its exchanges and rule
trace — as one JSON-ready dict, the same for the API and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select

from .errors import BadInput, NotFound
from .ledger import Attempt, Delivery, DeliveryState, Form, Integration, Lead, Ledger
from .secrets import redact_stored


@dataclass(frozen=True)
class DeliveryFilter:
    """Which deliveries to list, export or replay. Every field is optional."""

    state: str | None = None
    integration_id: int | None = None
    form_id: int | None = None
    account_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    reason: str | None = None
    outcome: str | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in {s.value for s in DeliveryState}:
            known = ", ".join(s.value for s in DeliveryState)
            raise BadInput(f"state: unknown state {self.state!r} (known: {known})", field="state")
        if self.since and self.until and self.since > self.until:
            raise BadInput("since: must not be after until", field="since")

    def apply(self, query: Select) -> Select:
        """``query`` (over Delivery joined with Lead) narrowed by this filter."""
        if self.state:
            query = query.where(Delivery.state == self.state)
        if self.integration_id is not None:
            query = query.where(Delivery.integration_id == self.integration_id)
        if self.form_id is not None:
            query = query.where(Lead.form_id == self.form_id)
        if self.account_id is not None:
            query = query.where(
                Lead.form_id.in_(select(Form.id).where(Form.account_id == self.account_id))
            )
        # Failed deliveries are dated by when they failed; others by when the lead came.
        when = (
            Delivery.finished_at
            if self.state == DeliveryState.NOT_INTEGRATED
            else Delivery.created_at
        )
        if self.since:
            query = query.where(when >= self.since)
        if self.until:
            query = query.where(when <= self.until)
        if self.reason:
            query = query.where(Delivery.last_reason.contains(self.reason, autoescape=True))
        if self.outcome:
            query = query.where(Delivery.last_outcome == self.outcome)
        if self.limit:
            query = query.limit(self.limit)
        return query


def delivery_summary(d: Delivery, lead: Lead) -> dict[str, Any]:
    """One line of a delivery listing."""
    return {
        "id": d.id,
        "lead_id": d.lead_id,
        "form_id": lead.form_id,
        "integration_id": d.integration_id,
        "state": d.state,
        "attempts": d.attempts_count,
        "next_due_at": _iso(d.next_due_at),
        "last_outcome": d.last_outcome,
        "last_reason": d.last_reason,
        "crm_reference": d.crm_reference,
        "created_at": _iso(d.created_at),
        "finished_at": _iso(d.finished_at),
    }


def list_deliveries(ledger: Ledger, flt: DeliveryFilter) -> list[dict[str, Any]]:
    """Deliveries matching ``flt``, newest first."""
    query = flt.apply(
        select(Delivery, Lead).join(Lead, Lead.id == Delivery.lead_id).order_by(Delivery.id.desc())
    )
    with ledger.session() as s:
        return [delivery_summary(d, lead) for d, lead in s.execute(query)]


def integration_object(ledger: Ledger, delivery_id: int) -> dict[str, Any]:
    """Everything about one delivery, as one JSON-ready object."""
    with ledger.session() as s:
        row = s.execute(
            select(Delivery, Lead, Integration)
            .join(Lead, Lead.id == Delivery.lead_id)
            .join(Integration, Integration.id == Delivery.integration_id)
            .where(Delivery.id == delivery_id)
        ).one_or_none()
        if row is None:
            raise NotFound(f"delivery {delivery_id} does not exist", field="delivery_id")
        delivery, lead, integration = row
        attempts = list(
            s.scalars(
                select(Attempt).where(Attempt.delivery_id == delivery_id).order_by(Attempt.number)
            )
        )
    summary = delivery_summary(delivery, lead)
    summary.update(
        idempotency_key=delivery.idempotency_key,
        total_attempts=delivery.total_attempts,
        replays=delivery.replays,
    )
    return {
        "delivery": summary,
        "lead": {
            "id": lead.id,
            "form_id": lead.form_id,
            "source": lead.source,
            "external_id": lead.external_id,
            "received_at": _iso(lead.received_at),
            "payload": lead.payload,
        },
        "integration": describe_integration(integration),
        "attempts": [
            {
                "number": a.number,
                "started_at": _iso(a.started_at),
                "duration_ms": a.duration_ms,
                "outcome": a.outcome,
                "reason": a.reason,
                "decided_by": a.decided_by,
                "proxy": a.proxy,
                "trace": a.trace,
                "exchanges": a.exchanges,
            }
            for a in attempts
        ],
    }


def describe_integration(i: Integration) -> dict[str, Any]:
    """An integration as shown to users: its config with secrets redacted."""
    return {
        "id": i.id,
        "form_id": i.form_id,
        "name": i.name,
        "connector": i.connector,
        "config": redact_stored(i.config),
        "expectations": i.expectations,
        "retry": i.retry_policy,
        "static_ip_pool": i.static_ip_pool,
        "realtime": i.realtime,
        "realtime_budget": i.realtime_budget,
        "active": i.active,
        "revision": i.revision,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
