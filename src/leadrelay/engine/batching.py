"""Group commit: concurrent callers' small writes, done together in one transaction.

A worker process runs many threads, each with one tiny ledger write to make at a
time (claim this delivery, record that attempt, store this lead). One transaction
each means one ``BEGIN``/``COMMIT`` (and, on PostgreSQL, one WAL flush) per write,
and on SQLite the writers queue for its single write lock anyway. A
:class:`GroupCommit` turns that queue into batches: the first caller to find it idle
becomes the *leader* and runs every item waiting at that moment in one call; the
others wait for their own result. Nobody waits for a batch to fill — a caller
alone runs alone — so latency never grows, and batches grow exactly when callers
would otherwise have queued.

A batch that fails is retried item by item, so one bad item (a constraint, a
deadlock victim) fails only its own caller.

Live work goes first (issue 17): on SQLite, writes of a thread doing bulk work
(:mod:`.priority`) are batched on their own, beside the live ones, and take the
ledger's writer at bulk priority: a live write never waits in line behind a bulk batch,
which itself waits for live writes to pause before it takes the writer. PostgreSQL has
no single writer to wait for: there, one line batches both, as concurrent transactions
would only split the batches (docs/benchmarks.md, throughput-postgres).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Generic, TypeVar

from .priority import BULK, LIVE, LIVE_WORK, level

T = TypeVar("T")
R = TypeVar("R")

_PENDING = object()


class _Slot(Generic[T, R]):
    """One caller's item, the lock its caller sleeps on, and once run, its result or error."""

    __slots__ = ("error", "item", "result", "wake")

    def __init__(self, item: T) -> None:
        self.item = item
        self.result: object = _PENDING
        self.error: BaseException | None = None
        # Held from birth; released exactly once, by the leader that ran the item or
        # that hands over the lead: a caller wakes once, never for somebody else's batch.
        self.wake = threading.Lock()
        self.wake.acquire()

    @property
    def done(self) -> bool:
        return self.result is not _PENDING or self.error is not None


class GroupCommit(Generic[T, R]):
    """Runs concurrent calls in batches through ``run_batch``.

    ``run_batch`` gets the waiting items in arrival order and returns one result
    per item, in the same order; it runs in the leader's thread, one batch at a time.
    """

    def __init__(
        self, run_batch: Callable[[Sequence[T]], Sequence[R]], *, max_batch: int = 64
    ) -> None:
        self._run_batch = run_batch
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Slot[T, R]] = []
        self._busy = False
        #: Batches run and items they carried, for benchmarks and tests.
        self.batches = 0
        self.items = 0

    def __call__(self, item: T) -> R:
        """Run ``item`` (with whatever else is waiting); its result, or its error raised."""
        slot: _Slot[T, R] = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            lead = not self._busy
            self._busy = True
        if not lead:
            slot.wake.acquire()  # until our item ran, or the lead is handed to us
            if slot.done:
                return _outcome(slot)
        # Leading: we are the oldest waiting (the lead goes to the oldest), so our item
        # heads this batch, with those who came after us, in arrival order.
        with self._lock:
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
        try:
            self._run(batch)
        finally:
            for other in batch:
                if other is not slot:
                    other.wake.release()
            with self._lock:
                successor = self._waiting[0] if self._waiting else None
                self._busy = successor is not None
            if successor is not None:
                successor.wake.release()  # not done: it leads the next batch
        return _outcome(slot)

    def _run(self, batch: list[_Slot[T, R]]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            _fill(batch, self._run_batch([s.item for s in batch]))
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            # Rolled back as a whole: each item again on its own, so an error
            # reaches only the caller whose item caused it.
            for slot in batch:
                try:
                    _fill([slot], self._run_batch([slot.item]))
                except Exception as single:
                    slot.error = single
        except BaseException as exc:  # interrupted: nobody may wait forever
            for slot in batch:
                if not slot.done:
                    slot.error = exc
            raise


def _fill(batch: list[_Slot[T, R]], results: Sequence[R]) -> None:
    if len(results) != len(batch):
        raise RuntimeError(f"a batch of {len(batch)} items gave {len(results)} results")
    for slot, result in zip(batch, results, strict=True):
        slot.result = result


def _outcome(slot: _Slot[T, R]) -> R:
    if slot.error is not None:
        raise slot.error
    return slot.result  # type: ignore[return-value]


class WriteQueue:
    """Every small ledger write of a process, grouped into shared transactions.

    Each kind of write (a lead to store, a batch to claim, attempts to record) is a
    type registered with the function that writes a list of them on a connection.
    Concurrent writes of any kinds — intake's and the workers' — then share one
    transaction on one held connection: on SQLite, which has a single writer anyway,
    they stop queueing for its lock one by one; on PostgreSQL, they share a WAL flush.

    A write made inside :func:`bulk` is bulk work: a batch of bulk writes alone asks
    ``transaction`` for the writer at :data:`BULK` rather than :data:`LIVE`; with
    ``bulk_line``, bulk writes are batched on a line of their own, beside the live ones.
    """

    def __init__(self, transaction: Callable[[int], AbstractContextManager[Any]], *,
                 bulk_line: bool = True) -> None:
        """``transaction(level)``: a transaction with the writer taken at ``level``; with
        ``bulk_line``, a live and a bulk one may run at the same time (each on its own
        connection)."""
        self._transaction = transaction
        self._kinds: dict[type, Callable[[Any, list[Any]], Sequence[Any]]] = {}
        # Each line runs one batch at a time; with two, side by side, the writer's
        # priority (SQLite) orders their transactions.
        self._live: GroupCommit[tuple[int, Any], Any] = GroupCommit(self._run)
        self._bulk = GroupCommit(self._run) if bulk_line else self._live
        self._lines = (self._live, self._bulk) if bulk_line else (self._live,)

    @property
    def batches(self) -> int:
        """Transactions run so far."""
        return sum(line.batches for line in self._lines)

    @property
    def items(self) -> int:
        """Writes they carried."""
        return sum(line.items for line in self._lines)

    def handle(self, kind: type[T], write: Callable[[Any, list[T]], Sequence[Any]]) -> None:
        """Write ``kind`` items with ``write(connection, items)``, one result per item.

        Kinds are written in the order they were registered, inside one transaction.
        A kind has one writer: registering it twice is a mistake, refused.
        """
        if kind in self._kinds:
            raise ValueError(f"{kind.__name__} already has a writer")
        self._kinds[kind] = write

    def __call__(self, item: Any) -> Any:
        """Write ``item`` (with whatever else is waiting); its result once committed."""
        if type(item) not in self._kinds:
            raise TypeError(f"no writer for {type(item).__name__}")
        urgency = level(LIVE)
        return (self._bulk if urgency == BULK else self._live)((urgency, item))

    def _run(self, queued: Sequence[tuple[int, Any]]) -> list[Any]:
        urgency = min(u for u, _ in queued)
        items = [item for _, item in queued]
        results: list[Any] = [None] * len(items)
        # A live batch is live work: CPU-bound bulk threads pause meanwhile (priority.py).
        with (LIVE_WORK.running() if urgency == LIVE else nullcontext()), \
                self._transaction(urgency) as conn:
            for kind, write in list(self._kinds.items()):  # a part built meanwhile may add one
                where = [i for i, item in enumerate(items) if type(item) is kind]
                if where:
                    written = write(conn, [items[i] for i in where])
                    for i, result in zip(where, written, strict=True):
                        results[i] = result
        return results

