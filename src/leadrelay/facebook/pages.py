"""Page connections: which account a Facebook page's leads go to, and how.

A connection holds the page's Meta app secret (it signs every notification), the
verify token (the subscription handshake), the page access token (Graph reads) — the
three sealed with the engine's :class:`~leadrelay.engine.secrets.SecretBox`, never
shown — the map from Facebook lead-form ids to leadrelay forms, and the field map
(:mod:`.fields`). Everything is checked before anything is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pydantic
from sqlalchemy import select
from sqlalchemy.orm import Session

from leadrelay.engine import audit
from leadrelay.engine.audit import CLI_ACTOR, check_actor
from leadrelay.engine.clock import Clock
from leadrelay.engine.digest.render import NO_PUBLIC_URL
from leadrelay.engine.errors import BadInput, Conflict, NotFound
from leadrelay.engine.ledger import Account, FacebookPage, Form, Ledger
from leadrelay.engine.retry import RetryPolicy
from leadrelay.engine.secrets import MASK, SecretBox

from .fields import DEFAULT_FIELD_MAP, check_field_map, effective_map

#: The secrets of a connection, in the order they are asked for.
SECRET_FIELDS = ("app_secret", "verify_token", "page_access_token")
#: The webhook every connection's Meta app calls (GET: handshake, POST: notifications).
WEBHOOK_PATH = "/v1/facebook/webhook"
_FIELDS = frozenset({"name", "forms", "field_map", "retry", *SECRET_FIELDS})
_ID = re.compile(r"\d{1,32}")
MAX_FORMS = 500
#: Connections whose secrets a process keeps decrypted at most.
_CACHED_SECRETS = 10_000


class PageSecrets(pydantic.BaseModel):
    """The three secrets of a connection, as sealed in the ledger."""

    app_secret: pydantic.SecretStr
    verify_token: pydantic.SecretStr
    page_access_token: pydantic.SecretStr


def check_secret(value: Any, field: str) -> str:
    """A secret as given: a non-empty line of at most 2,000 printable characters."""
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{field}: required", field=field)
    if len(value) > 2000 or not value.isprintable() or value != value.strip():
        raise BadInput(f"{field}: at most 2000 printable characters, no surrounding spaces",
                       field=field)
    return value


def check_page_id(value: Any, field: str = "page_id") -> str:
    """A Facebook page id: digits (given as a string or a number)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise BadInput(f"{field}: a Facebook id is digits, got {value!r}"[:200], field=field)
    return value


