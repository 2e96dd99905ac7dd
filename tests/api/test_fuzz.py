"""Property-based fuzzing of the whole API from its OpenAPI document (schemathesis).

Every operation gets generated requests, valid and invalid, with an account key and
a few real objects in the ledger; none may answer a 5xx. Small by default so that
it runs in the normal test command; ``LEADRELAY_FUZZ_EXAMPLES`` makes it larger.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from leadrelay.api import create_app
from leadrelay.engine.app import Leadrelay

from .conftest import LEAD, Tenant, make_tenant

EXAMPLES = int(os.environ.get("LEADRELAY_FUZZ_EXAMPLES", "12"))


@pytest.fixture
def fuzzed(engine: Leadrelay) -> Iterator[tuple[FastAPI, Tenant]]:
    """The app, and an account with a form, an integration and a lead to aim at."""
    app = create_app(engine)
    with TestClient(app) as client:
        operator = {"Authorization": "Bearer "
                    + engine.keys.create(None, name="ops", operator=True).secret}
        tenant = make_tenant(client, operator, "Fuzz", allowed_origins=["*"])
        client.post("/v1/integrations", headers=tenant.headers, json={
            "form_id": tenant.form_id, "name": "CRM", "connector": "http_post",
            "config": {"url": "http://127.0.0.1:9/leads"}, "active": True})
        client.post(f"/v1/forms/{tenant.form_key}/leads", json=LEAD)
        yield app, tenant


#: The OpenAPI document (which does not depend on the engine the app serves).
DOCUMENT = create_app().openapi()
OPERATIONS = sorted((m.upper(), path) for path, item in DOCUMENT["paths"].items() for m in item)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_request_makes_the_api_fail(
    method: str, path: str, fuzzed: tuple[FastAPI, Tenant]
) -> None:
    app, tenant = fuzzed
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    schema.app = app
    operation = schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def requests_of_this_operation(case: Any) -> None:
        case.call_and_validate(headers=tenant.headers, checks=[not_a_server_error])

    requests_of_this_operation()
