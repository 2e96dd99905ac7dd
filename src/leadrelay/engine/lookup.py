"""Finding a management object by id, within an account's scope, and checking names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from .errors import BadInput, NotFound
from .ledger import Form, Integration


def require_name(value: Any, field: str) -> None:
    """:class:`BadInput` unless ``value`` is a name of 1 to 200 characters."""
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{field}: required", field=field)
    if len(value) > 200:
        raise BadInput(f"{field}: at most 200 characters", field=field)


def get_row(
    s: Session,
    model: type[Any],
    ident: int,
    what: str,
    *,
    scope: int | None = None,
    owner: Callable[[Any], int] | None = None,
    lock: bool = False,
) -> Any:
    """The row, or :class:`NotFound`. With ``scope`` (an account id), a row of another
    account is not found either, with the very same message: an API caller cannot
    tell another account's object from a missing one. ``lock``: FOR UPDATE."""
    row = s.get(model, ident, with_for_update=lock or None)
    if row is not None and scope is not None and (owner or account_of(s))(row) != scope:
        row = None
    if row is None:
        raise NotFound(f"{what} {ident} does not exist", field=f"{what}_id")
    return row


def account_of(s: Session) -> Callable[[Any], int]:
    """The account owning a form or an integration."""

    def account(row: Any) -> int:
        if isinstance(row, Form):
            return row.account_id
        if isinstance(row, Integration):
            form = s.get(Form, row.form_id)
            return form.account_id if form is not None else -1
        raise TypeError(f"no account for {type(row).__name__}")

    return account


def not_archived(row: Any, what: str) -> None:
    """:class:`BadInput` if ``row`` (a form or an integration) was deleted."""
    if row.archived_at is not None:
        raise BadInput(f"{what} {row.id} was deleted: it can be inspected, not changed",
                       field=f"{what}_id")
