"""Leads coming in: from browsers to a form's public key, from external systems by form id.

A browser's post is JSON or ``application/x-www-form-urlencoded`` (what a plain HTML
``<form>`` sends); its page's origin must be one the form allows, and the preflight
of a cross-origin ``fetch`` is answered here too. An external system posts JSON with
an account key: one lead or a batch, safe to retry with an ``Idempotency-Key``.

The lead and its deliveries are durable before any answer: ``202`` with each
delivery ``queued``; the engine's rules for a post (active form, origins, required
fields, idempotency) are in ``engine/posting.py``.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse

from leadrelay.engine.forms import origin_allowed
from leadrelay.engine.intake import MAX_FIELDS, MAX_PAYLOAD_BYTES
from leadrelay.engine.posting import MAX_BATCH, ExternalLead, FormTarget, request_hash

from ..deps import Account, Engine
from ..errors import RESPONSES, ApiError, ErrorBody, error_response
from ..models import (
    ExternalBatchIn,
    ExternalLeadIn,
    ExternalPostIn,
    IdPath,
    PagePosted,
    PostedBatch,
    PostedLead,
)

router = APIRouter(prefix="/forms", tags=["intake"])

#: The largest body of a browser's post: the engine's bound on one lead.
MAX_FORM_BODY = MAX_PAYLOAD_BYTES
_JSON = "application/json"
_URLENCODED = "application/x-www-form-urlencoded"
_BAD_INPUT: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed body"},
    403: {"model": ErrorBody, "description": "Inactive form, or an origin it does not allow"},
    404: {"model": ErrorBody, "description": "No form has this key (or it was rotated)"},
    413: {"model": ErrorBody, "description": "Body over the limit"},
    415: {"model": ErrorBody, "description": "Neither JSON nor a URL-encoded form"},
    422: {"model": ErrorBody, "description": "A missing required field, too many fields…"},
    503: {"model": ErrorBody, "description": "The database is unreachable: nothing stored"},
}
_FORM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            _JSON: {"schema": {"type": "object", "additionalProperties": True}},
            _URLENCODED: {"schema": {"type": "object", "additionalProperties": True}},
        },
    }
}


@router.post(
    "/{form_id:int}/leads",
    status_code=202,
    responses={
        200: {"model": PostedLead | PostedBatch,
              "description": "Nothing new stored: a retry, or leads already received"},
        201: {"model": PostedLead, "description": "Real-time integrations answered in time"},
        202: {"model": PostedLead | PostedBatch, "description": "Stored; deliveries queued"},
        409: {"model": ErrorBody, "description": "Idempotency-Key reused for another post"},
        **RESPONSES, **_BAD_INPUT,
    },
    response_model=None,
)
def post_external(
    form_id: IdPath,
    body: ExternalPostIn,
    request: Request,
    engine: Engine,
    account: Account,
    idempotency_key: Annotated[str | None, Header(
        description="Makes a retry of this post return the first answer and store nothing "
        "new")] = None,
) -> JSONResponse:
    """Leads from an external system (account key): one lead, or ``{"leads": [...]}`` (at
    most 500). Source ``external`` unless the post names another known source."""
    if isinstance(body, ExternalBatchIn):
        if len(body.leads) > MAX_BATCH:
            raise ApiError(422, "invalid", f"leads: at most {MAX_BATCH} in one post, "
                           f"got {len(body.leads)}", field="leads")
        leads = [ExternalLead(x.fields, x.external_id) for x in body.leads]
        source, batch = body.source, True
    else:
        assert isinstance(body, ExternalLeadIn)
        leads, source, batch = [ExternalLead(body.fields, body.external_id)], body.source, False
    posted = engine.posts.post_external(
        form_id, leads, scope=account, source=source, idempotency_key=idempotency_key,
        fingerprint=request_hash(form_id, body.model_dump()), batch=batch,
    )
    if posted.accepted:
        request.app.state.metrics.lead_received(source or "external", len(posted.accepted))
    request.app.state.metrics.realtime_results(posted.realtime)
    headers = {"Idempotent-Replayed": "true"} if posted.replayed else None
    return JSONResponse(posted.body, status_code=posted.status, headers=headers)


@router.post(
    "/{form_key}/leads",
    status_code=202,
    responses={
        201: {"model": PagePosted, "description": "Real-time integrations answered in time"},
        202: {"model": PagePosted, "description": "Stored; deliveries queued"},
        303: {"description": "A plain HTML post, redirected to the form's thank-you URL"},
        **_BAD_INPUT,
    },
    response_model=None,
    openapi_extra=_FORM_BODY,
)
async def post_to_form(form_key: str, request: Request, engine: Engine) -> Response:
    """A lead from a page, to the form's public key (no API key: a page keeps no secret).

    JSON, or a URL-encoded form. A plain HTML form post (URL-encoded, from a browser
    that accepts HTML) is redirected (303) to the form's thank-you URL, when it has one.
    With an ``Idempotency-Key`` (the embed sends one per submission), a post sent again
    stores nothing new and answers as the first did. The answer's ``status_url`` tells
    the page how its queued deliveries end; it shows less than ``GET /v1/deliveries/{id}``:
    no request, no CRM answer, nothing secret.
    """
    origin = request.headers.get("origin")
    form: FormTarget | None = None
    try:
        payload, urlencoded = await _read_lead(request)
        form, posted = await run_in_threadpool(
            partial(engine.posts.post_to_form, form_key, payload, origin=origin,
                    idempotency_key=request.headers.get("idempotency-key")))
    except Exception as exc:
        if form is None:
            form = await _form_or_none(engine, form_key)
        return _with_cors(error_response(exc), form, origin)
    assert form is not None
    request.app.state.metrics.lead_received("form")
    request.app.state.metrics.realtime_results(posted.realtime)
    if urlencoded and form.thank_you_url and "text/html" in request.headers.get("accept", ""):
        return _with_cors(RedirectResponse(form.thank_you_url, status_code=303), form, origin)
    body = {**posted.body, "status_url": status_url(request, engine, posted.body["lead_id"])}
    return _with_cors(JSONResponse(body, status_code=posted.status), form, origin)


def status_url(request: Request, engine: Any, lead_id: int) -> str:
    """The public status URL of a page's lead (on ``LEADRELAY_PUBLIC_URL`` when set)."""
    base = (engine.settings.public_url or str(request.base_url)).rstrip("/")
    return f"{base}/v1/lead-status/{engine.lead_status.token(lead_id)}"


