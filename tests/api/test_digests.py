"""The digest routes: an account sees its own digest, an operator any; bad settings refused."""

from __future__ import annotations

from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock

from .conftest import LEAD, Tenant, add_integration, error_of


def fail_one(client: TestClient, engine: Leadrelay, tenant: Tenant, url: str) -> None:
    add_integration(client, tenant, url, retry={"max_attempts": 1})
    posted = client.post(f"/v1/forms/{tenant.form_key}/leads", json=LEAD,
                         headers={"Origin": "https://acme.example"})
    assert posted.status_code in (201, 202), posted.text
    engine.deliver_due()


def test_an_account_previews_its_own_digest_and_an_operator_any(
    client: TestClient, engine: Leadrelay, acme: Tenant, globex: Tenant,
    operator: dict[str, str], httpserver: HTTPServer,
) -> None:
    # Given one failed delivery of Acme in the current window
    httpserver.expect_request("/crm").respond_with_data("no", status=400)
    fail_one(client, engine, acme, httpserver.url_for("/crm"))

    # When Acme previews its digest
    answer = client.get(f"/v1/accounts/{acme.account_id}/digest/preview", headers=acme.headers)

    # Then it is what `leadrelay digest --preview --json` shows, and nothing was recorded
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body == engine.digests.preview(acme.account_id)[0].as_dict()
    assert body["failures"] == 1 and body["recipient"] == "owner@acme.test"
    assert body["subject"].startswith("leadrelay: 1 failed delivery for Acme")
    assert body["replay_api"]["since"] == body["window_start"]
    assert engine.digests.history() == []
    # and another account's digest is not found; an operator's key sees any
    other = client.get(f"/v1/accounts/{acme.account_id}/digest/preview", headers=globex.headers)
    assert other.status_code == 404
    assert error_of(other)["message"] == f"account {acme.account_id} does not exist"
    assert client.get(f"/v1/accounts/{acme.account_id}/digest/preview",
                      headers=operator).json()["failures"] == 1
    empty = client.get(f"/v1/accounts/{globex.account_id}/digest/preview", headers=operator)
    assert empty.json()["failures"] == 0 and empty.json()["subject"] is None
    assert client.get(f"/v1/accounts/{acme.account_id}/digests",
                      headers=acme.headers).json() == []


def test_digest_settings_are_checked_and_a_refusal_changes_nothing(
    client: TestClient, acme: Tenant, globex: Tenant
) -> None:
    url = f"/v1/accounts/{acme.account_id}/digest"
    for body, field in [({"owner_email": "not an address"}, "owner_email"),
                        ({"owner_email": "a@b.test, c@d.test"}, "owner_email"),
                        ({"digest_hours": 0}, "digest_hours"),
                        ({"digest_hours": -6}, "digest_hours")]:
        answer = client.patch(url, json=body, headers=acme.headers)
        assert 400 <= answer.status_code < 500, answer.text
        assert error_of(answer)["field"] == field
    assert client.patch(url, json={"digest_hours": 2}, headers=globex.headers).status_code == 404

    changed = client.patch(url, json={"owner_email": "ops@acme.test", "digest_hours": 12},
                           headers=acme.headers)
    assert changed.json() == {"account_id": acme.account_id, "owner_email": "ops@acme.test",
                              "digest_hours": 12}
    account = client.get(f"/v1/accounts/{acme.account_id}", headers=acme.headers).json()
    assert account["owner_email"] == "ops@acme.test"


def test_the_replay_call_a_digest_shows_replays_exactly_its_deliveries(
    client: TestClient, engine: Leadrelay, acme: Tenant, globex: Tenant, clock: FakeClock,
    httpserver: HTTPServer,
) -> None:
    # Given a failure of Acme in the window that closed at 12:00, two in the current one
    # (12:00 onward), and one of Globex in the current one
    httpserver.expect_request("/crm").respond_with_data("no", status=400)
    add_integration(client, acme, httpserver.url_for("/crm"), retry={"max_attempts": 1})
    add_integration(client, globex, httpserver.url_for("/crm"), retry={"max_attempts": 1})

    def fail(tenant: Tenant) -> int:
        origin = {"Origin": "https://acme.example"} if tenant is acme else {}
        posted = client.post(f"/v1/forms/{tenant.form_key}/leads", json=LEAD, headers=origin)
        assert posted.status_code in (201, 202), posted.text
        engine.deliver_due()
        return int(posted.json()["deliveries"][0]["delivery_id"])

    earlier = fail(acme)
    clock.advance(hours=4)  # 13:00
    listed = {fail(acme), fail(acme)}
    elsewhere = fail(globex)

    # When Acme runs the API call its digest preview shows, with its own key
    preview = client.get(f"/v1/accounts/{acme.account_id}/digest/preview",
                         headers=acme.headers).json()
    assert preview["failures"] == 2
    done = client.post("/v1/replays", headers=acme.headers, json=preview["replay_api"])

    # Then exactly the two deliveries of the digest are queued again
    assert done.status_code == 200, done.text
    assert done.json()["count"] == 2
    states = {d: engine.inspect(d)["delivery"]["state"] for d in (earlier, *listed, elsewhere)}
    assert states == {earlier: "not_integrated", **dict.fromkeys(listed, "pending"),
                      elsewhere: "not_integrated"}
