"""External systems post with an account key: one lead or a batch, safe to retry."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay

from .conftest import LEAD, Tenant, add_integration, bearer, error_of


def count(engine: Leadrelay, table: str) -> int:
    with engine.ledger.transaction() as conn:
        return int(conn.execute(sa.text(f"select count(*) from {table}")).scalar_one())


def test_a_batch_is_stored_with_its_deliveries_and_answered_in_order(
    client: TestClient, engine: Leadrelay, acme: Tenant, httpserver: HTTPServer
) -> None:
    # Given a form with one integration
    add_integration(client, acme, httpserver.url_for("/leads"))
    leads = [{"fields": {**LEAD, "email": f"lead{i}@example.com"}, "external_id": f"row-{i}"}
             for i in range(3)]

    # When an external system posts a batch
    answer = client.post(f"/v1/forms/{acme.form_id}/leads", headers=acme.headers,
                         json={"leads": leads})

    # Then every lead is stored, source external, each with one queued delivery
    assert answer.status_code == 202, answer.text
    entries = answer.json()["leads"]
    assert [e["external_id"] for e in entries] == ["row-0", "row-1", "row-2"]
    assert all(len(e["deliveries"]) == 1 and e["deliveries"][0]["state"] == "queued"
               for e in entries)
    for entry, sent in zip(entries, leads, strict=True):
        lead = engine.lead(entry["lead_id"])
        assert lead["source"] == "external" and lead["payload"] == sent["fields"]
    assert count(engine, "deliveries") == 3


def test_a_retry_with_the_same_idempotency_key_gets_the_first_answer_and_stores_nothing(
    client: TestClient, engine: Leadrelay, acme: Tenant, httpserver: HTTPServer
) -> None:
    add_integration(client, acme, httpserver.url_for("/leads"))
    headers = {**acme.headers, "Idempotency-Key": "order-42"}
    path = f"/v1/forms/{acme.form_id}/leads"
    first = client.post(path, headers=headers, json={"fields": LEAD, "source": "facebook"})
    assert first.status_code == 202

    again = client.post(path, headers=headers, json={"fields": LEAD, "source": "facebook"})
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(engine, "leads") == 1 and count(engine, "deliveries") == 1
    assert engine.lead(first.json()["lead_id"])["source"] == "facebook"

    # The same key for another post is refused and stores nothing
    other = client.post(path, headers=headers, json={"fields": {**LEAD, "email": "x@y.test"}})
    assert other.status_code == 409
    assert error_of(other)["field"] == "Idempotency-Key"
    assert count(engine, "leads") == 1
    # A key is the account's own: another account may use the same one
    assert client.post(path, headers={**acme.headers, "Idempotency-Key": "order-43"},
                       json={"fields": LEAD}).status_code == 202


def test_an_external_id_already_received_is_not_stored_again(
    client: TestClient, engine: Leadrelay, acme: Tenant
) -> None:
    path = f"/v1/forms/{acme.form_id}/leads"
    first = client.post(path, headers=acme.headers,
                        json={"fields": LEAD, "external_id": "crm-7"})
    assert first.status_code == 202 and first.json()["duplicate"] is False

    again = client.post(path, headers=acme.headers,
                        json={"fields": LEAD, "external_id": "crm-7"})
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["lead_id"] == first.json()["lead_id"]

    # In a batch, only the new ones are stored (and a repeat inside it once)
    batch = client.post(path, headers=acme.headers, json={"leads": [
        {"fields": LEAD, "external_id": "crm-7"},
        {"fields": LEAD, "external_id": "crm-8"},
        {"fields": LEAD, "external_id": "crm-8"},
    ]})
    assert batch.status_code == 202
    assert [e["duplicate"] for e in batch.json()["leads"]] == [True, False, True]
    ids = [e["lead_id"] for e in batch.json()["leads"]]
    assert ids[0] == first.json()["lead_id"] and ids[1] == ids[2]
    assert count(engine, "leads") == 2


def test_external_posts_are_refused_with_nothing_stored(
    client: TestClient, engine: Leadrelay, acme: Tenant, globex: Tenant
) -> None:
    path = f"/v1/forms/{acme.form_id}/leads"
    cases = [
        ("no key", {}, {"fields": LEAD}, 401),
        ("a bad key", bearer("lr_wrong"), {"fields": LEAD}, 401),
        ("another account's key", globex.headers, {"fields": LEAD}, 404),
        ("no fields", acme.headers, {"external_id": "x"}, 422),
        ("fields not an object", acme.headers, {"fields": ["a"]}, 422),
        ("an unknown member", acme.headers, {"fields": LEAD, "colour": "red"}, 422),
        ("an unknown source", acme.headers, {"fields": LEAD, "source": "carrier pigeon"}, 422),
        ("an empty batch", acme.headers, {"leads": []}, 422),
        ("too big a batch", acme.headers, {"leads": [{"fields": LEAD}] * 501}, 422),
        ("a bad lead in a batch", acme.headers,
         {"leads": [{"fields": LEAD}, {"fields": {"": "x"}}]}, 422),
    ]
    for name, headers, body, status in cases:
        answer = client.post(path, headers=headers, json=body)
        assert answer.status_code == status, (name, answer.text)
        assert error_of(answer)["message"], name
    # a bad lead in a batch is named by its place
    answer = client.post(path, headers=acme.headers,
                         json={"leads": [{"fields": LEAD}, {"fields": {"": "x"}}]})
    assert error_of(answer)["field"] == "leads[1].fields"
    answer = client.post(path, content=b"{nope",
                         headers={**acme.headers, "Content-Type": "application/json"})
    assert answer.status_code == 400
    assert count(engine, "leads") == 0
