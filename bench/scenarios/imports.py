"""Bulk imports (issue 17): throughput into the ledger, memory on a big file, and what a
throttled import costs a live lead.

- ``import-sqlite`` / ``import-postgres``: rows/s of ``Importer`` with integration off
  (read, map, validate, hash, dedupe, store, count) against the same lead rows written
  by a bare script: ``executemany`` in transactions of the same size on SQLite, ``COPY``
  on PostgreSQL. Target: ratio ≥ 0.5.
- ``import-memory``: peak RSS of a child process importing a ``import_memory_rows``-row
  CSV (1,000,000 by default), read at a tenth of the rows and at the end: under 200 MB,
  and flat (the end no more than 10 % above the tenth).
- ``import-live-latency``: p99 of a live lead's time from ``submit`` to delivered on an
  idle embedded engine, then during a throttled import of ``import_rows`` rows to the
  same CRM. Target: ratio ≤ 2.
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa

from leadrelay.engine.imports import ImportOptions, parse_integrate
from leadrelay.engine.ledger import Delivery, Lead

from ..core import ROOT, Context, Target, scenario
from ..rig import EngineSpec, lead, probe, setup_form
from ..services import psycopg_url, scratch_postgres
from .intake import _sqlite_like_the_ledger, paired

UNITS = {"engine_per_s": "rows/s", "raw_per_s": "rows/s", "ratio": "engine ÷ raw"}
BATCH = 1000


def csv_bytes(rows: int, start: int = 0) -> bytes:
    """A CSV of ``rows`` distinct leads with a header row."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["first_name", "last_name", "email", "company"])
    for i in range(start, start + rows):
        one = lead(i)
        writer.writerow([one["first_name"], one["last_name"], f"row{i}@example.com",
                         one["company"]])
    return out.getvalue().encode()


def engine_rate(ctx: Context, database_url: str, home: Path) -> float:
    """Rows/s through an import with integration off."""
    app = EngineSpec.new(home, database_url, None).build()
    try:
        form = setup_form(app, {"url": ctx.crm.url})
        data = csv_bytes(ctx.sizes.import_rows)
        options = ImportOptions(integrate=parse_integrate("off"))
        t0 = time.perf_counter()
        report = app.imports.open(form, io.BytesIO(data), filename="bench.csv",
                                  options=options).run()
        took = time.perf_counter() - t0
        assert report.stored == ctx.sizes.import_rows, report
        return ctx.sizes.import_rows / took
    finally:
        app.close()


def raw_rate(ctx: Context, database_url: str, home: Path) -> float:
    """The same lead rows, parsed from the same CSV, written by a bare script."""
    app = EngineSpec.new(home, database_url, None).build()  # the schema and a form
    try:
        form = setup_form(app, {"url": ctx.crm.url})
    finally:
        app.close()
    engine = sa.create_engine(psycopg_url(database_url))
    postgres = engine.dialect.name == "postgresql"
    if not postgres:
        sa.event.listen(engine, "connect", _sqlite_like_the_ledger)
    leads = cast(sa.Table, Lead.__table__)
    data = csv_bytes(ctx.sizes.import_rows)
    t0 = time.perf_counter()
    reader = csv.DictReader(io.StringIO(data.decode()))
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        now = datetime.now(UTC)
        rows = [{"form_id": form, "source": "import", "payload": r,
                 "external_id": uuid.uuid4().hex, "received_at": now} for r in batch]
        with engine.begin() as conn:
            if postgres:
                raw = cast(Any, conn.connection.dbapi_connection)
                with raw.cursor() as cur, cur.copy(
                    "COPY leads (form_id, source, payload, external_id, received_at) FROM STDIN"
                ) as copy:
                    for r in rows:
                        copy.write_row((r["form_id"], r["source"], json.dumps(r["payload"]),
                                        r["external_id"], r["received_at"]))
            else:
                conn.execute(leads.insert(), rows)
        batch.clear()

    for row in reader:
        batch.append(row)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    took = time.perf_counter() - t0
    engine.dispose()
    return ctx.sizes.import_rows / took


@scenario("import-sqlite", "Import throughput, integration off — SQLite (vs executemany)",
          headline="ratio", target=Target("ratio", ">=", 0.5), units=UNITS)
def import_sqlite(ctx: Context) -> dict[str, float]:
    """One repetition on SQLite."""
    home = ctx.scratch / f"import-sqlite-{ctx.rep}"
    ctx.note("import-shape", f"{ctx.sizes.import_rows:,} CSV rows, batches of {BATCH}")
    return paired(
        ctx,
        lambda: engine_rate(ctx, f"sqlite:///{home / 'engine.db'}", home / "e"),
        lambda: raw_rate(ctx, f"sqlite:///{home / 'raw.db'}", home / "r"),
    )


