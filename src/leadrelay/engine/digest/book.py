"""The ledger side of digests: claims, tries and their outcomes, and the history.

Exactly once per (account, window) rests on two statements, both race-free on SQLite and
PostgreSQL alike:

- **the claim** is an INSERT under the unique (account, window start): of several
  schedulers claiming one window, one row is written and the others fail;
- **a try** is a conditional UPDATE from ``claimed`` to ``sending``: of several schedulers
  retrying one claimed digest, one updates the row and sends; the others update nothing.

Nothing is sent from a row that is not this process's ``sending`` one, and a digest left
``sending`` (its sender died mid-send) is never tried again: it may have been delivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from ..ledger import Account, Digest, DigestState, Ledger
from .windows import Window


@dataclass(frozen=True)
class Owner:
    """An account as the digest needs it."""

    id: int
    name: str
    email: str
    #: Its own interval, or ``None`` for the deployment's.
    hours: float | None


class DigestBook:
    """Reads and writes the ``digests`` table."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def owners(self, account_id: int | None = None) -> list[Owner]:
        """Every account (or one), in id order."""
        query = select(Account.id, Account.name, Account.owner_email, Account.digest_hours)
        if account_id is not None:
            query = query.where(Account.id == account_id)
        with self.ledger.session() as s:
            return [Owner(*row) for row in s.execute(query.order_by(Account.id))]

    def covered_until(self, account_ids: Sequence[int] | None = None) -> dict[int, datetime]:
        """Per account, the end of its latest claimed window."""
        query = select(Digest.account_id, func.max(Digest.window_end)).group_by(Digest.account_id)
        if account_ids is not None:
            query = query.where(Digest.account_id.in_(account_ids))
        with self.ledger.session() as s:
            return {account: end for account, end in s.execute(query)}

    def claim(
        self, owner: Owner, window: Window, *, message_id: str, now: datetime, failures: int
    ) -> Digest | None:
        """Claim ``window`` for ``owner``: the new row, or ``None`` if it was claimed already."""
        row = Digest(account_id=owner.id, window_start=window.start, window_end=window.end,
                     claimed_at=now, message_id=message_id, recipient=owner.email,
                     state=DigestState.CLAIMED.value, attempts=0, refusals=0,
                     next_try_at=now, failures=failures)
        try:
            with self.ledger.session() as s:
                s.add(row)
        except IntegrityError:
            return None  # another scheduler (or --send-now) has it
        return row

    def due(self, now: datetime, account_id: int | None = None, *, force: bool = False
            ) -> list[Digest]:
        """Claimed digests whose (next) try is due (``force``: all of them), oldest first."""
        query = select(Digest).where(Digest.state == DigestState.CLAIMED.value)
        if not force:
            query = query.where(Digest.next_try_at <= now)
        if account_id is not None:
            query = query.where(Digest.account_id == account_id)
        with self.ledger.session() as s:
            return list(s.scalars(query.order_by(Digest.window_start, Digest.id).limit(1000)))

    def begin_try(self, digest_id: int, now: datetime, *, force: bool = False) -> bool:
        """Take the digest from ``claimed`` to ``sending``: True for the one caller that did
        (``force``: even before its next try is due)."""
        due = () if force else (Digest.next_try_at <= now,)
        with self.ledger.session() as s:
            done = s.execute(
                update(Digest)
                .where(Digest.id == digest_id, Digest.state == DigestState.CLAIMED.value, *due)
                .values(state=DigestState.SENDING.value, attempts=Digest.attempts + 1,
                        tried_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
        return bool(done)

    def finish(self, digest_id: int, state: DigestState, **values: Any) -> None:
        """Record how this process's try ended (only from ``sending``)."""
        if state is not DigestState.CLAIMED:
            values.setdefault("next_try_at", None)  # nothing more will be tried
        with self.ledger.session() as s:
            s.execute(
                update(Digest)
                .where(Digest.id == digest_id, Digest.state == DigestState.SENDING.value)
                .values(state=state.value, **values)
                .execution_options(synchronize_session=False)
            )

    def refused(self, digest_id: int, *, now: datetime, error: str, limit: int,
                retry_at: datetime) -> DigestState:
        """Count a refusal; give up after ``limit`` of them. The state it is left in."""
        with self.ledger.session() as s:
            row = s.get(Digest, digest_id)
            if row is None or row.state != DigestState.SENDING.value:
                return DigestState(row.state) if row else DigestState.FAILED
            row.refusals += 1
            row.last_error = error
            if row.refusals >= limit:
                row.state, row.next_try_at = DigestState.FAILED.value, None
            else:
                row.state, row.next_try_at = DigestState.CLAIMED.value, retry_at
            return DigestState(row.state)

    def abandon_stale(self, now: datetime, *, older_than: timedelta) -> int:
        """Digests left ``sending`` for longer than ``older_than`` become ``in_doubt``: their
        sender stopped mid-send, the server may have them, so they are not sent again."""
        with self.ledger.session() as s:
            return s.execute(
                update(Digest)
                .where(Digest.state == DigestState.SENDING.value,
                       Digest.tried_at < now - older_than)
                .values(state=DigestState.IN_DOUBT.value,
                        last_error="the sender stopped while sending; the server may have "
                                   "the message, so it is not sent again")
                .execution_options(synchronize_session=False)
            ).rowcount or 0  # type: ignore[attr-defined]

    def history(self, account_id: int | None = None, *, limit: int = 100) -> list[Digest]:
        """Digests claimed, newest window first."""
        query = select(Digest)
        if account_id is not None:
            query = query.where(Digest.account_id == account_id)
        with self.ledger.session() as s:
            return list(s.scalars(query.order_by(Digest.window_start.desc(), Digest.id.desc())
                                  .limit(limit)))
