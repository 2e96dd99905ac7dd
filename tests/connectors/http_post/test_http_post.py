"""The http_post connector against a real CRM server on loopback."""

from __future__ import annotations

import base64
import json
import threading
import time
from urllib.parse import parse_qs

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from faults.hostile_crm import HostileCrm
from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.errors import ConfigError

LEAD = {"first_name": " Jane ", "email": "Jane.Doe@Example.com", "phone": "+1 (415) 555-0100",
        "tags": ["a", "b"], "consent": True}


def deliver(app: Leadrelay, form_id: int, url: str, config: dict, lead: dict = LEAD) -> dict:
    app.manage.create_integration(form_id, name="CRM", connector="http_post",
                                  config={"url": url, **config}, active=True,
                                  retry={"max_attempts": 1})
    delivery_id = app.submit(form_id, lead).delivery_ids[0]
    app.deliver_due()
    return app.inspect(delivery_id)


def test_form_body_with_mapping_and_transforms(app: Leadrelay, form_id: int,
                                               httpserver: HTTPServer) -> None:
    httpserver.expect_request("/lead", method="POST").respond_with_data("ok")
    fields = {
        "FirstName": {"from": "first_name", "transform": "strip"},
        "Email": {"from": "email", "transform": "lower"},
        "Phone": {"from": "phone", "transform": "digits"},
        "Tags": "tags",
        "Consent": "consent",
        "LeadSource": {"const": "Web"},
        "Country": {"from": "country", "default": "US"},
    }
    obj = deliver(app, form_id, httpserver.url_for("/lead"), {"fields": fields})

    assert obj["delivery"]["state"] == "delivered"
    request = httpserver.log[0][0]
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.get_data(as_text=True)) == {
        "FirstName": ["Jane"], "Email": ["jane.doe@example.com"], "Phone": ["+14155550100"],
        "Tags": ["a", "b"], "Consent": ["true"], "LeadSource": ["Web"], "Country": ["US"],
    }


def test_json_body_sends_the_lead_as_is_without_a_mapping(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/lead").respond_with_json({"id": 7}, status=201)
    deliver(app, form_id, httpserver.url_for("/lead"), {"body": "json"})

    request = httpserver.log[0][0]
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.get_data()) == LEAD


