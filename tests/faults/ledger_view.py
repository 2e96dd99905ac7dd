"""Reading the ledger the processes under test write, and auditing how it changes.

:meth:`LedgerView.install_audit` adds triggers to the scratch database (a test
instrument, not part of the schema the engine knows): every change of a delivery's
state and of an attempt's outcome is appended to a log table as it is committed. The
promises are then checked on the whole history — "never moved back from delivered",
"an attempt's verdict is written once" — not on samples taken now and then.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

_PG_AUDIT = [
    """create table fault_state_log (
        id bigserial primary key, delivery_id bigint not null, old_state text, new_state text,
        claims int, at timestamptz not null default clock_timestamp())""",
    """create table fault_attempt_log (
        id bigserial primary key, delivery_id bigint not null, number int, claim int,
        old_outcome text, new_outcome text, stale boolean,
        at timestamptz not null default clock_timestamp())""",
    """create function fault_log_state() returns trigger language plpgsql as $$
    begin
        if new.state is distinct from old.state then
            insert into fault_state_log (delivery_id, old_state, new_state, claims)
            values (new.id, old.state, new.state, new.claims);
        end if;
        return new;
    end $$""",
    """create function fault_log_attempt() returns trigger language plpgsql as $$
    begin
        if tg_op = 'INSERT' then
            insert into fault_attempt_log
                (delivery_id, number, claim, old_outcome, new_outcome, stale)
            values (new.delivery_id, new.number, new.claim, null, new.outcome, new.stale);
        elsif new.outcome is distinct from old.outcome or new.stale is distinct from old.stale
        then
            insert into fault_attempt_log
                (delivery_id, number, claim, old_outcome, new_outcome, stale)
            values (new.delivery_id, new.number, new.claim, old.outcome, new.outcome, new.stale);
        end if;
        return new;
    end $$""",
    """create trigger fault_state_log after update on deliveries
       for each row execute function fault_log_state()""",
    """create trigger fault_attempt_log after insert or update on attempts
       for each row execute function fault_log_attempt()""",
]

_SQLITE_AUDIT = [
    """create table fault_state_log (
        id integer primary key, delivery_id integer not null, old_state text, new_state text,
        claims int, at text not null default (strftime('%Y-%m-%d %H:%M:%f', 'now')))""",
    """create table fault_attempt_log (
        id integer primary key, delivery_id integer not null, number int, claim int,
        old_outcome text, new_outcome text, stale boolean,
        at text not null default (strftime('%Y-%m-%d %H:%M:%f', 'now')))""",
    """create trigger fault_state_log after update of state on deliveries
       when new.state is not old.state begin
         insert into fault_state_log (delivery_id, old_state, new_state, claims)
         values (new.id, old.state, new.state, new.claims);
       end""",
    """create trigger fault_attempt_insert after insert on attempts begin
         insert into fault_attempt_log (delivery_id, number, claim, old_outcome, new_outcome,
                                        stale)
         values (new.delivery_id, new.number, new.claim, null, new.outcome, new.stale);
       end""",
    """create trigger fault_attempt_update after update on attempts
       when new.outcome is not old.outcome or new.stale is not old.stale begin
         insert into fault_attempt_log (delivery_id, number, claim, old_outcome, new_outcome,
                                        stale)
         values (new.delivery_id, new.number, new.claim, old.outcome, new.outcome, new.stale);
       end""",
]

_ATTEMPT_COLUMNS = (
    "id, delivery_id, number, claim, outcome, reason, decided_by, stale, lane, resend_of, "
    "idempotency_key, started_at, duration_ms, exchanges"
)


def _utc(value: datetime | str) -> datetime:
    """A time of the ledger as an aware UTC datetime (SQLite keeps naive UTC text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def sqlalchemy_url(url: str) -> str:
    """``url`` with the driver the project installs (psycopg 3) named for PostgreSQL."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class LedgerView:
    """Read-only queries over one ledger, plus the audit triggers."""

    def __init__(self, url: str) -> None:
        self.url = url
        # No pool: a test reads now and then, and must not hold SQLite's file or a
        # PostgreSQL connection the forwarder would have to carry.
        self.engine = sa.create_engine(sqlalchemy_url(url), poolclass=NullPool)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextmanager
    def _conn(self) -> Iterator[sa.Connection]:
        with self.engine.begin() as conn:
            yield conn

    def install_audit(self) -> None:
        """Add the state and outcome log triggers (once the engine has made the schema)."""
        statements = _PG_AUDIT if self.dialect == "postgresql" else _SQLITE_AUDIT
        with self._conn() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))

    def _rows(self, query: str, **params: Any) -> list[dict[str, Any]]:
        with self._conn() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(query), params)]

    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery, in id order."""
        return self._rows("select * from deliveries order by id")

    def delivery(self, delivery_id: int) -> dict[str, Any]:
        """One delivery row."""
        rows = self._rows("select * from deliveries where id = :id", id=delivery_id)
        assert rows, f"no delivery {delivery_id}"
        return rows[0]

    def attempts(self, delivery_id: int | None = None) -> list[dict[str, Any]]:
        """Attempts (of one delivery, or all), in (delivery, number, id) order."""
        where = "" if delivery_id is None else "where delivery_id = :id"
        rows = self._rows(
            f"select {_ATTEMPT_COLUMNS} from attempts {where} order by delivery_id, number, id",
            id=delivery_id,
        )
        for row in rows:  # SQLite hands JSON, times and booleans back as text and integers
            if isinstance(row["exchanges"], str):
                row["exchanges"] = json.loads(row["exchanges"])
            row["stale"] = bool(row["stale"])
            row["started_at"] = _utc(row["started_at"])
        return rows

    def state_log(self, delivery_id: int | None = None) -> list[dict[str, Any]]:
        """Every state change the audit trigger saw, in order."""
        where = "" if delivery_id is None else "where delivery_id = :id"
        rows = self._rows(f"select * from fault_state_log {where} order by id", id=delivery_id)
        for row in rows:
            row["at"] = _utc(row["at"])
        return rows

    def attempt_log(self, delivery_id: int | None = None) -> list[dict[str, Any]]:
        """Every insert of an attempt and change of its outcome, in order."""
        where = "" if delivery_id is None else "where delivery_id = :id"
        return self._rows(f"select * from fault_attempt_log {where} order by id", id=delivery_id)

    def states(self) -> dict[str, int]:
        """How many deliveries are in each state."""
        rows = self._rows("select state, count(*) as n from deliveries group by state")
        return {r["state"]: int(r["n"]) for r in rows}

    def settled(self) -> bool:
        """Whether every delivery has ended: delivered or not integrated."""
        states = self.states()
        return bool(states) and set(states) <= {"delivered", "not_integrated"}

    def close(self) -> None:
        """Release the engine."""
        self.engine.dispose()
