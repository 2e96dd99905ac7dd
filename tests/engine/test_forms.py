"""A form's intake settings: validated once for the CLI and the API, checked on each lead."""

from __future__ import annotations

import pytest

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.errors import BadInput, NotFound
from leadrelay.engine.forms import (
    check_origins,
    check_required,
    looks_like_public_key,
    origin_allowed,
)


def test_a_form_gets_an_unguessable_public_key_that_rotates(app: Leadrelay) -> None:
    account = app.manage.create_account("Acme", "owner@acme.test")
    one = app.manage.create_form(account.id, "A")
    two = app.manage.create_form(account.id, "B")
    assert looks_like_public_key(one.public_key) and one.public_key != two.public_key
    assert len(one.public_key) >= 32

    rotated = app.manage.rotate_form_key(one.id)
    assert rotated.public_key != one.public_key
    with pytest.raises(NotFound, match="rotated"):
        app.posts.form_by_key(one.public_key)
    assert app.posts.form_by_key(rotated.public_key).id == one.id


def test_settings_are_validated_and_normalised(app: Leadrelay) -> None:
    account = app.manage.create_account("Acme", "owner@acme.test")
    form = app.manage.create_form(
        account.id, "Contact", allowed_origins=["HTTPS://Shop.Example/", "http://127.0.0.1:8080"],
        required_fields=["email", "email"], thank_you_url="https://shop.example/thanks",
    )
    assert form.allowed_origins == ["https://shop.example", "http://127.0.0.1:8080"]
    assert form.required_fields == ["email"]

    for bad, field in [
        ({"allowed_origins": ["shop.example"]}, "allowed_origins"),
        ({"allowed_origins": ["https://shop.example/path"]}, "allowed_origins"),
        ({"allowed_origins": "https://shop.example"}, "allowed_origins"),
        ({"required_fields": [""]}, "required_fields"),
        ({"thank_you_url": "/thanks"}, "thank_you_url"),
        ({"thank_you_url": "javascript:alert(1)"}, "thank_you_url"),
        ({"active": "yes"}, "active"),
        ({"colour": "red"}, "colour"),
    ]:
        with pytest.raises(BadInput) as err:
            app.manage.update_form(form.id, **bad)
        assert err.value.field == field, bad
    # and nothing changed
    again = app.manage.get_form(form.id)
    assert again.allowed_origins == form.allowed_origins and again.active


def test_another_accounts_form_is_not_found_like_a_missing_one(app: Leadrelay) -> None:
    a = app.manage.create_account("A", "a@a.test")
    b = app.manage.create_account("B", "b@b.test")
    form = app.manage.create_form(a.id, "A's")
    with pytest.raises(NotFound) as other:
        app.manage.get_form(form.id, scope=b.id)
    with pytest.raises(NotFound) as missing:
        app.manage.get_form(form.id + 100, scope=b.id)
    assert str(other.value) == f"form {form.id} does not exist"
    assert str(missing.value) == f"form {form.id + 100} does not exist"
    with pytest.raises(NotFound):
        app.manage.rotate_form_key(form.id, scope=b.id)
    assert app.manage.get_form(form.id).public_key == form.public_key


def test_origins_and_required_fields() -> None:
    allowed = check_origins(["https://shop.example"])
    assert origin_allowed(allowed, "https://shop.example")
    assert origin_allowed(allowed, "https://SHOP.example")
    assert not origin_allowed(allowed, "https://evil.example")
    assert not origin_allowed(allowed, "http://shop.example")
    assert not origin_allowed(allowed, "null")
    assert origin_allowed(["*"], "null")
    check_required(["email"], {"email": "a@b.test"})
    for payload in ({}, {"email": ""}, {"email": "  "}, {"email": None}):
        with pytest.raises(BadInput) as err:
            check_required(["email", "name"], payload)
        assert err.value.field == "email"


def test_forms_made_before_the_api_get_a_public_key_when_the_ledger_upgrades(
    database_url: str,
) -> None:
    from datetime import UTC, datetime

    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from leadrelay.engine.ledger import Ledger
    from leadrelay.engine.ledger.db import MIGRATIONS

    # Given a ledger at revision 0002 holding two forms
    ledger = Ledger(database_url, migrate=False)
    if ledger.dialect == "postgresql":  # the session's database may hold a newer schema
        with ledger.engine.begin() as conn:
            conn.execute(sa.text("drop schema public cascade; create schema public"))
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with ledger.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0002")
        now = datetime.now(UTC).replace(tzinfo=None)
        with ledger.engine.begin() as conn:
            conn.execute(sa.text("insert into plans (id, name, max_active_integrations) "
                                 "values (1, 'free', 1)"))
            conn.execute(sa.text("insert into accounts (id, name, owner_email, plan_id, "
                                 "created_at) values (1, 'A', 'a@a.test', 1, :now)"),
                         {"now": now})
            for form_id in (1, 2):
                conn.execute(sa.text("insert into forms (id, account_id, name, created_at) "
                                     "values (:id, 1, 'F', :now)"), {"id": form_id, "now": now})

        # When it upgrades to the newest revision
        ledger.migrate()

        # Then each form has its own key, is active, and allows no origin yet
        with ledger.engine.connect() as conn:
            rows = conn.execute(sa.text("select public_key, active from forms")).all()
        keys = [r.public_key for r in rows]
        assert all(looks_like_public_key(k) for k in keys) and len(set(keys)) == 2
        assert all(r.active for r in rows)
    finally:
        ledger.dispose()
