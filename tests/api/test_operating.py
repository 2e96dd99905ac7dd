"""Plans, accounts over their limit, test-send, held deliveries, history, audit and delete
through the API: the engine's rules, the key's name as actor, 404 for another account."""

from __future__ import annotations

from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay

from .conftest import LEAD, Tenant, add_integration, bearer, error_of

TOKEN = "tok-very-secret-123"


def test_plans_are_made_changed_and_an_account_shows_its_limit(
    client: TestClient, operator: dict[str, str], acme: Tenant, httpserver: HTTPServer
) -> None:
    made = client.post("/v1/plans", headers=operator,
                       json={"name": "duo", "max_active_integrations": 2})
    assert made.status_code == 201 and made.json()["max_active_integrations"] == 2
    unlimited = client.post("/v1/plans", headers=operator,
                            json={"name": "big", "max_active_integrations": "unlimited"})
    assert unlimited.json()["max_active_integrations"] == "unlimited"
    for body, status, field in [
        ({"name": "neg", "max_active_integrations": -1}, 422, "max_active_integrations"),
        ({"name": "duo", "max_active_integrations": 1}, 422, "name"),
        ({"name": "x"}, 422, "max_active_integrations"),
    ]:
        answer = client.post("/v1/plans", headers=operator, json=body)
        assert answer.status_code == status, body
        assert error_of(answer)["field"] == field, answer.json()
    assert client.post("/v1/plans", headers=acme.headers,
                       json={"name": "mine", "max_active_integrations": 99}).status_code == 403
    assert client.patch("/v1/plans/nope", headers=operator,
                        json={"max_active_integrations": 1}).status_code == 422

    for _ in range(3):
        add_integration(client, acme, httpserver.url_for("/leads"))
    # When the account is moved down to a plan of two
    moved = client.patch(f"/v1/accounts/{acme.account_id}", headers=operator,
                         json={"plan": "duo"})
    assert moved.status_code == 200, moved.text
    shown = client.get(f"/v1/accounts/{acme.account_id}", headers=acme.headers).json()
    assert (shown["plan"], shown["plan_limit"], shown["active_integrations"],
            shown["over_limit"]) == ("duo", 2, 3, True)
    assert "nothing is deactivated" in shown["note"]
    # Then nothing new can be activated, and the refusal says why
    extra = add_integration(client, acme, httpserver.url_for("/leads"), active=False)
    refused = client.post(f"/v1/integrations/{extra['id']}/activate", headers=acme.headers)
    assert refused.status_code == 409
    body = error_of(refused)
    assert (body["plan"], body["limit"], body["active"]) == ("duo", 2, 3)
    assert "over its plan's limit" in body["message"]
    bad = client.patch(f"/v1/accounts/{acme.account_id}", headers=operator,
                       json={"plan": "platinum"})
    assert bad.status_code == 422 and error_of(bad)["field"] == "plan"


