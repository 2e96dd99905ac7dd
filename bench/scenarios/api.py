"""API scenarios: intake through HTTP, and what real-time delivery adds to a visitor's wait.

Both run the API on uvicorn over a real loopback socket, in this process, and load it
from a separate client process (``bench.api_load``) with keep-alive connections.

- ``api-intake-sqlite`` / ``api-intake-postgres``: leads accepted per second at
  ``POST /v1/forms/{public_key}/leads`` (background mode: stored with their deliveries,
  answered 202, not sent), against a bare FastAPI route mounted on the same server for
  the run, which parses the same JSON body and does the same two inserts (lead,
  delivery) in one transaction with SQLAlchemy Core: the least a durable HTTP intake
  must do on that server.
- ``throughput-sqlite-api``: ``throughput-sqlite``'s embedded run with the HTTP API served
  by uvicorn in the same process, as ``leadrelay serve`` does, against the same run without
  it, alternating: what the API's presence costs the delivery path.
- ``realtime-overhead``: one visitor at a time posts to a form whose only integration is
  real-time, to a CRM answering in 50 ms; the overhead of a post is its answer time
  minus the CRM's own handling time, as the CRM measured it (from the request's first
  byte to its answer). The CRM runs in its own process (``bench.servers``, ``--delay``),
  so neither its parsing nor its threads share the engine's GIL, as no real CRM's do.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
import uvicorn
from fastapi import Body, FastAPI
from fastapi.responses import JSONResponse

from leadrelay.api.app import create_app
from leadrelay.api.server import bind, url_of
from leadrelay.engine.app import Leadrelay
from leadrelay.engine.ledger import Delivery, Lead

from ..core import Context, Target, scenario
from ..rig import ROOT, EngineSpec, integration_ids, lead
from ..servers import crm_server
from ..services import flush_redis, psycopg_url, scratch_postgres
from .throughput import embedded_measure

INTAKE_UNITS = {"engine_per_s": "leads/s", "raw_per_s": "posts/s", "ratio": "engine ÷ raw"}
#: Keep-alive connections of the intake client: a few browsers posting at once.
CONNECTIONS = 4
#: The CRM's own answer time in the real-time scenario.
CRM_SECONDS = 0.050


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` on uvicorn in a thread of this process, on a loopback port; its URL."""
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, access_log=False, server_header=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def load(url: str, body: dict[str, Any], count: int, connections: int,
         *, latencies: bool = False) -> dict[str, Any]:
    """Run the load client against ``url``; what it measured."""
    command = [sys.executable, "-m", "bench.api_load", "--url", url, "--body",
               json.dumps(body), "--count", str(count), "--connections", str(connections)]
    if latencies:
        command.append("--latencies")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    bad = {k: v for k, v in result["statuses"].items() if not k.startswith("2")}
    if bad:
        raise RuntimeError(f"the API answered {bad} to {url}")
    return result


def _form(app: Leadrelay, integration: dict[str, Any]) -> tuple[int, str]:
    """A fresh account's form with one active integration: (form id, public key)."""
    account = app.manage.create_account("Acme", "owner@acme.test", plan="scale")
    form = app.manage.create_form(account.id, "Contact us")
    app.manage.create_integration(form.id, active=True, connector="http_post",
                                  name="CRM", **integration)
    return form.id, form.public_key


def bare_intake(database_url: str, form_id: int, integration_id: int) -> FastAPI:
    """A FastAPI app with one route doing what a durable intake must: the baseline."""
    engine = sa.create_engine(psycopg_url(database_url))
    # SQLite has one writer: concurrent requests queue on a lock, as the ledger's do,
    # instead of in SQLite's busy handler, which sleeps up to 100 ms while polling.
    writer: Any = threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()
    leads, deliveries = cast(sa.Table, Lead.__table__), cast(sa.Table, Delivery.__table__)
    insert_lead = leads.insert().returning(leads.c.id)
    insert_delivery = deliveries.insert()
    raw = FastAPI()

    @raw.post("/raw")
    def store(payload: dict[str, Any] = Body(...)) -> JSONResponse:  # noqa: B008 - FastAPI's way
        now = datetime.now(UTC)
        with writer, engine.begin() as conn:
            lead_id = conn.execute(insert_lead, {
                "form_id": form_id, "source": "form", "payload": payload,
                "external_id": None, "received_at": now,
            }).scalar_one()
            conn.execute(insert_delivery, {
                "lead_id": lead_id, "integration_id": integration_id, "state": "pending",
                "attempts_count": 0, "total_attempts": 0, "replays": 0, "next_due_at": now,
                "queued_for": now, "idempotency_key": uuid.uuid4().hex, "created_at": now,
            })
        return JSONResponse({"lead_id": lead_id}, status_code=202)

    raw.state.dispose = engine.dispose
    return raw


