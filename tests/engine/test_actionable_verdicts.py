"""Verdicts an operator can act on, against a real HTTP CRM on loopback.

The answers are the ones a BottleCRM-style API (Django REST framework) gives a new
user: a duplicate email at 400, a permission refusal at 403, a 301 to the URL with
a trailing slash. The reason carries the CRM's words, a redirect and an
authentication failure are named, and a rejection declared final is not retried —
the attempt says what declared it.
"""

from __future__ import annotations

from typing import Any

from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock

LEAD = {"email": "jane@example.com", "last_name": "Doe"}
DUPLICATE = {"errors": {"email": ["Lead with this email already exists."]}}
FORBIDDEN = {"detail": "You do not have permission to perform this action."}


def integrate(app: Leadrelay, form_id: int, url: str, *, expectations: Any = None,
              retry: Any = None) -> int:
    integration = app.manage.create_integration(
        form_id, name="BottleCRM", connector="http_post",
        config={"url": url, "body": "json"}, expectations=expectations, retry=retry,
        active=True)
    return integration.id


def deliver_once(app: Leadrelay, form_id: int) -> dict[str, Any]:
    delivery_id = app.submit(form_id, LEAD).delivery_ids[0]
    app.deliver_due()
    return app.inspect(delivery_id)


def last_attempt(obj: dict[str, Any]) -> dict[str, Any]:
    attempt: dict[str, Any] = obj["attempts"][-1]
    return attempt


