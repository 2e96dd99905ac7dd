"""One error body everywhere, and the one place the engine's errors become HTTP statuses.

Every error answers ``{"error": {"code": ..., "message": ..., "field": ...}}``: the
code is stable for programs, the message is the engine's own line for people
(never a secret, never a stack), the field names what is wrong when something is.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from leadrelay.engine.errors import (
    BadInput,
    ConfigError,
    Conflict,
    LeadrelayError,
    NotFound,
    PlanLimitError,
    PluginError,
    Refused,
)

log = logging.getLogger("leadrelay.api")


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str
    message: str
    field: str | None = None
    #: Plan-limit refusals: the plan, its limit and how many integrations are active.
    plan: str | None = None
    limit: int | None = None
    active: int | None = None


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


class ApiError(Exception):
    """An error of the HTTP layer itself (authentication, content type, body size)."""

    def __init__(
        self, status: int, code: str, message: str, *, field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.field, self.headers = status, code, field, headers


#: Engine errors, most specific first: (class, status, code).
_ENGINE = (
    (PlanLimitError, 409, "plan_limit"),
    (NotFound, 404, "not_found"),
    (Refused, 403, "refused"),
    (Conflict, 409, "conflict"),
    (PluginError, 422, "unknown_connector"),
    (ConfigError, 422, "invalid_config"),
    (BadInput, 422, "invalid"),
)

#: Documented error answers, for the OpenAPI document of each route.
RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        401: "No API key, or an unknown or revoked one",
        403: "The key may not do this",
        404: "No such object (or another account's: the same answer)",
        422: "Bad input; the error names the field",
    }.items()
}


def error_response(exc: Exception) -> JSONResponse:
    """The answer for ``exc``: one body shape, the status its kind calls for."""
    status, detail, headers = _classify(exc)
    return JSONResponse({"error": detail}, status_code=status, headers=headers)


def _classify(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    if isinstance(exc, ApiError):
        return exc.status, _detail(exc.code, str(exc), exc.field), exc.headers
    if isinstance(exc, LeadrelayError):
        for kind, status, code in _ENGINE:
            if isinstance(exc, kind):
                detail = _detail(code, str(exc), getattr(exc, "field", None))
                if isinstance(exc, PlanLimitError):
                    detail.update(plan=exc.plan, limit=exc.limit, active=exc.active)
                return status, detail, None
        return 500, _detail("failed", str(exc)), None
    if isinstance(exc, RequestValidationError):
        return _validation(exc)
    if isinstance(exc, StarletteHTTPException):
        code, message, field = {
            404: ("no_route", "no such route", None),
            405: ("method_not_allowed", "method not allowed on this route", None),
            413: ("too_large", str(exc.detail), "body"),
        }.get(exc.status_code, ("http_error", str(exc.detail), None))
        return exc.status_code, _detail(code, message, field), dict(exc.headers or {}) or None
    if isinstance(exc, DataError):
        # A value the database cannot hold (a NUL character on PostgreSQL, a number out
        # of its range): bad input; the transaction was rolled back, nothing is stored.
        return 422, _detail("invalid", "a value cannot be stored: it holds a NUL character "
                            "or a number out of range"), None
    if isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return 503, _detail("unavailable", "the database is unreachable; nothing was stored",
                            "database"), {"Retry-After": "5"}
    log.error("unexpected error", exc_info=exc)
    return 500, _detail("internal", f"unexpected {type(exc).__name__}; it is logged"), None


def _validation(exc: RequestValidationError) -> tuple[int, dict[str, Any], None]:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid", "type": ""}
    loc = [str(part) for part in first.get("loc", ())]
    if first.get("type") == "json_invalid":
        return 400, _detail("malformed_json", "body: not valid JSON", "body"), None
    where = loc[0] if loc else ""
    path = loc[1:] if where in ("body", "query", "path", "header") else loc
    field = ".".join(path) or where or None
    if where == "header" and field:
        field = "-".join(w.capitalize() for w in field.replace("_", "-").split("-"))
    if where == "body" and not path and first.get("type") in ("missing", "model_attributes_type",
                                                               "dict_type"):
        message = "body: a JSON object is required"
        return 422, _detail("invalid", message, "body"), None
    message = f"{field or 'request'}: {first.get('msg', 'invalid')}"
    return 422, _detail("invalid", message, field), None


def _detail(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "field": field}


def install(app: FastAPI) -> None:
    """Route every error through :func:`error_response`."""

    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    for kind in (ApiError, LeadrelayError, RequestValidationError, StarletteHTTPException,
                 DBAPIError, Exception):
        app.add_exception_handler(kind, handle)
