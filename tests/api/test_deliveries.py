"""Reading deliveries: the lead, the integration object, pages, the failed collection, replays."""

from __future__ import annotations

from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay

from .conftest import LEAD, Tenant, add_integration, error_of

ONE_TRY = {"max_attempts": 1}


def post(client: TestClient, tenant: Tenant, n: int = 1) -> list[dict[str, object]]:
    out = []
    for i in range(n):
        answer = client.post(f"/v1/forms/{tenant.form_key}/leads",
                             json={**LEAD, "email": f"l{i}@example.com"})
        assert answer.status_code == 202, answer.text
        out.append(answer.json())
    return out


def test_a_delivery_answers_the_same_object_as_leadrelay_inspect(
    client: TestClient, engine: Leadrelay, acme: Tenant, httpserver: HTTPServer
) -> None:
    # Given a delivery that was attempted against a CRM holding a secret
    httpserver.expect_request("/leads").respond_with_json({"id": "crm-1"})
    url = httpserver.url_for("/leads")
    add_integration(client, acme, url,
                    config={"url": url, "secret_headers": {"X-Api-Key": "s3cret"}})
    [posted] = post(client, acme)
    engine.deliver_due()
    delivery_id = posted["deliveries"][0]["delivery_id"]  # type: ignore[index]

    # When it is read through the API
    answer = client.get(f"/v1/deliveries/{delivery_id}", headers=acme.headers)

    # Then it is the engine's integration object (what `leadrelay inspect` prints)
    assert answer.status_code == 200
    assert answer.json() == engine.inspect(delivery_id)
    assert answer.json()["delivery"]["state"] == "delivered"
    assert answer.json()["attempts"][0]["exchanges"]
    assert "s3cret" not in answer.text

    # and the lead shows every delivery's state
    lead = client.get(f"/v1/leads/{posted['lead_id']}", headers=acme.headers).json()
    assert [d["state"] for d in lead["deliveries"]] == ["delivered"]
    assert lead["payload"]["email"] == "l0@example.com"


def test_deliveries_come_a_page_at_a_time_newest_first(
    client: TestClient, engine: Leadrelay, acme: Tenant, globex: Tenant,
    httpserver: HTTPServer,
) -> None:
    add_integration(client, acme, httpserver.url_for("/leads"))
    add_integration(client, globex, httpserver.url_for("/leads"))
    post(client, acme, 5)
    post(client, globex, 2)
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/deliveries", headers=acme.headers, params=params).json()
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    mine = [d["id"] for d in engine.deliveries() if d["form_id"] == acme.form_id]
    assert seen == mine and len(seen) == 5  # every one of A's, none of B's, newest first
    assert seen == sorted(seen, reverse=True)

    bad = client.get("/v1/deliveries", headers=acme.headers, params={"cursor": "abc"})
    assert bad.status_code == 422 and error_of(bad)["field"] == "cursor"
    bad = client.get("/v1/deliveries", headers=acme.headers, params={"state": "lost"})
    assert bad.status_code == 422 and error_of(bad)["field"] == "state"


def test_the_failed_collection_is_replayed_with_a_dry_run_first(
    client: TestClient, engine: Leadrelay, acme: Tenant, httpserver: HTTPServer
) -> None:
    # Given a CRM that refuses, and deliveries of one try that failed
    httpserver.expect_request("/leads").respond_with_data("no", status=400)
    add_integration(client, acme, httpserver.url_for("/leads"), retry=ONE_TRY)
    post(client, acme, 2)
    engine.deliver_due()
    failed = client.get("/v1/deliveries/failed", headers=acme.headers).json()["items"]
    assert len(failed) == 2 and {d["state"] for d in failed} == {"not_integrated"}

    # A dry run says what would be sent, and sends nothing
    dry = client.post("/v1/replays", headers=acme.headers, json={"dry_run": True})
    assert dry.status_code == 200
    assert dry.json()["count"] == 2 and dry.json()["previews"][0]["request"]["method"] == "POST"
    assert len(client.get("/v1/deliveries/failed", headers=acme.headers).json()["items"]) == 2

    # A replay puts them back in the queue
    done = client.post("/v1/replays", headers=acme.headers, json={"limit": 1})
    assert done.status_code == 200 and done.json()["count"] == 1
    states = sorted(d["state"] for d in engine.deliveries())
    assert states == ["not_integrated", "pending"]
