"""API keys: shown once, stored as a hash, listed without the secret, revocable."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from leadrelay.engine.apikeys import hash_key
from leadrelay.engine.app import Leadrelay
from leadrelay.engine.errors import BadInput, NotFound


def test_a_key_is_stored_as_its_hash_and_recognised_until_revoked(app: Leadrelay) -> None:
    # Given an account and a key made for it
    account = app.manage.create_account("Acme", "owner@acme.test")
    new = app.keys.create(account.id, name="zapier")

    # Then the ledger holds its hash, never the key
    with app.ledger.transaction() as conn:
        stored = conn.execute(sa.text("select key_hash, prefix from api_keys")).one()
    assert stored.key_hash == hash_key(new.secret) and new.secret not in stored.key_hash
    assert new.secret.startswith(stored.prefix) and len(stored.prefix) < len(new.secret) // 3
    # and a listing shows the prefix, not the secret
    listed = app.keys.keys(account.id)
    assert [k["name"] for k in listed] == ["zapier"]
    assert new.secret not in repr(listed)

    # When it is presented, it stands for its account
    principal = app.keys.authenticate(new.secret)
    assert principal is not None and principal.account_id == account.id
    assert not principal.operator and principal.scope() == account.id
    # and a wrong key stands for nobody
    assert app.keys.authenticate(new.secret + "x") is None
    assert app.keys.authenticate("Bearer " + new.secret) is None

    # When it is revoked, it stops working at once
    app.keys.revoke(new.id)
    assert app.keys.authenticate(new.secret) is None
    assert app.keys.keys(account.id)[0]["revoked_at"] is not None


def test_an_operator_key_belongs_to_no_account(app: Leadrelay) -> None:
    new = app.keys.create(None, name="ops", operator=True)
    principal = app.keys.authenticate(new.secret)
    assert principal is not None and principal.operator and principal.scope() is None
    assert [k["id"] for k in app.keys.keys(operators=True)] == [new.id]


def test_bad_key_requests_name_the_field_and_change_nothing(app: Leadrelay) -> None:
    account = app.manage.create_account("Acme", "owner@acme.test")
    with pytest.raises(NotFound, match="account 999"):
        app.keys.create(999)
    with pytest.raises(BadInput) as err:
        app.keys.create(account.id, name="")
    assert err.value.field == "name"
    with pytest.raises(BadInput, match="operator key belongs to no account"):
        app.keys.create(account.id, operator=True)
    # Revoking another account's key is refused like a missing one
    other = app.manage.create_account("Other", "owner@other.test")
    key = app.keys.create(other.id)
    with pytest.raises(NotFound, match=f"key {key.id} does not exist"):
        app.keys.revoke(key.id, account_id=account.id)
    assert app.keys.authenticate(key.secret) is not None
    assert len(app.keys.keys()) == 1