def test_basic_auth_custom_headers_and_secret_query(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/api/v1/leads").respond_with_json({"success": True}, status=201)
    obj = deliver(app, form_id, httpserver.url_for("/api/v1/leads"), {
        "auth": {"type": "basic", "username": "api", "password": "pa55-word"},
        "headers": {"X-Source": "leadrelay"},
        "secret_headers": {"X-Api-Key": "key-123456"},
        "secret_query": {"api_token": "tok-abcdef"},
    })

    request = httpserver.log[0][0]
    basic = base64.b64encode(b"api:pa55-word").decode()
    assert request.headers["Authorization"] == f"Basic {basic}"
    assert request.headers["X-Source"] == "leadrelay"
    assert request.headers["X-Api-Key"] == "key-123456"
    assert request.args["api_token"] == "tok-abcdef"
    shown = json.dumps(obj)
    for secret in ("pa55-word", "key-123456", "tok-abcdef", "YXBpOnBhNTUtd29yZA"):
        assert secret not in shown
    exchange = obj["attempts"][0]["exchanges"][0]
    assert exchange["request"]["headers"]["Authorization"] == "[REDACTED]"
    assert "api_token=[REDACTED]" in exchange["request"]["url"]


@pytest.mark.parametrize(("switch", "header"), [(True, "Idempotency-Key"), (False, None)])
def test_the_idempotency_key_can_be_switched_off(
    app: Leadrelay, form_id: int, httpserver: HTTPServer, switch: bool, header: str | None
) -> None:
    httpserver.expect_request("/lead").respond_with_data("ok")
    obj = deliver(app, form_id, httpserver.url_for("/lead"), {"idempotency_key": switch})
    sent = httpserver.log[0][0].headers.get("Idempotency-Key")
    assert sent == (obj["delivery"]["idempotency_key"] if header else None)


def test_a_slow_crm_times_out_as_transient(app: Leadrelay, form_id: int,
                                          httpserver: HTTPServer) -> None:
    release = threading.Event()

    def slow(_request: Request) -> Response:
        release.wait(5)
        return Response("late")

    httpserver.expect_request("/lead").respond_with_handler(slow)
    obj = deliver(app, form_id, httpserver.url_for("/lead"), {"read_timeout": 0.2})
    # Let the server finish the abandoned request, so it is not logged in another test.
    release.set()
    deadline = time.monotonic() + 5
    while not httpserver.log and time.monotonic() < deadline:
        time.sleep(0.01)

    attempt = obj["attempts"][0]
    assert attempt["outcome"] == "transient"
    assert attempt["reason"] == "no answer within 0.2s"
    assert attempt["duration_ms"] < 900


def test_a_crm_echoing_a_secret_does_not_leak_it_through_the_verdict(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    # Given a CRM that answers 200 with an error quoting the API key it was sent
    httpserver.expect_request("/lead").respond_with_json(
        {"success": False, "error": "key key-echo-42 is not allowed"}
    )
    expectations = {"rules": [{"kind": "json_field", "path": "error", "exists": False}]}
    app.manage.create_integration(
        form_id, name="CRM", connector="http_post", active=True, retry={"max_attempts": 1},
        config={"url": httpserver.url_for("/lead"), "secret_headers": {"X-Api-Key": "key-echo-42"}},
        expectations=expectations,
    )
    delivery_id = app.submit(form_id, LEAD).delivery_ids[0]

    # When the rule rejects it, quoting what it saw
    [result] = app.deliver_due()

    # Then the reason, the trace, the listing and the record all show the key redacted
    assert result.outcome.value == "rejected"
    assert "[REDACTED]" in result.reason
    shown = json.dumps([app.inspect(delivery_id), app.deliveries()])
    assert "key-echo-42" not in shown


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"headers": {"X-Source": "web\r\nX-Injected: 1"}}, "config.headers",
         "header 'X-Source': its value contains a line break (CR or LF), which would inject "
         "headers"),
        ({"headers": {"X-Source": "web\nX-Injected: 1"}}, "config.headers",
         "header 'X-Source': its value contains a line break"),
        ({"headers": {"X-Source\r\nX-Injected": "1"}}, "config.headers",
         "header 'X-Source\\r\\nX-Injected': a header name cannot contain a line break"),
        ({"headers": {"X Source": "web"}}, "config.headers",
         "header 'X Source': a header name is letters, digits and !#$%&'*+-.^_`|~ only"),
        ({"headers": {"X-Source:": "web"}}, "config.headers",
         "header 'X-Source:': a header name is letters, digits"),
        ({"headers": {"": "web"}}, "config.headers", "header '': a header name must be non-empty"),
        ({"headers": {"X-Source": "a\x00b"}}, "config.headers",
         "header 'X-Source': its value contains a control character (only tab is allowed)"),
        ({"headers": {"X-Price": "10 €"}}, "config.headers",
         "header 'X-Price': its value has characters HTTP headers cannot carry (Latin-1 only)"),
        ({"secret_headers": {"X-Api-Key": "key-123456\r\nX-Injected: 1"}}, "config.secret_headers",
         "header 'X-Api-Key': its value contains a line break"),
        ({"idempotency_header": "Idempotency Key"}, "config.idempotency_header",
         "a header name is letters, digits"),
        ({"auth": {"type": "bearer", "token": "tok-abc\r\nX-Injected: 1"}},
         "config.auth.bearer.token", "the token contains a line break (CR or LF)"),
    ],
)
def test_headers_that_would_break_the_request_are_refused_at_save(
    app: Leadrelay, form_id: int, config: dict, field: str, message: str
) -> None:
    # When an integration is saved with a header an HTTP request cannot carry as given
    with pytest.raises(ConfigError) as caught:
        app.manage.create_integration(form_id, name="CRM", connector="http_post",
                                      config={"url": "https://crm.example/leads", **config})

    # Then it is refused naming the field and the header, without showing a secret value
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: {message}"), str(caught.value)
    assert "key-123456" not in str(caught.value) and "tok-abc" not in str(caught.value)
    # ...and nothing was written
    assert app.manage.integrations() == []


def test_tabs_and_latin1_header_values_are_sent_as_given(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/lead").respond_with_data("ok")
    deliver(app, form_id, httpserver.url_for("/lead"),
            {"headers": {"X-Note": "a\tb", "X-City": "Zürich"}})
    sent = httpserver.log[0][0].headers
    assert sent["X-Note"] == "a\tb"
    assert sent["X-City"].encode("latin-1") == "Zürich".encode("latin-1")


def test_a_crm_deduplicating_on_its_own_field_gets_the_same_id_on_every_retry(
    app: Leadrelay, form_id: int, clock: FakeClock
) -> None:
    # Given a CRM that fails, and a map sending the delivery's idempotency key and the
    # external system's id in fields of the CRM's own (as BottleCRM's external_id)
    with HostileCrm("ok") as crm:
        app.manage.create_integration(
            form_id, name="CRM", connector="http_post", active=True,
            retry={"max_attempts": 2, "delays": ["1m"], "jitter": 0},
            config={"url": crm.url_for("/leads?status=500"), "body": "json",
                    "fields": {"email": "email",
                               "external_id": {"meta": "idempotency_key"},
                               "source_ref": {"meta": "external_id"}}},
        )
        app.submit(form_id, {"email": "jane@example.com"}, source="external",
                   external_id="order-42")

        # When it is attempted, then retried
        app.deliver_due()
        clock.advance(minutes=2)
        app.deliver_due()

        # Then both requests carry the same ids: the CRM can tell the retry apart
        bodies = [json.loads(r.body) for r in crm.received]
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    assert bodies[0]["source_ref"] == "order-42"
    assert bodies[0]["external_id"] == crm.received[0].idempotency_key
