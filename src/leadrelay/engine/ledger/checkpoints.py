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
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import NamedTuple

from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


class Checkpoint(NamedTuple):
    """What one checkpoint found: pages in the log, and how many are now in the database."""

    log_pages: int
    copied_pages: int


class Checkpointer:
    """Checkpoints a SQLite ledger's WAL every ``interval`` seconds, in a daemon thread."""

    def __init__(self, engine: Engine, *, interval: float = 0.5) -> None:
        self.engine = engine
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
        """One PASSIVE checkpoint now: as much of the log as no reader still needs."""
        # On the driver's connection, outside any transaction: SQLAlchemy's would
        # begin one (IMMEDIATE, the ledger's), inside which SQLite refuses to checkpoint.
        raw = self.engine.raw_connection()
        try:
            _busy, log_pages, copied = raw.driver_connection.execute(  # type: ignore[union-attr]
                "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            raw.close()
        return Checkpoint(log_pages, copied)

    def stop(self) -> None:
        """Stop the thread (the connections' close checkpoints what is left)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)



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
