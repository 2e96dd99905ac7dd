"""The webhook: handshake, signature over the exact bytes, batched changes, duplicates,
and the Graph read in the background turning each notification into a routed lead."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.ledger import FacebookLead, Lead

from .conftest import (
    APP_SECRET,
    FB_FORM_ID,
    FIXTURES,
    LEADGEN_IDS,
    PAGE_ID,
    PAGE_TOKEN,
    VERIFY_TOKEN,
    Graph,
    Setup,
    notification,
    signed,
)

URL = "/v1/facebook/webhook"


def rows(engine: Leadrelay, table: Any) -> list[Any]:
    with engine.ledger.session() as s:
        return list(s.scalars(sa.select(table).order_by(table.id)))


def test_the_handshake_echoes_the_challenge_for_the_right_verify_token(
    client: TestClient, setup: Setup
) -> None:
    # Given the contract's handshake (handshake.txt) with the page's verify token
    contract = (FIXTURES / "handshake.txt").read_text()
    assert "hub.verify_token=my-verify-token" in contract
    # When Meta calls GET on the webhook
    answer = client.get(URL, params={"hub.mode": "subscribe", "hub.challenge": "1158201444",
                                     "hub.verify_token": VERIFY_TOKEN})
    # Then the challenge comes back as the plain body
    assert answer.status_code == 200
    assert answer.text == "1158201444"
    assert answer.headers["content-type"].startswith("text/plain")


def test_a_wrong_verify_token_is_refused(client: TestClient, setup: Setup) -> None:
    for params in ({"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "nope"},
                   {"hub.mode": "subscribe", "hub.challenge": "1"},
                   {"hub.mode": "unsubscribe", "hub.challenge": "1",
                    "hub.verify_token": VERIFY_TOKEN}):
        answer = client.get(URL, params=params)
        assert answer.status_code == 403, params
        assert answer.text != "1"
        assert VERIFY_TOKEN not in answer.text


def test_a_batched_notification_stores_both_leads_then_reads_them_in_the_background(
    client: TestClient, engine: Leadrelay, setup: Setup, graph: Graph
) -> None:
    # Given the contract's notification, two changes, signed over the exact bytes posted
    body = (FIXTURES / "leadgen_notification.json").read_bytes()
    for leadgen_id in LEADGEN_IDS:
        graph.serves(leadgen_id)
    # When Facebook posts it
    answer = client.post(URL, content=body, headers=signed(body))
    # Then both are stored before the 200, and nothing was read from Graph yet
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"leads": 2, "stored": 2, "unroutable": 0, "duplicates": 0,
                             "skipped": 0, "unknown_pages": []}
    assert [r.leadgen_id for r in rows(engine, FacebookLead)] == list(LEADGEN_IDS)
    assert not graph.server.log
    # When the background reads run
    engine.join()
    engine.facebook.read_due()
    # Then each is a lead of the mapped form, source facebook, with the contract's answers
    leads = rows(engine, Lead)
    assert [(lead.form_id, lead.source, lead.external_id) for lead in leads] == [
        (setup.form_id, "facebook", LEADGEN_IDS[0]), (setup.form_id, "facebook", LEADGEN_IDS[1])]
    payload = leads[0].payload
    assert payload["first_name"] == "Amira" and payload["last_name"] == "Haddad"
    assert payload["email"] == "amira.haddad@example.com"
    assert payload["phone"] == "+33612345678"
    assert payload["city"] == "Lyon"
    assert payload["which_product_are_you_interested_in?"] == "Solar panels"
    assert payload["facebook_leadgen_id"] == LEADGEN_IDS[0]
    assert payload["facebook_form_id"] == FB_FORM_ID
    assert payload["facebook_ad_id"] == "23851234567890123"
    assert payload["facebook_page_id"] == PAGE_ID
    # And the Graph read carried the page token (and asked for the lead's fields)
    read = graph.reads(LEADGEN_IDS[0])[0]
    assert read.args["access_token"] == PAGE_TOKEN
    assert "field_data" in read.args["fields"]
    assert [r.state for r in rows(engine, FacebookLead)] == ["stored", "stored"]


def test_a_duplicate_leadgen_id_is_stored_once(
    client: TestClient, engine: Leadrelay, setup: Setup, graph: Graph
) -> None:
    graph.serves(LEADGEN_IDS[0])
    body = notification(LEADGEN_IDS[0])
    # Given a lead notified, read and stored
    assert client.post(URL, content=body, headers=signed(body)).json()["stored"] == 1
    engine.facebook.read_due()
    # When Facebook sends it again, alone and inside a batch naming it twice
    again = client.post(URL, content=body, headers=signed(body))
    twice = notification(LEADGEN_IDS[0], LEADGEN_IDS[0])
    batch = client.post(URL, content=twice, headers=signed(twice))
    # Then it is acknowledged (200: Facebook stops sending) and nothing new is stored
    assert again.status_code == batch.status_code == 200
    assert again.json()["duplicates"] == 1 and again.json()["stored"] == 0
    assert batch.json()["duplicates"] == 2 and batch.json()["stored"] == 0
    engine.facebook.read_due()
    assert len(rows(engine, FacebookLead)) == len(rows(engine, Lead)) == 1
    assert len(graph.reads(LEADGEN_IDS[0])) == 1


def test_a_missing_or_wrong_signature_is_refused_and_nothing_is_stored(
    client: TestClient, engine: Leadrelay, setup: Setup
) -> None:
    body = notification(LEADGEN_IDS[0])
    other = notification(LEADGEN_IDS[1])
    for headers in (
        {"Content-Type": "application/json"},                     # no signature
        signed(body, "another-app-secret"),                        # another app's secret
        signed(other),                                             # signs other bytes
        {"X-Hub-Signature-256": signed(body)["X-Hub-Signature-256"][7:]},  # no sha256=
        {"X-Hub-Signature-256": "sha256=zz"},
    ):
        answer = client.post(URL, content=body, headers=headers)
        assert answer.status_code == 403, (headers, answer.text)
        assert answer.json()["error"]["field"] == "X-Hub-Signature-256"
        assert APP_SECRET not in answer.text
    # One byte changed after signing (a re-encoded body) is refused too
    reencoded = json.dumps(json.loads(body), indent=1).encode()
    assert client.post(URL, content=reencoded, headers=signed(body)).status_code == 403
    assert rows(engine, FacebookLead) == []


def test_bad_webhook_bodies_are_refused_naming_what_is_wrong(
    client: TestClient, engine: Leadrelay, setup: Setup
) -> None:
    cases = {
        b"not json at all": (400, "body"),
        json.dumps({"object": "user", "entry": []}).encode(): (422, "object"),
        json.dumps({"object": "page", "entry": [{"id": PAGE_ID, "changes": [
            {"field": "leadgen", "value": {"form_id": FB_FORM_ID}}]}]}).encode():
            (422, "entry[0].changes[0].value.leadgen_id"),
        notification(LEADGEN_IDS[0], page_id="999999"): (404, "entry[0].id"),
    }
    for body, (status, field) in cases.items():
        answer = client.post(URL, content=body, headers=signed(body))
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["error"]["field"] == field, answer.text
    assert rows(engine, FacebookLead) == []


def test_a_lead_of_an_unmapped_facebook_form_is_stored_unroutable_and_routed_once_mapped(
    client: TestClient, engine: Leadrelay, setup: Setup, graph: Graph
) -> None:
    # Given a notification for a Facebook form the page does not map
    graph.serves(LEADGEN_IDS[0])
    body = notification(LEADGEN_IDS[0], form_id="777")
    answer = client.post(URL, content=body, headers=signed(body))
    # Then it is kept, reported as unroutable, not read and not dropped
    assert answer.status_code == 200
    assert answer.json()["unroutable"] == 1
    listed = client.get("/v1/facebook/leads", params={"state": "unroutable"},
                        headers=setup.headers).json()
    assert [r["leadgen_id"] for r in listed] == [LEADGEN_IDS[0]]
    assert "Facebook form 777" in listed[0]["reason"]
    engine.facebook.read_due()
    assert rows(engine, Lead) == [] and not graph.reads(LEADGEN_IDS[0])
    # When the operator maps that form
    patched = client.patch(f"/v1/facebook/pages/{setup.connection_id}", headers=setup.headers,
                           json={"forms": {FB_FORM_ID: setup.form_id, "777": setup.form_id}})
    assert patched.status_code == 200, patched.text
    engine.facebook.read_due()
    # Then the waiting lead is read and stored
    assert [lead.external_id for lead in rows(engine, Lead)] == [LEADGEN_IDS[0]]


def test_changes_of_other_fields_are_skipped(
    client: TestClient, engine: Leadrelay, setup: Setup
) -> None:
    body = json.dumps({"object": "page", "entry": [{"id": PAGE_ID, "time": 1, "changes": [
        {"field": "feed", "value": {"item": "status"}}]}]}).encode()
    answer = client.post(URL, content=body, headers=signed(body))
    assert answer.status_code == 200
    assert answer.json()["skipped"] == 1 and answer.json()["stored"] == 0


def test_a_lead_for_a_form_deleted_since_it_was_mapped_is_unroutable_not_lost(
    client: TestClient, engine: Leadrelay, setup: Setup, graph: Graph
) -> None:
    # Given the mapped form deleted
    graph.serves(LEADGEN_IDS[0])
    engine.manage.delete_form(setup.form_id)
    body = notification(LEADGEN_IDS[0])
    assert client.post(URL, content=body, headers=signed(body)).status_code == 200
    # When its read comes
    [result] = engine.facebook.read_due()
    # Then the lead is kept unroutable with the reason, and no lead goes to the deleted form
    assert result.state == "unroutable" and "deleted since" in (result.reason or "")
    assert rows(engine, Lead) == []
    # and that form cannot be mapped again
    refused = client.patch(f"/v1/facebook/pages/{setup.connection_id}", headers=setup.headers,
                           json={"forms": {"999": setup.form_id}})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "forms.999"
