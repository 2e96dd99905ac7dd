"""Fixtures for Facebook Lead Ads: a real local Graph API server, an engine pointed at it,
a connected page, and notifications signed over the exact bytes posted.

The Graph server is a real HTTP server on loopback (pytest-httpserver) answering the
shared contract's bodies (``tests/fixtures/facebook-lead-ads``, see its PROVENANCE.md).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer

from leadrelay.api import create_app
from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.secrets import SecretBox
from leadrelay.engine.settings import Settings
from leadrelay.facebook import GraphSettings, sign

FIXTURES = Path(__file__).parent.parent / "fixtures" / "facebook-lead-ads"
APP_SECRET = "app-secret-0123456789abcdef"
VERIFY_TOKEN = "my-verify-token"
PAGE_TOKEN = "EAAGpagetoken-secret-xyz"
PAGE_ID = "104736952280912"
FB_FORM_ID = "1418823349021556"
LEADGEN_IDS = ("2054613328793012", "2054613328793013")
VERSION = "v21.0"


def fixture(name: str) -> Any:
    """One of the contract's JSON bodies."""
    return json.loads((FIXTURES / name).read_text())


def notification(*leadgen_ids: str, form_id: str = FB_FORM_ID,
                 page_id: str = PAGE_ID) -> bytes:
    """The contract's notification with these leads (one change each), as bytes."""
    body = fixture("leadgen_notification.json")
    template = body["entry"][0]["changes"][0]
    changes = []
    for leadgen_id in leadgen_ids:
        change = copy.deepcopy(template)
        change["value"].update(leadgen_id=leadgen_id, form_id=form_id, page_id=page_id)
        changes.append(change)
    body["entry"][0]["changes"] = changes
    body["entry"][0]["id"] = page_id
    return json.dumps(body).encode()


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    """The headers Facebook sends with ``body``."""
    return {"X-Hub-Signature-256": sign(body, secret), "Content-Type": "application/json"}


def graph_lead(leadgen_id: str, **changes: Any) -> dict[str, Any]:
    """The contract's Graph lead, for ``leadgen_id``."""
    return {**fixture("graph_lead.json"), "id": leadgen_id, **changes}


@dataclass
class Graph:
    """The local Graph API server, scripted per lead."""

    server: HTTPServer

    @property
    def url(self) -> str:
        return self.server.url_for("").rstrip("/")

    def path(self, leadgen_id: str) -> str:
        return f"/{VERSION}/{leadgen_id}"

    def serves(self, leadgen_id: str, body: Any = None, status: int = 200) -> None:
        """Answer reads of ``leadgen_id`` with ``body`` (the contract's lead by default)."""
        self.server.expect_request(self.path(leadgen_id), method="GET").respond_with_json(
            graph_lead(leadgen_id) if body is None else body, status=status)

    def fails_once(self, leadgen_id: str, body: Any, status: int) -> None:
        """The next read of ``leadgen_id`` gets this answer; later ones the usual one."""
        self.server.expect_oneshot_request(self.path(leadgen_id), method="GET") \
            .respond_with_json(body, status=status)

    def reads(self, leadgen_id: str) -> list[Any]:
        """The requests that read ``leadgen_id``."""
        return [r for r, _ in self.server.log if r.path == self.path(leadgen_id)]


@pytest.fixture
def graph(httpserver: HTTPServer) -> Graph:
    """The Graph API on loopback."""
    return Graph(httpserver)


@pytest.fixture
def engine(tmp_path: Path, database_url: str, clock: FakeClock, graph: Graph
           ) -> Iterator[Leadrelay]:
    """An engine whose Graph API is the local server (in-process broker, fake clock)."""
    settings = Settings(home=tmp_path, database_url=database_url, broker_url=None,
                        secret_key=SecretBox.generate_key(), plugins_file=None)
    app = Leadrelay(settings, clock=clock,
                    graph=GraphSettings(base_url=graph.url, version=VERSION, timeout=2))
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def client(engine: Leadrelay) -> Iterator[TestClient]:
    """The API over ``engine``."""
    with TestClient(create_app(engine), raise_server_exceptions=False) as c:
        yield c


@dataclass
class Setup:
    """An account with a form, its key, and its connected page."""

    account_id: int
    form_id: int
    headers: dict[str, str]
    connection_id: int


@pytest.fixture
def setup(engine: Leadrelay) -> Setup:
    """The page of the contract connected, its lead form mapped to a form."""
    account = engine.manage.create_account("Acme", "owner@acme.test", plan="growth")
    form = engine.manage.create_form(account.id, "Solar leads")
    key = engine.keys.create(account.id, name="api")
    row = engine.facebook.connect(account.id, PAGE_ID, app_secret=APP_SECRET,
                                  verify_token=VERIFY_TOKEN, page_access_token=PAGE_TOKEN,
                                  forms={FB_FORM_ID: form.id})
    return Setup(account.id, form.id, {"Authorization": f"Bearer {key.secret}"}, row.id)
