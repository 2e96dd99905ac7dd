"""SQLite's WAL checkpoints, in a thread of their own instead of in a writer's commit.

A checkpoint copies the write-ahead log back into the database file. By default SQLite
runs one inside the commit that takes the log past 1,000 pages: that commit — an
import's batch or a live lead's — then also copies megabytes and syncs them to disk
while it holds the single writer everyone else waits for (up to 55 ms on the
benchmark machine, docs/benchmarks.md "import-live-latency"). The ledger turns that
off (``PRAGMA wal_autocheckpoint=0`` on its connections) and a :class:`Checkpointer`
runs them instead, every ``interval`` seconds on a connection of its own. A PASSIVE
checkpoint takes no write lock, so writers go on meanwhile, and the driver runs it
without the GIL.

SQLite starts the log over at a write transaction that begins with all of it copied.
Under a steady stream of writes (an import) that never happens — another batch is always
being written while a checkpoint copies — and the log, with the process's memory, would
grow for as long as the writes go on (docs/benchmarks.md, import-memory). So once the
log holds :data:`RESTART_PAGES`, a second pass copies what was written meanwhile with the
process's writer held at bulk priority (``hold``): the next write transaction then starts
the log over (a RESTART checkpoint). Live writes go first, and wait at most for that
short pass.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, NamedTuple

from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


#: Pages in the log past which a checkpoint's second pass holds the writer, so that the
#: log starts over (SQLite's own automatic checkpoint runs at 1,000).
RESTART_PAGES = 1000
#: How long the second pass waits for readers still on the log (milliseconds).
READERS_WAIT_MS = 20
#: The ledger's connections' busy timeout, given back after the second pass.
BUSY_TIMEOUT_MS = 30_000


class Checkpoint(NamedTuple):
    """What one checkpoint found: pages in the log, and how many are now in the database."""

    log_pages: int
    copied_pages: int


class Checkpointer:
    """Checkpoints a SQLite ledger's WAL every ``interval`` seconds, in a daemon thread."""

    def __init__(
        self,
        engine: Engine,
        *,
        hold: Callable[[], AbstractContextManager[object]] = nullcontext,
        interval: float = 0.5,
    ) -> None:
        """``hold()``: the process's writer, held for a checkpoint's second pass."""
        self.engine = engine
        self.hold = hold
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start checkpointing (once)."""
        if self._thread is None:
            # The thread holds the checkpointer weakly: one whose ledger was dropped
            # without being disposed ends with it.
            self._thread = threading.Thread(target=_run, args=(weakref.ref(self), self._stop),
                                            name="ledger-checkpoints", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def checkpoint(self) -> Checkpoint:
        """Copy the log into the database: a first pass while writers go on, then, once
        the log is long, a second with the writer held (see module docstring)."""
        # On the driver's connection, outside any transaction: SQLAlchemy's would
        # begin one (IMMEDIATE, the ledger's), inside which SQLite refuses to checkpoint.
        raw = self.engine.raw_connection()
        try:
            done = _passive(raw)
            if done.log_pages >= RESTART_PAGES:
                with self.hold():
                    done = _restart(raw)
        finally:
            raw.close()
        return done

    def stop(self) -> None:
        """Stop the thread (the connections' close checkpoints what is left)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


def _passive(raw: Any) -> Checkpoint:
    """One PASSIVE checkpoint on the driver's connection ``raw``."""
    return _checkpoint(raw, "PASSIVE")


def _restart(raw: Any) -> Checkpoint:
    """A RESTART checkpoint on ``raw``: all of the log copied, and the next writer starts
    it over. It waits for readers still on the log, but briefly (:data:`READERS_WAIT_MS`):
    its caller holds the writer; past that, the next pass tries again."""
    driver = raw.driver_connection
    driver.execute(f"PRAGMA busy_timeout={READERS_WAIT_MS}")
    try:
        return _checkpoint(raw, "RESTART")
    finally:
        driver.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def _checkpoint(raw: Any, mode: str) -> Checkpoint:
    _busy, log_pages, copied = raw.driver_connection.execute(
        f"PRAGMA wal_checkpoint({mode})").fetchone()
    return Checkpoint(log_pages, copied)


def _run(ref: weakref.ref[Checkpointer], stop: threading.Event) -> None:
    while True:
        checkpointer = ref()
        if checkpointer is None:
            return
        interval = checkpointer.interval
        del checkpointer
        if stop.wait(interval):
            return
        checkpointer = ref()
        if checkpointer is None:
            return
        try:
            checkpointer.checkpoint()
        except Exception as exc:  # the next one tries again; commits never depend on it
            log.warning("WAL checkpoint failed: %s", exc)
        del checkpointer
