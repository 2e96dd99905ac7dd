"""Scenario 1: the background throughput ceiling, as a ratio of a raw POST loop.

N leads, one ``http_post`` integration, delivered end to end: intake (one
``submit`` per lead, from ``feeders`` threads as an API server's request threads
would call it; ``--intake-batch`` for ``submit_many``) → ledger → broker → worker
→ POST → match → ledger, timed from the first submit to the last delivery
recorded. The baseline POSTs the same bodies with the same concurrency (threads
and processes) to the same CRM, with a session configured like the engine's.

- ``throughput-sqlite``: the embedded default, one process (SQLite, in-process
  broker, ``threads`` worker threads, the sweeper) vs one process of ``threads``
  threads.
- ``throughput-postgres``: PostgreSQL + Redis, ``workers`` worker processes of
  ``threads`` threads, intake and the one sweeper in a third process, vs
  ``workers`` raw processes of ``threads`` threads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from leadrelay.engine.app import Leadrelay

from .. import raw
from ..core import Context, Target, scenario
from ..rig import ChildProcess, CpuMeter, EngineSpec, feed, probe, setup_form, spec_json
from ..services import POSTGRES_URL, flush_redis, scratch_postgres

UNITS = {
    "engine_per_s": "deliveries/s",
    "raw_per_s": "POSTs/s",
    "ratio": "engine ÷ raw",
    "engine_cpu_ms": "CPU ms per delivery",
    "raw_cpu_ms": "CPU ms per POST",
    "cpu_bound": "raw CPU ÷ engine CPU",
}


def embedded_rate(
    ctx: Context,
    database_url: str,
    count: int,
    home: Path,
    *,
    plugins_file: Path | None = None,
    integration: dict[str, Any] | None = None,
) -> float:
    """Deliveries/s of the embedded engine delivering ``count`` new leads end to end."""
    return embedded_measure(
        ctx, database_url, count, home, plugins_file=plugins_file, integration=integration
    )[0]


def embedded_measure(
    ctx: Context,
    database_url: str,
    count: int,
    home: Path,
    *,
    plugins_file: Path | None = None,
    integration: dict[str, Any] | None = None,
    during: Callable[[Leadrelay], AbstractContextManager[object]] | None = None,
) -> tuple[float, float]:
    """Deliveries/s of the embedded engine, and its CPU milliseconds per delivery;
    ``during(app)``: what else runs in the process meanwhile (the HTTP API)."""
    spec = EngineSpec.new(
        home, database_url, None, threads=ctx.sizes.threads, plugins_file=plugins_file
    )
    app = spec.build()
    try:
        form = setup_form(app, integration or {"url": ctx.crm.url})
        with probe(database_url) as p, (during(app) if during else nullcontext()):
            app.start_worker(threads=ctx.sizes.threads)
            app.start_sweeper()
            elapsed, cpu = _feed_until_delivered(ctx, app, form, count, p, CpuMeter([os.getpid()]))
    finally:
        app.close()
    return count / elapsed, cpu * 1000 / count


def distributed_rate(ctx: Context, database_url: str, count: int, home: Path) -> float:
    """Deliveries/s of PostgreSQL + Redis with ``workers`` worker processes."""
    return distributed_measure(ctx, database_url, count, home)[0]


def distributed_measure(
    ctx: Context, database_url: str, count: int, home: Path
) -> tuple[float, float]:
    """Deliveries/s of PostgreSQL + Redis with ``workers`` worker processes, and the CPU
    milliseconds per delivery of every process involved (intake, workers, PostgreSQL, Redis).
    """
    flush_redis(ctx.redis_url)
    spec = EngineSpec.new(home, database_url, ctx.redis_url, threads=ctx.sizes.threads)
    app = spec.build()  # intake and the one sweeper/scheduler
    workers: list[ChildProcess] = []
    try:
        form = setup_form(app, {"url": ctx.crm.url})
        workers = [
            ChildProcess("worker", spec_json(spec), log=home / f"worker-{i}.log")
            for i in range(ctx.sizes.workers)
        ]
        for w in workers:
            w.wait_ready()
        with probe(database_url) as p:
            app.start_sweeper()
            meter = CpuMeter([os.getpid(), *(w.proc.pid for w in workers)], services=True)
            elapsed, cpu = _feed_until_delivered(ctx, app, form, count, p, meter)
    finally:
        for w in workers:
            w.stop()
        app.close()
    return count / elapsed, cpu * 1000 / count


def _feed_until_delivered(
    ctx: Context, app: Leadrelay, form: int, count: int, progress: Any, meter: CpuMeter
) -> tuple[float, float]:
    """Feed ``count`` leads and wait for their last delivery: (seconds, CPU seconds)."""
    deadline = ctx.deadline()
    t0 = time.perf_counter()
    feed(
        app,
        [form],
        count,
        batch=ctx.sizes.intake_batch,
        feeders=ctx.sizes.feeders,
        deadline=deadline,
    )
    fed = time.perf_counter() - t0
    progress.wait_delivered(count, deadline)
    elapsed = time.perf_counter() - t0
    cpu = meter.seconds()
    ctx.log(f"intake done at {fed:.1f} s, last delivery at {elapsed:.1f} s")
    return elapsed, cpu


Measure = Callable[[], tuple[float, float]]


def paired(ctx: Context, engine: Measure, baseline: Measure) -> dict[str, float]:
    """Run engine and baseline (rate, CPU ms each), alternating which goes first."""
    if ctx.rep % 2 == 0:
        e, r = engine(), baseline()
    else:
        r = baseline()
        e = engine()
    return {
        "engine_per_s": e[0],
        "raw_per_s": r[0],
        "ratio": e[0] / r[0],
        "engine_cpu_ms": e[1],
        "raw_cpu_ms": r[1],
        "cpu_bound": r[1] / e[1],
    }


@scenario(
    "throughput-sqlite",
    "Background throughput ceiling — embedded (SQLite, in-process)",
    headline="ratio",
    target=Target("ratio", ">=", 0.6),
    units=UNITS,
)
def throughput_sqlite(ctx: Context) -> dict[str, float]:
    """One repetition of the embedded throughput ratio."""
    n = ctx.sizes.leads
    home = ctx.scratch / f"tp-sqlite-{ctx.rep}"
    ctx.note(
        "shape",
        f"{n} leads, 1 process ({ctx.sizes.feeders} intake threads, "
        f"{ctx.sizes.threads} worker threads, the sweeper); raw: 1 process, "
        f"{ctx.sizes.threads} threads, one shared Session",
    )
    return paired(
        ctx,
        lambda: embedded_measure(ctx, f"sqlite:///{home / 'ledger.db'}", n, home),
        lambda: raw.measure(ctx.crm.url, n, ctx.sizes.threads),
    )


@scenario(
    "throughput-postgres",
    "Background throughput ceiling — PostgreSQL + Redis, worker processes",
    headline="ratio",
    target=Target("ratio", ">=", 0.6),
    units=UNITS,
    needs=("postgres", "redis"),
)
def throughput_postgres(ctx: Context) -> dict[str, float]:
    """One repetition of the PostgreSQL + Redis throughput ratio."""
    n, w, t = ctx.sizes.leads, ctx.sizes.workers, ctx.sizes.threads
    home = ctx.scratch / f"tp-pg-{ctx.rep}"
    ctx.note(
        "shape",
        f"{n} leads; {w} worker processes x {t} threads, intake "
        f"({ctx.sizes.feeders} threads) + the sweeper in a third process; raw: {w} "
        f"processes x {t} threads",
    )

    def engine() -> tuple[float, float]:
        with scratch_postgres(ctx.postgres_url or POSTGRES_URL) as url:
            return distributed_measure(ctx, url, n, home)

    return paired(ctx, engine, lambda: raw.measure_processes(ctx.crm.url, n, w, t))
