"""Bearer keys: account keys act for their account, operator keys administer accounts."""

from __future__ import annotations

from fastapi.testclient import TestClient

from leadrelay.engine.app import Leadrelay

from .conftest import Tenant, bearer, error_of


def test_no_key_a_wrong_key_or_a_revoked_key_is_401(
    client: TestClient, engine: Leadrelay, acme: Tenant
) -> None:
    # Without a key, with a wrong one, with another scheme: 401 naming Authorization
    for headers in ({}, bearer("lr_not-a-key"), {"Authorization": "Basic dXNlcjpwYXNz"}):
        answer = client.get("/v1/forms", headers=headers)
        assert answer.status_code == 401
        assert error_of(answer)["field"] == "Authorization"
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")

    # A key works until it is revoked, then answers 401 at once
    key = client.post(f"/v1/accounts/{acme.account_id}/keys", headers=acme.headers,
                      json={"name": "zapier"}).json()
    assert client.get("/v1/forms", headers=bearer(key["key"])).status_code == 200
    revoked = client.delete(f"/v1/accounts/{acme.account_id}/keys/{key['id']}",
                            headers=acme.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    answer = client.get("/v1/forms", headers=bearer(key["key"]))
    assert answer.status_code == 401
    assert "revoked" in error_of(answer)["message"]


def test_a_key_is_shown_once_and_listed_without_its_secret(
    client: TestClient, acme: Tenant
) -> None:
    made = client.post(f"/v1/accounts/{acme.account_id}/keys", headers=acme.headers,
                       json={"name": "import job"})
    assert made.status_code == 201
    secret = made.json()["key"]
    listed = client.get(f"/v1/accounts/{acme.account_id}/keys", headers=acme.headers)
    assert listed.status_code == 200
    assert secret not in listed.text
    assert "import job" in [k["name"] for k in listed.json()]
    assert any(secret.startswith(k["prefix"]) for k in listed.json())


def test_only_an_operator_key_creates_accounts_and_plans(
    client: TestClient, operator: dict[str, str], acme: Tenant
) -> None:
    for path, body in (("/v1/accounts", {"name": "X", "owner_email": "x@x.test"}),
                       ("/v1/plans", {"name": "huge", "max_active_integrations": 1000})):
        answer = client.post(path, headers=acme.headers, json=body)
        assert answer.status_code == 403
        assert error_of(answer)["code"] == "operator_key_required"
    assert client.post("/v1/plans", headers=operator,
                       json={"name": "huge", "max_active_integrations": 1000}).status_code == 201
    assert "huge" in [p["name"] for p in client.get("/v1/plans", headers=acme.headers).json()]
    # An account key sees its own account only; the operator sees all
    assert [a["id"] for a in client.get("/v1/accounts", headers=acme.headers).json()] == [
        acme.account_id]
    assert acme.account_id in [a["id"] for a in
                               client.get("/v1/accounts", headers=operator).json()]


def test_an_operator_key_does_not_act_for_an_account(
    client: TestClient, operator: dict[str, str], acme: Tenant
) -> None:
    answer = client.get("/v1/forms", headers=operator)
    assert answer.status_code == 403
    assert error_of(answer)["code"] == "account_key_required"
