"""Fixtures for the HTTP API: the app over a real engine, accounts with their keys.

Every test runs on each ledger backend (``database_url`` of ``tests/conftest.py``),
through FastAPI's ASGI test client; ``test_server.py`` runs a real uvicorn instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from leadrelay.api import create_app
from leadrelay.engine.app import Leadrelay
from leadrelay.engine.secrets import SecretBox

LEAD = {"first_name": "Jane", "last_name": "Doe", "email": "jane.doe@example.com"}


@dataclass
class Tenant:
    """An account, one of its forms, and its API key's headers."""

    account_id: int
    form: dict[str, Any]
    headers: dict[str, str]

    @property
    def form_id(self) -> int:
        return int(self.form["id"])

    @property
    def form_key(self) -> str:
        return str(self.form["public_key"])


@pytest.fixture
def engine(app: Leadrelay) -> Leadrelay:
    """The engine behind the API (in-process broker, fake clock)."""
    return app


@pytest.fixture
def client(engine: Leadrelay) -> Iterator[TestClient]:
    """The API over ``engine``, through the ASGI test client."""
    with TestClient(create_app(engine), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def operator(engine: Leadrelay) -> dict[str, str]:
    """Headers carrying an operator key."""
    return bearer(engine.keys.create(None, name="ops", operator=True).secret)


def bearer(secret: str) -> dict[str, str]:
    """The ``Authorization`` header for a key."""
    return {"Authorization": f"Bearer {secret}"}


def make_tenant(client: TestClient, operator: dict[str, str], name: str, **form: Any) -> Tenant:
    """An account on the growth plan made through the API, its key, and one form."""
    account = client.post("/v1/accounts", headers=operator, json={
        "name": name, "owner_email": f"owner@{name.lower()}.test", "plan": "growth"})
    assert account.status_code == 201, account.text
    account_id = account.json()["id"]
    key = client.post(f"/v1/accounts/{account_id}/keys", headers=operator, json={})
    assert key.status_code == 201, key.text
    headers = bearer(key.json()["key"])
    made = client.post("/v1/forms", headers=headers, json={"name": "Contact us", **form})
    assert made.status_code == 201, made.text
    return Tenant(account_id, made.json(), headers)


@pytest.fixture
def acme(client: TestClient, operator: dict[str, str]) -> Tenant:
    """Account A."""
    return make_tenant(client, operator, "Acme", allowed_origins=["https://acme.example"])


@pytest.fixture
def globex(client: TestClient, operator: dict[str, str]) -> Tenant:
    """Account B."""
    return make_tenant(client, operator, "Globex")


def add_integration(
    client: TestClient, tenant: Tenant, url: str, *, active: bool = True, **extra: Any
) -> dict[str, Any]:
    """An ``http_post`` integration of the tenant's form, made through the API."""
    made = client.post("/v1/integrations", headers=tenant.headers, json={
        "form_id": tenant.form_id, "name": "CRM", "connector": "http_post",
        "config": {"url": url}, "active": active, **extra})
    assert made.status_code == 201, made.text
    return dict(made.json())


def error_of(response: Any) -> dict[str, Any]:
    """The ``error`` object of an error answer (and check the one body shape)."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "field"} <= set(body["error"]), body
    return dict(body["error"])


@pytest.fixture
def environ(tmp_path: Path, database_url: str) -> dict[str, str]:
    """The environment of a leadrelay process on the ledger under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADRELAY_")}
    env.update(LEADRELAY_HOME=str(tmp_path / "home"), LEADRELAY_DATABASE_URL=database_url,
               LEADRELAY_SECRET_KEY=SecretBox.generate_key(), LEADRELAY_SWEEP_INTERVAL="0.2",
               LEADRELAY_PLUGINS_FILE=str(tmp_path / "plugins.toml"),
               LEADRELAY_EGRESS_ALLOW="127.0.0.1")
    (tmp_path / "plugins.toml").write_text("")
    return env
