"""The browser embed: its script, the settings it reads of a form, a lead's status URL.

A page includes ``<script src=".../v1/embed.js" data-form-key="fk_...">``; the script
reads the form's page settings (``GET /v1/forms/{form_key}/embed``), takes over the
form's submit, posts to ``POST /v1/forms/{form_key}/leads`` and, while deliveries are
queued, polls the status URL the answer carries (``GET /v1/lead-status/{token}``).

None of these need a key: the script and the settings are public; a status token opens
one lead's public view (``engine/lead_status.py``) and nothing else.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from leadrelay.engine.forms import origin_allowed

from ..deps import Engine
from ..errors import ErrorBody, error_response
from ..models import LeadStatusOut, PageSettings

router = APIRouter(tags=["embed"])

#: How long browsers and caches may keep the script before asking again (ETag then).
SCRIPT_MAX_AGE = 3600


@cache
def script() -> tuple[bytes, str]:
    """The embed's source and its ETag (read once from the package)."""
    source = resources.files("leadrelay.api").joinpath("static/embed.js").read_bytes()
    return source, '"' + hashlib.sha256(source).hexdigest()[:20] + '"'


@router.get(
    "/embed.js",
    response_class=Response,
    responses={200: {"content": {"text/javascript": {}},
                     "description": "The embed script (cacheable)"},
               304: {"description": "The copy the browser has is current"}},
)
def embed_js(request: Request) -> Response:
    """The embed: one dependency-free script a page includes with one ``<script>`` tag."""
    source, etag = script()
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={SCRIPT_MAX_AGE}",
               "Access-Control-Allow-Origin": "*"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(source, media_type="text/javascript; charset=utf-8", headers=headers)


@router.get(
    "/forms/{form_key}/embed",
    response_model=PageSettings,
    responses={403: {"model": ErrorBody, "description": "Inactive form, or a page of an "
                     "origin it does not allow"},
               404: {"model": ErrorBody, "description": "No form has this key (or it was "
                     "rotated)"}},
)
async def page_settings(form_key: str, request: Request, engine: Engine) -> Response:
    """What the embed needs of a form before a visitor submits: its thank-you URL and how
    long a post may take. Any page may read the answer, refusals included, so the embed
    can say in the page and the console why a form will not take leads there."""
    origin = request.headers.get("origin")
    try:
        found = await run_in_threadpool(engine.posts.page_settings, form_key, origin)
    except Exception as exc:
        response: Response = error_response(exc)
    else:
        response = JSONResponse({"form_key": form_key, **found})
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get(
    "/lead-status/{token}",
    response_model=LeadStatusOut,
    responses={404: {"model": ErrorBody, "description": "No lead has this status token"}},
)
async def lead_status(token: str, request: Request, engine: Engine) -> Response:
    """Where the deliveries of the lead a status token opens stand now: states, outcomes,
    CRM references, reasons and deciding rules — no lead fields, no request, no CRM
    answer, nothing secret (less than ``GET /v1/deliveries/{id}``)."""
    origin = request.headers.get("origin")
    try:
        view = await run_in_threadpool(engine.lead_status.view, token)
    except Exception as exc:
        return error_response(exc)
    response = JSONResponse(view.body, headers={"Cache-Control": "no-store", "Vary": "Origin"})
    if origin is not None and origin_allowed(view.allowed_origins, origin):
        response.headers["Access-Control-Allow-Origin"] = origin
    return response
