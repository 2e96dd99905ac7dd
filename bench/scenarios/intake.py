"""Scenario 2: intake cost — leads/s into the ledger, deliveries queued but not sent.

The engine side calls ``Leadrelay.submit`` once per lead (validation, form and
integration lookup, lead + delivery rows in one transaction, the broker message)
with no worker running. The baseline writes the same two rows per lead in one
transaction with SQLAlchemy Core on a plain connection of the same database: the
least a durable intake must do (SQLite with the ledger's own journal and sync settings).

- ``intake-sqlite``: the embedded default (SQLite, in-process broker).
- ``intake-postgres``: PostgreSQL, with the Redis broker receiving the messages.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa

from leadrelay.engine.ledger import Delivery, Lead

from ..core import Context, scenario
from ..rig import EngineSpec, integration_ids, lead, setup_form
from ..services import flush_redis, psycopg_url, scratch_postgres

UNITS = {"engine_per_s": "leads/s", "raw_per_s": "2-row commits/s", "ratio": "engine ÷ raw"}


def engine_rate(ctx: Context, database_url: str, broker_url: str | None, home: Path) -> float:
    """Leads/s through ``submit``, one lead per call, one thread."""
    if broker_url:
        flush_redis(broker_url)
    app = EngineSpec.new(home, database_url, broker_url).build()
    try:
        form = setup_form(app, {"url": ctx.crm.url})
        app.submit(form, lead(0))  # connections and statement caches warm
        n = ctx.sizes.intake_leads
        deadline = ctx.deadline()
        t0 = time.perf_counter()
        for i in range(1, n + 1):
            app.submit(form, lead(i))
            if time.monotonic() > deadline:
                raise TimeoutError(f"intake: {i} of {n} leads in time")
        return n / (time.perf_counter() - t0)
    finally:
        app.close()


def raw_rate(ctx: Context, database_url: str, home: Path) -> float:
    """Two-row transactions/s (lead + delivery) with Core on a plain connection."""
    app = EngineSpec.new(home, database_url, None).build()  # the schema, a form, an integration
    try:
        form = setup_form(app, {"url": ctx.crm.url})
        integration = next(iter(integration_ids(app).values()))
    finally:
        app.close()
    engine = sa.create_engine(psycopg_url(database_url))
    if engine.dialect.name == "sqlite":  # the durability the engine runs SQLite with
        sa.event.listen(engine, "connect", _sqlite_like_the_ledger)
    leads, deliveries = cast(sa.Table, Lead.__table__), cast(sa.Table, Delivery.__table__)
    insert_lead = leads.insert().returning(leads.c.id)
    insert_delivery = deliveries.insert()

    def one(i: int) -> None:
        now = datetime.now(UTC)
        with engine.begin() as conn:
            lead_id = conn.execute(
                insert_lead,
                {
                    "form_id": form,
                    "source": "form",
                    "payload": lead(i),
                    "external_id": None,
                    "received_at": now,
                },
            ).scalar_one()
            conn.execute(
                insert_delivery,
                {
                    "lead_id": lead_id,
                    "integration_id": integration,
                    "state": "pending",
                    "attempts_count": 0,
                    "total_attempts": 0,
                    "replays": 0,
                    "next_due_at": now,
                    "queued_for": now,
                    "idempotency_key": uuid.uuid4().hex,
                    "created_at": now,
                },
            )

    try:
        one(0)
        n = ctx.sizes.intake_leads
        t0 = time.perf_counter()
        for i in range(1, n + 1):
            one(i)
        return n / (time.perf_counter() - t0)
    finally:
        engine.dispose()


def _sqlite_like_the_ledger(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        cur.execute(f"PRAGMA {pragma}")
    cur.close()


def paired(ctx: Context, engine: Callable[[], float], raw: Callable[[], float]) -> dict[str, float]:
    """Both measures, alternating which goes first, and their ratio."""
    first, second = (engine, raw) if ctx.rep % 2 == 0 else (raw, engine)
    a, b = first(), second()
    e, r = (a, b) if ctx.rep % 2 == 0 else (b, a)
    return {"engine_per_s": e, "raw_per_s": r, "ratio": e / r}


@scenario(
    "intake-sqlite",
    "Intake cost — embedded (SQLite, in-process broker)",
    headline="ratio",
    units=UNITS,
)
def intake_sqlite(ctx: Context) -> dict[str, float]:
    """One repetition on SQLite."""
    home = ctx.scratch / f"intake-sqlite-{ctx.rep}"
    ctx.note("shape", f"{ctx.sizes.intake_leads} leads, one `submit` per lead, one thread")
    return paired(
        ctx,
        lambda: engine_rate(ctx, f"sqlite:///{home / 'engine.db'}", None, home / "e"),
        lambda: raw_rate(ctx, f"sqlite:///{home / 'raw.db'}", home / "r"),
    )


@scenario(
    "intake-postgres",
    "Intake cost — PostgreSQL (+ Redis broker)",
    headline="ratio",
    units=UNITS,
    needs=("postgres", "redis"),
)
def intake_postgres(ctx: Context) -> dict[str, float]:
    """One repetition on PostgreSQL."""
    home = ctx.scratch / f"intake-pg-{ctx.rep}"
    ctx.note("shape", f"{ctx.sizes.intake_leads} leads, one `submit` per lead, one thread")

    def engine() -> float:
        with scratch_postgres(ctx.postgres_url) as url:
            return engine_rate(ctx, url, ctx.redis_url, home / "e")

    def raw() -> float:
        with scratch_postgres(ctx.postgres_url) as url:
            return raw_rate(ctx, url, home / "r")

    return paired(ctx, engine, raw)
