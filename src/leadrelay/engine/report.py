"""Reading the ledger: delivery listings and the integration object of one delivery.

The integration object is everything known about one delivery — lead,
integration (config redacted), every attempt with its exchanges and rule
trace — as one JSON-ready dict, the same for the API and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select

from .errors import BadInput, NotFound
from .ledger import Attempt, Delivery, DeliveryState, Form, Integration, Lead, Ledger
from .retry import RetryPolicy
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
    #: Cursor: only deliveries older (smaller id) than this one (the listing is newest first).
    before_id: int | None = None

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
        if self.before_id is not None:
            query = query.where(Delivery.id < self.before_id)
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
    with ledger.reading() as s:
        return [delivery_summary(d, lead) for d, lead in s.execute(query)]


@dataclass(frozen=True)
class Page:
    """One page of a listing, and the cursor of the next (``None``: this is the last)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


#: The largest page a caller may ask for.
MAX_PAGE = 1000


def parse_cursor(cursor: str | None) -> int | None:
    """The delivery id a cursor stands for; :class:`BadInput` if it is not one of ours."""
    if cursor is None or cursor == "":
        return None
    if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 19 or int(cursor) < 1:
        raise BadInput(f"cursor: {cursor[:40]!r} is not a cursor of this listing",
                       field="cursor")
    return int(cursor)


def page_deliveries(
    ledger: Ledger, flt: DeliveryFilter, *, limit: int = 100, cursor: str | None = None
) -> Page:
    """Deliveries matching ``flt``, newest first, ``limit`` at a time from ``cursor``.

    The cursor is the id the next page starts below, so pages stay put while new
    deliveries arrive (they are newer than any page already read).
    """
    if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise BadInput(f"limit: between 1 and {MAX_PAGE}", field="limit")
    before = parse_cursor(cursor)
    if before is not None and flt.before_id is not None:
        before = min(before, flt.before_id)
    rows = list_deliveries(ledger, replace(flt, limit=limit + 1, before_id=before))
    more = len(rows) > limit
    items = rows[:limit]
    return Page(items, str(items[-1]["id"]) if more and items else None)


def lead_object(ledger: Ledger, lead_id: int, *, scope: int | None = None) -> dict[str, Any]:
    """One lead as received, with every delivery's state (``scope``: of that account only)."""
    with ledger.reading() as s:
        row = s.execute(
            select(Lead, Form.account_id).join(Form, Form.id == Lead.form_id)
            .where(Lead.id == lead_id)
        ).one_or_none()
        if row is None or (scope is not None and row[1] != scope):
            raise NotFound(f"lead {lead_id} does not exist", field="lead_id")
        lead = row[0]
        deliveries = list(
            s.scalars(select(Delivery).where(Delivery.lead_id == lead_id).order_by(Delivery.id))
        )
    return {
        **_describe_lead(lead),
        "deliveries": [delivery_summary(d, lead) for d in deliveries],
    }


def integration_object(
    ledger: Ledger, delivery_id: int, *, scope: int | None = None
) -> dict[str, Any]:
    """Everything about one delivery, as one JSON-ready object (``scope``: of that
    account only; another account's delivery is not found, like a missing one)."""
    with ledger.reading() as s:
        query = (
            select(Delivery, Lead, Integration)
            .join(Lead, Lead.id == Delivery.lead_id)
            .join(Integration, Integration.id == Delivery.integration_id)
            .where(Delivery.id == delivery_id)
        )
        if scope is not None:
            query = query.join(Form, Form.id == Lead.form_id).where(Form.account_id == scope)
        row = s.execute(query).one_or_none()
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
        "lead": _describe_lead(lead),
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
                "lane": a.lane,
                "claim": a.claim,
                "stale": a.stale,
                "resend_of": a.resend_of,
                "revision": a.revision,
                "idempotency_key": a.idempotency_key,
                "trace": a.trace,
                "exchanges": a.exchanges,
            }
            for a in attempts
        ],
    }


def _describe_lead(lead: Lead) -> dict[str, Any]:
    return {
        "id": lead.id,
        "form_id": lead.form_id,
        "source": lead.source,
        "external_id": lead.external_id,
        "received_at": _iso(lead.received_at),
        "payload": lead.payload,
    }


def describe_integration(i: Integration) -> dict[str, Any]:
    """An integration as shown to users: its config with secrets redacted, and the retry
    policy in effect (the integration's own settings over the product's defaults)."""
    return {
        "id": i.id,
        "form_id": i.form_id,
        "name": i.name,
        "connector": i.connector,
        "config": redact_stored(i.config),
        "expectations": i.expectations,
        "retry": effective_retry(i.retry_policy),
        "static_ip_pool": i.static_ip_pool,
        "realtime": i.realtime,
        "realtime_budget": i.realtime_budget,
        "active": i.active,
        "revision": i.revision,
        "archived_at": _iso(i.archived_at),
        "rate_limit": i.rate_limit,
        "paused_until": _iso(i.paused_until),
    }


def effective_retry(raw: dict[str, Any] | None) -> dict[str, Any]:
    """The retry policy in effect, every setting spelt out, and where it comes from."""
    try:
        policy = RetryPolicy.parse(raw)
    except BadInput:  # a row older than today's checks: show it as stored
        return {"origin": "the integration's retry policy (as stored)", **(raw or {})}
    return {**policy.to_dict(), "origin": policy.origin}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
