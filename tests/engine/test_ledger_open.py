"""Opening the ledger: engines and processes started at once on a new database, and the
database URLs leadrelay runs on."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.errors import ConfigError
from leadrelay.engine.ledger.db import MIGRATIONS, Ledger, check_database_url, head_revision
from leadrelay.engine.secrets import SecretBox
from leadrelay.engine.settings import Settings

HEAD_TABLES = {"accounts", "plans", "forms", "integrations", "leads", "deliveries", "attempts"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database no engine has opened yet: no schema, no migration table."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'new.db'}"
        return
    # The session's database proves the server is reachable (or skips/fails as configured).
    session_url: str = request.getfixturevalue("postgres_database")
    server = session_url.rsplit("/", 1)[0]
    admin = sa.create_engine(server.replace("postgresql://", "postgresql+psycopg://", 1)
                             + "/postgres", isolation_level="AUTOCOMMIT")
    name = f"leadrelay_new_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    try:
        yield f"{server}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_engines_built_at_once_in_threads_on_a_new_database(
    new_database: str, tmp_path: Path
) -> None:
    # Given four threads that each build an engine on the same new database at the same
    # moment (Alembic's context is a module global: on PostgreSQL this crashed with
    # KeyError: 'script' and "relation plans does not exist")
    key = SecretBox.generate_key()
    start = threading.Barrier(4)
    built: list[Leadrelay] = []
    errors: list[BaseException] = []

    def build(i: int) -> None:
        start.wait()
        try:
            built.append(Leadrelay(Settings(home=tmp_path / str(i), database_url=new_database,
                                            broker_url=None, secret_key=key,
                                            plugins_file=None)))
        except BaseException as exc:  # the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=build, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        # Then every engine opened, on one schema, and each can use it
        assert errors == []
        assert len(built) == 4
        for app in built:
            account = app.manage.create_account("Acme", "owner@acme.test", plan="growth")
            assert app.manage.create_form(account.id, "Contact").id > 0
    finally:
        for app in built:
            app.close()
    assert tables(new_database) >= HEAD_TABLES


def test_processes_started_at_once_on_a_new_database(new_database: str) -> None:
    # Given three processes opening the same new ledger at the same moment (several
    # `leadrelay worker` started together: on PostgreSQL two of three failed on a
    # duplicate table before migrations took an advisory lock)
    code = ("import sys; from leadrelay.engine.ledger.db import Ledger; "
            "Ledger(sys.argv[1]).dispose()")
    processes = [
        subprocess.Popen([sys.executable, "-c", code, new_database],
                         stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    # Then each opens it: one migrates, the others find the schema at its newest revision
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in processes]
    assert [code for code, _ in results] == [0, 0, 0], results
    assert tables(new_database) >= HEAD_TABLES


@pytest.mark.parametrize(
    "url",
    ["sqlite:///ledger.db", "sqlite://", "postgresql://u@127.0.0.1/db",
     "postgres://u@127.0.0.1/db", "postgresql+psycopg://u@127.0.0.1/db"],
)
def test_sqlite_and_postgresql_urls_are_accepted(url: str) -> None:
    check_database_url(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mysql://leadrelay:s3cret-pw@127.0.0.1/leadrelay", "a 'mysql' URL"),
        ("mssql+pyodbc://sa:s3cret-pw@127.0.0.1/db", "a 'mssql+pyodbc' URL"),
        ("oracle://scott:s3cret-pw@127.0.0.1/db", "a 'oracle' URL"),
        ("/var/lib/leadrelay.db", "no URL scheme"),
        ("", "no URL scheme"),
    ],
)
def test_other_databases_are_refused_naming_the_variable_and_the_schemes(
    url: str, shown: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Ledger(url)
    assert caught.value.field == "LEADRELAY_DATABASE_URL"
    assert str(caught.value) == (
        "LEADRELAY_DATABASE_URL must be a sqlite:/// or postgresql:// URL (the ledger runs on "
        f"SQLite or PostgreSQL), got {shown}")
    assert "s3cret-pw" not in str(caught.value)


def test_the_newest_revision_is_the_one_alembic_upgrades_to() -> None:
    # Given the migrations as Alembic reads them
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Then the ledger's quick answer to "is the schema current?" names the same head
    assert head_revision() == ScriptDirectory.from_config(cfg).get_current_head()


def test_a_current_schema_opens_without_loading_alembic(new_database: str) -> None:
    # Given a database already at the newest revision
    Ledger(new_database).dispose()
    # When another process opens it
    opened = subprocess.run(
        [sys.executable, "-c",
         "import sys; from leadrelay.engine.ledger.db import Ledger; "
         f"ledger = Ledger({new_database!r}); print(ledger.revision()); "
         "print('alembic' in sys.modules)"],
        capture_output=True, text=True, timeout=60,
    )
    # Then it finds the schema current, and never imports Alembic to find out
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.split() == [head_revision(), "False"]


def test_a_new_database_is_migrated_to_the_newest_revision(new_database: str) -> None:
    # Given a database no engine has opened
    ledger = Ledger(new_database)
    try:
        # Then opening it migrated it to the head, with every table
        assert ledger.revision() == head_revision()
        assert set(sa.inspect(ledger.engine).get_table_names()) >= HEAD_TABLES
    finally:
        ledger.dispose()
