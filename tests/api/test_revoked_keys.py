"""A revoked key, on every route of the OpenAPI document that needs a key, answers 401
and changes nothing; the routes that administer accounts and plans want the operator."""

from __future__ import annotations

from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay

from .conftest import Tenant, bearer, error_of
from .test_isolation import BODIES, PUBLIC, objects_of, operations, snapshot

#: Operations only the operator key may call (an account key gets 403), with a body.
OPERATOR_ONLY = {
    ("post", "/v1/accounts"): {"name": "Mine", "owner_email": "x@x.test"},
    ("post", "/v1/plans"): {"name": "huge", "max_active_integrations": 10**6},
}


def test_a_revoked_key_is_401_on_every_route_and_changes_nothing(
    client: TestClient, engine: Leadrelay, acme: Tenant, httpserver: HTTPServer,
) -> None:
    # Given account A's objects and one of its keys, revoked
    httpserver.expect_request("/leads").respond_with_data("ok")
    ids = objects_of(client, engine, acme, httpserver.url_for("/leads"))
    key = client.post(f"/v1/accounts/{acme.account_id}/keys", headers=acme.headers,
                      json={"name": "leaked"}).json()
    assert client.delete(f"/v1/accounts/{acme.account_id}/keys/{key['id']}",
                         headers=acme.headers).status_code == 200
    revoked = bearer(key["key"])
    before = snapshot(engine)

    # When it is used on every operation that needs a key
    checked = []
    for method, path, names, op in operations(client):
        if (method, path) in PUBLIC or not op.get("security"):
            continue
        # (a parameter the isolation test does not know: any value, the key decides first)
        url = path.format(**{n: ids.get(n, "growth") for n in names})
        answer = client.request(method, url, headers=revoked, json=BODIES.get((method, path)))
        # Then it is refused as revoked, whatever the route
        assert answer.status_code == 401, (method, url, answer.text)
        assert error_of(answer)["field"] == "Authorization"
        checked.append((method, path))

    # and nothing changed
    assert snapshot(engine) == before
    assert len(checked) >= 20, checked


def test_account_keys_do_not_administer_accounts_or_plans(
    client: TestClient, operator: dict[str, str], acme: Tenant, engine: Leadrelay,
) -> None:
    before = snapshot(engine)
    documented = {(m, p) for m, p, _, _ in operations(client)}
    assert documented >= set(OPERATOR_ONLY)
    for (method, path), body in OPERATOR_ONLY.items():
        answer = client.request(method, path, headers=acme.headers, json=body)
        assert answer.status_code == 403, (path, answer.text)
        assert error_of(answer)["code"] == "operator_key_required"
    assert snapshot(engine) == before
