"""Tenant isolation, generated from the OpenAPI document.

For every route with an id in its path, account B's key on account A's object
answers 404 — exactly what a missing object answers — and changes nothing; A's own
key on the same request is served. A new route with a path parameter this test does
not know fails it until it is taught where to find A's object.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.ledger.models import Base

from .conftest import LEAD, Tenant, add_integration, error_of

#: Routes anyone may call with a path key (a form's public key is meant for pages; a
#: status token opens one lead's public view, see engine/lead_status.py).
PUBLIC = {("post", "/v1/forms/{form_key}/leads"), ("get", "/v1/forms/{form_key}/embed"),
          ("get", "/v1/lead-status/{token}")}
#: Routes only an operator key may call (an account key is refused with 403 whatever the id).
OPERATOR = {("patch", "/v1/accounts/{account_id}"), ("patch", "/v1/plans/{name}")}
#: A body the owner's request would be served with, per operation that takes one.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/forms/{form_id}/leads"): {"fields": LEAD},
    ("patch", "/v1/forms/{form_id}"): {"name": "Renamed"},
    ("patch", "/v1/integrations/{integration_id}"): {"name": "Renamed"},
    ("post", "/v1/accounts/{account_id}/keys"): {"name": "more"},
    ("patch", "/v1/accounts/{account_id}/digest"): {"digest_hours": 12},
    ("patch", "/v1/facebook/pages/{connection_id}"): {"name": "Renamed"},
    ("post", "/v1/integrations/{integration_id}/held/discard"): {"reason": "not wanted"},
    ("post", "/v1/integrations/{integration_id}/test"): {"sample": True},
    ("post", "/v1/imports/{import_id}/send"): {},
}


def snapshot(engine: Leadrelay) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every ledger table."""
    with engine.ledger.transaction() as conn:
        return {t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key))]
                for t in Base.metadata.sorted_tables}


def objects_of(client: TestClient, engine: Leadrelay, a: Tenant, url: str) -> dict[str, Any]:
    """One object of each kind, all account A's: the values of path parameters."""
    integration = add_integration(client, a, url)
    lead = client.post(f"/v1/forms/{a.form_key}/leads", json=LEAD).json()
    engine.deliver_due()
    key = client.post(f"/v1/accounts/{a.account_id}/keys", headers=a.headers, json={}).json()
    page = client.post("/v1/facebook/pages", headers=a.headers, json={
        "page_id": "104736952280912", "app_secret": "s3cret-app", "verify_token": "v3rify",
        "page_access_token": "EAAG-token", "forms": {"1418823349021556": a.form_id}}).json()
    made = client.post("/v1/imports", headers={**a.headers, "Content-Type": "text/csv"},
                       params={"form_id": a.form_id, "integrate": "off"},
                       content=b"email\nimported@x.test\n").json()
    while client.get(f"/v1/imports/{made['id']}", headers=a.headers).json()["state"] == (
            "running"):
        time.sleep(0.02)
    return {"import_id": made["id"], "form_id": a.form_id, "integration_id": integration["id"],
            "lead_id": lead["lead_id"], "delivery_id": lead["deliveries"][0]["delivery_id"],
            "account_id": a.account_id, "key_id": key["id"], "connection_id": page["id"]}


def operations(client: TestClient) -> list[tuple[str, str, list[str], dict[str, Any]]]:
    """(method, path, path parameters, operation) of every operation in the document."""
    found = []
    for path, item in client.get("/openapi.json").json()["paths"].items():
        for method, op in item.items():
            names = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
            found.append((method, path, names, op))
    return found


def test_another_accounts_objects_answer_404_and_change_nothing(
    client: TestClient, engine: Leadrelay, acme: Tenant, globex: Tenant, httpserver: HTTPServer
) -> None:
    # Given one object of each kind, all account A's
    httpserver.expect_request("/leads").respond_with_data("ok")
    ids = objects_of(client, engine, acme, httpserver.url_for("/leads"))
    before = snapshot(engine)

    checked = []
    for method, path, names, op in operations(client):
        if not names:
            continue
        if (method, path) in PUBLIC:
            assert "security" not in op, path
            continue
        # every route with an id in its path needs a key
        assert op.get("security"), f"{method} {path} has no security requirement"
        if (method, path) in OPERATOR:
            answer = client.request(method, path.format(**ids, name="starter"),
                                    headers=globex.headers, json={})
            assert answer.status_code == 403, (method, path)
            continue
        unknown = [n for n in names if n not in ids]
        assert not unknown, f"{method} {path}: teach this test what {unknown} is"
        url = path.format(**ids)
        body = BODIES.get((method, path))
        if "requestBody" in op:
            assert body is not None, f"{method} {path}: add a body to BODIES"

        # When account B asks for account A's object
        answer = client.request(method, url, headers=globex.headers, json=body)

        # Then it is not found, with the very answer of a missing object
        assert answer.status_code == 404, (method, url, answer.text)
        missing = client.request(method, path.format(**{n: 999_999 for n in ids}),
                                 headers=globex.headers, json=body)
        assert missing.status_code == 404
        first, second = error_of(answer), error_of(missing)
        assert (first["code"], first["field"]) == (second["code"], second["field"]), path
        assert first["message"] == second["message"].replace("999999", str(ids[first["field"]]))
        checked.append((method, path))

    # and nothing changed
    assert snapshot(engine) == before
    assert len(checked) >= 14, checked  # every id route there is today

    # while account A's own key is served on every one of them (deleting last)
    for method, path in sorted(checked, key=lambda c: (c[0] == "delete", "forms" in c[1])):
        answer = client.request(method, path.format(**ids), headers=acme.headers,
                                json=BODIES.get((method, path)))
        assert answer.status_code < 300, (method, path, answer.text)


def test_ids_in_bodies_and_filters_reach_no_other_account(
    client: TestClient, engine: Leadrelay, acme: Tenant, globex: Tenant, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/leads").respond_with_data("no", status=400)
    ids = objects_of(client, engine, acme, httpserver.url_for("/leads"))
    before = snapshot(engine)
    made = client.post("/v1/integrations", headers=globex.headers, json={
        "form_id": ids["form_id"], "name": "Mine now", "connector": "http_post",
        "config": {"url": httpserver.url_for("/x")}})
    assert made.status_code == 404
    for path in ("/v1/integrations", "/v1/deliveries", "/v1/deliveries/failed",
                 "/v1/facebook/leads", "/v1/facebook/pages", "/v1/imports"):
        listed = client.get(path, headers=globex.headers, params={"form_id": ids["form_id"]})
        assert listed.status_code == 200
        assert listed.json() in ([], {"items": [], "next_cursor": None},
                                 {"items": [], "next_cursor": None, "facebook_not_read": 0}), path
    replay = client.post("/v1/replays", headers=globex.headers,
                         json={"form_id": ids["form_id"]})
    assert replay.json()["count"] == 0
    assert client.get("/v1/forms", headers=globex.headers).json()[0]["id"] == globex.form_id
    assert snapshot(engine) == before
