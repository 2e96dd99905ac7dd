"""Opening the ledger: the engine, the session factory, and migrations on start."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import ConfigError

MIGRATIONS = Path(__file__).with_name("migrations")


class Ledger:
    """The database behind leadrelay. Migrations are applied when it opens."""

    def __init__(self, url: str, *, migrate: bool = True, pool_size: int = 10) -> None:
        self.url = url
        try:
            self.engine = _create_engine(url, pool_size=pool_size)
        except (ArgumentError, ValueError) as exc:
            raise ConfigError(
                f"LEADRELAY_DATABASE_URL is not a database URL: {exc}",
                field="LEADRELAY_DATABASE_URL",
            ) from None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer, and every transaction here begins IMMEDIATE: threads of
        # this process queue on a lock instead of in SQLite's busy handler, which polls
        # with sleeps of up to 100 ms while the lock is free (docs/benchmarks.md: up to
        # +60 % embedded throughput under contention). Re-entrant, so a nested transaction
        # behaves as before; other processes sharing the file still meet the busy handler.
        self._writer: AbstractContextManager[object] = (
            threading.RLock() if self.engine.dialect.name == "sqlite" else nullcontext()
        )
        if migrate:
            self.migrate()

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest revision (a no-op when it is there)."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self._writer, self.sessions.begin() as session:
            yield session

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A Core connection in one transaction: committed on success, rolled back on error.

        For the hot path (claim, record, intake), which needs statements, not objects:
        no ORM session is built. Same SQLite writer lock as :meth:`session`.
        """
        with self._writer, self.engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _create_engine(url: str, *, pool_size: int) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own BEGIN handling defers locks; take control so that a
        # transaction that will write starts as one (no lock upgrade deadlocks).
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Python's sqlite3 opens its own transactions; autocommit mode hands that to
    # SQLAlchemy's "begin" listener above.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