class Pages:
    """Creating, changing and reading page connections."""

    def __init__(self, ledger: Ledger, box: SecretBox, clock: Clock) -> None:
        self.ledger, self.box, self.clock = ledger, box, clock
        # Decrypted secrets by their sealed form: every notification needs its page's app
        # secret, and a changed secret is sealed anew (a new key here), so nothing stale
        # is ever used, in this process or another.
        self._clear: dict[str, dict[str, str]] = {}

    def connect(
        self,
        account_id: int,
        page_id: Any,
        *,
        app_secret: Any,
        verify_token: Any,
        page_access_token: Any,
        name: Any = None,
        forms: Any = None,
        field_map: Any = None,
        retry: Any = None,
        scope: int | None = None,
        actor: str = CLI_ACTOR,
    ) -> FacebookPage:
        """Connect a page to ``account_id``; :class:`Conflict` if it is connected already.
        ``actor`` is who did it, for the audit trail."""
        check_actor(actor)
        page = check_page_id(page_id)
        shown = _name(name, page)
        secrets = PageSecrets.model_validate({
            "app_secret": check_secret(app_secret, "app_secret"),
            "verify_token": check_secret(verify_token, "verify_token"),
            "page_access_token": check_secret(page_access_token, "page_access_token"),
        })
        fields = check_field_map(field_map)
        policy = _retry(retry)
        now = self.clock.now()
        with self.ledger.session() as s:
            if scope is not None and scope != account_id:
                raise NotFound(f"account {account_id} does not exist", field="account_id")
            if s.get(Account, account_id) is None:
                raise NotFound(f"account {account_id} does not exist", field="account_id")
            mapping = _forms(s, forms, account_id)
            if s.scalar(select(FacebookPage.id).where(FacebookPage.page_id == page)):
                raise Conflict(f"page_id: page {page} is connected already", field="page_id")
            row = FacebookPage(
                account_id=account_id, page_id=page, name=shown, secrets=self.box.seal(secrets),
                forms=mapping, field_map=fields, retry_policy=policy, created_at=now,
                updated_at=now,
            )
            s.add(row)
            s.flush()
            s.refresh(row)
            audit.record(s, actor=actor, action="facebook_page.create",
                         object_type="facebook_page", object_id=row.id,
                         account_id=account_id, at=now, after=describe_page(row))
        return row

    def update(self, connection_id: int, *, scope: int | None = None, actor: str = CLI_ACTOR,
               **changes: Any) -> tuple[FacebookPage, bool]:
        """Change a connection (any of :data:`_FIELDS`; ``forms`` replaces the whole map);
        the row, and whether the form map changed. Secrets changed show in the audit trail
        as changed, never their values."""
        check_actor(actor)
        unknown = set(changes) - _FIELDS
        if unknown:
            key = sorted(unknown)[0]
            raise BadInput(f"{key}: not a setting of a Facebook page connection", field=key)
        given = {k: check_secret(v, k) for k, v in changes.items() if k in SECRET_FIELDS}
        fields = check_field_map(changes["field_map"]) if "field_map" in changes else None
        policy = _retry(changes["retry"]) if "retry" in changes else None
        with self.ledger.session() as s:
            row = self._get(s, connection_id, scope)
            before = describe_page(row)
            mapping = _forms(s, changes["forms"], row.account_id) if "forms" in changes else None
            if "name" in changes:
                row.name = _name(changes["name"], row.page_id)
            if given:
                current = self.box.unseal(row.secrets)
                row.secrets = self.box.seal(PageSecrets.model_validate({**current, **given}))
            if fields is not None:
                row.field_map = fields
            if "retry" in changes:
                row.retry_policy = policy
            moved = mapping is not None and mapping != row.forms
            if mapping is not None:
                row.forms = mapping
            row.updated_at = self.clock.now()
            s.flush()
            s.refresh(row)
            after = describe_page(row)
            after["secrets_changed"] = sorted(given)
            audit.record(s, actor=actor, action="facebook_page.update",
                         object_type="facebook_page", object_id=row.id,
                         account_id=row.account_id, at=row.updated_at, before=before,
                         after=after)
        return row, moved

    def get(self, connection_id: int, *, scope: int | None = None) -> FacebookPage:
        """One connection (``scope``: of that account only)."""
        with self.ledger.session() as s:
            return self._get(s, connection_id, scope)

    def list(self, account_id: int | None = None) -> list[FacebookPage]:
        """The connections (of one account), oldest first."""
        query = select(FacebookPage).order_by(FacebookPage.id)
        if account_id is not None:
            query = query.where(FacebookPage.account_id == account_id)
        with self.ledger.session() as s:
            return list(s.scalars(query))

    def secrets(self, row: FacebookPage) -> dict[str, str]:
        """The connection's secrets in clear, for the webhook and the Graph read only."""
        key = json.dumps(row.secrets, sort_keys=True)
        found = self._clear.get(key)
        if found is None:
            if len(self._clear) >= _CACHED_SECRETS:
                self._clear.clear()
            found = self._clear[key] = self.box.unseal(row.secrets)
        return dict(found)

    def _get(self, s: Session, connection_id: int, scope: int | None) -> FacebookPage:
        row = s.get(FacebookPage, connection_id)
        if row is None or (scope is not None and row.account_id != scope):
            raise NotFound(f"Facebook page connection {connection_id} does not exist",
                           field="connection_id")
        return row


def describe_page(row: FacebookPage, *, public_url: str | None = None) -> dict[str, Any]:
    """A connection as shown: secrets masked, the field map in effect, the webhook URL."""
    base = (public_url or NO_PUBLIC_URL).rstrip("/")
    return {
        "id": row.id,
        "account_id": row.account_id,
        "page_id": row.page_id,
        "name": row.name,
        **{field: MASK for field in SECRET_FIELDS},
        "forms": dict(row.forms),
        "field_map": dict(row.field_map),
        "fields_in_effect": effective_map(row.field_map),
        "retry": row.retry_policy,
        "webhook_url": base + WEBHOOK_PATH,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def _forms(s: Session, raw: Any, account_id: int) -> dict[str, int]:
    """The form map checked: Facebook form ids (digits) to forms of ``account_id``."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise BadInput("forms: must be an object of Facebook form id → leadrelay form id",
                       field="forms")
    if len(raw) > MAX_FORMS:
        raise BadInput(f"forms: at most {MAX_FORMS} Facebook forms", field="forms")
    mapping: dict[str, int] = {}
    for key, form_id in raw.items():
        fb_form = check_page_id(key, f"forms.{key}"[:80])
        where = f"forms.{fb_form}"
        if isinstance(form_id, bool) or not isinstance(form_id, int) or form_id < 1:
            raise BadInput(f"{where}: a leadrelay form id (a whole number)", field=where)
        form = s.get(Form, form_id)
        if form is None or form.account_id != account_id:
            raise NotFound(f"{where}: form {form_id} does not exist", field=where)
        if form.archived_at is not None:
            raise BadInput(f"{where}: form {form_id} was deleted", field=where)
        mapping[fb_form] = form_id
    return mapping


def _name(value: Any, page_id: str) -> str:
    if value is None:
        return f"Facebook page {page_id}"
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise BadInput("name: a non-empty name of at most 200 characters", field="name")
    return value.strip()


def _retry(raw: Any) -> dict[str, Any] | None:
    return None if raw is None else RetryPolicy.parse(raw, prefix="retry").to_dict()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


__all__ = ["DEFAULT_FIELD_MAP", "SECRET_FIELDS", "WEBHOOK_PATH", "PageSecrets", "Pages",
           "describe_page"]
