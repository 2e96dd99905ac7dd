"""End to end through ``leadrelay serve`` as its own process: Meta's handshake and a signed
notification over real HTTP, the Graph read by its worker against the local Graph server,
and the lead delivered to a loopback CRM."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.ledger import Lead
from leadrelay.engine.secrets import SecretBox
from leadrelay.engine.settings import Settings

from .conftest import (
    APP_SECRET,
    FB_FORM_ID,
    LEADGEN_IDS,
    PAGE_ID,
    PAGE_TOKEN,
    VERIFY_TOKEN,
    VERSION,
    graph_lead,
    notification,
    signed,
)


def test_serve_answers_meta_and_delivers_a_facebook_lead(
    tmp_path: Path, database_url: str, httpserver: HTTPServer
) -> None:
    # Given a deployment whose Graph API is the local server, and a CRM
    httpserver.expect_request(f"/{VERSION}/{LEADGEN_IDS[0]}").respond_with_json(
        graph_lead(LEADGEN_IDS[0]))
    httpserver.expect_request("/crm", method="POST").respond_with_json({"id": "crm-7"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADRELAY_")}
    env.update(LEADRELAY_HOME=str(tmp_path / "home"), LEADRELAY_DATABASE_URL=database_url,
               LEADRELAY_SECRET_KEY=SecretBox.generate_key(), LEADRELAY_SWEEP_INTERVAL="0.2",
               LEADRELAY_PLUGINS_FILE=str(tmp_path / "plugins.toml"),
               LEADRELAY_FACEBOOK_GRAPH_URL=httpserver.url_for("").rstrip("/"),
               LEADRELAY_FACEBOOK_GRAPH_VERSION=VERSION,
               LEADRELAY_EGRESS_ALLOW="127.0.0.1")  # the CRM and the Graph API: loopback
    (tmp_path / "plugins.toml").write_text("")
    setup = Leadrelay(Settings.from_env(env))
    try:
        account = setup.manage.create_account("Acme", "owner@acme.test", plan="growth")
        form = setup.manage.create_form(account.id, "Lead ads")
        setup.manage.create_integration(form.id, name="CRM", connector="http_post",
                                        config={"url": httpserver.url_for("/crm")},
                                        active=True)
        setup.facebook.connect(account.id, PAGE_ID, app_secret=APP_SECRET,
                               verify_token=VERIFY_TOKEN, page_access_token=PAGE_TOKEN,
                               forms={FB_FORM_ID: form.id})
    finally:
        setup.close()
    serve = subprocess.Popen([sys.executable, "-m", "leadrelay.cli", "serve", "--port", "0"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    lines: list[str] = []

    def read() -> None:
        assert serve.stderr is not None
        lines.extend(serve.stderr)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        url = _url(lines)
        # When Meta verifies the webhook, then posts a signed notification
        hook = f"{url}/v1/facebook/webhook"
        handshake = httpx.get(hook, params={"hub.mode": "subscribe", "hub.challenge": "42",
                                            "hub.verify_token": VERIFY_TOKEN})
        body = notification(LEADGEN_IDS[0])
        posted = httpx.post(hook, content=body, headers=signed(body))
        # Then both are answered, and the lead reaches the CRM in the background
        assert handshake.status_code == 200 and handshake.text == "42"
        assert posted.status_code == 200 and posted.json()["stored"] == 1
        deadline = time.monotonic() + 20
        while not [r for r, _ in httpserver.log if r.path == "/crm"]:
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.05)
        [crm] = [r for r, _ in httpserver.log if r.path == "/crm"]
        assert crm.form["email"] == "amira.haddad@example.com"
        assert crm.form["facebook_leadgen_id"] == LEADGEN_IDS[0]
        # and no secret reached the process's log
        assert not any(s in "".join(lines) for s in (APP_SECRET, VERIFY_TOKEN, PAGE_TOKEN))
    finally:
        serve.terminate()
        serve.wait(20)
        reader.join(5)
    check = Leadrelay(Settings.from_env(env))
    try:
        with check.ledger.session() as s:
            assert [(lead.source, lead.external_id) for lead in s.scalars(sa.select(Lead))] == [
                ("facebook", LEADGEN_IDS[0])]
    finally:
        check.close()


def _url(lines: list[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"at (http://127\.0\.0\.1:\d+)", "".join(lines))
        if found:
            return found.group(1)
        time.sleep(0.05)
    raise AssertionError("no URL printed:\n" + "".join(lines))
