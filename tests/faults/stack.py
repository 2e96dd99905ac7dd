"""One deployment under test: a scratch ledger, a broker, settings, and the processes.

Two shapes, as operators run leadrelay:

- ``postgresql``: a PostgreSQL database made for the test (dropped after it), a Redis
  database of its own, and ``leadrelay worker`` / ``leadrelay scheduler`` processes;
  optionally behind a :class:`~.forwarder.Forwarder`, so the test can cut the database.
- ``sqlite``: the embedded default, one ``leadrelay serve`` process on a SQLite file.

The test process itself is a client: it sets up accounts, forms and integrations and
submits leads through an engine of its own (as ``leadrelay submit`` would), and reads
the ledger through :class:`~.ledger_view.LedgerView`. It never claims or sends.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.intake import LeadIn
from leadrelay.engine.ledger import Delivery
from leadrelay.engine.secrets import SecretBox
from leadrelay.engine.settings import Settings

from .forwarder import Forwarder
from .ledger_view import LedgerView, sqlalchemy_url
from .processes import Deployment, Service

#: The Redis database the fault suite's processes share (on the server of
#: ``LEADRELAY_TEST_REDIS_URL``). Neither the tests' own (15, whose CLI workers consume it)
#: nor the benchmarks' (14): a run of either at the same time would otherwise take this
#: suite's messages, or this suite theirs, and each flushes its database.
FAULTS_REDIS_DB = int(os.environ.get("LEADRELAY_TEST_FAULTS_REDIS_DB", "13"))

#: Connector timeouts of every process (``plugins.toml``): the attempt deadline is
#: their sum, 1.1 s. Short, so that scenarios waiting for real timeouts take seconds.
#: (The lease is the default: the settings refuse one shorter than twice the longest
#: deadline any integration may declare, minutes; :meth:`Stack.expire_lease` stands in
#: for waiting it out.)
CONNECT_TIMEOUT = 0.3
READ_TIMEOUT = 0.8
ATTEMPT_DEADLINE = CONNECT_TIMEOUT + READ_TIMEOUT
SWEEP_INTERVAL = 0.2

LEAD = {"first_name": "Jane", "last_name": "Doe", "email": "jane.doe@example.com"}
#: Expectations that need the body: a CRM answer judged only on its status would not
#: make the engine read a gzip bomb or a huge body at all.
BODY_EXPECTED = {
    "rules": [{"kind": "status", "in": ["2xx"]}, {"kind": "body_contains", "value": '"ok"'}]
}


def retry_policy(max_attempts: int = 3, delay: float = 1.0) -> dict[str, Any]:
    """A retry policy of seconds, without jitter, so the suite's timings are exact."""
    return {"max_attempts": max_attempts, "delays": [f"{delay:g}s"], "jitter": 0.0}


@dataclass(frozen=True)
class Sizes:
    """How big the scenarios are: small in the test command, the issue's with ``--full``."""

    full: bool
    #: Seconds the database is cut between the CRM's answer and the commit.
    db_cut_seconds: float
    #: New leads queued ahead of a due retry.
    backlog: int
    #: Leads per hostile-answer scenario.
    hostile_leads: int
    #: What the gzip bomb inflates to, and the size of the huge body.
    bomb_bytes: int
    huge_bytes: int

    @classmethod
    def small(cls) -> Sizes:
        """Sizes for every run of the test command: the whole suite in about a minute."""
        return cls(False, db_cut_seconds=2.0, backlog=200, hostile_leads=2,
                   bomb_bytes=64 * 1024 * 1024, huge_bytes=32 * 1024 * 1024)

    @classmethod
    def issue(cls) -> Sizes:
        """The sizes of the issue's probes."""
        return cls(True, db_cut_seconds=20.0, backlog=5000, hostile_leads=10,
                   bomb_bytes=1024 * 1024 * 1024, huge_bytes=200 * 1024 * 1024)


