"""Writing a batch of imported leads, and their deliveries, in the caller's transaction.

A batch is inserted with ``ON CONFLICT (form_id, source, external_id) DO NOTHING`` on
the form's unique external id: a row already in the ledger (the same file run again, a
resumed import, another import of the same rows at the same time) is skipped by the
database itself, with no lookup before the insert and no unique violation to retry.

Each backend gets the statement that costs it least (``docs/benchmarks.md``, import):

- PostgreSQL: one ``INSERT … SELECT … FROM unnest(ids, payloads)`` per batch, the two
  arrays sent in binary: two parameters instead of SQLAlchemy's thousands of
  placeholders, which psycopg had to split and the server to parse. The payload goes as
  the text already encoded for the row's hash (``jsonb`` normalises key order and
  spacing, so the value stored is the same).
  Deliveries (integration on or throttled) go the same way, four arrays.
- SQLite: one multi-row ``INSERT … VALUES (…), (…)`` per batch, and when the leads' ids
  are needed (deliveries to create), one ``group_concat`` of the ids above the table's
  largest before it: the transaction holds SQLite's single writer, so the rows above it
  are this batch's. Deliveries the same way. Few statements matter more than their
  cost: the driver lets go of the GIL at each step of a statement, and each time a busy
  thread of the process (an import parsing rows, a bulk send) may keep it for a whole
  switch interval, which a per-row ``executemany`` or ``RETURNING`` multiplied by the
  batch's rows, while a live lead waited for the writer (docs/benchmarks.md,
  import-live-latency). Payloads are encoded before the transaction
  (:func:`encode_payloads`), so the writer is held for the inserts alone.

Values go through the columns' own bind processors, so what is stored is exactly what
the ORM would store.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.engine import Connection

from ..intake import idempotency_key
from ..ledger import Delivery, DeliveryState, Integration, Lead
from ..ledger.models import LeadSource
from ..throttle import Rate
from .checking import Checked, canonical_json

_L = cast(Table, Lead.__table__)
_D = cast(Table, Delivery.__table__)
_I = cast(Table, Integration.__table__)
_SOURCE = LeadSource.IMPORT.value


def insert_leads(conn: Connection, form_id: int, import_id: int, rows: Sequence[Checked],
                 now: datetime, *, ids: bool, encoded: Sequence[Any] | None = None
                 ) -> list[int] | int:
    """Insert ``rows`` (of distinct external ids) as leads of the import; ``encoded``:
    their payloads from :func:`encode_payloads`, when encoded already.

    :returns: with ``ids``, the ids of the leads stored, in the order of ``rows`` (those
        already in the ledger left out); without, how many were stored.
    """
    if not rows:
        return [] if ids else 0
    if conn.dialect.name == "postgresql":
        return _insert_postgres(conn, form_id, import_id, rows, now, ids=ids)
    return _insert_sqlite(conn, form_id, import_id, rows, now, ids=ids, encoded=encoded)


_PG_INSERT = """
INSERT INTO leads (form_id, source, external_id, payload, received_at, import_id)
SELECT %(form_id)s::bigint, %(source)s::varchar, t.external_id, t.payload::jsonb,
       %(now)s::timestamptz, %(import_id)s::bigint
