"""A lead's whole story on each ledger backend: routed, sent, judged, logged, retried, collected.

CRMs are real HTTP servers on loopback answering the real contracts.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select

from crm_contracts import failure, success
from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.ledger import Attempt, Delivery, Lead
from leadrelay.engine.report import DeliveryFilter

LEAD = {
    "first_name": "Jane",
    "last_name": "Doe",
    "email": "jane.doe@example.com",
    "company": "ACME Corp",
}
FAST_RETRY = {"max_attempts": 3, "delays": ["2m", "5m"], "jitter": 0}


def add_integration(app: Leadrelay, form_id: int, url: str, **kw) -> int:
    kw.setdefault("name", "CRM")
    kw.setdefault("connector", "http_post")
    kw.setdefault("active", True)
    kw.setdefault("retry", FAST_RETRY)
    config = {"url": url, **kw.pop("config", {})}
    return app.manage.create_integration(form_id, config=config, **kw).id


def count(app: Leadrelay, model) -> int:
    with app.ledger.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_a_lead_gets_one_delivery_per_active_integration(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    # Given two active integrations and one inactive one on the form
    httpserver.expect_request("/sf").respond_with_response(success("salesforce_web_to_lead"))
    httpserver.expect_request("/pd").respond_with_response(success("pipedrive_add_lead"))
    add_integration(
        app,
        form_id,
        httpserver.url_for("/sf"),
        name="Salesforce",
        config={
            "fields": {
                "first_name": "first_name",
                "last_name": "last_name",
                "email": "email",
                "oid": {"const": "00D6g0000022aVA"},
                "lead_source": {"const": "Web"},
            }
        },
    )
    add_integration(
        app,
        form_id,
        httpserver.url_for("/pd"),
        name="Pipedrive",
        config={"body": "json", "fields": {"title": {"template": "{first_name} {last_name}"}}},
        expectations={
            "rules": [
                {"kind": "status", "in": ["2xx"]},
                {"kind": "json_field", "path": "success", "equals": True},
            ],
            "reference": {"json": "data.id"},
        },
    )
    add_integration(app, form_id, httpserver.url_for("/off"), name="Off", active=False)

    # When a lead is submitted
    accepted = app.submit(form_id, LEAD)

    # Then it has exactly two deliveries, and both are delivered
    assert len(accepted.delivery_ids) == 2
    results = app.deliver_due()
    assert sorted(r.outcome.value for r in results) == ["accepted", "accepted"]
    requests = {r.path: r for r, _ in httpserver.log}
    assert set(requests) == {"/sf", "/pd"}
    form = parse_qs(requests["/sf"].get_data(as_text=True))
    assert form == {
        "first_name": ["Jane"],
        "last_name": ["Doe"],
        "email": ["jane.doe@example.com"],
        "oid": ["00D6g0000022aVA"],
        "lead_source": ["Web"],
    }
    assert json.loads(requests["/pd"].get_data()) == {"title": "Jane Doe"}
    # and each carries its delivery's idempotency key
    keys = {r.headers["Idempotency-Key"] for r in requests.values()}
    assert len(keys) == 2
    pd = app.inspect(accepted.delivery_ids[1])
    assert pd["delivery"]["state"] == "delivered"
    assert pd["delivery"]["crm_reference"] == "adf21080-0e10-11eb-879b-05d71fb426ec"


def test_a_rejection_is_retried_then_lands_in_the_failed_collection(
    app: Leadrelay, form_id: int, clock: FakeClock, httpserver: HTTPServer
) -> None:
    # Given HubSpot answering every submission with its 400 validation error
    httpserver.expect_request("/hs").respond_with_response(failure("hubspot_forms_v3_submit"))
    add_integration(app, form_id, httpserver.url_for("/hs"), config={"body": "json"})
    delivery_id = app.submit(form_id, LEAD).delivery_ids[0]

    # When the first attempt fails
    [first] = app.deliver_due()
    # Then the delivery waits two minutes, and nothing is due before that
    assert first.outcome.value == "rejected" and first.state.value == "pending"
    assert (first.next_due_at - clock.now()).total_seconds() == pytest.approx(120)
    clock.advance(minutes=1)
    assert app.deliver_due() == []

    # When the retries come due and fail too
    clock.advance(minutes=1)
    [second] = app.deliver_due()
    assert (second.next_due_at - clock.now()).total_seconds() == pytest.approx(300)
    clock.advance(minutes=5)
    [third] = app.deliver_due()

    # Then after the third failure it is not integrated, with its reason, in the collection
    assert third.state.value == "not_integrated"
    assert len(httpserver.log) == 3
    failed = app.deliveries(DeliveryFilter(state="not_integrated"))
    assert [d["id"] for d in failed] == [delivery_id]
    assert "status in [2xx]" in failed[0]["last_reason"]
    obj = app.inspect(delivery_id)
    assert [a["outcome"] for a in obj["attempts"]] == ["rejected"] * 3
    attempt = obj["attempts"][0]
    assert attempt["exchanges"][0]["response"]["status"] == 400
    assert "INVALID_EMAIL" in attempt["exchanges"][0]["response"]["body"]
    assert attempt["trace"][0]["passed"] is False and attempt["trace"][0]["seen"] == 400


def test_a_200_with_an_error_body_is_caught_by_a_rule(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    # Given Odoo, which reports errors inside an HTTP 200 JSON-RPC answer
    httpserver.expect_request("/odoo").respond_with_response(
        failure("odoo_jsonrpc_create_crm_lead")
    )
    add_integration(
        app,
        form_id,
        httpserver.url_for("/odoo"),
        config={"body": "json"},
        expectations={
            "rules": [
                {"kind": "status", "in": [200]},
                {"kind": "json_field", "path": "error", "exists": False},
            ]
        },
    )
    app.submit(form_id, LEAD)

    # When delivered
    [result] = app.deliver_due()

    # Then the error body decides, not the 200
    assert result.outcome.value == "rejected"
    assert "error" in result.reason


def test_dynamics_204_is_accepted_and_the_id_comes_from_a_header(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/api/data/v9.2/leads").respond_with_response(
        success("dynamics365_webapi_create_lead")
    )
    add_integration(
        app,
        form_id,
        httpserver.url_for("/api/data/v9.2/leads"),
        config={"body": "json", "auth": {"type": "bearer", "token": "eyJ0eXAi-secret-token"}},
        expectations={
            "rules": [
                {"kind": "status", "in": [204]},
                {"kind": "header", "name": "OData-EntityId"},
            ],
            "reference": {"header": "OData-EntityId", "pattern": r"leads\(([^)]+)\)"},
        },
    )
    delivery_id = app.submit(form_id, LEAD).delivery_ids[0]

    [result] = app.deliver_due()

    assert result.outcome.value == "accepted"
    assert result.crm_reference == "7eb682f1-ca75-e511-80d4-00155d2a68d1"
    # The bearer token reached the CRM, and appears nowhere in what we show or store
    assert httpserver.log[0][0].headers["Authorization"] == "Bearer eyJ0eXAi-secret-token"
    shown = json.dumps(app.inspect(delivery_id))
    assert "eyJ0eXAi-secret-token" not in shown
    with app.ledger.session() as s:
        stored = json.dumps(
            [
                s.get(Delivery, delivery_id).idempotency_key,
                [a.exchanges for a in s.scalars(select(Attempt))],
            ]
        )
    assert "eyJ0eXAi-secret-token" not in stored


def test_a_crm_that_is_down_is_transient_then_not_integrated(
    app: Leadrelay, form_id: int, clock: FakeClock, unused_port: int
) -> None:
    # Given a CRM nobody listens for
    add_integration(app, form_id, f"http://127.0.0.1:{unused_port}/lead")
    delivery_id = app.submit(form_id, LEAD).delivery_ids[0]

    outcomes = []
    for _ in range(3):
        results = app.deliver_due()
        outcomes += [r.outcome.value for r in results]
        clock.advance(minutes=10)

    assert outcomes == ["transient"] * 3
    obj = app.inspect(delivery_id)
    assert obj["delivery"]["state"] == "not_integrated"
    assert "connection failed" in obj["attempts"][0]["reason"]
    assert obj["attempts"][0]["exchanges"][0]["response"] is None


def test_429_honours_retry_after(
    app: Leadrelay, form_id: int, clock: FakeClock, httpserver: HTTPServer
) -> None:
    from werkzeug import Response

    httpserver.expect_request("/x").respond_with_response(
        Response("slow down", status=429, headers={"Retry-After": "900"})
    )
    add_integration(app, form_id, httpserver.url_for("/x"))
    app.submit(form_id, LEAD)

    [result] = app.deliver_due()

    assert result.outcome.value == "throttled"
    assert (result.next_due_at - clock.now()).total_seconds() == pytest.approx(900)


def test_replay_sends_the_failed_collection_again(
    app: Leadrelay, form_id: int, clock: FakeClock, httpserver: HTTPServer
) -> None:
    # Given a delivery that failed three times against a broken CRM
    httpserver.expect_request("/crm").respond_with_data("boom", status=500)
    integration_id = add_integration(
        app, form_id, httpserver.url_for("/crm"), retry={"max_attempts": 1}
    )
    delivery_id = app.submit(form_id, LEAD).delivery_ids[0]
    app.deliver_due()
    assert app.inspect(delivery_id)["delivery"]["state"] == "not_integrated"

    # When a dry run is asked
    plan = app.replay(DeliveryFilter(integration_id=integration_id), dry_run=True)
    # Then it says what would be sent, and sends nothing
    assert plan.count == 1 and plan.dry_run
    assert "first_name=Jane" in plan.previews[0]["request"]["body"]
    assert app.inspect(delivery_id)["delivery"]["state"] == "not_integrated"
    assert len(httpserver.log) == 1

    # When the CRM is fixed and the collection replayed with a filter that misses it
    httpserver.clear_all_handlers()
    httpserver.expect_request("/crm").respond_with_data("ok")
    assert app.replay(DeliveryFilter(integration_id=integration_id + 1)).count == 0
    # and one that hits it
    assert app.replay(DeliveryFilter(reason="500")).count == 1
    [result] = app.deliver_due()

    # Then it is delivered, with the same idempotency key, and its history kept
    assert result.outcome.value == "accepted"
    obj = app.inspect(delivery_id)
    assert obj["delivery"]["state"] == "delivered" and obj["delivery"]["replays"] == 1
    assert [a["number"] for a in obj["attempts"]] == [1, 2]
    keys = {r.headers["Idempotency-Key"] for r, _ in httpserver.log}
    assert keys == {obj["delivery"]["idempotency_key"]}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (["not", "an", "object"], "payload: a lead must be a JSON object, got list"),
        ("text", "payload: a lead must be a JSON object, got str"),
        ({"blob": "x" * 300_000}, "over the 256 KB limit"),
        ({"n": float("nan")}, "payload.n: NaN is not a JSON number"),
    ],
)
def test_bad_leads_are_refused_and_nothing_is_written(
    app: Leadrelay, form_id: int, payload: object, message: str
) -> None:
    from leadrelay.engine.errors import BadInput

    with pytest.raises(BadInput, match=message.replace("[", r"\[")):
        app.submit(form_id, payload)
    assert count(app, Lead) == 0 and count(app, Delivery) == 0


def test_a_lead_for_an_unknown_form_is_refused(app: Leadrelay) -> None:
    from leadrelay.engine.errors import NotFound

    with pytest.raises(NotFound, match="form 999 does not exist"):
        app.submit(999, LEAD)
    assert count(app, Lead) == 0


def test_the_attempt_records_the_exchange_with_timing(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/crm").respond_with_data("x" * 40_000)
    add_integration(app, form_id, httpserver.url_for("/crm"))
    delivery_id = app.submit(form_id, LEAD).delivery_ids[0]
    app.deliver_due()

    exchange = app.inspect(delivery_id)["attempts"][0]["exchanges"][0]
    assert exchange["request"]["method"] == "POST"
    assert exchange["request"]["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert exchange["response"]["truncated"] is True
    assert len(exchange["response"]["body"]) == 16 * 1024
    assert exchange["duration_ms"] > 0