class Stack:
    """A deployment under test and the client-side view of it."""

    def __init__(
        self, backend: str, tmp_path: Path, database_url: str, broker_url: str | None,
        *, forwarder: Forwarder | None = None,
    ) -> None:
        self.backend = backend
        self.database_url = database_url
        self.forwarder = forwarder
        home = tmp_path / "home"
        home.mkdir()
        logs = tmp_path / "logs"
        logs.mkdir()
        plugins = tmp_path / "plugins.toml"
        plugins.write_text(
            "[connectors.http_post]\n"
            f'connect_timeout = "{CONNECT_TIMEOUT:g}s"\nread_timeout = "{READ_TIMEOUT:g}s"\n'
        )
        key = SecretBox.generate_key()
        process_url = database_url
        if forwarder is not None:
            process_url = _through(database_url, forwarder.port)
        env = {
            "LEADRELAY_HOME": str(home),
            "LEADRELAY_DATABASE_URL": process_url,
            "LEADRELAY_SECRET_KEY": key,
            "LEADRELAY_PLUGINS_FILE": str(plugins),
            "LEADRELAY_LOAD_PLUGINS": "",
            "LEADRELAY_SWEEP_INTERVAL": f"{SWEEP_INTERVAL:g}",
            "LEADRELAY_WORKER_THREADS": "4",
            "LEADRELAY_EGRESS_ALLOW": "127.0.0.1",  # the hostile CRM and forwarder
        }
        if broker_url is not None:
            env["LEADRELAY_BROKER_URL"] = broker_url
        self.deployment = Deployment(env, logs)
        # The client engine: the same ledger (directly, never through the forwarder) and
        # broker, so what it submits reaches the workers as `leadrelay submit` would.
        self.app = Leadrelay(Settings(
            home=home, database_url=database_url, broker_url=broker_url, secret_key=key,
            plugins_file=plugins, egress_allow=("127.0.0.1",),
        ))
        self.ledger = LedgerView(database_url)
        self.ledger.install_audit()
        account = self.app.manage.create_account("Acme", "owner@acme.test", plan="growth")
        self.account_id = account.id

    @property
    def embedded(self) -> bool:
        """One ``serve`` process on SQLite, no Redis."""
        return self.deployment.embedded

    def configure(self, **env: float | int | str) -> None:
        """Set ``LEADRELAY_<NAME>`` for the processes started from now on
        (``configure(worker_threads=2)``)."""
        for name, value in env.items():
            self.deployment.env[f"LEADRELAY_{name.upper()}"] = (
                f"{value:g}" if isinstance(value, float) else str(value)
            )

    # -- setting up -----------------------------------------------------------------

    def integration(
        self, url: str, *, retry: dict[str, Any] | None = None,
        expectations: dict[str, Any] | None = None, form_id: int | None = None,
        **config: Any,
    ) -> tuple[int, int]:
        """An active ``http_post`` integration to ``url`` on a new form (or ``form_id``);
        ``(form id, integration id)``."""
        if form_id is None:
            form_id = self.app.manage.create_form(self.account_id, f"form {uuid.uuid4().hex}").id
        integration = self.app.manage.create_integration(
            form_id, name="CRM", connector="http_post", config={"url": url, **config},
            expectations=expectations, retry=retry, active=True,
        )
        return form_id, integration.id

    def submit(self, form_id: int, count: int = 1) -> list[int]:
        """``count`` leads to the form, in one transaction; their delivery ids."""
        leads = [LeadIn(form_id, {**LEAD, "email": f"lead{i}@example.com"}) for i in range(count)]
        accepted = self.app.submit_many(leads)
        self.app.dispatcher.announcer.flush()
        return [d for a in accepted for d in a.delivery_ids]

    def expire_lease(self, delivery_id: int) -> None:
        """Move the claim's lease end to the past: what waiting out the lease would do.

        The injected time of these scenarios. The processes run on the real clock, and the
        shortest lease the settings accept is minutes long; the sweeper's rule is "taken
        back once ``lease_until`` has passed", so moving ``lease_until`` — and nothing
        else — lets a test see what the sweeper and the workers do when a lease runs out,
        in a second. Everything after it is the processes' own doing.
        """
        past = datetime.now(UTC) - timedelta(seconds=1)
        table = cast(sa.Table, Delivery.__table__)
        with self.ledger.engine.begin() as conn:
            moved = conn.execute(
                sa.update(table)
                .where(table.c.id == delivery_id, table.c.state == "sending")
                .values(lease_until=past)
            ).rowcount
        assert moved == 1, f"delivery {delivery_id} is not claimed: no lease to expire"

    # -- processes ------------------------------------------------------------------

    def start(self, workers: int = 1, *, scheduler: bool = True,
              threads: int = 4) -> list[Service]:
        """The processes: ``workers`` workers and the scheduler, started in parallel and
        ready; embedded, one ``serve`` (worker and sweeper)."""
        if self.embedded:
            return self.deployment.start_all(_serve(threads))
        specs: list[tuple[str, ...]] = [("worker", "--threads", str(threads))] * workers
        if scheduler:
            specs.append(("scheduler",))
        return self.deployment.start_all(*specs)

    def restart_worker(self, threads: int = 4) -> Service:
        """A fresh worker (``serve`` when embedded), ready."""
        if self.embedded:
            return self.deployment.start(*_serve(threads))
        return self.deployment.start("worker", "--threads", str(threads))

    def close(self) -> None:
        """Stop every process, then release the client's engine and connections."""
        self.deployment.stop_all()
        self.app.close()
        self.ledger.close()


