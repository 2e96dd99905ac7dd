"""Facebook Lead Ads: how fast the webhook accepts notifications, and how long a lead takes
from its notification to being stored when the Graph API answers in 100 ms.

- ``facebook-webhook``: signed notifications (one new ``leadgen_id`` each) posted by a load
  client in its own process (``bench.facebook_load``) to ``POST /v1/facebook/webhook`` on
  uvicorn, embedded default (SQLite). The Graph read is deferred: each notification is
  verified and stored, and no worker runs, so no read competes with the acceptance being
  measured. Headline: notifications accepted per second.
- ``facebook-read-latency``: one notification at a time, with the worker running and a local
  Graph API answering every read after 100 ms; the time from the POST leaving to the lead
  being in the ledger (polled every 2 ms). Headline: its median, in ms; ``overhead_ms`` is
  that minus the Graph server's 100 ms.
"""

from __future__ import annotations

import http.client
import http.server
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from leadrelay.api.app import create_app
from leadrelay.engine.app import Leadrelay
from leadrelay.engine.ledger import FacebookLead, Lead
from leadrelay.facebook import GraphSettings, sign

from ..core import Context, scenario
from ..rig import ROOT, EngineSpec
from .api import serving

PAGE_ID = "104736952280912"
FB_FORM = "1418823349021556"
SECRET = "bench-app-secret"
#: The local Graph API's answer time.
GRAPH_SECONDS = 0.100
CONNECTIONS = 4


class _Graph(http.server.BaseHTTPRequestHandler):
    """Answers every lead read with the contract's shape, after :data:`GRAPH_SECONDS`."""

    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        time.sleep(GRAPH_SECONDS)
        leadgen_id = urlsplit(self.path).path.rsplit("/", 1)[-1]
        body = json.dumps({"id": leadgen_id, "created_time": "2026-12-02T13:59:58+0000",
                           "ad_id": "23851234567890123", "form_id": FB_FORM, "field_data": [
                               {"name": "full_name", "values": ["Amira Haddad"]},
                               {"name": "email", "values": ["amira.haddad@example.com"]},
                               {"name": "phone_number", "values": ["+33612345678"]}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@contextmanager
def graph_server() -> Iterator[str]:
    """The local Graph API on a loopback port; its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Graph)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _engine(home: Path, graph_url: str, threads: int) -> tuple[Leadrelay, int]:
    """An embedded engine whose Graph API is ``graph_url``, the page connected; (app, form)."""
    spec = EngineSpec.new(home, f"sqlite:///{home / 'ledger.db'}", threads=threads)
    app = Leadrelay(spec.settings(), graph=GraphSettings(base_url=graph_url, timeout=5))
    account = app.manage.create_account("Acme", "owner@acme.test", plan="scale")
    form = app.manage.create_form(account.id, "Lead ads")
    app.facebook.connect(account.id, PAGE_ID, app_secret=SECRET, verify_token="bench-verify",
                         page_access_token="bench-page-token", forms={FB_FORM: form.id})
    return app, form.id


@scenario("facebook-webhook", "Facebook webhook: notifications accepted/s, Graph read deferred",
          headline="accepted_per_s", units={"accepted_per_s": "notifications/s"})
def webhook(ctx: Context) -> dict[str, float]:
    """Notifications/s at the webhook, each verified and stored, none read yet."""
    home = ctx.scratch / f"fb-webhook-{ctx.rep}"
    count = ctx.sizes.api_leads
    with graph_server() as graph_url:
        app, _ = _engine(home, graph_url, ctx.sizes.threads)
        try:
            with serving(create_app(app)) as url:
                command = [sys.executable, "-m", "bench.facebook_load", "--url",
                           f"{url}/v1/facebook/webhook", "--secret", SECRET, "--page", PAGE_ID,
                           "--form", FB_FORM, "--count", str(count), "--connections",
                           str(CONNECTIONS)]
                done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                      timeout=ctx.sizes.timeout, check=True)
                result = json.loads(done.stdout.strip().splitlines()[-1])
            if result["statuses"] != {"200": count}:
                raise RuntimeError(f"the webhook answered {result['statuses']}")
            with app.ledger.session() as s:
                stored = s.scalar(sa.select(sa.func.count()).select_from(FacebookLead))
            if stored != count:
                raise RuntimeError(f"{stored} of {count} notifications stored")
        finally:
            app.close()
    ctx.note("facebook-webhook", f"{count} notifications, {CONNECTIONS} connections, SQLite")
    return {"accepted_per_s": float(result["per_s"])}


@scenario("facebook-read-latency",
          "Facebook: notification to lead stored, Graph answering in 100 ms",
          headline="stored_ms_p50",
          units={"stored_ms_p50": "ms", "stored_ms_p95": "ms", "overhead_ms": "ms"})
def read_latency(ctx: Context) -> dict[str, float]:
    """Per notification, the time until its lead is stored (the worker reads Graph)."""
    home = ctx.scratch / f"fb-latency-{ctx.rep}"
    count = ctx.sizes.realtime_posts
    times: list[float] = []
    with graph_server() as graph_url:
        app, form_id = _engine(home, graph_url, ctx.sizes.threads)
        try:
            app.start_worker()
            with serving(create_app(app)) as url:
                parts = urlsplit(url)
                conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
                deadline = ctx.deadline()
                for i in range(count):
                    leadgen_id = str(8_000_000_000 + i)
                    body = _notification(leadgen_id)
                    started = time.perf_counter()
                    conn.request("POST", "/v1/facebook/webhook", body=body, headers={
                        "Content-Type": "application/json",
                        "X-Hub-Signature-256": sign(body, SECRET)})
                    answer = conn.getresponse()
                    answer.read()
                    if answer.status != 200:
                        raise RuntimeError(f"the webhook answered {answer.status}")
                    while not _stored(app, form_id, leadgen_id):
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"lead {i} of {count} not stored in time")
                        time.sleep(0.002)
                    times.append((time.perf_counter() - started) * 1000)
                conn.close()
        finally:
            app.close()
    p50 = statistics.median(times)
    p95 = statistics.quantiles(times, n=20)[-1] if len(times) >= 2 else times[0]
    ctx.note("facebook-read-latency", f"{count} notifications one at a time, SQLite, "
             f"Graph answering in {GRAPH_SECONDS * 1000:.0f} ms")
    return {"stored_ms_p50": p50, "stored_ms_p95": p95,
            "overhead_ms": p50 - GRAPH_SECONDS * 1000}


def _notification(leadgen_id: str) -> bytes:
    return json.dumps({"object": "page", "entry": [{"id": PAGE_ID, "time": 1, "changes": [
        {"field": "leadgen", "value": {"leadgen_id": leadgen_id, "form_id": FB_FORM,
                                       "page_id": PAGE_ID, "ad_id": "1"}}]}]}).encode()


def _stored(app: Leadrelay, form_id: int, leadgen_id: str) -> bool:
    with app.ledger.session() as s:
        return s.scalar(sa.select(Lead.id).where(
            Lead.form_id == form_id, Lead.source == "facebook",
            Lead.external_id == leadgen_id)) is not None
