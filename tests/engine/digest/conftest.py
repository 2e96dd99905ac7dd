"""Fixtures for the digest: a real SMTP server, an engine that sends to it, failed deliveries.

The engine's clock is the injected ``FakeClock`` (2026-01-01 09:00 UTC at the start), so
windows are moved through by hand: with the default 6 hours, the test starts inside the
06:00-12:00 window.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from smtp_mailbox import Mailbox

ONE_TRY = {"max_attempts": 1}
THREE_TRIES = {"max_attempts": 3, "delays": ["1m", "1m"], "jitter": 0}
OWNER = "owner@acme.test"


@pytest.fixture
def mailbox(unused_port: int) -> Iterator[Mailbox]:
    """A real SMTP server on loopback."""
    box = Mailbox(unused_port).start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def make_app(tmp_path: Path, database_url: str, clock: FakeClock, make_settings: Any
             ) -> Iterator[Callable[..., Leadrelay]]:
    """Engines on the backend under test, with the fake clock and digest settings given."""
    built: list[Leadrelay] = []

    def make(**digest: Any) -> Leadrelay:
        settings = dataclasses.replace(make_settings(tmp_path, database_url), **digest)
        app = Leadrelay(settings, clock=clock)
        built.append(app)
        return app

    try:
        yield make
    finally:
        for app in built:
            app.close()


@pytest.fixture
def app(make_app: Callable[..., Leadrelay], mailbox: Mailbox) -> Leadrelay:
    """An engine whose digests go to ``mailbox``."""
    return make_app(smtp_url=mailbox.url, public_url="https://leads.example")


@dataclasses.dataclass
class Crm:
    """An account with one form and integrations to a real HTTP CRM."""

    app: Leadrelay
    server: HTTPServer
    account_id: int
    form_id: int

    def integration(self, name: str, path: str, *, status: int = 400,
                    body: str = '{"error": "email is invalid"}', retry: Any = None) -> int:
        """An active integration whose CRM answers ``status`` with ``body``."""
        self.server.expect_request(path).respond_with_data(
            body, status=status, content_type="application/json")
        return self.app.manage.create_integration(
            self.form_id, name=name, connector="http_post",
            config={"url": self.server.url_for(path)}, active=True,
            retry=ONE_TRY if retry is None else retry).id

    def leads(self, n: int) -> list[int]:
        """Submit ``n`` leads and run every due attempt; the delivery ids."""
        ids = []
        for i in range(n):
            ids += self.app.submit(self.form_id, {"email": f"l{i}@example.com"}).delivery_ids
        self.app.deliver_due()
        return ids


@pytest.fixture
def crm(app: Leadrelay, httpserver: HTTPServer) -> Crm:
    """Acme, owned by ``owner@acme.test``, with one form."""
    account = app.manage.create_account("Acme", OWNER, plan="growth")
    form = app.manage.create_form(account.id, "Contact us")
    return Crm(app, httpserver, account.id, form.id)
