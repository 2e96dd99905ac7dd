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

Live work goes first (issue 17): a thread doing bulk work (an import, the bulk lane,
the sweeper) says so with :func:`bulk`; its writes then queue behind live ones, both
in the write queue and for SQLite's single writer (:class:`WriterLock`), so a live
lead waits at most for the one bulk transaction already running, never for the ones
queued behind it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_PENDING = object()

#: Who writes first, most urgent first: the hot path's small writes (intake, claims,
#: records), then other transactions (management, reads, realtime), then bulk work.
LIVE, NORMAL, BULK = 0, 1, 2
#: The interpreter's thread switch interval while CPU-bound bulk work runs (seconds).
#: A thread that blocked (on the ledger, a socket, a queue) waits up to this long for
#: the GIL when it wakes while a CPU-bound thread holds it; CPython's 5 ms default
#: multiplied by the dozens of hand-offs on a delivery's path cost a live lead 100 ms
#: and more while an import parsed its rows.
BULK_SWITCH_INTERVAL = 0.0005

_lane = threading.local()
_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved: float | None = None


def in_bulk() -> bool:
    """Whether the current thread is doing bulk work (see :func:`bulk`)."""
    return getattr(_lane, "bulk", 0) > 0


def level(default: int = NORMAL) -> int:
    """The current thread's writer priority: :data:`BULK` inside :func:`bulk`, else
    ``default``."""
    return BULK if in_bulk() else default


@contextmanager
def bulk(*, cpu_bound: bool = False) -> Iterator[None]:
    """Bulk work in this thread for the duration of the block: its ledger writes go
    after live ones (see module docstring). With ``cpu_bound`` (a thread that computes
    between its writes, such as an import parsing rows), the interpreter also switches
    threads every :data:`BULK_SWITCH_INTERVAL` meanwhile, so the live threads it
    shares the GIL with are not held back 5 ms at each wake-up. Nests."""
    _lane.bulk = getattr(_lane, "bulk", 0) + 1
    if cpu_bound:
        _shorten_switch_interval()
    try:
        yield
    finally:
        _lane.bulk -= 1
        if cpu_bound:
            _restore_switch_interval()


def _shorten_switch_interval() -> None:
    global _switch_users, _switch_saved
    with _switch_lock:
        _switch_users += 1
        if _switch_users == 1:
            _switch_saved = sys.getswitchinterval()
            if _switch_saved > BULK_SWITCH_INTERVAL:
                sys.setswitchinterval(BULK_SWITCH_INTERVAL)


def _restore_switch_interval() -> None:
    global _switch_users, _switch_saved
    with _switch_lock:
        _switch_users -= 1
        if _switch_users == 0 and _switch_saved is not None:
            # Unless somebody else changed it meanwhile: theirs stands.
            if sys.getswitchinterval() == min(_switch_saved, BULK_SWITCH_INTERVAL):
                sys.setswitchinterval(_switch_saved)
            _switch_saved = None


class _Waiter:
    """A thread waiting for the :class:`WriterLock`, asleep on its own lock."""

    __slots__ = ("level", "passes", "thread", "wake")

    def __init__(self, thread: int, level: int) -> None:
        self.thread = thread
        self.level = level
        #: Times a more urgent writer that came later went first.
        self.passes = 0
        self.wake = threading.Lock()
        self.wake.acquire()


