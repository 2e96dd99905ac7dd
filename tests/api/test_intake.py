"""Browsers post leads to a form's public key: JSON or a plain HTML form, CORS per form.

Every refusal answers 4xx with the one error body naming the problem, and stores nothing.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.intake import MAX_FIELDS, MAX_PAYLOAD_BYTES

from .conftest import LEAD, Tenant, add_integration, error_of

ORIGIN = {"Origin": "https://acme.example"}


def count(engine: Leadrelay, table: str) -> int:
    with engine.ledger.transaction() as conn:
        return int(conn.execute(sa.text(f"select count(*) from {table}")).scalar_one())


def test_a_json_post_is_durable_with_its_deliveries_before_the_202(
    client: TestClient, engine: Leadrelay, acme: Tenant, httpserver: HTTPServer
) -> None:
    # Given a form with one background integration
    integration = add_integration(client, acme, httpserver.url_for("/leads"))

    # When a page of an allowed origin posts a lead
    answer = client.post(f"/v1/forms/{acme.form_key}/leads", json=LEAD, headers=ORIGIN)

    # Then the answer is 202 with the lead id and one queued delivery
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert [(d["integration_id"], d["state"]) for d in body["deliveries"]] == [
        (integration["id"], "queued")]
    # the page may read it
    assert answer.headers["Access-Control-Allow-Origin"] == "https://acme.example"
    # and the ledger already has the lead and its delivery
    lead = engine.lead(body["lead_id"])
    assert lead["payload"] == LEAD and lead["source"] == "form"
    assert [d["id"] for d in lead["deliveries"]] == [body["deliveries"][0]["delivery_id"]]


def test_a_plain_html_form_post_is_stored_and_may_be_redirected(
    client: TestClient, engine: Leadrelay, acme: Tenant
) -> None:
    # Given a form with a thank-you page
    client.patch(f"/v1/forms/{acme.form_id}", headers=acme.headers,
                 json={"thank_you_url": "https://acme.example/thanks"})
    form_body = "first_name=Jane&email=jane%40example.com&interest=a&interest=b&note="

    # When a browser posts an HTML form (URL-encoded, accepting HTML)
    answer = client.post(
        f"/v1/forms/{acme.form_key}/leads", content=form_body, follow_redirects=False,
        headers={**ORIGIN, "Content-Type": "application/x-www-form-urlencoded",
                 "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})

    # Then it is redirected to the thank-you page
    assert answer.status_code == 303
    assert answer.headers["Location"] == "https://acme.example/thanks"
    # and the lead is stored with its fields, a checkbox group as a list
    with engine.ledger.transaction() as conn:
        payload = conn.execute(sa.text("select payload from leads")).scalar_one()
    stored = payload if isinstance(payload, dict) else json.loads(payload)
    assert stored == {"first_name": "Jane", "email": "jane@example.com",
                      "interest": ["a", "b"], "note": ""}

    # A script posting the same body (not asking for HTML) gets JSON
    answer = client.post(f"/v1/forms/{acme.form_key}/leads", content=form_body,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 202 and "lead_id" in answer.json()


def test_the_preflight_is_answered_per_form(client: TestClient, acme: Tenant) -> None:
    path = f"/v1/forms/{acme.form_key}/leads"
    allowed = client.options(path, headers={
        **ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://acme.example"
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in allowed.headers["Access-Control-Allow-Headers"]

    refused = client.options(path, headers={"Origin": "https://evil.example",
                                            "Access-Control-Request-Method": "POST"})
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert error_of(refused)["field"] == "Origin"
    assert client.options("/v1/forms/fk_unknownunknown/leads",
                          headers=ORIGIN).status_code == 404


def _bad_posts(acme: Tenant) -> list[tuple[str, dict[str, object], int, str]]:
    path = f"/v1/forms/{acme.form_key}/leads"
    json_type = {"Content-Type": "application/json", **ORIGIN}
    many = {f"f{i}": "x" for i in range(MAX_FIELDS + 1)}
    return [
        ("malformed JSON", {"url": path, "content": b'{"email": ', "headers": json_type},
         400, "malformed_json"),
        ("a non-object body", {"url": path, "content": b'["a", "b"]', "headers": json_type},
         422, "invalid"),
        ("an empty body", {"url": path, "content": b"", "headers": json_type}, 400,
         "empty_body"),
        ("wrong content type", {"url": path, "content": b"email=a",
                                "headers": {"Content-Type": "text/plain", **ORIGIN}},
         415, "unsupported_media_type"),
        ("multipart", {"url": path, "files": {"f": ("a.txt", b"x")}, "headers": ORIGIN},
         415, "unsupported_media_type"),
        ("an oversized body", {"url": path, "headers": json_type, "content": json.dumps(
            {"note": "x" * MAX_PAYLOAD_BYTES}).encode()}, 413, "too_large"),
        ("too many fields", {"url": path, "json": many, "headers": ORIGIN}, 422, "invalid"),
        ("an unknown form key", {"url": "/v1/forms/fk_nosuchformatall/leads", "json": LEAD,
                                 "headers": ORIGIN}, 404, "not_found"),
        ("a disallowed origin", {"url": path, "json": LEAD,
                                 "headers": {"Origin": "https://evil.example"}},
         403, "refused"),
        ("a null origin", {"url": path, "json": LEAD, "headers": {"Origin": "null"}},
         403, "refused"),
        ("not UTF-8", {"url": path, "content": b"email=%FF%FE",
                       "headers": {"Content-Type": "application/x-www-form-urlencoded",
                                   **ORIGIN}}, 400, "malformed_body"),
    ]


@pytest.mark.parametrize("case", range(11))
def test_bad_input_is_a_4xx_naming_the_problem_and_stores_nothing(
    client: TestClient, engine: Leadrelay, acme: Tenant, case: int
) -> None:
    name, request, status, code = _bad_posts(acme)[case]
    answer = client.post(**request)  # type: ignore[arg-type]
    assert answer.status_code == status, (name, answer.text)
    error = error_of(answer)
    assert error["code"] == code, (name, error)
    assert error["message"], name
    assert count(engine, "leads") == 0, name


def test_required_fields_inactive_forms_and_rotated_keys_are_refused(
    client: TestClient, engine: Leadrelay, acme: Tenant
) -> None:
    path = f"/v1/forms/{acme.form_key}/leads"
    client.patch(f"/v1/forms/{acme.form_id}", headers=acme.headers,
                 json={"required_fields": ["email", "phone"]})
    missing = client.post(path, json={"email": "a@b.test", "phone": " "}, headers=ORIGIN)
    assert missing.status_code == 422
    assert error_of(missing)["field"] == "phone"
    assert "required" in error_of(missing)["message"]

    client.patch(f"/v1/forms/{acme.form_id}", headers=acme.headers, json={"active": False})
    inactive = client.post(path, json={"email": "a@b.test", "phone": "1"}, headers=ORIGIN)
    assert inactive.status_code == 403
    assert "inactive" in error_of(inactive)["message"]

    client.patch(f"/v1/forms/{acme.form_id}", headers=acme.headers, json={"active": True})
    rotated = client.post(f"/v1/forms/{acme.form_id}/rotate-key", headers=acme.headers)
    assert rotated.status_code == 200 and rotated.json()["public_key"] != acme.form_key
    old = client.post(path, json={"email": "a@b.test", "phone": "1"}, headers=ORIGIN)
    assert old.status_code == 404 and "rotated" in error_of(old)["message"]
    assert count(engine, "leads") == 0
    new = client.post(f"/v1/forms/{rotated.json()['public_key']}/leads",
                      json={"email": "a@b.test", "phone": "1"}, headers=ORIGIN)
    assert new.status_code == 202


def test_a_post_without_origin_is_accepted_and_any_origin_may_be_allowed(
    client: TestClient, acme: Tenant
) -> None:
    path = f"/v1/forms/{acme.form_key}/leads"
    # A server (no Origin header: not a browser page) may post
    assert client.post(path, json=LEAD).status_code == 202
    # and "*" lets any page post
    client.patch(f"/v1/forms/{acme.form_id}", headers=acme.headers,
                 json={"allowed_origins": ["*"]})
    answer = client.post(path, json=LEAD, headers={"Origin": "https://anyone.example"})
    assert answer.status_code == 202
    assert answer.headers["Access-Control-Allow-Origin"] == "https://anyone.example"
