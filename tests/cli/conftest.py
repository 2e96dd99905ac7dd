"""Fixtures for the CLI: a real engine on a temporary home, invoked as a user would.

Every verb runs against each ledger backend (the ``database_url`` fixture of
``tests/conftest.py``), with the settings given through ``LEADRELAY_*``
environment variables exactly as in production.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import Clock
from leadrelay.engine.secrets import SecretBox
from leadrelay.engine.settings import Settings

from .helpers import Cli


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Cli:
    """The CLI on a fresh home and ledger (SQLite, and PostgreSQL when reachable)."""
    plugins = tmp_path / "plugins.toml"
    plugins.write_text("# defaults: every installed connector enabled\n")
    # SQLite keeps the embedded default (a key generated in the home); a shared
    # database needs the key given, as in production.
    key = None if database_url.startswith("sqlite") else SecretBox.generate_key()
    return Cli(env={
        "LEADRELAY_HOME": str(tmp_path / "home"),
        "LEADRELAY_DATABASE_URL": database_url,
        "LEADRELAY_PLUGINS_FILE": str(plugins),
        "LEADRELAY_BROKER_URL": None,
        "LEADRELAY_SECRET_KEY": key,
        "LEADRELAY_LOAD_PLUGINS": None,
        "LEADRELAY_SWEEP_INTERVAL": "0.2",
        "LEADRELAY_EGRESS_ALLOW": "127.0.0.1",  # the tests' CRMs are on loopback
        # Wide tables, so a long value is never cut where a test looks for it.
        "COLUMNS": "300",
    })


@pytest.fixture
def engine_for(cli: Cli) -> Iterator[Callable[..., Leadrelay]]:
    """Build engines on the CLI's ledger (to prepare state or run deliveries)."""
    built: list[Leadrelay] = []

    def build(*, clock: Clock | None = None, **env: str | None) -> Leadrelay:
        environ = {k: v for k, v in {**cli.env, **env}.items() if v is not None}
        app = Leadrelay(Settings.from_env(environ), clock=clock)
        built.append(app)
        return app

    try:
        yield build
    finally:
        for app in built:
            app.close()


@pytest.fixture
def engine(engine_for: Callable[..., Leadrelay]) -> Leadrelay:
    """An engine on the CLI's ledger, with the in-process broker and the real clock."""
    return engine_for()


@pytest.fixture
def form(cli: Cli) -> int:
    """A form of a fresh account, created through the CLI."""
    account = cli.json("accounts", "create", "--name", "Acme", "--owner-email",
                       "owner@acme.test", "--plan", "growth", "--json")
    return int(cli.json("forms", "create", "--account", str(account["id"]), "--name",
                        "Contact us", "--json")["id"])