def test_a_test_send_without_send_writes_nothing_and_with_send_reaches_the_crm_once(
    client: TestClient, engine: Leadrelay, acme: Tenant, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/leads").respond_with_data("no", status=400)
    url = httpserver.url_for("/leads")
    made = add_integration(client, acme, url, active=False,
                           config={"url": url, "auth": {"type": "bearer", "token": TOKEN}})
    path = f"/v1/integrations/{made['id']}/test"
    shown = client.post(path, headers=acme.headers, json={"lead": LEAD})
    assert shown.status_code == 200, shown.text
    assert shown.json()["sent"] is False
    assert shown.json()["request"]["headers"]["Authorization"] == "[REDACTED]"
    assert httpserver.log == [] and client.get(f"{path}s", headers=acme.headers).json() == []

    def deliveries_metrics() -> list[str]:
        return [line for line in client.get("/metrics").text.splitlines()
                if line.startswith(("leadrelay_deliveries", "leadrelay_leads_received"))]

    metrics = deliveries_metrics()
    sent = client.post(path, headers=acme.headers, json={"sample": True, "send": True})
    assert sent.status_code == 200
    # Then it counts nowhere real leads count: metrics, digest, failed collection
    assert deliveries_metrics() == metrics
    preview = client.get(f"/v1/accounts/{acme.account_id}/digest/preview", headers=acme.headers)
    assert preview.json()["failures"] == 0
    assert sent.json()["outcome"] == "rejected" and sent.json()["trace"]
    assert TOKEN not in sent.text
    assert len(httpserver.log) == 1
    assert client.get("/v1/deliveries/failed", headers=acme.headers).json()["items"] == []
    (kept,) = client.get(f"{path}s", headers=acme.headers).json()
    assert kept["actor"] == "default"  # the key's name

    for body in ({"lead": ["a", "b"]}, {"lead": "x"}, {"lead": None}):
        answer = client.post(path, headers=acme.headers, json=body)
        assert answer.status_code == 422 and error_of(answer)["field"] == "lead", body
    assert len(httpserver.log) == 1


def test_held_deliveries_show_in_the_api_and_can_be_discarded(
    client: TestClient, engine: Leadrelay, acme: Tenant, httpserver: HTTPServer
) -> None:
    made = add_integration(client, acme, httpserver.url_for("/leads"))
    for _ in range(2):
        client.post(f"/v1/forms/{acme.form_key}/leads", json=LEAD)
    client.post(f"/v1/integrations/{made['id']}/deactivate", headers=acme.headers)
    held = client.get("/v1/deliveries", headers=acme.headers, params={"state": "held"})
    assert len(held.json()["items"]) == 2
    no_reason = client.post(f"/v1/integrations/{made['id']}/held/discard",
                            headers=acme.headers, json={"reason": " "})
    assert no_reason.status_code == 422 and error_of(no_reason)["field"] == "reason"
    done = client.post(f"/v1/integrations/{made['id']}/held/discard", headers=acme.headers,
                       json={"reason": "test leads"})
    assert done.json() == {"integration_id": made["id"], "discarded": 2}
    discarded = client.get("/v1/deliveries", headers=acme.headers,
                           params={"state": "discarded"}).json()["items"]
    assert [d["last_reason"] for d in discarded] == ["discarded: test leads"] * 2


def test_history_diff_audit_and_delete(
    client: TestClient, engine: Leadrelay, acme: Tenant, globex: Tenant, httpserver: HTTPServer
) -> None:
    url = httpserver.url_for("/leads")
    made = add_integration(client, acme, url, active=False,
                           config={"url": url, "auth": {"type": "bearer", "token": TOKEN}})
    path = f"/v1/integrations/{made['id']}"
    client.patch(path, headers=acme.headers, json={"config": {
        "url": url, "auth": {"type": "bearer", "token": "new-token"}}})
    history = client.get(f"{path}/history", headers=acme.headers,
                         params={"from": 1, "to": 2}).json()
    assert [r["revision"] for r in history["revisions"]] == [2, 1]
    assert history["revisions"][0]["actor"] == "default"
    assert [c["path"] for c in history["diff"]["changes"]] == ["config.auth.token"]
    assert TOKEN not in str(history) and "new-token" not in str(history)
    missing = client.get(f"{path}/history", headers=acme.headers, params={"from": 1, "to": 7})
    assert missing.status_code == 404 and error_of(missing)["field"] == "to"
    half = client.get(f"{path}/history", headers=acme.headers, params={"from": 1})
    assert half.status_code == 422

    # Another account can neither delete nor change it
    assert client.delete(path, headers=globex.headers).status_code == 404
    assert client.patch(path, headers=globex.headers, json={"name": "x"}).status_code == 404
    deleted = client.delete(path, headers=acme.headers)
    assert deleted.status_code == 200 and deleted.json()["archived_at"] is not None
    assert client.get("/v1/integrations", headers=acme.headers).json() == []
    assert client.get(path, headers=acme.headers).json()["id"] == made["id"]

    audit = client.get(f"/v1/accounts/{acme.account_id}/audit", headers=acme.headers).json()
    actions = [(e["actor"], e["action"]) for e in audit["items"]]
    assert actions[:3] == [("default", "integration.delete"),
                           ("default", "integration.update"),
                           ("default", "integration.create")]
    assert TOKEN not in str(audit)
    keys = client.get(f"/v1/accounts/{acme.account_id}/audit", headers=acme.headers,
                      params={"object_type": "key"}).json()["items"]
    assert [(e["actor"], e["action"]) for e in keys] == [("ops", "key.create")]
    assert "lr_" not in str(keys).replace(keys[0]["after"]["prefix"], "")
    other = client.get(f"/v1/accounts/{acme.account_id}/audit", headers=globex.headers)
    assert other.status_code == 404
    ops_key = engine.keys.create(None, name="night-shift", operator=True).secret
    client.post("/v1/plans", headers=bearer(ops_key),
                json={"name": "solo", "max_active_integrations": 1})
    plans = client.get("/v1/plans/audit", headers=bearer(ops_key)).json()["items"]
    assert (plans[0]["actor"], plans[0]["action"]) == ("night-shift", "plan.create")


def test_deleting_a_form_archives_it_and_its_integrations(
    client: TestClient, acme: Tenant, httpserver: HTTPServer
) -> None:
    made = add_integration(client, acme, httpserver.url_for("/leads"))
    answer = client.delete(f"/v1/forms/{acme.form_id}", headers=acme.headers)
    assert answer.status_code == 200 and answer.json()["active"] is False
    shown = client.get(f"/v1/integrations/{made['id']}", headers=acme.headers).json()
    assert shown["archived_at"] is not None and shown["active"] is False
    refused = client.post(f"/v1/forms/{acme.form_key}/leads", json=LEAD)
    assert refused.status_code >= 400