def intake_rates(ctx: Context, database_url: str, broker_url: str | None,
                 home: Path) -> dict[str, float]:
    """Both intake measures on one database, alternating which goes first."""
    if broker_url:
        flush_redis(broker_url)
    engine = EngineSpec.new(home, database_url, broker_url).build()
    try:
        form_id, key = _form(engine, {"config": {"url": ctx.crm.url}})
        integration_id = next(iter(integration_ids(engine).values()))
        api = create_app(engine)
        raw = bare_intake(database_url, form_id, integration_id)
        api.mount("/bench", raw)
        n = ctx.sizes.api_leads
        with serving(api) as url:
            def measure(path: str) -> float:
                load(url + path, lead(0), 20, 1)  # warm: connections, statement caches
                return float(load(url + path, lead(1), n, CONNECTIONS)["per_s"])

            order = [("engine", f"/v1/forms/{key}/leads"), ("raw", "/bench/raw")]
            if ctx.rep % 2:
                order.reverse()
            rates = {name: measure(path) for name, path in order}
        raw.state.dispose()
    finally:
        engine.close()
    return {"engine_per_s": rates["engine"], "raw_per_s": rates["raw"],
            "ratio": rates["engine"] / rates["raw"]}


@scenario("api-intake-sqlite", "API intake — embedded (SQLite), over a bare FastAPI route",
          headline="ratio", target=Target("ratio", ">=", 0.7), units=INTAKE_UNITS)
def api_intake_sqlite(ctx: Context) -> dict[str, float]:
    """One repetition on SQLite."""
    home = ctx.scratch / f"api-intake-sqlite-{ctx.rep}"
    ctx.note("shape", f"{ctx.sizes.api_leads} posts, {CONNECTIONS} keep-alive connections")
    return intake_rates(ctx, f"sqlite:///{home / 'ledger.db'}", None, home)


@scenario("api-intake-postgres", "API intake — PostgreSQL (+ Redis), over a bare FastAPI route",
          headline="ratio", target=Target("ratio", ">=", 0.7), units=INTAKE_UNITS,
          needs=("postgres", "redis"))
def api_intake_postgres(ctx: Context) -> dict[str, float]:
    """One repetition on PostgreSQL."""
    home = ctx.scratch / f"api-intake-pg-{ctx.rep}"
    ctx.note("shape", f"{ctx.sizes.api_leads} posts, {CONNECTIONS} keep-alive connections")
    with scratch_postgres(ctx.postgres_url) as url:
        return intake_rates(ctx, url, ctx.redis_url, home)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@scenario("realtime-overhead",
          "Real-time overhead — a visitor's wait beyond a 50 ms CRM, through uvicorn",
          headline="p50_ms", target=Target("p99_ms", "<=", 20.0),
          units={"p50_ms": "ms", "p99_ms": "ms", "crm_ms": "ms (the CRM's own, median)"})
def realtime_overhead(ctx: Context) -> dict[str, float]:
    """One repetition on the embedded default: sequential posts, one visitor."""
    home = ctx.scratch / f"realtime-{ctx.rep}"
    engine = EngineSpec.new(home, f"sqlite:///{home / 'ledger.db'}", None).build()
    try:
        with crm_server(delay=CRM_SECONDS) as crm:
            _, key = _form(engine, {"config": {"url": crm.url}, "realtime": True,
                                    "realtime_budget": 3.0})
            n = ctx.sizes.realtime_posts
            ctx.note("shape", f"{n} sequential posts, CRM (its own process) answering in "
                              f"{CRM_SECONDS * 1000:g} ms, p99 target 20 ms, p50 target 5 ms")
            with serving(create_app(engine)) as url:
                path = f"{url}/v1/forms/{key}/leads"
                load(path, lead(0), 5, 1)  # warm
                crm.handled_ms()
                got = load(path, lead(1), n, 1, latencies=True)
            handled = crm.handled_ms()
        if "201" not in got["statuses"]:
            raise RuntimeError(f"no post was delivered in real time: {got['statuses']}")
        if len(handled) != len(got["latencies_ms"]):
            raise RuntimeError(f"{len(got['latencies_ms'])} posts, but the CRM handled "
                               f"{len(handled)}")
        overhead = [total - own for total, own in
                    zip(got["latencies_ms"], handled, strict=True)]
        return {"p50_ms": statistics.median(overhead), "p99_ms": _percentile(overhead, 0.99),
                "crm_ms": statistics.median(handled)}
    finally:
        engine.close()


@scenario(
    "throughput-sqlite-api",
    "Background throughput — embedded, with the HTTP API served in the process",
    headline="ratio",
    target=Target("ratio", ">=", 0.9),
    units={"with_api_per_s": "deliveries/s", "without_per_s": "deliveries/s",
           "ratio": "with API ÷ without"},
)
def throughput_with_api(ctx: Context) -> dict[str, float]:
    """One repetition: the embedded throughput run with and without the API up."""
    n = ctx.sizes.leads
    ctx.note("shape", f"{n} leads as throughput-sqlite; the API on uvicorn in a thread of the "
                      "same process (served, idle: leads come through submit as there)")

    def run(with_api: bool) -> float:
        home = ctx.scratch / f"tp-api-{ctx.rep}-{'with' if with_api else 'without'}"
        during = (lambda app: serving(create_app(app))) if with_api else None
        return embedded_measure(ctx, f"sqlite:///{home / 'ledger.db'}", n, home,
                                during=during)[0]

    order = [True, False] if ctx.rep % 2 == 0 else [False, True]
    rates = {with_api: run(with_api) for with_api in order}
    return {"with_api_per_s": rates[True], "without_per_s": rates[False],
            "ratio": rates[True] / rates[False]}
