"""The real CRM contracts (tests/fixtures/http-contracts), as responses a test CRM can give."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from werkzeug import Response

CONTRACTS = Path(__file__).parent / "fixtures" / "http-contracts" / "http_contracts.json"


@cache
def contracts() -> dict[str, dict[str, Any]]:
    """Every contract by name."""
    return {c["name"]: c for c in json.loads(CONTRACTS.read_text())}


def as_response(shape: dict[str, Any], status: int | None = None) -> Response:
    """A werkzeug response with a contract's status, headers and body."""
    body = shape.get("body", "")
    headers = dict(shape.get("headers", {}))
    if not isinstance(body, str):
        body = json.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    code = status or shape["status"]
    return Response(body if code != 204 else b"", status=code, headers=headers)


def success(name: str) -> Response:
    """The documented success response of contract ``name``."""
    return as_response(contracts()[name]["success_response"])


def failure(name: str, index: int = 0, status: int | None = None) -> Response:
    """The ``index``-th documented failure response of contract ``name``."""
    return as_response(contracts()[name]["failure_responses"][index], status)
