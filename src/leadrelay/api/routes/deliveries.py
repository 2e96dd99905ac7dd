"""Leads, deliveries (the integration object), the failed collection, and replays.

Filters and cursor pages are the engine's (``report.py``), shared with
``leadrelay deliveries``; a delivery answers the very JSON ``leadrelay inspect`` prints.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from leadrelay.engine.ledger import FacebookReadState
from leadrelay.engine.report import MAX_PAGE, DeliveryFilter

from ..deps import Account, Engine
from ..errors import RESPONSES
from ..models import DeliveryPage, FailedPage, IdPath, IdQuery, LeadOut, ReplayIn, ReplayOut

router = APIRouter(tags=["deliveries"], responses=RESPONSES)

_Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="At most this many per page.")]
_When = Annotated[
    datetime | None,
    Query(description="ISO 8601; UTC when no zone is given. Failed deliveries are dated by "
          "when they failed, others by when their lead came."),
]


@router.get("/leads/{lead_id}", response_model=LeadOut)
def show_lead(lead_id: IdPath, engine: Engine, account: Account) -> dict[str, Any]:
    """A lead as received, with every delivery's state."""
    return engine.lead(lead_id, scope=account)


@router.get("/deliveries", response_model=DeliveryPage)
def list_deliveries(
    engine: Engine,
    account: Account,
    state: str | None = None,
    integration_id: IdQuery = None,
    form_id: IdQuery = None,
    since: _When = None,
    until: _When = None,
    reason: str | None = None,
    outcome: str | None = None,
    limit: _Limit = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Deliveries, newest first, a page at a time."""
    flt = DeliveryFilter(state=state, integration_id=integration_id, form_id=form_id,
                         account_id=account, since=_utc(since), until=_utc(until),
                         reason=reason, outcome=outcome)
    page = engine.deliveries_page(flt, limit=limit, cursor=cursor)
    return {"items": page.items, "next_cursor": page.next_cursor}


@router.get("/deliveries/failed", response_model=FailedPage)
def failed_collection(
    engine: Engine,
    account: Account,
    integration_id: IdQuery = None,
    form_id: IdQuery = None,
    since: _When = None,
    until: _When = None,
    reason: str | None = None,
    outcome: str | None = None,
    limit: _Limit = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The failed collection: deliveries "not integrated" after their last attempt, and
    how many Facebook leads could not be read from the Graph API (they have no delivery)."""
    page = list_deliveries(engine, account, "not_integrated", integration_id, form_id,
                           since, until, reason, outcome, limit, cursor)
    return {**page, "facebook_not_read": engine.facebook.count(
        FacebookReadState.NOT_READ, account_id=account)}


@router.get("/deliveries/{delivery_id}")
def show_delivery(delivery_id: IdPath, engine: Engine, account: Account) -> dict[str, Any]:
    """The integration object: lead, integration (secrets redacted), every attempt with
    its rendered request, response and rule trace — what ``leadrelay inspect`` prints."""
    return engine.inspect(delivery_id, scope=account)


@router.post("/replays", response_model=ReplayOut)
def replay(body: ReplayIn, engine: Engine, account: Account) -> dict[str, Any]:
    """Send failed deliveries again (``dry_run``: say what would be sent, send nothing)."""
    flt = DeliveryFilter(integration_id=body.integration_id, form_id=body.form_id,
                         account_id=account, since=_utc(body.since), until=_utc(body.until),
                         reason=body.reason, outcome=body.outcome, limit=body.limit)
    plan = engine.replay(flt, dry_run=body.dry_run)
    return {"dry_run": plan.dry_run, "count": plan.count,
            "delivery_ids": list(plan.delivery_ids), "previews": list(plan.previews)}


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