FROM unnest(%(external_ids)b::text[], %(payloads)b::text[]) AS t(external_id, payload)
ON CONFLICT (form_id, source, external_id) DO NOTHING
"""
_PG_INSERT_RETURNING = _PG_INSERT + "RETURNING external_id, id"


def _insert_postgres(conn: Connection, form_id: int, import_id: int, rows: Sequence[Checked],
                     now: datetime, *, ids: bool) -> list[int] | int:
    params = {
        "form_id": form_id, "source": _SOURCE, "now": now, "import_id": import_id,
        "external_ids": [r.external_id for r in rows],
        "payloads": [r.canonical if r.canonical is not None else canonical_json(r.payload)
                     for r in rows],
    }
    if not ids:
        return conn.exec_driver_sql(_PG_INSERT, params).rowcount
    # RETURNING's order is not promised for INSERT … SELECT: match the ids by external id.
    stored: dict[str, int] = dict(conn.exec_driver_sql(_PG_INSERT_RETURNING, params).all())
    return [stored[r.external_id] for r in rows if r.external_id in stored]


_SQLITE_LEADS = (
    "INSERT INTO leads (form_id, source, external_id, payload, received_at, import_id) "
    "VALUES {} ON CONFLICT (form_id, source, external_id) DO NOTHING"
)
#: Rows per SQLite statement: well under its 32,766 parameters a statement.
SQLITE_STATEMENT_ROWS = 500


def _insert_sqlite(conn: Connection, form_id: int, import_id: int, rows: Sequence[Checked],
                   now: datetime, *, ids: bool, encoded: Sequence[Any] | None
                   ) -> list[int] | int:
    if encoded is None:
        encoded = cast(list[Any], encode_payloads(conn.dialect, rows))
    received = _bind(conn.dialect, _L, "received_at")(now)
    values = [(form_id, _SOURCE, r.external_id, payload, received, import_id)
              for r, payload in zip(rows, encoded, strict=True)]
    inserted, before = _insert_many(conn, "leads", _SQLITE_LEADS, "(?, ?, ?, ?, ?, ?)", values)
    if not ids:
        return inserted
    # Ids grow in insertion order, which is the rows' order.
    return sorted(int(i) for i in _concat_above(conn, "leads", "id", before))


def encode_payloads(dialect: Any, rows: Sequence[Checked]) -> list[Any] | None:
    """The rows' payloads as SQLite stores them, encoded ahead of the transaction (None
    on PostgreSQL, which is sent the canonical text): SQLite's one writer, which a live
    lead may be waiting for, is then held for the inserts alone."""
    if dialect.name != "sqlite":
        return None
    as_json = _bind(dialect, _L, "payload")
    return [as_json(r.payload) for r in rows]


def _bind(dialect: Any, table: Table, column: str) -> Any:
    """The bind processor of a column on ``dialect``: what the ORM stores."""
    processor = table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
    assert processor is not None
    return processor


def _insert_many(conn: Connection, table: str, statement: str, row: str,
                 values: Sequence[tuple[Any, ...]]) -> tuple[int, int]:
    """``values`` inserted by ``statement``, its ``VALUES {}`` filled with ``row`` once a
    row, on the driver's cursor, inside the caller's write transaction (on SQLite: see
    the module docstring).

    :returns: how many rows were inserted, and ``table``'s largest id before: the rows
        inserted are those above it.
    """
    cursor = cast(Any, conn.connection.dbapi_connection).cursor()
    try:
        before = cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]
        inserted = 0
        for start in range(0, len(values), SQLITE_STATEMENT_ROWS):
            chunk = values[start : start + SQLITE_STATEMENT_ROWS]
            cursor.execute(_values_of(statement, row, len(chunk)),
                           [v for one in chunk for v in one])
            inserted += cursor.rowcount
        return inserted, before
    finally:
        cursor.close()


def _concat_above(conn: Connection, table: str, expression: str, before: int) -> list[str]:
    """``expression`` of each row of ``table`` whose id is above ``before``, in one
    statement (one step: one GIL hand-off, whatever the rows)."""
    found = conn.exec_driver_sql(
        f"SELECT group_concat({expression}, ' ') FROM {table} WHERE id > ?", (before,)
    ).scalar()
    return found.split(" ") if found else []


@functools.lru_cache(maxsize=64)
def _values_of(statement: str, row: str, rows: int) -> str:
    """``statement`` with ``row`` ``rows`` times as its ``VALUES``."""
    return statement.format(", ".join([row] * rows))


class Pace:
    """Throttled deliveries: due one after the other at ``rate`` per integration, each
    integration carrying on from where the last batch left it."""

    def __init__(self, rate: Rate) -> None:
        self.step = timedelta(seconds=1 / rate.per_second)
        self.slots: dict[int, datetime] = {}

    def due(self, integration_id: int, now: datetime) -> datetime:
        """The next slot of ``integration_id``, never before ``now``."""
        slot = max(self.slots.get(integration_id, now), now)
        self.slots[integration_id] = slot + self.step
        return slot


def active_integrations(conn: Connection, form_id: int) -> list[int]:
    """The form's active integrations, in id order (the order intake creates them in)."""
    return list(conn.scalars(_ACTIVE_OF, {"form_id": form_id}))


