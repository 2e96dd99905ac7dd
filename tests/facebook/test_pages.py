"""Connecting a page through the API: secrets sealed and never shown, forms and fields
checked, bad input refused naming the field with nothing changed."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.ledger import FacebookPage
from leadrelay.engine.secrets import MASK

from .conftest import APP_SECRET, FB_FORM_ID, PAGE_ID, PAGE_TOKEN, VERIFY_TOKEN, Setup

PAGES = "/v1/facebook/pages"


def connection(**changes: Any) -> dict[str, Any]:
    return {"page_id": "200000000000001", "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN, "page_access_token": PAGE_TOKEN, **changes}


def stored_pages(engine: Leadrelay) -> list[tuple[Any, ...]]:
    with engine.ledger.transaction() as conn:
        return [tuple(r) for r in conn.execute(sa.select(FacebookPage.__table__))]


def test_a_connection_is_made_with_its_secrets_sealed_and_never_shown(
    client: TestClient, engine: Leadrelay, setup: Setup
) -> None:
    made = client.post(PAGES, headers=setup.headers, json=connection(
        name="Solar page", forms={"555": setup.form_id},
        field_map={"city": "town", "internal_note": None}))
    assert made.status_code == 201, made.text
    page = made.json()
    assert page["app_secret"] == page["verify_token"] == page["page_access_token"] == MASK
    assert page["forms"] == {"555": setup.form_id}
    assert page["fields_in_effect"]["full_name"] == ["first_name", "last_name"]
    assert page["fields_in_effect"]["city"] == "town"
    assert page["webhook_url"].endswith("/v1/facebook/webhook")
    shown = client.get(f"{PAGES}/{page['id']}", headers=setup.headers).text
    listed = client.get(PAGES, headers=setup.headers).text
    at_rest = str(stored_pages(engine))
    for secret in (APP_SECRET, VERIFY_TOKEN, PAGE_TOKEN):
        assert secret not in made.text + shown + listed + at_rest


def test_bad_connections_are_refused_naming_the_field_and_nothing_changes(
    client: TestClient, engine: Leadrelay, setup: Setup
) -> None:
    other = engine.manage.create_account("Globex", "owner@globex.test", plan="growth")
    their_form = engine.manage.create_form(other.id, "Theirs").id
    before = stored_pages(engine)
    cases = [
        (connection(page_id="my-page"), 422, "page_id"),
        (connection(app_secret=""), 422, "app_secret"),
        (connection(page_access_token=" padded "), 422, "page_access_token"),
        (connection(forms={"555": 999_999}), 404, "forms.555"),
        (connection(forms={"555": their_form}), 404, "forms.555"),
        (connection(forms={"abc": setup.form_id}), 422, "forms.abc"),
        (connection(field_map={"city": "the town"}), 422, "field_map.city"),
        (connection(field_map={"city": "facebook_ad_id"}), 422, "field_map.city"),
        (connection(field_map={"full_name": ["first_name"]}), 422, "field_map.full_name"),
        (connection(field_map={"a": "email", "b": "email"}), 422, "field_map"),
        (connection(retry={"max_attempts": 0}), 422, "retry.max_attempts"),
        (connection(page_id=PAGE_ID), 409, "page_id"),  # connected already
        (connection(colour="blue"), 422, "colour"),
    ]
    for body, status, field in cases:
        answer = client.post(PAGES, headers=setup.headers, json=body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["error"]["field"] == field, answer.text
        assert APP_SECRET not in answer.text and PAGE_TOKEN not in answer.text
    patched = client.patch(f"{PAGES}/{setup.connection_id}", headers=setup.headers,
                           json={"field_map": {"email": "e mail"}})
    assert patched.status_code == 422
    assert stored_pages(engine) == before


def test_a_new_page_token_replaces_the_old_one_and_keeps_the_others(
    client: TestClient, engine: Leadrelay, setup: Setup
) -> None:
    answer = client.patch(f"{PAGES}/{setup.connection_id}", headers=setup.headers,
                          json={"page_access_token": "EAAG-renewed"})
    assert answer.status_code == 200, answer.text
    secrets = engine.facebook.pages.secrets(engine.facebook.pages.get(setup.connection_id))
    assert secrets == {"app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN,
                       "page_access_token": "EAAG-renewed"}
    assert answer.json()["forms"] == {FB_FORM_ID: setup.form_id}


def test_connecting_and_changing_a_page_is_in_the_audit_trail_without_its_secrets(
    client: TestClient, engine: Leadrelay, setup: Setup
) -> None:
    from leadrelay.engine.audit import events

    made = client.post(PAGES, headers=setup.headers, json=connection()).json()
    client.patch(f"{PAGES}/{made['id']}", headers=setup.headers,
                 json={"page_access_token": "EAAG-renewed-secret"})
    trail, _ = events(engine.ledger, setup.account_id, object_type="facebook_page",
                      object_id=made["id"])
    assert [e["action"] for e in trail] == ["facebook_page.update", "facebook_page.create"]
    assert trail[0]["after"]["secrets_changed"] == ["page_access_token"]
    assert trail[0]["actor"] == "api"
    for secret in (APP_SECRET, VERIFY_TOKEN, PAGE_TOKEN, "EAAG-renewed-secret"):
        assert secret not in str(trail)
