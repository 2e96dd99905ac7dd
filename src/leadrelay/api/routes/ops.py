"""Operations: ``/healthz`` for load balancers, ``/metrics`` for Prometheus."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from leadrelay.engine import health

from ..deps import Engine

router = APIRouter(tags=["operations"])


@router.get("/healthz", responses={503: {"description": "The database or the broker is "
                                         "unreachable; the answer names which"}})
async def healthz(engine: Engine) -> JSONResponse:
    """``ok`` when the database and the broker are reachable; 503 naming what is not."""
    problems: dict[str, Any] = await run_in_threadpool(health.check, engine)
    down = [name for name, problem in problems.items() if problem]
    body = {"status": "unavailable" if down else "ok", **problems}
    if down:
        body["message"] = f"{' and '.join(down)} unreachable"
    return JSONResponse(body, status_code=503 if down else 200)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    collected = request.app.state.metrics

    def render() -> bytes:
        collected.refresh()
        return bytes(generate_latest(collected.registry))

    return Response(await run_in_threadpool(render), media_type=CONTENT_TYPE_LATEST)
