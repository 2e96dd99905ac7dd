"""What the browser embed relies on from the API: its script, a form's page settings, the
public answer to a page's post, idempotent page posts, and the status URL — which shows
less than ``GET /v1/deliveries/{id}``."""

from __future__ import annotations

import json

import sqlalchemy as sa
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.lead_status import PUBLIC_KEYS

from .conftest import LEAD, Tenant, add_integration, error_of

ORIGIN = {"Origin": "https://acme.example"}


def leads(engine: Leadrelay) -> int:
    with engine.ledger.transaction() as conn:
        return int(conn.execute(sa.text("select count(*) from leads")).scalar_one())


def test_the_script_is_served_cacheable_with_an_etag(client: TestClient) -> None:
    # When a page loads the embed
    first = client.get("/v1/embed.js")

    # Then it is JavaScript a browser and a CDN may keep, and revalidate by ETag
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/javascript")
    assert "max-age=3600" in first.headers["cache-control"]
    assert "window.leadrelay" in first.text
    again = client.get("/v1/embed.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_page_settings_give_a_timeout_a_little_above_the_longest_realtime_budget(
    client: TestClient, acme: Tenant, httpserver: HTTPServer
) -> None:
    # Given two real-time integrations (2 s and 5 s budgets) and an inactive 20 s one
    url = httpserver.url_for("/leads")
    add_integration(client, acme, url, realtime=True, realtime_budget=2.0)
    add_integration(client, acme, url, realtime=True, realtime_budget=5.0)
    add_integration(client, acme, url, realtime=True, realtime_budget=20.0, active=False)

    # When the embed reads the form's settings from an allowed page
    answer = client.get(f"/v1/forms/{acme.form_key}/embed", headers=ORIGIN)

    # Then it waits 3 s beyond the longest active budget
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["longest_realtime_budget"], body["client_timeout"]) == (5.0, 8.0)
    assert body["thank_you_url"] is None


def test_page_settings_refusals_are_readable_by_the_page_that_is_refused(
    client: TestClient, engine: Leadrelay, acme: Tenant
) -> None:
    # When a page of another origin asks, then a page with a rotated key
    refused = client.get(f"/v1/forms/{acme.form_key}/embed",
                         headers={"Origin": "https://evil.example"})
    old_key = acme.form_key
    engine.manage.rotate_form_key(acme.form_id)
    rotated = client.get(f"/v1/forms/{old_key}/embed", headers=ORIGIN)

    # Then both are refused with a message the page can read (and show)
    assert refused.status_code == 403
    assert error_of(refused)["field"] == "Origin"
    assert rotated.status_code == 404
    assert "rotated" in error_of(rotated)["message"]
    assert refused.headers["access-control-allow-origin"] == "*"
    assert rotated.headers["access-control-allow-origin"] == "*"


