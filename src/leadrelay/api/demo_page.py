"""``GET /demo``: a sample landing page with the embed, served by ``leadrelay demo --page``.

The page is the API's own origin, so it needs no CORS setting beyond the demo form's
allowed origins; its script tag and form action are relative to the API.
"""

from __future__ import annotations

import html
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse


def page(form_key: str) -> str:
    """The landing page for the demo form."""
    source = resources.files("leadrelay.api").joinpath("static/demo.html").read_text("utf-8")
    return source.replace("{{api}}", "").replace("{{form_key}}", html.escape(form_key))


def router(form_key: str) -> APIRouter:
    """A router serving the demo page (left out of the OpenAPI document)."""
    demo = APIRouter(include_in_schema=False)
    body = page(form_key)

    @demo.get("/demo", response_class=HTMLResponse)
    def demo_page() -> HTMLResponse:
        return HTMLResponse(body, headers={"Cache-Control": "no-store"})

    return demo
