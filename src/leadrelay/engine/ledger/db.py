"""Opening the ledger: the engine, the session factory, and migrations on start."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from ..batching import WriteQueue
from ..errors import ConfigError
from ..priority import BULK, LIVE, NORMAL, WriterLock, bulk, level
from .checkpoints import BUSY_TIMEOUT_MS, Checkpointer

MIGRATIONS = Path(__file__).with_name("migrations")
#: The database URL schemes leadrelay runs on.
SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")

#: One migration at a time in this process: Alembic's ``context`` and ``op`` are module
#: globals, so two engines built at once in two threads would run into each other.
_MIGRATING = threading.Lock()
#: The PostgreSQL advisory lock that serialises migrations across processes
#: (several ``leadrelay worker`` started at once on a new database); any fixed key of
#: leadrelay's own will do: this one is the bytes of "leadrela", shifted into 63 bits.
_MIGRATION_LOCK_KEY = int.from_bytes(b"leadrelay"[:8], "big") >> 1


def check_database_url(url: str, *, field: str = "LEADRELAY_DATABASE_URL") -> None:
    """:class:`ConfigError` naming ``field`` and the supported schemes unless ``url`` is a
    ``sqlite:`` or ``postgresql:`` URL. The message never shows the URL (it may hold a
    password), only its scheme."""
    scheme = url.split(":", 1)[0].strip().lower() if isinstance(url, str) and ":" in url else ""
    if scheme not in SCHEMES:
        shown = f"a {scheme!r} URL" if scheme else "no URL scheme"
        raise ConfigError(
            f"{field} must be a sqlite:/// or postgresql:// URL (the ledger runs on SQLite "
            f"or PostgreSQL), got {shown}",
            field=field,
        )


def head_revision() -> str:
    """The newest migration's revision: migrations are ``versions/NNNN_what.py`` with
    revision ``"NNNN"`` (a test holds Alembic to the same answer)."""
    return max(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


class Ledger:
    """The database behind leadrelay. Migrations are applied when it opens."""

    def __init__(self, url: str, *, migrate: bool = True, pool_size: int = 10) -> None:
        self.url = url
        check_database_url(url)
        try:
            self.engine = _create_engine(url, pool_size=pool_size)
        except (ArgumentError, ValueError) as exc:
            raise ConfigError(
                f"LEADRELAY_DATABASE_URL is not a database URL: {exc}",
                field="LEADRELAY_DATABASE_URL",
            ) from None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        #: Sessions of :meth:`reading`: the same pool, marked so that SQLite begins them
        #: deferred (``_begin_immediate``).
        self.readers = sessionmaker(self.engine.execution_options(**{_READ_ONLY: True}),
                                    expire_on_commit=False)
        # SQLite has one writer, and every transaction here begins IMMEDIATE: threads of
        # this process queue on a lock instead of in SQLite's busy handler, which polls
        # with sleeps of up to 100 ms while the lock is free (docs/benchmarks.md: up to
        # +60 % embedded throughput under contention). Re-entrant, so a nested transaction
        # behaves as before; other processes sharing the file still meet the busy handler.
        # Handed over by priority: live writes first, bulk work (imports) last (issue 17).
        self._writer: WriterLock | None = (
            WriterLock() if self.engine.dialect.name == "sqlite" else None
        )
        self._held: list[HeldConnection] = []
        #: The connections the process's small writes (intake, claims, records) share —
        #: on SQLite, live ones on the first, bulk work's on the second, so that neither
        #: waits in line behind the other — and the queue that groups them into
        #: transactions.
        self.write_connection = self.held()
        sqlite = self._writer is not None
        self.bulk_write_connection = self.held() if sqlite else self.write_connection
        self.writes = WriteQueue(self._write_transaction, bulk_line=sqlite)
        #: SQLite's WAL checkpoints, off the writers' commits (:mod:`.checkpoints`).
        self.checkpoints: Checkpointer | None = None
        if self.dialect == "sqlite" and _sqlite_path(url) not in ("", ":memory:"):
            self.checkpoints = Checkpointer(self.engine, hold=lambda: self.writer(BULK))
            self.checkpoints.start()
        if migrate:
            self.migrate()

    def _write_transaction(self, urgency: int) -> AbstractContextManager[Connection]:
        held = self.bulk_write_connection if urgency == BULK else self.write_connection
        return held.transaction(urgency)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest revision (a no-op when it is there).

        Safe to call from several threads and processes at once on a new database: one
        migrates, the others then find the schema at its newest revision. Threads of
        this process take turns on a lock; processes on PostgreSQL on an advisory lock
        held by the migration's transaction, and on SQLite on its write lock (every
        transaction here begins IMMEDIATE).

        A schema found at the newest revision is left alone without loading Alembic (a
        tenth of a second a command, docs/benchmarks.md "CLI start-up").
        """
        if self.revision() == head_revision():
            return
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with _MIGRATING, self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                             {"key": _MIGRATION_LOCK_KEY})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def revision(self) -> str | None:
        """The schema's revision as recorded by Alembic, or None on a new database."""
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        except DBAPIError:  # no alembic_version table yet
            return None
        return rows[0][0] if len(rows) == 1 else None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self.writer(), self.sessions.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads alone, in one transaction: on SQLite it neither takes the
        process's writer nor begins ``IMMEDIATE``, so it never waits for a writer (WAL
        readers see the last commit meanwhile) — a lead's status read during an import
        does not queue behind its batches. Writing in it is a mistake."""
        with self.readers.begin() as session:
            yield session

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A Core connection in one transaction: committed on success, rolled back on error.

        For the hot path (claim, record, intake), which needs statements, not objects:
        no ORM session is built. Same SQLite writer lock as :meth:`session`.
        """
        with self.writer(), self.engine.begin() as conn:
            yield conn

    def writer(self, urgency: int | None = None) -> AbstractContextManager[object]:
        """SQLite's single writer for this process's next transaction, taken at
        ``urgency`` (by default :data:`~..priority.NORMAL`, or ``BULK`` inside
        :meth:`bulk`); nothing to take on PostgreSQL."""
        if self._writer is None:
            return nullcontext()
        return self._writer.hold(level(NORMAL) if urgency is None else urgency)

    def bulk(self, *, cpu_bound: bool = False) -> AbstractContextManager[None]:
        """Bulk work in this thread for the duration of the block (an import, a replay,
        the bulk lane): its transactions wait for any live or ordinary writer waiting,
        so a live lead never queues behind it for SQLite's writer; ``cpu_bound`` for a
        thread that also parses or computes between its writes (see
        :func:`~..priority.bulk`)."""
        return bulk(cpu_bound=cpu_bound)

    def held(self) -> HeldConnection:
        """A connection kept open for one writer that runs a transaction at a time
        (a :class:`~leadrelay.engine.batching.GroupCommit`'s leader); closed by :meth:`dispose`."""
        held = HeldConnection(self)
        self._held.append(held)
        return held

    def dispose(self) -> None:
        """Stop checkpointing; close every pooled and held connection."""
        if self.checkpoints is not None:
            self.checkpoints.stop()
        for held in self._held:
            held.close()
        self.engine.dispose()


