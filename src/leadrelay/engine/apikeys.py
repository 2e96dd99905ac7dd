"""API keys: bearer keys of the HTTP API, stored as hashes, shown once, revocable.

An *account key* acts for one account and sees only that account's objects. An
*operator key* belongs to no account and administers accounts and plans. A key is
256 random bits, so its SHA-256 is all the ledger needs to recognise it: no slow
password hash, and a lookup by hash on every request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select

from . import audit
from .audit import CLI_ACTOR
from .clock import Clock
from .errors import BadInput, NotFound
from .ledger import Account, Ledger
from .ledger.models import ApiKey

#: Every key starts so, which secret scanners can look for.
KEY_PREFIX = "lr_"
#: Characters of a key kept (in clear) to tell keys apart in listings.
SHOWN = 10


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: an account, or an operator (``account_id`` ``None``)."""

    key_id: int
    account_id: int | None
    operator: bool
    #: The key's name: the actor of the changes made with it (audit trail, history).
    name: str = "api"

    def scope(self) -> int | None:
        """The account whose objects this principal may see; ``None``: all (operators)."""
        return None if self.operator else self.account_id


@dataclass(frozen=True)
class NewKey:
    """A key just created: the secret is here once, and nowhere else ever again."""

    id: int
    secret: str
    description: dict[str, Any]


def hash_key(secret: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeys:
    """Creating, listing, revoking and recognising API keys."""

    def __init__(self, ledger: Ledger, clock: Clock) -> None:
        self.ledger, self.clock = ledger, clock

    def create(
        self, account_id: int | None, *, name: str = "default", operator: bool = False,
        actor: str = CLI_ACTOR,
    ) -> NewKey:
        """A new key for ``account_id`` (or an operator key with ``operator=True``); the
        change is in the audit trail under ``actor``."""
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise BadInput("name: 1 to 200 characters", field="name")
        if operator and account_id is not None:
            raise BadInput("account_id: an operator key belongs to no account",
                           field="account_id")
        if not operator and account_id is None:
            raise BadInput("account_id: required for an account key", field="account_id")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.ledger.session() as s:
            if account_id is not None and s.get(Account, account_id) is None:
                raise NotFound(f"account {account_id} does not exist", field="account_id")
            row = ApiKey(account_id=account_id, operator=operator, name=name.strip(),
                         key_hash=hash_key(secret), prefix=secret[:SHOWN],
                         created_at=self.clock.now())
            s.add(row)
            s.flush()
            shown = describe_key(row)
            audit.record(s, actor=actor, action="key.create", object_type="key",
                         object_id=row.id, account_id=account_id, at=self.clock.now(),
                         after=shown)
            return NewKey(row.id, secret, shown)

    def keys(
        self, account_id: int | None = None, *, operators: bool = False
    ) -> list[dict[str, Any]]:
        """Keys (never their secrets): of one account, of all accounts, or operator keys."""
        with self.ledger.session() as s:
            q = select(ApiKey).order_by(ApiKey.id)
            if operators:
                q = q.where(ApiKey.operator.is_(True))
            elif account_id is not None:
                q = q.where(ApiKey.account_id == account_id)
            return [describe_key(k) for k in s.scalars(q)]

    def revoke(self, key_id: int, *, account_id: int | None = None,
               actor: str = CLI_ACTOR) -> dict[str, Any]:
        """Revoke a key (of ``account_id`` when given): it stops working at once."""
        with self.ledger.session() as s:
            row = s.get(ApiKey, key_id)
            if row is None or (account_id is not None and row.account_id != account_id):
                raise NotFound(f"key {key_id} does not exist", field="key_id")
            if row.revoked_at is None:
                before = describe_key(row)
                row.revoked_at = self.clock.now()
                audit.record(s, actor=actor, action="key.revoke", object_type="key",
                             object_id=row.id, account_id=row.account_id,
                             at=self.clock.now(), before=before, after=describe_key(row))
            return describe_key(row)

    def authenticate(self, secret: str) -> Principal | None:
        """The principal a presented key stands for; ``None`` if unknown or revoked."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            return None
        with self.ledger.transaction() as conn:
            row = conn.execute(_BY_HASH, {"h": hash_key(secret)}).first()
        if row is None or row.revoked_at is not None:
            return None
        return Principal(row.id, row.account_id, bool(row.operator), row.name)


_BY_HASH = select(
    ApiKey.id, ApiKey.account_id, ApiKey.operator, ApiKey.revoked_at, ApiKey.name
).where(
    ApiKey.key_hash == bindparam("h")
)


def describe_key(k: ApiKey) -> dict[str, Any]:
    """A key as shown in listings: its prefix, never the secret."""
    return {
        "id": k.id,
        "account_id": k.account_id,
        "operator": k.operator,
        "name": k.name,
        "prefix": k.prefix,
        "created_at": _iso(k.created_at),
        "revoked_at": _iso(k.revoked_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