@router.options("/{form_key}/leads", include_in_schema=False)
async def preflight(form_key: str, request: Request, engine: Engine) -> Response:
    """A browser asking whether a page of its origin may post to this form."""
    origin = request.headers.get("origin")
    form = await _form_or_none(engine, form_key)
    if form is None:
        return error_response(ApiError(404, "not_found", "no form has this key (a key that "
                                       "was rotated no longer works)", field="form_key"))
    if origin is None or not origin_allowed(form.allowed_origins, origin):
        shown = (origin or "")[:200]
        return error_response(ApiError(403, "refused", f"Origin: pages of {shown!r} may not "
                                       "post to this form", field="Origin"))
    response = Response(status_code=204)
    response.headers.update({
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, Idempotency-Key",
        "Access-Control-Max-Age": "600",
    })
    return _with_cors(response, form, origin)


async def _read_lead(request: Request) -> tuple[Any, bool]:
    """The posted lead (and whether it came URL-encoded), within the body limit."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in (_JSON, _URLENCODED) and not kind.endswith("+json"):
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type: send {_JSON} or {_URLENCODED}, not {kind or 'nothing'}",
                       field="Content-Type")
    body = await _bounded_body(request, MAX_FORM_BODY)
    if not body.strip():
        raise ApiError(400, "empty_body", "body: empty: send the lead's fields", field="body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "malformed_body", "body: not UTF-8 text", field="body") from None
    if kind != _URLENCODED:
        try:
            return json.loads(text), False
        except (json.JSONDecodeError, RecursionError):
            raise ApiError(400, "malformed_json", "body: not valid JSON", field="body") from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                          errors="strict", max_num_fields=MAX_FIELDS * 4)
    except UnicodeDecodeError:
        raise ApiError(400, "malformed_body", "body: a percent-escape is not UTF-8",
                       field="body") from None
    except ValueError:
        raise ApiError(422, "invalid", f"payload: at most {MAX_FIELDS} fields",
                       field="payload") from None
    fields: dict[str, Any] = {}
    for name, value in pairs:
        if name in fields:  # a checkbox group: name=a&name=b
            prior = fields[name]
            fields[name] = [*prior, value] if isinstance(prior, list) else [prior, value]
        else:
            fields[name] = value
    return fields, True


async def _bounded_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"body: over the {limit // 1024} KB limit of one lead",
                    field="body")


async def _form_or_none(engine: Any, form_key: str) -> FormTarget | None:
    try:
        form: FormTarget = await run_in_threadpool(engine.posts.form_by_key, form_key)
    except Exception:  # unknown key, or the database down: no CORS headers to give
        return None
    return form


def _with_cors(response: Response, form: FormTarget | None, origin: str | None) -> Response:
    """Let the page read the answer, when its origin is one the form allows."""
    response.headers["Vary"] = "Origin"
    if form is not None and origin is not None and origin_allowed(form.allowed_origins, origin):
        response.headers["Access-Control-Allow-Origin"] = origin
    return response
