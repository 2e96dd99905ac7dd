"""Scenario 6: ledger growth — the throughput ratio with a million attempts already stored.

The ledger is first filled with ``growth_attempts`` attempts (half as many leads and
deliveries, each delivered on its second attempt; realistic redacted exchanges), bulk
loaded with one ``executemany`` transaction on SQLite and ``COPY`` on PostgreSQL. It
is built once per run and kept for its repetitions (each adds only ``leads`` rows). In one
repetition: the engine delivers ``leads`` new leads end to end on the full ledger, on
an empty ledger, and the raw loop runs, so ``ratio`` (full ÷ raw) compares with
scenario 1 and ``flat`` (full ÷ empty) shows what the million rows cost.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .. import raw
from ..core import Context, Target, scenario
from ..rig import EngineSpec, integration_ids, lead, setup_form
from ..services import psycopg_url, scratch_postgres
from .throughput import distributed_rate, embedded_rate

UNITS = {
    "full_per_s": "deliveries/s",
    "empty_per_s": "deliveries/s",
    "raw_per_s": "POSTs/s",
    "ratio": "full ÷ raw",
    "flat": "full ÷ empty",
}

_EXCHANGE: dict[str, Any] = {
    "step": "send",
    "request": {
        "method": "POST",
        "url": "https://crm.example.com/api/leads",
        "headers": {
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "***",
            "Idempotency-Key": "0" * 32,
        },
        "body": "first_name=Jane&last_name=Doe&email=jane.doe%40example.com&company="
        "ACME+Corp&phone=%2B33+6+12+34+56+78&country=FR",
    },
    "response": {
        "status": 201,
        "headers": {"Content-Type": "application/json", "Content-Length": "52"},
        "body": '{"success":true,"data":{"id":"00Q5g000004ZpGnEAK"}}',
        "truncated": False,
    },
    "duration_ms": 84.2,
    "proxy": None,
    "error": None,
}
_TRACE = [{"rule": "HTTP status in 2xx", "passed": True, "detail": "saw 201", "value": 201}]


def _rows(attempts: int, form_id: int, integration_id: int) -> Iterator[tuple[str, list[Any]]]:
    """(table, rows) chunks: leads, deliveries, then attempts, with explicit ids from 1."""
    leads = attempts // 2
    base = datetime(2026, 1, 1, tzinfo=UTC)
    exchange = json.dumps([_EXCHANGE])
    failed = json.dumps(
        [
            {
                **_EXCHANGE,
                "response": {**_EXCHANGE["response"], "status": 503, "body": "Service Unavailable"},
            }
        ]
    )
    trace, failed_trace = json.dumps(_TRACE), json.dumps([{**_TRACE[0], "passed": False}])
    chunk = 50_000
    for start in range(0, leads, chunk):
        ids = range(start + 1, min(leads, start + chunk) + 1)
        when = [base + timedelta(seconds=i) for i in ids]
        yield (
            "leads",
            [
                (i, form_id, "form", None, json.dumps(lead(i)), w)
                for i, w in zip(ids, when, strict=True)
            ],
        )
        yield (
            "deliveries",
            [
                (
                    i,
                    i,
                    integration_id,
                    "delivered",
                    2,
                    2,
                    w + timedelta(minutes=5),
                    None,
                    None,
                    uuid.uuid4().hex,
                    "00Q5g000004ZpGnEAK",
                    "accepted",
                    "HTTP status in 2xx",
                    0,
                    w,
                    w + timedelta(minutes=5),
                )
                for i, w in zip(ids, when, strict=True)
            ],
        )
        yield (
            "attempts",
            [
                row
                for i, w in zip(ids, when, strict=True)
                for row in (
                    (
                        2 * i - 1,
                        i,
                        1,
                        w,
                        120.5,
                        "transient",
                        "CRM answered HTTP 503, worth retrying",
                        "HTTP 5xx",
                        failed,
                        failed_trace,
                        None,
                    ),
                    (
                        2 * i,
                        i,
                        2,
                        w + timedelta(minutes=5),
                        84.2,
                        "accepted",
                        "HTTP status in 2xx",
                        "status",
                        exchange,
                        trace,
                        None,
                    ),
                )
            ],
        )


COLUMNS = {
    "leads": ("id", "form_id", "source", "external_id", "payload", "received_at"),
    "deliveries": (
        "id",
        "lead_id",
        "integration_id",
        "state",
        "attempts_count",
        "total_attempts",
        "next_due_at",
        "queued_for",
        "lease_until",
        "idempotency_key",
        "crm_reference",
        "last_outcome",
        "last_reason",
        "replays",
        "created_at",
        "finished_at",
    ),
    "attempts": (
        "id",
        "delivery_id",
        "number",
        "started_at",
        "duration_ms",
        "outcome",
        "reason",
        "decided_by",
        "exchanges",
        "trace",
        "proxy",
    ),
}


def fill(database_url: str, home: Path, attempts: int) -> None:
    """Create the schema and bulk-load ``attempts`` attempts into a fresh ledger."""
    app = EngineSpec.new(home, database_url, None).build()
    try:
        form = setup_form(app, {"url": "http://127.0.0.1:9/unused"}, account="History")
        integration = next(iter(integration_ids(app).values()))
    finally:
        app.close()
    engine = sa.create_engine(psycopg_url(database_url))
    try:
        raw_conn = engine.raw_connection()
        try:
            if engine.dialect.name == "sqlite":
                _fill_sqlite(raw_conn, attempts, form, integration)
            else:
                _fill_postgres(raw_conn, attempts, form, integration)
        finally:
            raw_conn.close()
    finally:
        engine.dispose()


def _fill_sqlite(conn: Any, attempts: int, form: int, integration: int) -> None:
    def naive(v: Any) -> Any:  # how the ledger stores datetimes on SQLite
        return v.replace(tzinfo=None).isoformat(" ") if isinstance(v, datetime) else v

    cur = conn.cursor()
    for table, rows in _rows(attempts, form, integration):
        cols = COLUMNS[table]
        cur.executemany(
            f"insert into {table} ({', '.join(cols)}) values ({', '.join('?' * len(cols))})",
            [tuple(naive(v) for v in r) for r in rows],
        )
    conn.commit()
    cur.execute("analyze")
    conn.commit()


def _fill_postgres(conn: Any, attempts: int, form: int, integration: int) -> None:
    cur = conn.cursor()
    for table, rows in _rows(attempts, form, integration):
        with cur.copy(f"copy {table} ({', '.join(COLUMNS[table])}) from stdin") as copy:
            for r in rows:
                copy.write_row(r)
    for table in COLUMNS:
        cur.execute(
            f"select setval(pg_get_serial_sequence('{table}', 'id'), (select max(id) from {table}))"
        )
    conn.commit()
    cur.execute("analyze")
    conn.commit()


_BUILT: dict[tuple[str, int], Path] = {}


def _sqlite_history(ctx: Context) -> Path:
    """The filled SQLite ledger of this run, built on first use."""
    key = (str(ctx.scratch), ctx.sizes.growth_attempts)
    if key not in _BUILT:
        home = ctx.scratch / "growth-sqlite-base"
        path = home / "ledger.db"
        t0 = time.perf_counter()
        fill(f"sqlite:///{path}", home, ctx.sizes.growth_attempts)
        ctx.note(
            "load",
            f"{ctx.sizes.growth_attempts:,} attempts loaded in "
            f"{time.perf_counter() - t0:.0f} s ({path.stat().st_size / 2**20:.0f} MiB)",
        )
        _BUILT[key] = path
    return _BUILT[key]


def _triple(
    ctx: Context,
    full: Callable[[], float],
    empty: Callable[[], float],
    baseline: Callable[[], float],
) -> dict[str, float]:
    order = [("full", full), ("empty", empty), ("raw", baseline)]
    k = ctx.rep % 3
    got = {name: fn() for name, fn in order[k:] + order[:k]}
    return {
        "full_per_s": got["full"],
        "empty_per_s": got["empty"],
        "raw_per_s": got["raw"],
        "ratio": got["full"] / got["raw"],
        "flat": got["full"] / got["empty"],
    }


@scenario(
    "growth-sqlite",
    "Ledger growth — embedded throughput with 1,000,000 attempts stored",
    headline="ratio",
    target=Target("ratio", ">=", 0.6),
    units=UNITS,
)
def growth_sqlite(ctx: Context) -> dict[str, float]:
    """One repetition on the filled SQLite ledger."""
    base = _sqlite_history(ctx)
    n = ctx.sizes.growth_leads
    home = ctx.scratch / f"growth-sqlite-{ctx.rep}"
    ctx.note(
        "shape",
        f"{n} new leads per measure on top of {ctx.sizes.growth_attempts:,} "
        "attempts; embedded, as throughput-sqlite",
    )

    return _triple(
        ctx,
        lambda: embedded_rate(ctx, f"sqlite:///{base}", n, home / "full"),
        lambda: embedded_rate(ctx, f"sqlite:///{home / 'empty.db'}", n, home / "empty"),
        lambda: raw.rate(ctx.crm.url, n, ctx.sizes.threads),
    )


@scenario(
    "growth-postgres",
    "Ledger growth — PostgreSQL + Redis throughput with 1,000,000 attempts stored",
    headline="ratio",
    target=Target("ratio", ">=", 0.6),
    units=UNITS,
    needs=("postgres", "redis"),
)
def growth_postgres(ctx: Context) -> dict[str, float]:
    """One repetition on the filled PostgreSQL ledger (kept for the run's repetitions)."""
    n, w, t = ctx.sizes.growth_leads, ctx.sizes.workers, ctx.sizes.threads
    home = ctx.scratch / f"growth-pg-{ctx.rep}"
    ctx.note(
        "shape",
        f"{n} new leads per measure on top of {ctx.sizes.growth_attempts:,} "
        "attempts; as throughput-postgres",
    )
    with scratch_postgres(ctx.postgres_url) as full_url:
        t0 = time.perf_counter()
        fill(full_url, home / "load", ctx.sizes.growth_attempts)
        ctx.note(
            "load",
            f"{ctx.sizes.growth_attempts:,} attempts loaded with COPY in "
            f"{time.perf_counter() - t0:.0f} s",
        )

        def empty() -> float:
            with scratch_postgres(ctx.postgres_url) as url:
                return distributed_rate(ctx, url, n, home / "empty")

        return _triple(
            ctx,
            lambda: distributed_rate(ctx, full_url, n, home / "full"),
            empty,
            lambda: raw.rate_processes(ctx.crm.url, n, w, t),
        )
