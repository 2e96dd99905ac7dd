"""Shared fixtures: every engine test runs on each ledger backend.

SQLite always runs. PostgreSQL and Redis run when reachable; when they are not,
their tests are skipped with the reason — except under CI (``CI=true``) or
``LEADRELAY_REQUIRE_SERVICES=1``, where a missing service fails the run.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.egress import ENV_VAR
from leadrelay.engine.secrets import SecretBox
from leadrelay.engine.settings import Settings

POSTGRES_URL = os.environ.get(
    "LEADRELAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("LEADRELAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = (
    os.environ.get("CI") == "true" or os.environ.get("LEADRELAY_REQUIRE_SERVICES") == "1"
)
FIXTURES = Path(__file__).parent / "fixtures"
#: The tests' CRMs, proxies and mail servers all listen on loopback: the test deployment
#: allows 127.0.0.1 explicitly (everything else loopback or private stays refused), for the
#: engines built here and, through the environment, for bare transports and the
#: processes tests start.
TEST_EGRESS_ALLOW = ("127.0.0.1",)
os.environ[ENV_VAR] = ",".join(TEST_EGRESS_ALLOW)


def _unavailable(service: str, error: Exception) -> None:
    message = f"{service} is not reachable ({type(error).__name__}: {error})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}; CI requires it", pytrace=False)
    pytest.skip(f"{message}; set LEADRELAY_REQUIRE_SERVICES=1 to make this a failure")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    admin_url = POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:
        _unavailable("PostgreSQL", exc)
    name = f"leadrelay_test_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()


_TABLES = "attempts, deliveries, leads, integrations, forms, accounts, plans"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A ledger URL on each backend, empty at the start of the test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url: str = request.getfixturevalue("postgres_database")
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        has_schema = conn.execute(sa.text("select to_regclass('deliveries')")).scalar()
        if has_schema:
            conn.execute(sa.text(f"truncate {_TABLES} restart identity cascade"))
    engine.dispose()
    return url


@pytest.fixture
def redis_url() -> str:
    """A Redis database for broker tests, emptied first."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL)
        client.flushdb()
    except Exception as exc:
        _unavailable("Redis", exc)
    return REDIS_URL


@pytest.fixture
def clock() -> FakeClock:
    """The injected clock; tests move it instead of sleeping."""
    return FakeClock()


def test_settings(
    tmp_path: Path,
    database_url: str,
    broker_url: str | None = None,
    plugins_file: Path | None = None,
) -> Settings:
    """Settings for a test engine: nothing read from the environment."""
    return Settings(
        home=tmp_path,
        database_url=database_url,
        broker_url=broker_url,
        secret_key=SecretBox.generate_key(),
        plugins_file=plugins_file,
        egress_allow=TEST_EGRESS_ALLOW,
    )


test_settings.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def make_settings():  # type: ignore[no-untyped-def]
    """Build engine settings for a test without reading the environment."""
    return test_settings


@pytest.fixture
def app(tmp_path: Path, database_url: str, clock: FakeClock) -> Iterator[Leadrelay]:
    """An engine on the backend under test, with the in-process broker and a fake clock."""
    engine = Leadrelay(test_settings(tmp_path, database_url), clock=clock)
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture
def form_id(app: Leadrelay) -> int:
    """A form of a fresh account on the growth plan."""
    account = app.manage.create_account("Acme", "owner@acme.test", plan="growth")
    return app.manage.create_form(account.id, "Contact us").id


def _poll(predicate: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@pytest.fixture
def wait_for() -> Callable[..., None]:
    """``wait_for(predicate, timeout=15)``: poll a real worker's progress (it runs in
    threads; nothing here sleeps through the engine's time, which the clock injects)."""
    return _poll


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