def create_deliveries(
    conn: Connection,
    pairs: Sequence[tuple[int, int]],
    now: datetime,
    *,
    queued: bool,
    pace: Pace | None = None,
) -> list[tuple[int | None, int]]:
    """One pending delivery per ``(lead id, integration id)``, as intake creates them:
    due now (announced by the caller when ``queued``), or at ``pace``'s slots (then the
    sweeper announces each when due).

    :returns: ``(integration id, delivery id)`` of each, in the order of ``pairs``.
    """
    if not pairs:
        return []
    dues = [pace.due(integration_id, now) if pace is not None else now
            for _, integration_id in pairs]
    keys = [idempotency_key() for _ in pairs]
    queued_for = now if queued and pace is None else None
    if conn.dialect.name == "postgresql":
        ids = _deliveries_postgres(conn, pairs, dues, keys, queued_for, now)
    else:
        as_time = _bind(conn.dialect, _D, "created_at")
        created, queued_at = as_time(now), as_time(queued_for) if queued_for else None
        _, before = _insert_many(
            conn, "deliveries", _SQLITE_DELIVERIES, "(?, ?, ?, 0, 0, 0, 0, 0, ?, ?, ?, ?)", [
                (lead_id, integration_id, DeliveryState.PENDING.value, as_time(due),
                 queued_at, key, created)
                for (lead_id, integration_id), due, key in zip(pairs, dues, keys, strict=True)
            ])
        by_key = dict(one.split(":") for one in _concat_above(
            conn, "deliveries", "idempotency_key || ':' || id", before))
        ids = [int(by_key[key]) for key in keys]
    return [(integration_id, d) for (_, integration_id), d in zip(pairs, ids, strict=True)]


#: A delivery as the ORM's insert makes it: counts at 0, the other columns NULL.
_SQLITE_DELIVERIES = (
    "INSERT INTO deliveries (lead_id, integration_id, state, attempts_count, total_attempts, "
    "replays, claims, in_doubt, next_due_at, queued_for, idempotency_key, created_at) "
    "VALUES {}"
)


#: The columns left out take their defaults on the server: 0 for ``claims`` and
#: ``in_doubt``, NULL for the rest, as the ORM's insert gives them.
_PG_DELIVERIES = """
INSERT INTO deliveries (lead_id, integration_id, state, attempts_count, total_attempts,
                        replays, next_due_at, queued_for, idempotency_key, created_at)
SELECT t.lead_id, t.integration_id, %(state)s::varchar, 0, 0, 0, t.due,
       %(queued_for)s::timestamptz, t.key, %(now)s::timestamptz
FROM unnest(%(lead_ids)b::bigint[], %(integration_ids)b::bigint[],
            %(dues)b::timestamptz[], %(keys)b::text[]) AS t(lead_id, integration_id, due, key)
RETURNING idempotency_key, id
"""


def _deliveries_postgres(conn: Connection, pairs: Sequence[tuple[int, int]],
                         dues: list[datetime], keys: list[str], queued_for: datetime | None,
                         now: datetime) -> list[int]:
    """The deliveries in one ``INSERT … SELECT FROM unnest`` (see the module docstring);
    their ids in the order of ``pairs``, matched by their unique idempotency keys."""
    params = {
        "state": DeliveryState.PENDING.value, "queued_for": queued_for, "now": now,
        "lead_ids": [lead for lead, _ in pairs],
        "integration_ids": [integration for _, integration in pairs],
        "dues": dues, "keys": keys,
    }
    ids: dict[str, int] = dict(conn.exec_driver_sql(_PG_DELIVERIES, params).all())
    return [ids[key] for key in keys]


_ACTIVE_OF = (
    select(_I.c.id)
    .where(_I.c.form_id == bindparam("form_id"), _I.c.active.is_(True))
    .order_by(_I.c.id)
)