def test_a_duplicate_at_400_names_the_crm_words_and_is_retried_by_default(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/api/leads/").respond_with_json(DUPLICATE, status=400)
    integrate(app, form_id, httpserver.url_for("/api/leads/"),
              expectations={"rules": [{"kind": "status", "in": [201]}]})

    obj = deliver_once(app, form_id)

    attempt = last_attempt(obj)
    assert attempt["reason"] == ("response mismatch: status in [201] saw 400 "
                                 "(CRM said email: Lead with this email already exists.)")
    # The product's default still retries a mismatch, and the attempt says so.
    assert obj["delivery"]["state"] == "pending"
    retry = attempt["trace"][-1]
    assert retry["rule"] == "retry" and retry["passed"] is True
    assert retry["detail"].startswith("retried at ")
    assert retry["detail"].endswith("attempt 1 of 3 under the default retry policy")


def test_a_rule_marked_final_stops_retrying_and_the_attempt_says_which(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/api/leads/").respond_with_json(DUPLICATE, status=400)
    integrate(app, form_id, httpserver.url_for("/api/leads/"),
              expectations={"rules": [{"kind": "status", "in": [201], "final": True}]})

    obj = deliver_once(app, form_id)

    assert obj["delivery"]["state"] == "not_integrated"
    assert len(httpserver.log) == 1
    assert last_attempt(obj)["trace"][-1] == {
        "rule": "retry", "passed": False, "seen": None,
        "detail": "not retried: final, declared by the expectation rule status in [201] "
                  "(final: true)",
    }


def test_final_when_marks_validation_errors_final_but_not_a_server_hiccup(
    app: Leadrelay, form_id: int, httpserver: HTTPServer, clock: FakeClock
) -> None:
    expectations = {"rules": [{"kind": "status", "in": [201]}],
                    "final_when": [{"kind": "status", "in": [400, 422]}]}
    httpserver.expect_ordered_request("/api/leads/").respond_with_json(
        {"detail": "busy"}, status=503)
    httpserver.expect_ordered_request("/api/leads/").respond_with_json(DUPLICATE, status=400)
    integrate(app, form_id, httpserver.url_for("/api/leads/"), expectations=expectations)

    delivery_id = app.submit(form_id, LEAD).delivery_ids[0]
    app.deliver_due()
    assert app.inspect(delivery_id)["delivery"]["state"] == "pending"  # 503: try later
    clock.advance(3600)
    app.deliver_due()

    obj = app.inspect(delivery_id)
    assert obj["delivery"]["state"] == "not_integrated"
    assert last_attempt(obj)["trace"][-1]["detail"] == (
        "not retried: final, declared by the expectations' final_when rule status in "
        "[400, 422] (saw 400)")


def test_the_integration_declares_its_rejections_final(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/api/leads/").respond_with_json(DUPLICATE, status=400)
    integrate(app, form_id, httpserver.url_for("/api/leads/"),
              retry={"retry_rejected": False})

    obj = deliver_once(app, form_id)

    assert obj["delivery"]["state"] == "not_integrated"
    assert last_attempt(obj)["trace"][-1]["detail"] == (
        "not retried: final, declared by the integration's retry policy (retry_rejected: false)")


def test_403_is_named_an_authentication_failure_with_the_crm_words(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/api/leads/").respond_with_json(FORBIDDEN, status=403)
    integrate(app, form_id, httpserver.url_for("/api/leads/"))

    attempt = last_attempt(deliver_once(app, form_id))

    assert attempt["reason"] == (
        "authentication failed or not allowed (HTTP 403) — check the credentials and what they "
        "may do (CRM said You do not have permission to perform this action.)")
    assert attempt["decided_by"] == "status in [2xx]"


def test_401_is_an_authentication_failure(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/api/leads/").respond_with_json(
        {"detail": "Invalid token."}, status=401)
    integrate(app, form_id, httpserver.url_for("/api/leads/"))

    attempt = last_attempt(deliver_once(app, form_id))

    assert attempt["reason"] == (
        "authentication failed (HTTP 401) — check the credentials (CRM said Invalid token.)")


def test_a_redirect_is_named_not_followed(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/api/leads").respond_with_data(
        "", status=301, headers={"Location": "/api/leads/"})
    integrate(app, form_id, httpserver.url_for("/api/leads"))

    obj = deliver_once(app, form_id)

    assert last_attempt(obj)["reason"] == (
        f"CRM redirected to {httpserver.url_for('/api/leads/')} (HTTP 301), not followed — "
        "check the URL")
    assert len(httpserver.log) == 1  # not followed


def test_declared_reason_paths_and_plain_text_answers(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_ordered_request("/lead").respond_with_json(
        {"status": "error", "data": {"code": "E_DUP", "text": "duplicate"}}, status=200)
    httpserver.expect_ordered_request("/lead").respond_with_data(
        "Email is required", status=400, content_type="text/plain")
    integrate(app, form_id, httpserver.url_for("/lead"), expectations={
        "rules": [{"kind": "json_field", "path": "status", "equals": "ok"}],
        "reason": ["data.code", "data.text"]})

    first = last_attempt(deliver_once(app, form_id))
    assert first["reason"] == ('response mismatch: json_field status == "ok" saw "error" '
                               "(CRM said E_DUP: duplicate)")
    second = last_attempt(deliver_once(app, form_id))
    assert second["reason"].endswith("(CRM said Email is required)")


def test_show_and_inspect_print_the_effective_retry_policy(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    from leadrelay.engine.report import describe_integration

    httpserver.expect_request("/lead").respond_with_json({"id": 1}, status=201)
    default_id = integrate(app, form_id, httpserver.url_for("/lead"))
    own_id = integrate(app, form_id, httpserver.url_for("/lead"),
                       retry={"max_attempts": 5, "retry_rejected": False})

    shown = describe_integration(app.manage.get_integration(default_id))["retry"]
    assert shown == {"max_attempts": 3, "delays": ["2m", "5m"], "floor": "30s",
                     "max_retry_after": "6h", "jitter": 0.1, "retry_rejected": True,
                     "origin": "the default retry policy"}
    own = describe_integration(app.manage.get_integration(own_id))["retry"]
    assert (own["max_attempts"], own["retry_rejected"], own["origin"]) == (
        5, False, "the integration's retry policy")
    # What show prints can be given back as it is.
    app.manage.update_integration(own_id, retry=own)
    obj = deliver_once(app, form_id)
    assert obj["integration"]["retry"]["origin"] in (
        "the default retry policy", "the integration's retry policy")