def test_the_public_answer_and_status_url_show_states_but_no_request_answer_or_secret(
    client: TestClient, engine: Leadrelay, acme: Tenant, httpserver: HTTPServer
) -> None:
    # Given a real-time integration whose config holds a secret header
    httpserver.expect_request("/leads").respond_with_json({"id": "crm-7"})
    add_integration(client, acme, httpserver.url_for("/leads"), realtime=True,
                    config={"url": httpserver.url_for("/leads"),
                            "headers": {"X-Api-Key": "s3cret-crm-key"}},
                    expectations={"rules": [{"kind": "status", "in": [200]}],
                                  "reference": {"json": "id"}})

    # When a page posts a lead
    answer = client.post(f"/v1/forms/{acme.form_key}/leads", json=LEAD, headers=ORIGIN)

    # Then the answer names each integration and its result, and the status URL
    assert answer.status_code == 201, answer.text
    body = answer.json()
    [entry] = body["deliveries"]
    assert set(entry) == set(PUBLIC_KEYS)
    assert (entry["integration"], entry["connector"], entry["state"], entry["crm_reference"],
            entry["decided_by"], entry["attempts"]) == (
        "CRM", "http_post", "delivered", "crm-7", "status in [200]", 1)
    assert body["status_url"] == f"http://testserver/v1/lead-status/{body['status_token']}"
    # and the status URL gives the same view, readable by the form's pages only
    status = client.get(body["status_url"], headers=ORIGIN)
    assert status.status_code == 200
    assert status.headers["access-control-allow-origin"] == "https://acme.example"
    view = status.json()
    assert view["settled"] is True and view["lead_id"] == body["lead_id"]
    assert view["deliveries"] == [entry]
    other = client.get(body["status_url"], headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    # while neither shows the lead's fields, the request, the CRM's answer or the secret,
    # which the integration object of an account key does
    shown = json.dumps([body, view])
    for private in ("jane.doe@example.com", "s3cret-crm-key", "/leads", "X-Api-Key"):
        assert private not in shown.replace("/v1/lead-status/", "")
    full = client.get(f"/v1/deliveries/{entry['delivery_id']}", headers=acme.headers).json()
    assert "jane.doe@example.com" in json.dumps(full)


def test_a_status_token_opens_its_own_lead_only(
    client: TestClient, acme: Tenant
) -> None:
    # Given two leads
    one = client.post(f"/v1/forms/{acme.form_key}/leads", json=LEAD).json()
    two = client.post(f"/v1/forms/{acme.form_key}/leads", json=LEAD).json()
    assert one["status_token"] != two["status_token"]

    # When a token is altered to name the other lead, or made up
    _, mac = one["status_token"].split(".")
    forged = [f"{two['lead_id']}.{mac}", "1.AAAA", "x", "99999999999999999999.abc"]

    # Then it opens nothing: the same 404 as a lead that does not exist
    for token in forged:
        answer = client.get(f"/v1/lead-status/{token}")
        assert answer.status_code == 404, token
        assert error_of(answer)["field"] == "token"


def test_a_page_post_sent_again_with_its_key_stores_one_lead(
    client: TestClient, engine: Leadrelay, acme: Tenant, httpserver: HTTPServer
) -> None:
    # Given a form with a background integration
    add_integration(client, acme, httpserver.url_for("/leads"))
    key = {"Idempotency-Key": "3f2b7c1e-0d4a-4c59-9a51-7d0f6e2b8a10", **ORIGIN}

    # When the embed sends the same post twice with its key (the first answer was lost)
    first = client.post(f"/v1/forms/{acme.form_key}/leads", json=LEAD, headers=key)
    again = client.post(f"/v1/forms/{acme.form_key}/leads", json=LEAD, headers=key)

    # Then one lead is stored and both answers name it
    assert (first.status_code, again.status_code) == (202, 202), again.text
    assert first.json()["lead_id"] == again.json()["lead_id"]
    assert first.json()["deliveries"] == again.json()["deliveries"]
    assert leads(engine) == 1
    # a different lead under the same key is refused, and a malformed key too
    other = client.post(f"/v1/forms/{acme.form_key}/leads", json={**LEAD, "phone": "1"},
                        headers=key)
    assert other.status_code == 409
    bad = client.post(f"/v1/forms/{acme.form_key}/leads", json=LEAD,
                      headers={"Idempotency-Key": "short"})
    assert bad.status_code == 422 and error_of(bad)["field"] == "Idempotency-Key"
    assert leads(engine) == 1


def test_the_preflight_lets_the_embed_send_its_idempotency_key(
    client: TestClient, acme: Tenant
) -> None:
    answer = client.options(f"/v1/forms/{acme.form_key}/leads", headers={
        **ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, idempotency-key"})
    assert answer.status_code == 204
    assert "Idempotency-Key" in answer.headers["access-control-allow-headers"]


def test_a_rejections_reason_quotes_the_crm_but_never_a_secret(
    client: TestClient, acme: Tenant, httpserver: HTTPServer
) -> None:
    # Given a real-time CRM that refuses the lead, echoing the secret header it was sent
    httpserver.expect_request("/leads").respond_with_json(
        {"error": "token s3cret-crm-key may not create leads"}, status=400)
    add_integration(client, acme, httpserver.url_for("/leads"), realtime=True,
                    config={"url": httpserver.url_for("/leads"),
                            "secret_headers": {"X-Api-Key": "s3cret-crm-key"}})

    # When a page posts a lead
    body = client.post(f"/v1/forms/{acme.form_key}/leads", json=LEAD, headers=ORIGIN).json()

    # Then the page sees the CRM's words for the refusal, with the secret redacted
    [entry] = body["deliveries"]
    assert entry["outcome"] == "rejected"
    assert "may not create leads" in entry["reason"]
    view = client.get(body["status_url"]).json()
    assert "s3cret-crm-key" not in json.dumps([body, view])
    assert "[REDACTED]" in entry["reason"]


def test_a_forms_thank_you_message_is_set_checked_and_given_to_the_embed(
    client: TestClient, acme: Tenant
) -> None:
    # When the form gets a thank-you message, then a message over the limit
    set_ = client.patch(f"/v1/forms/{acme.form_id}", headers=acme.headers,
                        json={"thank_you_message": "Thanks! We call back within a day."})
    bad = client.patch(f"/v1/forms/{acme.form_id}", headers=acme.headers,
                       json={"thank_you_message": "x" * 501})

    # Then the first is kept and given to the embed, the second refused naming the field
    assert set_.status_code == 200 and set_.json()["thank_you_message"] == (
        "Thanks! We call back within a day.")
    assert bad.status_code == 422 and error_of(bad)["field"] == "thank_you_message"
    settings = client.get(f"/v1/forms/{acme.form_key}/embed", headers=ORIGIN).json()
    assert settings["thank_you_message"] == "Thanks! We call back within a day."


def test_a_status_token_opens_its_lead_for_30_days_then_answers_404(
    client: TestClient, engine: Leadrelay, acme: Tenant, clock: FakeClock
) -> None:
    # Given a lead posted by a page, and its status URL
    posted = client.post(f"/v1/forms/{acme.form_key}/leads", json=LEAD).json()
    url = f"/v1/lead-status/{posted['status_token']}"
    # When it is opened within 30 days, it shows the lead's deliveries
    clock.advance(days=29, hours=23)
    assert client.get(url).status_code == 200
    # When it is opened later, it answers 404 saying the token expired
    clock.advance(hours=2)
    answer = client.get(url)
    assert answer.status_code == 404
    assert error_of(answer)["field"] == "token"
    assert "expired" in error_of(answer)["message"]


def test_a_real_time_failure_is_answered_as_the_status_url_then_shows_it(
    client: TestClient, acme: Tenant, httpserver: HTTPServer
) -> None:
    # Given a real-time integration whose CRM refuses the lead
    httpserver.expect_request("/leads").respond_with_json({"error": "down"}, status=503)
    add_integration(client, acme, httpserver.url_for("/leads"), realtime=True)

    # When a page posts a lead
    answer = client.post(f"/v1/forms/{acme.form_key}/leads", json=LEAD, headers=ORIGIN)

    # Then the answer says it will be retried, with the rule that decided and one attempt
    assert answer.status_code == 201, answer.text
    [entry] = answer.json()["deliveries"]
    assert (entry["state"], entry["attempts"]) == ("retrying", 1)
    assert entry["decided_by"] and entry["reason"]
    # exactly as the status URL, read from the ledger, shows it
    view = client.get(answer.json()["status_url"], headers=ORIGIN).json()
    assert view["deliveries"] == [entry]
