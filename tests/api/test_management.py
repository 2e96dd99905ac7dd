"""Forms and integrations through the API, with the CLI's validation and the plan's cap."""

from __future__ import annotations

from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer

from .conftest import Tenant, add_integration, error_of


def test_forms_are_made_listed_shown_and_changed(client: TestClient, acme: Tenant) -> None:
    made = client.post("/v1/forms", headers=acme.headers, json={
        "name": "Quote", "allowed_origins": ["https://acme.example"],
        "required_fields": ["email"], "thank_you_url": "https://acme.example/thanks"})
    assert made.status_code == 201
    form = made.json()
    assert form["public_key"].startswith("fk_") and form["active"] is True
    assert [f["name"] for f in client.get("/v1/forms", headers=acme.headers).json()] == [
        "Contact us", "Quote"]
    changed = client.patch(f"/v1/forms/{form['id']}", headers=acme.headers,
                           json={"required_fields": ["email", "phone"], "thank_you_url": None})
    assert changed.status_code == 200
    shown = client.get(f"/v1/forms/{form['id']}", headers=acme.headers).json()
    assert shown["required_fields"] == ["email", "phone"] and shown["thank_you_url"] is None
    assert shown["public_key"] == form["public_key"]


def test_bad_form_settings_name_the_field_and_change_nothing(
    client: TestClient, acme: Tenant
) -> None:
    for body, field in [({"allowed_origins": ["acme.example"]}, "allowed_origins"),
                        ({"thank_you_url": "ftp://x"}, "thank_you_url"),
                        ({"name": ""}, "name"),
                        ({"colour": "red"}, "colour"),
                        ({"active": "maybe"}, "active")]:
        answer = client.patch(f"/v1/forms/{acme.form_id}", headers=acme.headers, json=body)
        assert answer.status_code == 422, body
        assert error_of(answer)["field"] == field, (body, answer.json())
    assert client.get(f"/v1/forms/{acme.form_id}", headers=acme.headers).json() == acme.form


def test_integrations_are_made_changed_and_switched(
    client: TestClient, acme: Tenant, httpserver: HTTPServer
) -> None:
    url = httpserver.url_for("/leads")
    made = add_integration(client, acme, url, active=False,
                           config={"url": url, "secret_headers": {"X-Api-Key": "s3cret-value"}})
    assert made["active"] is False
    assert "s3cret-value" not in str(made)  # the secret header is redacted
    path = f"/v1/integrations/{made['id']}"
    assert client.get(path, headers=acme.headers).json()["id"] == made["id"]
    updated = client.patch(path, headers=acme.headers,
                           json={"name": "Renamed", "realtime": True, "realtime_budget": 1.5})
    assert updated.status_code == 200
    assert (updated.json()["name"], updated.json()["realtime"],
            updated.json()["revision"]) == ("Renamed", True, 2)
    assert client.post(f"{path}/activate", headers=acme.headers).json()["active"] is True
    assert client.post(f"{path}/deactivate", headers=acme.headers).json()["active"] is False
    listed = client.get("/v1/integrations", params={"form_id": acme.form_id},
                        headers=acme.headers)
    assert [i["id"] for i in listed.json()] == [made["id"]]


def test_bad_integrations_are_refused_like_the_cli_refuses_them(
    client: TestClient, acme: Tenant
) -> None:
    base = {"form_id": acme.form_id, "name": "CRM", "connector": "http_post",
            "config": {"url": "https://crm.example/leads"}}
    for change, field in [({"connector": "carrier_pigeon"}, "connector"),
                          ({"config": {"url": "not a url"}}, "config.url"),
                          ({"realtime_budget": 90}, "realtime_budget"),
                          ({"retry": {"max_attempts": "often"}}, None)]:
        answer = client.post("/v1/integrations", headers=acme.headers, json={**base, **change})
        assert answer.status_code == 422, (change, answer.text)
        if field:
            assert (error_of(answer)["field"] or "").startswith(field), answer.json()
    assert client.get("/v1/integrations", headers=acme.headers).json() == []


def test_activation_beyond_the_plan_is_a_409_naming_plan_limit_and_count(
    client: TestClient, operator: dict[str, str], httpserver: HTTPServer
) -> None:
    # Given an account on the free plan (one active integration) with one active
    small = client.post("/v1/accounts", headers=operator, json={
        "name": "Tiny", "owner_email": "o@tiny.test", "plan": "free"}).json()
    key = client.post(f"/v1/accounts/{small['id']}/keys", headers=operator, json={}).json()
    headers = {"Authorization": f"Bearer {key['key']}"}
    form = client.post("/v1/forms", headers=headers, json={"name": "F"}).json()
    body = {"form_id": form["id"], "name": "CRM", "connector": "http_post",
            "config": {"url": httpserver.url_for("/leads")}}
    assert client.post("/v1/integrations", headers=headers,
                       json={**body, "active": True}).status_code == 201
    second = client.post("/v1/integrations", headers=headers, json=body).json()

    # When a second one is activated
    answer = client.post(f"/v1/integrations/{second['id']}/activate", headers=headers)

    # Then 409 names the plan, its limit and the active count, and nothing changed
    assert answer.status_code == 409
    error = error_of(answer)
    assert (error["code"], error["plan"], error["limit"], error["active"]) == (
        "plan_limit", "free", 1, 1)
    assert "free" in error["message"]
    assert client.get(f"/v1/integrations/{second['id']}",
                      headers=headers).json()["active"] is False