class WriterLock:
    """A re-entrant lock handed over by priority: the process's SQLite writer.

    When it is released, the waiting thread of the most urgent :func:`level` gets it
    (the longest waiting among equals). A waiter passed over ``max_passes`` times by
    more urgent ones goes next whatever waits, so bulk work slows down under live
    load but never stops.

    A live lead writes several times in a few milliseconds (stored, claimed,
    recorded), with a hop between threads and a request to the CRM in between: a bulk
    transaction starting in such a gap (an import's batch holds the writer for tens of
    milliseconds) would hold up the lead's next write all the same. So a bulk writer
    also waits until no live write has ended for ``grace`` seconds, for at most
    ``patience`` seconds a transaction; waiting asleep, it leaves the GIL to the live
    threads too.
    """

    def __init__(
        self,
        *,
        max_passes: int = 8,
        grace: float = 0.01,
        patience: float = 0.1,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_passes = max_passes
        self.grace = grace
        self.patience = patience
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._owner_level = NORMAL
        self._depth = 0
        self._waiting: list[_Waiter] = []
        #: When the last live transaction ended (monotonic seconds).
        self._live_at = float("-inf")
        #: Seconds bulk writers spent giving way to live ones (diagnostics).
        self.deferred = 0.0

    @property
    def waiting(self) -> list[int]:
        """The levels of the threads waiting, in arrival order (tests, diagnostics)."""
        with self._lock:
            return [w.level for w in self._waiting]

    def acquire(self, level: int = NORMAL) -> None:
        """Take the lock (again, if this thread holds it), waiting for its turn."""
        me = threading.get_ident()
        with self._lock:
            if self._owner == me:
                self._depth += 1
                return
        if level != BULK:
            self._take(me, level)
            return
        start = self._monotonic()
        while True:
            self._give_way(start)
            self._take(me, level)
            # Granted just as a live write ended (we queued behind it): after that
            # lead's next write, then, unless patience ran out.
            if not self._live_recently(start):
                return
            self.release()

    def _take(self, me: int, level: int) -> None:
        with self._lock:
            if self._owner is None:
                self._owner, self._owner_level, self._depth = me, level, 1
                return
            waiter = _Waiter(me, level)
            self._waiting.append(waiter)
        try:
            waiter.wake.acquire()  # until a release hands the lock to us
        except BaseException:  # interrupted: leave the line, or pass on what we got
            with self._lock:
                granted = self._owner == me
                if not granted:
                    self._waiting.remove(waiter)
            if granted:
                self._depth = 1
                self.release()
            raise
        self._depth = 1

    def _live_recently(self, start: float) -> bool:
        """Whether a live write ended under ``grace`` ago, with patience left since
        ``start``."""
        now = self._monotonic()
        return now < self._live_at + self.grace and now < start + self.patience

    def _give_way(self, start: float) -> None:
        """Sleep while a live write ended under ``grace`` ago, until ``patience`` has
        passed since ``start``."""
        while True:
            now = self._monotonic()
            wait = min(self._live_at + self.grace, start + self.patience) - now
            if wait <= 0:
                return
            self.deferred += wait
            self._sleep(wait)

    def release(self) -> None:
        """Release once; the last release hands the lock to the next waiter."""
        with self._lock:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a WriterLock this thread does not hold")
            self._depth -= 1
            if self._depth:
                return
            if self._owner_level == LIVE:
                self._live_at = self._monotonic()
            if not self._waiting:
                self._owner = None
                return
            chosen = self._next()
            for waiter in self._waiting[: self._waiting.index(chosen)]:
                waiter.passes += 1
            self._waiting.remove(chosen)
            self._owner, self._owner_level = chosen.thread, chosen.level
        chosen.wake.release()

    def _next(self) -> _Waiter:
        for waiter in self._waiting:
            if waiter.passes >= self.max_passes:
                return waiter
        return min(self._waiting, key=lambda w: w.level)  # the first of the most urgent

    @contextmanager
    def hold(self, level: int = NORMAL) -> Iterator[None]:
        """The lock for the duration of the block, taken at ``level``."""
        self.acquire(level)
        try:
            yield
        finally:
            self.release()


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
    With ``urgency`` (an item's priority, lower first), a batch that cannot take every
    waiting item takes the most urgent ones, and the lead goes to the most urgent
    caller left.
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_batch: int = 64,
        urgency: Callable[[T], int] | None = None,
    ) -> None:
        self._run_batch = run_batch
        self.max_batch = max_batch
        self._urgency = urgency
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
        # Leading: our item is in this batch, with the most urgent others waiting.
        with self._lock:
            batch = self._take(slot)
        try:
            self._run(batch)
        finally:
            for other in batch:
                if other is not slot:
                    other.wake.release()
            with self._lock:
                successor = self._first() if self._waiting else None
                self._busy = successor is not None
            if successor is not None:
                successor.wake.release()  # not done: it leads the next batch
        return _outcome(slot)

    def _take(self, slot: _Slot[T, R]) -> list[_Slot[T, R]]:
        """Our slot and up to ``max_batch - 1`` others, the most urgent first (arrival
        order among equals), taken out of the waiting list; in arrival order."""
        waiting = self._waiting
        if len(waiting) <= self.max_batch:
            self._waiting = []
            return waiting
        urgency = self._urgency or _same
        ranked = sorted((s for s in waiting if s is not slot), key=lambda s: urgency(s.item))
        keep = {id(s) for s in ranked[: self.max_batch - 1]} | {id(slot)}
        self._waiting = [s for s in waiting if id(s) not in keep]
        return [s for s in waiting if id(s) in keep]

    def _first(self) -> _Slot[T, R]:
        """The waiting caller to lead the next batch: the most urgent, the oldest."""
        if self._urgency is None:
            return self._waiting[0]
        urgency = self._urgency
        return min(self._waiting, key=lambda s: urgency(s.item))

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


def _same(_item: object) -> int:
    return 0


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

    A write made inside :func:`bulk` is bulk work: the most urgent writes waiting
    make up a batch first, and a batch of bulk writes alone asks ``transaction`` for
    the writer at :data:`BULK` rather than :data:`LIVE`.
    """

    def __init__(self, transaction: Callable[[int], AbstractContextManager[Any]]) -> None:
        """``transaction(level)``: a transaction with the writer taken at ``level``."""
        self._transaction = transaction
        self._kinds: dict[type, Callable[[Any, list[Any]], Sequence[Any]]] = {}
        self._commit: GroupCommit[tuple[int, Any], Any] = GroupCommit(
            self._run, urgency=_urgency
        )

    @property
    def batches(self) -> int:
        """Transactions run so far."""
        return self._commit.batches

    @property
    def items(self) -> int:
        """Writes they carried."""
        return self._commit.items

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
        return self._commit((level(LIVE), item))

    def _run(self, queued: Sequence[tuple[int, Any]]) -> list[Any]:
        results: list[Any] = [None] * len(queued)
        items = [item for _, item in queued]
        with self._transaction(min(urgency for urgency, _ in queued)) as conn:
            for kind, write in list(self._kinds.items()):  # a part built meanwhile may add one
                where = [i for i, item in enumerate(items) if type(item) is kind]
                if where:
                    written = write(conn, [items[i] for i in where])
                    for i, result in zip(where, written, strict=True):
                        results[i] = result
        return results


def _urgency(queued: tuple[int, Any]) -> int:
    return queued[0]
