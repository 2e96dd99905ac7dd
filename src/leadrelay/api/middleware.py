"""ASGI middleware: the access log, and the bound on request bodies.

The access log names the route's *template* (``/v1/forms/{form_key}/leads``), never the
path itself, the query string, a header or the body: no key, secret or lead payload
reaches a log line.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response

access = logging.getLogger("leadrelay.api.access")

#: Bodies of every route but lead intake.
MAX_BODY = 1024 * 1024
#: Bodies of lead intake (an external batch of up to 500 leads).
MAX_INTAKE_BODY = 16 * 1024 * 1024
#: An import file (``POST /v1/imports``): streamed to disk as it comes, never held whole.
MAX_IMPORT_BODY = 4 * 1024 * 1024 * 1024


class AccessLog:
    """One line per request: method, route template, status, milliseconds, account."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if access.isEnabledFor(logging.INFO):
                state: Any = scope.get("state") or {}
                account = state.get("account_id") if isinstance(state, dict) else None
                client = scope.get("client")
                access.info(
                    "%s %s %s %s %d %.1fms%s",
                    client[0] if client else "-", scope["method"], _template(scope),
                    scope.get("http_version", "1.1"), status[0],
                    (time.perf_counter() - started) * 1000,
                    f" account={account}" if account is not None else "",
                )


def _template(scope: Scope) -> str:
    """The path of the request with each path parameter shown by name
    (``/v1/forms/{form_key}/leads``); ``-`` when no route served it."""
    if "route" not in scope:  # the router leaves the route it chose in the scope
        return "-"
    values = {str(v): k for k, v in (scope.get("path_params") or {}).items()}
    path = str(scope.get("path", ""))
    return "/".join(f"{{{values[part]}}}" if part in values else part
                    for part in path.split("/"))


class BodyLimit:
    """Refuse a body over the limit (413) before a route reads it all."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        limit = (MAX_IMPORT_BODY if path == "/v1/imports"
                 else MAX_INTAKE_BODY if path.endswith("/leads") else MAX_BODY)
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _refuse(scope, receive, send, limit)
                return
        seen = 0
        started = [False]

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
            await send(message)

        try:
            await self.app(scope, bounded, sending)
        except _TooLarge:
            if not started[0]:
                await _refuse(scope, receive, send, limit)


class _TooLarge(HTTPException):
    """Raised from ``receive``: a route reading the body stops there, and this is the
    answer (FastAPI passes HTTP exceptions on unchanged)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body: over the {limit // (1024 * 1024)} MB limit")


async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    await error_response(_TooLarge(limit))(scope, receive, send)
