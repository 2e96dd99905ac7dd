"""No secret in any form on any surface.

Two integrations deliver, with a bearer token, a secret header, a secret query
parameter, a basic-auth password and a static-IP proxy's password, to a CRM that
echoes everything it received (raw, JSON-escaped, XML-escaped, base64, percent-encoded,
hex and MD5 forms) and gives the bearer token back as its CRM reference. Then every
surface is scanned for every form of every secret: the API's answers (deliveries,
leads, integrations, the digest preview, metrics), the CLI's, the DEBUG log of the
process, and a raw dump of every ledger table, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.secrets import SecretBox
from leadrelay.engine.settings import Settings

from .conftest import bearer

TOKEN = 'tok/en+"&<x>-7781'
HEADER_SECRET = "hdr'sec<ret>&91"
QUERY_SECRET = "q/s+cr&t=1 x"
BASIC_USER, BASIC_PASSWORD = "api-user", 'pa:ss/w"rd&<1>'
PROXY_USER, PROXY_PASSWORD = "relay", "pr/xy:p&ss'55"
SECRETS = [TOKEN, HEADER_SECRET, QUERY_SECRET, BASIC_PASSWORD, PROXY_PASSWORD,
           f"{BASIC_USER}:{BASIC_PASSWORD}", f"{PROXY_USER}:{PROXY_PASSWORD}"]


def forms(secret: str) -> set[str]:
    """Every form of ``secret`` the scan looks for."""
    raw = secret.encode()
    found = {secret, quote(secret, safe=""), quote_plus(secret), quote(secret),
             base64.b64encode(raw).decode(), json.dumps(secret)[1:-1],
             html.escape(secret), html.escape(secret, quote=False), raw.hex(),
             hashlib.md5(raw).hexdigest()}
    return {f for f in found if len(f) >= 3}


class EchoCrm(http.server.BaseHTTPRequestHandler):
    """Answers with everything it received, in several encodings; ``/bad`` refuses."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        head = {"line": self.requestline, "headers": dict(self.headers.items()), "body": body}
        text = json.dumps(head)
        auth = self.headers.get("Authorization", "")
        proxy_auth = self.headers.get("Proxy-Authorization", "")
        decoded = [base64.b64decode(v.split()[-1]).decode() for v in (auth, proxy_auth)
                   if v.startswith("Basic ")]
        echo = {
            "ref": auth.removeprefix("Bearer "),
            "echo": head,
            "xml": html.escape(text),
            "b64": base64.b64encode(text.encode()).decode(),
            "decoded": decoded,
            "forms": {s: sorted(forms(s)) for s in (TOKEN, HEADER_SECRET, QUERY_SECRET,
                                                    *decoded)
                      if s in text or s in decoded},
        }
        answer = json.dumps(echo).encode()
        self.send_response(422 if "/bad" in self.path else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Echo-Auth", auth + " " + proxy_auth)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_crm() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoCrm)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def engine(tmp_path: Path, database_url: str, clock: FakeClock, echo_crm: str,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Leadrelay]:
    """An engine whose static-IP pool's proxy is the echo CRM itself (it sees the
    Proxy-Authorization a real proxy would)."""
    monkeypatch.setenv("SURFACES_PROXY_PASSWORD", PROXY_PASSWORD)
    plugins = tmp_path / "plugins.toml"
    proxy_url = echo_crm.replace("http://", f"http://{PROXY_USER}@")
    plugins.write_text(
        "[proxies.default]\nproxies = [{name = \"egress-a\", "
        f"url = \"{proxy_url}\", password_env = \"SURFACES_PROXY_PASSWORD\", "
        "egress_ips = [\"203.0.113.10\"]}]\n")
    app = Leadrelay(Settings(home=tmp_path, database_url=database_url, broker_url=None,
                             secret_key=SecretBox.generate_key(), plugins_file=plugins,
                             egress_allow=("127.0.0.1",)), clock=clock)
    try:
        yield app
    finally:
        app.close()


def test_no_secret_in_any_form_on_any_surface(
    engine: Leadrelay, client: TestClient, operator: dict[str, str], echo_crm: str,
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # Given an account with two integrations carrying every kind of secret
    account = client.post("/v1/accounts", headers=operator,
                          json={"name": "Acme", "owner_email": "o@acme.test", "plan": "growth"})
    account_id = account.json()["id"]
    key = client.post(f"/v1/accounts/{account_id}/keys", headers=operator, json={})
    tenant = bearer(key.json()["key"])
    form = client.post("/v1/forms", headers=tenant, json={"name": "Contact"}).json()
    direct = client.post("/v1/integrations", headers=tenant, json={
        "form_id": form["id"], "name": "Direct", "connector": "http_post", "active": True,
        "config": {"url": f"{echo_crm}/ok", "body": "json",
                   "auth": {"type": "bearer", "token": TOKEN},
                   "secret_headers": {"X-Api-Secret": HEADER_SECRET},
                   "secret_query": {"api_token": QUERY_SECRET}},
        "expectations": {"rules": [{"kind": "status", "in": ["2xx"]}],
                         "reference": {"json": "ref"}},
    })
    assert direct.status_code == 201, direct.text
    proxied = client.post("/v1/integrations", headers=tenant, json={
        "form_id": form["id"], "name": "Proxied", "connector": "http_post_static_ip",
        "active": True, "retry": {"max_attempts": 1},
        "config": {"url": f"{echo_crm}/bad?x=1", "body": "form",
                   "auth": {"type": "basic", "username": BASIC_USER,
                            "password": BASIC_PASSWORD}},
    })
    assert proxied.status_code == 201, proxied.text

    # When a lead is delivered to both (the proxied one is refused by the CRM)
    accepted = engine.submit(form["id"], {"email": "jane@example.com", "note": "hello"})
    results = {r.integration_id: r for r in engine.deliver_due()}
    assert results[direct.json()["id"]].outcome.value == "accepted"
    assert results[proxied.json()["id"]].outcome.value == "rejected"
    # (the CRM did see the secrets: the scan below is not vacuous)
    assert results[direct.json()["id"]].crm_reference == "[REDACTED]"

    # Then no form of any secret is on any surface
    surfaces: dict[str, str] = {}
    for path in ("/v1/deliveries", "/v1/deliveries/failed", f"/v1/leads/{accepted.lead_id}",
                 "/v1/integrations", *(f"/v1/deliveries/{d}" for d in accepted.delivery_ids),
                 f"/v1/integrations/{direct.json()['id']}"):
        answer = client.get(path, headers=tenant)
        assert answer.status_code == 200, (path, answer.text)
        surfaces[f"API {path}"] = answer.text
    preview = client.get(f"/v1/accounts/{account_id}/digest/preview", headers=operator)
    assert preview.status_code == 200, preview.text
    surfaces["digest preview"] = preview.text
    surfaces["metrics"] = client.get("/metrics", headers=operator).text
    surfaces["CLI"] = _cli_outputs(engine, database_url, tmp_path, accepted.delivery_ids)
    surfaces["DEBUG log"] = "\n".join(r.getMessage() for r in caplog.records)
    surfaces["ledger dump"] = _dump(database_url)

    leaks = [(where, secret, form) for where, text in surfaces.items()
             for secret in SECRETS for form in forms(secret) if form in text]
    assert leaks == []
    # (the CRM did see the proxy's credentials and the basic auth: both came back)
    assert "'X-Echo-Auth': 'Basic [REDACTED] Basic [REDACTED]'" in surfaces["ledger dump"]


def _dump(database_url: str) -> str:
    """Every row of every table of the ledger, as text."""
    url = database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    db = sa.create_engine(url)
    try:
        meta = sa.MetaData()
        meta.reflect(db)
        with db.connect() as conn:
            rows = [tuple(row) for table in meta.sorted_tables
                    for row in conn.execute(table.select())]
        # Each value as Python shows it and as JSON would (escaped forms included).
        return "\n".join(f"{row!r}\n{json.dumps(row, default=str)}" for row in rows)
    finally:
        db.dispose()


def _cli_outputs(engine: Leadrelay, database_url: str, tmp_path: Path,
                 delivery_ids: list[int]) -> str:
    from leadrelay.cli import main

    env = {"LEADRELAY_HOME": str(tmp_path), "LEADRELAY_DATABASE_URL": database_url,
           "LEADRELAY_SECRET_KEY": engine.settings.secret_key,
           "LEADRELAY_PLUGINS_FILE": str(engine.settings.plugins_file),
           "LEADRELAY_EGRESS_ALLOW": "127.0.0.1", "COLUMNS": "300"}
    runner = CliRunner()
    out: list[str] = []
    for args in (["deliveries"], ["deliveries", "--json"], ["integrations"],
                 *(["inspect", str(d)] for d in delivery_ids),
                 *(["inspect", str(d), "--json"] for d in delivery_ids)):
        result = runner.invoke(main, args, env=env)
        out.append(f"$ {' '.join(args)} -> {result.exit_code}\n{result.output}")
    return "\n".join(out)