@scenario("import-postgres", "Import throughput, integration off — PostgreSQL (vs COPY)",
          headline="ratio", target=Target("ratio", ">=", 0.5), units=UNITS,
          needs=("postgres",))
def import_postgres(ctx: Context) -> dict[str, float]:
    """One repetition on PostgreSQL."""
    home = ctx.scratch / f"import-pg-{ctx.rep}"

    def engine() -> float:
        with scratch_postgres(ctx.postgres_url) as url:
            return engine_rate(ctx, url, home / "e")

    def raw() -> float:
        with scratch_postgres(ctx.postgres_url) as url:
            return raw_rate(ctx, url, home / "r")

    return paired(ctx, engine, raw)


@scenario("import-memory", "Import memory — peak RSS on a big CSV (< 200 MB, flat)",
          headline="peak_end_mb", target=Target("peak_end_mb", "<=", 200), reps=1,
          units={"peak_tenth_mb": "MiB", "peak_end_mb": "MiB", "growth": "end ÷ tenth",
                 "rows_per_s": "rows/s"})
def import_memory(ctx: Context) -> dict[str, float]:
    """A child process imports a CSV written to disk beforehand, streaming it."""
    home = ctx.scratch / f"import-memory-{ctx.rep}"
    home.mkdir(parents=True, exist_ok=True)
    rows = ctx.sizes.import_memory_rows
    path = home / "big.csv"
    with path.open("wb") as out:
        for start in range(0, rows, 10_000):
            chunk = csv_bytes(min(10_000, rows - start), start)
            out.write(chunk if start == 0 else chunk.split(b"\n", 1)[1])
    ctx.note("import-memory", f"{rows:,} rows, {path.stat().st_size / 2**20:,.0f} MiB CSV")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, "-m", "bench.import_child",
         json.dumps({"home": str(home), "file": str(path), "rows": rows, "url": ctx.crm.url})],
        capture_output=True, text=True, env=env, timeout=ctx.sizes.timeout * 20, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"import child failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"peak_tenth_mb": result["tenth_mb"], "peak_end_mb": result["end_mb"],
            "growth": result["end_mb"] / result["tenth_mb"], "rows_per_s": result["per_s"]}


def _latencies(app: Any, form: int, count: int, deadline: float) -> list[float]:
    """Seconds from ``submit`` to delivered, one live lead after the other."""
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        accepted = app.submit(form, {"email": f"live{i}-{uuid.uuid4().hex[:6]}@example.com"})
        [delivery_id] = accepted.delivery_ids
        while True:
            with app.ledger.session() as s:
                state = s.get(Delivery, delivery_id).state
            if state == "delivered":
                break
            if time.monotonic() > deadline:
                raise TimeoutError("live lead not delivered in time")
            time.sleep(0.002)
        out.append(time.perf_counter() - t0)
        time.sleep(0.02)
    return out


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]


@scenario("import-live-latency", "Live-lead latency during a throttled import",
          headline="ratio", target=Target("ratio", "<=", 2.0),
          units={"idle_p99_ms": "ms", "importing_p99_ms": "ms", "ratio": "importing ÷ idle"})
def import_live_latency(ctx: Context) -> dict[str, float]:
    """Embedded engine with its worker; live leads idle, then during the import."""
    home = ctx.scratch / f"import-live-{ctx.rep}"
    app = EngineSpec.new(home, f"sqlite:///{home / 'ledger.db'}", None,
                         threads=ctx.sizes.threads).build()
    deadline = ctx.deadline()
    try:
        form = setup_form(app, {"url": ctx.crm.url})
        app.start_worker()
        app.start_sweeper(0.2)
        live = ctx.sizes.live_leads
        idle = _latencies(app, form, live, deadline)
        data = csv_bytes(ctx.sizes.import_rows)
        options = ImportOptions(integrate=parse_integrate(f"throttled={ctx.sizes.import_rate}/s"))
        prepared = app.imports.open(form, io.BytesIO(data), filename="throttled.csv",
                                    options=options)
        importing = threading.Thread(target=prepared.run, daemon=True)
        with probe(app.settings.database_url):
            importing.start()
            during = _latencies(app, form, live, deadline)
            importing.join(max(1.0, deadline - time.monotonic()))
        ctx.note("import-live", f"{live} live leads idle and during a {ctx.sizes.import_rows:,}"
                                f"-row import throttled at {ctx.sizes.import_rate}/s")
        a, b = _p99(idle), _p99(during)
        return {"idle_p99_ms": a * 1000, "importing_p99_ms": b * 1000, "ratio": b / a}
    finally:
        app.close()
