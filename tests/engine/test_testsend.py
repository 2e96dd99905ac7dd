"""Test-send against a real loopback CRM: rendered without writing, sent apart from
deliveries."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.errors import BadInput, NotFound
from leadrelay.engine.ledger.models import Base
from leadrelay.engine.report import DeliveryFilter

TOKEN = "tok-very-secret-123"


def snapshot(app: Leadrelay) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every ledger table."""
    with app.ledger.transaction() as conn:
        return {t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key))]
                for t in Base.metadata.sorted_tables}


def _integration(app: Leadrelay, form_id: int, url: str) -> int:
    return app.manage.create_integration(
        form_id, name="CRM", connector="http_post",
        config={"url": url, "auth": {"type": "bearer", "token": TOKEN}},
        expectations={"rules": [{"kind": "status", "in": [201]}]},
    ).id  # inactive: a test works on it all the same


def test_without_send_the_request_is_rendered_redacted_and_nothing_is_written(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    integration_id = _integration(app, form_id, httpserver.url_for("/leads"))
    before = snapshot(app)
    shown = app.manage.test_integration(integration_id, {"email": "ada@example.com"})
    assert shown["sent"] is False and shown["active"] is False
    request = shown["request"]
    assert request["method"] == "POST" and request["url"] == httpserver.url_for("/leads")
    assert "ada%40example.com" in request["body"] or "ada@example.com" in request["body"]
    assert request["headers"]["Authorization"] == "[REDACTED]"
    assert TOKEN not in str(shown)
    # Nothing reached the CRM, nothing was written
    assert httpserver.log == []
    assert snapshot(app) == before


def test_with_send_the_crm_gets_one_request_and_the_failed_collection_is_unchanged(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/leads").respond_with_json(
        {"error": "email already exists"}, status=400)
    integration_id = _integration(app, form_id, httpserver.url_for("/leads"))
    failed = app.deliveries(DeliveryFilter(state="not_integrated"))
    deliveries = app.deliveries()

    result = app.manage.test_integration(integration_id, sample=True, send=True, actor="ops")

    # Then the CRM received exactly one request, with the sample lead
    assert len(httpserver.log) == 1
    assert httpserver.log[0][0].form["email"] == "test.lead@example.com"
    # and the answer is judged like any attempt, the deciding rule and trace included
    assert result["sent"] is True and result["outcome"] != "accepted"
    assert "status" in result["decided_by"] and result["trace"]
    assert result["exchanges"][0]["response"]["status"] == 400
    assert "email already exists" in result["exchanges"][0]["response"]["body"]
    assert TOKEN not in str(result)
    # and it is recorded as a test attempt, apart from deliveries
    assert app.deliveries(DeliveryFilter(state="not_integrated")) == failed
    assert app.deliveries() == deliveries
    (kept,) = app.manage.test_attempts(integration_id)
    assert (kept["test_attempt_id"], kept["actor"], kept["revision"]) == (
        result["test_attempt_id"], "ops", 1)


def test_a_passing_test_send_says_accepted(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/leads").respond_with_json({"id": "L-9"}, status=201)
    integration_id = _integration(app, form_id, httpserver.url_for("/leads"))
    result = app.manage.test_integration(integration_id, {"email": "a@b.test"}, send=True)
    assert result["outcome"] == "accepted"
    assert len(httpserver.log) == 1


@pytest.mark.parametrize("lead", [["a"], "ada@example.com", 3, None])
def test_a_lead_that_is_not_an_object_is_refused_and_nothing_is_sent(
    app: Leadrelay, form_id: int, httpserver: HTTPServer, lead: Any
) -> None:
    integration_id = _integration(app, form_id, httpserver.url_for("/leads"))
    before = snapshot(app)
    with pytest.raises(BadInput, match="lead: must be a JSON object"):
        app.manage.test_integration(integration_id, lead, send=True)
    with pytest.raises(BadInput, match="lead: give a lead or ask for the sample"):
        app.manage.test_integration(integration_id, {"a": 1}, sample=True)
    assert httpserver.log == [] and snapshot(app) == before


def test_another_accounts_integration_cannot_be_tested(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    integration_id = _integration(app, form_id, httpserver.url_for("/leads"))
    other = app.manage.create_account("Other", "o@other.test")
    with pytest.raises(NotFound, match=f"integration {integration_id} does not exist"):
        app.manage.test_integration(integration_id, send=True, scope=other.id)
    assert httpserver.log == []
