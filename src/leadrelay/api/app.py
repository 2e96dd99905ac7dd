"""The FastAPI application: routers under ``/v1``, errors, middleware, lifespan.

``create_app(engine)`` serves an engine its caller owns (``leadrelay serve``, tests);
``create_app()`` builds one from the ``LEADRELAY_*`` environment when it starts and
closes it when it stops (``leadrelay api``, any ASGI server: ``leadrelay.api:create_app``
as a factory).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from leadrelay import __version__
from leadrelay.engine.app import Leadrelay

from . import demo_page, errors
from .metrics import Metrics
from .middleware import AccessLog, BodyLimit
from .routes import (
    accounts,
    deliveries,
    digests,
    embed,
    facebook,
    forms,
    imports,
    intake,
    integrations,
    ops,
)

DESCRIPTION = """\
leadrelay delivers leads to CRMs. Pages post leads to a form's public key; external
systems post with an account key; every lead is durable with its deliveries before the
answer. Errors answer `{"error": {"code", "message", "field"}}`; another account's
object answers 404, like a missing one.
"""


def create_app(engine: Leadrelay | None = None, *, demo_form_key: str | None = None) -> FastAPI:
    """The API over ``engine`` (or over one built from the environment at startup); with
    ``demo_form_key``, also the demo's landing page at ``/demo`` (``leadrelay demo --page``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = engine is None
        if owned:
            app.state.engine = Leadrelay()
            app.state.metrics = Metrics(app.state.engine)
        app.state.metrics.start()
        try:
            yield
        finally:
            if owned:
                app.state.engine.close()

    app = FastAPI(title="leadrelay", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan)
    if engine is not None:
        app.state.engine = engine
        app.state.metrics = Metrics(engine)
    v1 = APIRouter(prefix="/v1")
    for module in (intake, embed, forms, integrations, deliveries, accounts, digests, facebook,
                   imports):
        v1.include_router(module.router)
    app.include_router(v1)
    app.include_router(ops.router)
    if demo_form_key is not None:
        app.include_router(demo_page.router(demo_form_key))
    errors.install(app)
    app.add_middleware(BodyLimit)
    app.add_middleware(AccessLog)
    return app