class HeldConnection:
    """One connection, kept between transactions: no pool checkout, no ``Connection``
    built per transaction — about a third of SQLAlchemy's cost on the delivery hot path
    (docs/benchmarks.md). Its user runs one transaction at a time.

    A connection idle for ``ping_after`` seconds is pinged before use and replaced if
    the database dropped it (a restart, an idle timeout): what ``pool_pre_ping`` does for
    pooled connections, without its round trip on every transaction of a busy writer.
    One that fails mid-transaction is replaced on the next one.
    """

    def __init__(self, ledger: Ledger, *, ping_after: float = 10.0) -> None:
        self.ledger = ledger
        self.ping_after = ping_after
        self._conn: Connection | None = None
        self._used = 0.0

    @contextmanager
    def transaction(self, urgency: int = LIVE) -> Iterator[Connection]:
        """The held connection in one transaction, as :meth:`Ledger.transaction`, with
        SQLite's writer taken at ``urgency`` (the write queue's: live, unless its batch
        is bulk work alone)."""
        with self.ledger.writer(urgency):
            conn = self._connection()
            try:
                with conn.begin():
                    yield conn
            except DBAPIError as exc:
                if exc.connection_invalidated:
                    self.close()
                raise

    def _connection(self) -> Connection:
        conn, now = self._conn, time.monotonic()
        if conn is not None and not conn.invalidated and now - self._used >= self.ping_after:
            try:
                alive = self.ledger.engine.dialect.do_ping(conn.connection.dbapi_connection)  # type: ignore[arg-type]
            except Exception:  # the driver's own error: whatever it is, start afresh
                alive = False
            if not alive:
                conn.invalidate()
        if conn is None or conn.invalidated or conn.closed:
            if conn is not None:
                conn.close()
            conn = self._conn = self.ledger.engine.connect()
        self._used = now
        return conn

    def close(self) -> None:
        """Give the connection back (closing it if the database dropped it)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _create_engine(url: str, *, pool_size: int) -> Engine:
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own BEGIN handling defers locks; take control so that a
        # transaction that will write starts as one (no lock upgrade deadlocks).
        event.listen(engine, "begin", _begin_immediate)
        return engine
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _sqlite_path(url: str) -> str:
    return url.split("///", 1)[-1] if "///" in url else ""


#: The execution option of :meth:`Ledger.reading`'s connections.
_READ_ONLY = "leadrelay_read_only"


def _begin_immediate(conn: Connection) -> None:
    # On the driver's connection: one statement outside SQLAlchemy's execution
    # machinery, which costs more than the BEGIN itself on the hot path.
    begin = "BEGIN" if conn.get_execution_options().get(_READ_ONLY) else "BEGIN IMMEDIATE"
    conn.connection.driver_connection.execute(begin)  # type: ignore[union-attr]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Python's sqlite3 opens its own transactions; autocommit mode hands that to
    # SQLAlchemy's "begin" listener above.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA wal_autocheckpoint=0")  # the ledger's Checkpointer runs them
    cur.close()
