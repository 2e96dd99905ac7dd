"""The audit trail: every management change, who made it, what it was before and after.

Changes write their event in their own transaction, so the trail holds exactly what
happened. ``before`` and ``after`` never hold a secret: integrations are shown with
their secrets masked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .errors import BadInput
from .ledger import AuditEvent, Ledger
from .report import MAX_PAGE, parse_cursor

#: The actor of a change made with the command line.
CLI_ACTOR = "cli"


def check_actor(actor: Any) -> str:
    """``actor`` if it names someone (the API key's name, ``cli``)."""
    if not isinstance(actor, str) or not actor.strip() or len(actor) > 200:
        raise BadInput("actor: 1 to 200 characters", field="actor")
    return actor


def record(
    s: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: int | None,
    account_id: int | None,
    at: datetime,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Add one event to the trail, in the change's transaction ``s``."""
    s.add(AuditEvent(actor=actor, action=action, object_type=object_type, object_id=object_id,
                     account_id=account_id, before=before, after=after, at=at))


def events(
    ledger: Ledger,
    account_id: int | None,
    *,
    limit: int = 100,
    cursor: str | None = None,
    object_type: str | None = None,
    object_id: int | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One account's events (``None``: those of no account, plans), newest first,
    ``limit`` at a time from ``cursor``; and the next page's cursor."""
    if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise BadInput(f"limit: between 1 and {MAX_PAGE}", field="limit")
    before = parse_cursor(cursor)
    q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    q = q.where(AuditEvent.account_id.is_(None) if account_id is None
                else AuditEvent.account_id == account_id)
    if before is not None:
        q = q.where(AuditEvent.id < before)
    if object_type is not None:
        q = q.where(AuditEvent.object_type == object_type)
    if object_id is not None:
        q = q.where(AuditEvent.object_id == object_id)
    with ledger.session() as s:
        rows = list(s.scalars(q))
    more = len(rows) > limit
    items = [describe_event(e) for e in rows[:limit]]
    return items, (str(items[-1]["id"]) if more and items else None)


def describe_event(e: AuditEvent) -> dict[str, Any]:
    """An event as shown (API, CLI)."""
    return {
        "id": e.id,
        "at": e.at.isoformat(),
        "actor": e.actor,
        "action": e.action,
        "object_type": e.object_type,
        "object_id": e.object_id,
        "account_id": e.account_id,
        "before": e.before,
        "after": e.after,
    }