def _serve(threads: int) -> tuple[str, ...]:
    """``serve`` on the embedded default; its HTTP API on any free port (tests run at
    once, and a killed process's port may still be taken)."""
    return ("serve", "--threads", str(threads), "--port", "0")


def _through(url: str, port: int) -> str:
    """``url`` with its host and port replaced by the forwarder's."""
    scheme, rest = url.split("://", 1)
    credentials, _, host_and_path = rest.rpartition("@")
    path = host_and_path.split("/", 1)[1] if "/" in host_and_path else ""
    prefix = f"{credentials}@" if credentials else ""
    return f"{scheme}://{prefix}127.0.0.1:{port}/{path}"


def _host_port(url: str) -> tuple[str, int]:
    parsed = sa.engine.make_url(sqlalchemy_url(url))
    return parsed.host or "127.0.0.1", parsed.port or 5432


# -- fixtures (imported by conftest.py) -----------------------------------------------


@pytest.fixture
def sizes(request: pytest.FixtureRequest) -> Sizes:
    """The scenario sizes of this run (``--full``: the issue's)."""
    return Sizes.issue() if request.config.getoption("full", False) else Sizes.small()


@pytest.fixture
def scratch_postgres(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL database of this test alone, dropped after it (processes of several
    tests must never meet in one ledger)."""
    session_url: str = request.getfixturevalue("postgres_database")  # skip/fail rules
    admin = sa.create_engine(sqlalchemy_url(session_url), isolation_level="AUTOCOMMIT")
    name = f"leadrelay_faults_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    try:
        yield session_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()


@pytest.fixture
def faults_redis(request: pytest.FixtureRequest) -> str:
    """The suite's own Redis database (see :data:`FAULTS_REDIS_DB`), emptied first."""
    import redis

    test_url: str = request.getfixturevalue("redis_url")  # skip/fail rules
    url = test_url.rsplit("/", 1)[0] + f"/{FAULTS_REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


def _stack(request: pytest.FixtureRequest, tmp_path: Path, backend: str,
           forwarder: Forwarder | None = None) -> Stack:
    if backend == "sqlite":
        return Stack("sqlite", tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", None)
    database: str = request.getfixturevalue("scratch_postgres")
    broker: str = request.getfixturevalue("faults_redis")
    return Stack("postgresql", tmp_path, database, broker, forwarder=forwarder)


_SERVICES = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(params=[pytest.param("postgresql", marks=_SERVICES), "sqlite"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """A deployment on each backend: PostgreSQL + Redis with worker and scheduler
    processes, and the embedded default (``serve`` on SQLite)."""
    built = _stack(request, tmp_path, request.param)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def pg_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """A PostgreSQL + Redis deployment, for faults the embedded default cannot have
    (several workers, a scheduler apart from them)."""
    built = _stack(request, tmp_path, "postgresql")
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def cut_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """A PostgreSQL + Redis deployment whose processes reach the database through a
    forwarder the test can cut (``cut_stack.forwarder``)."""
    database: str = request.getfixturevalue("scratch_postgres")
    with Forwarder(_host_port(database)) as forwarder:
        built = _stack(request, tmp_path, "postgresql", forwarder)
        try:
            yield built
        finally:
            built.close()


def dumps(rows: Sequence[dict[str, Any]]) -> str:
    """Ledger rows as readable JSON, for failure messages."""
    return json.dumps(list(rows), indent=1, default=str)
