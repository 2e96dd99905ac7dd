"""Facebook Lead Ads: the webhook Meta calls, and the page connections of the account.

``GET /v1/facebook/webhook`` answers the subscription handshake (the challenge as plain
text when the verify token is a connected page's; 403 otherwise). ``POST`` takes a
notification: 403 without a signature that the page's app secret makes over the exact
body, 400 for a body that is not JSON, 404 when none of its pages is connected; 200 once
every lead it names is stored — the Graph reads happen afterwards, in the background.
The rules are the engine's (``leadrelay.facebook``); nothing here decides.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from leadrelay.facebook.notification import NotJson
from leadrelay.facebook.signature import HEADER

from ..deps import Account, Actor, Engine
from ..errors import RESPONSES, ApiError, ErrorBody
from ..models import IdPath, IdQuery, _In

router = APIRouter(prefix="/facebook", tags=["facebook"])

_WEBHOOK_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body is not JSON"},
    403: {"model": ErrorBody, "description": "Missing or wrong signature, or verify token"},
    404: {"model": ErrorBody, "description": "None of the notification's pages is connected"},
    422: {"model": ErrorBody, "description": "Not a Lead Ads notification; the field is named"},
}


class PageIn(_In):
    """A Facebook page to connect to the calling account."""

    page_id: str | int
    name: str | None = None
    app_secret: str = Field(description="The Meta app's secret: it signs every notification.")
    verify_token: str = Field(description="The token you enter in the app's webhook settings.")
    page_access_token: str = Field(description="A page token with leads_retrieval.")
    forms: dict[str, int] | None = Field(
        None, description="Facebook lead-form id → leadrelay form id.")
    field_map: dict[str, Any] | None = Field(
        None, description="field_data name → lead field, a pair of fields (split at the "
        "first space) or null (dropped), over the defaults.")
    retry: dict[str, Any] | None = None


class PagePatch(_In):
    """Changes to a connection; secrets left out are kept; ``forms`` replaces the map."""

    name: str | None = None
    app_secret: str | None = None
    verify_token: str | None = None
    page_access_token: str | None = None
    forms: dict[str, int] | None = None
    field_map: dict[str, Any] | None = None
    retry: dict[str, Any] | None = None


class PageOut(BaseModel):
    """A connection: its secrets are never shown."""

    id: int
    account_id: int
    page_id: str
    name: str
    app_secret: str
    verify_token: str
    page_access_token: str
    forms: dict[str, int]
    field_map: dict[str, Any]
    fields_in_effect: dict[str, Any]
    retry: dict[str, Any] | None
    webhook_url: str
    created_at: str | None
    updated_at: str | None


class FacebookLeadOut(BaseModel):
    """A notified lead: where its Graph read stands, and why."""

    id: int
    account_id: int
    connection_id: int
    leadgen_id: str
    page_id: str
    facebook_form_id: str | None
    ad_id: str | None
    state: str
    attempts: int
    next_due_at: str | None
    reason: str | None
    form_id: int | None
    lead_id: int | None
    received_at: str | None
    finished_at: str | None


class ReadAgainOut(BaseModel):
    """The reads put back to be read now."""

    count: int
    ids: list[int]


@router.get("/webhook", response_class=PlainTextResponse, responses=_WEBHOOK_ERRORS)
def handshake(
    engine: Engine,
    mode: Annotated[str | None, Query(alias="hub.mode")] = None,
    verify_token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
    challenge: Annotated[str | None, Query(alias="hub.challenge")] = None,
) -> PlainTextResponse:
    """The subscription handshake: the challenge back when the verify token is right."""
    return PlainTextResponse(engine.facebook.handshake(mode, verify_token, challenge))


@router.post("/webhook", responses=_WEBHOOK_ERRORS,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"type": "object"}}}}})
async def notification(request: Request, engine: Engine) -> JSONResponse:
    """A Lead Ads notification, signed: every lead it names stored before the 200."""
    body = await request.body()
    try:
        receipt = await run_in_threadpool(engine.facebook.receive, body,
                                          request.headers.get(HEADER))
    except NotJson as exc:
        raise ApiError(400, "malformed_json", str(exc), field="body") from None
    return JSONResponse(receipt.as_dict())


@router.post("/pages", status_code=status.HTTP_201_CREATED, response_model=PageOut,
             responses=RESPONSES)
def connect_page(body: PageIn, engine: Engine, account: Account,
                 actor: Actor) -> dict[str, Any]:
    """Connect a Facebook page: its leads become leads of the mapped forms."""
    row = engine.facebook.connect(account, body.page_id, scope=account, actor=actor,
                                  **body.model_dump(exclude={"page_id"}))
    return engine.facebook.describe(row)


@router.get("/pages", response_model=list[PageOut], responses=RESPONSES)
def list_pages(engine: Engine, account: Account) -> list[dict[str, Any]]:
    """The account's connected pages."""
    return [engine.facebook.describe(r) for r in engine.facebook.pages.list(account)]


@router.get("/pages/{connection_id}", response_model=PageOut, responses=RESPONSES)
def show_page(connection_id: IdPath, engine: Engine, account: Account) -> dict[str, Any]:
    """One connected page."""
    return engine.facebook.describe(engine.facebook.pages.get(connection_id, scope=account))


@router.patch("/pages/{connection_id}", response_model=PageOut, responses=RESPONSES)
def update_page(connection_id: IdPath, body: PagePatch, engine: Engine,
                account: Account, actor: Actor) -> dict[str, Any]:
    """Change a connection (a new page access token, the form map, the field map)."""
    changes = body.model_dump(exclude_unset=True)
    return engine.facebook.describe(engine.facebook.update(connection_id, scope=account,
                                                           actor=actor, **changes))


@router.post("/pages/{connection_id}/read-again", response_model=ReadAgainOut,
             responses=RESPONSES)
def read_again(connection_id: IdPath, engine: Engine, account: Account) -> dict[str, Any]:
    """Read again the page's leads whose Graph read gave up (after a new token)."""
    ids = engine.facebook.read_again(connection_id=connection_id, scope=account)
    return {"count": len(ids), "ids": ids}


@router.get("/leads", response_model=list[FacebookLeadOut], responses=RESPONSES)
def list_leads(
    engine: Engine, account: Account, state: str | None = None,
    connection_id: IdQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The notified leads, newest first (``state=not_read``: the reads that gave up,
    with Graph's error; ``unroutable``: leads of unmapped Facebook forms)."""
    return engine.facebook.leads(account_id=account, state=state,
                                 connection_id=connection_id, limit=limit)
