"""Who writes first: live work before bulk work, for the ledger's writer.

A thread doing bulk work (an import, a replay, the bulk lane, the sweeper) says so
with :func:`bulk`; its writes then queue behind live ones — in the write queue
(:mod:`.batching`) and for SQLite's single writer (:class:`WriterLock`) — so a live
lead waits at most for the one bulk transaction already running, never for the ones
queued behind it. Bulk work that computes between its writes (an import parsing rows,
the bulk lane sending) also pauses while live writes run (:class:`GiveWay`): they
share the process's GIL (issue 17, docs/benchmarks.md "import-live-latency").
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


class LiveWork:
    """Live writes in flight in this process, and when the last one ended: what a
    CPU-bound bulk thread pauses for (:class:`GiveWay`).

    Such a thread and a live one share the GIL: each time the live thread lets go of
    it — at each step of a statement, each socket read — the bulk thread may keep it
    for a whole switch interval, and a lead's path has dozens of such hand-offs. So
    the bulk thread is better off asleep from a live lead's first write to its last.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._changed = threading.Condition(threading.Lock())
        self._running = 0
        self._ended_at = float("-inf")

    @contextmanager
    def running(self) -> Iterator[None]:
        """A live write in flight for the duration of the block."""
        with self._changed:
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._ended_at = self._monotonic()
                if not self._running:
                    self._changed.notify_all()

    def within(self, seconds: float) -> bool:
        """Whether a live write is in flight or ended under ``seconds`` ago."""
        return bool(self._running) or self._monotonic() < self._ended_at + seconds

    def wait_quiet(self, grace: float, until: float) -> None:
        """Wait until no live write is in flight or ended under ``grace`` seconds ago,
        or until ``until`` (monotonic seconds), whichever comes first."""
        with self._changed:
            while True:
                now = self._monotonic()
                if now >= until:
                    return
                if self._running:
                    self._changed.wait(until - now)
                elif now < self._ended_at + grace:
                    self._changed.wait(min(until, self._ended_at + grace) - now)
                else:
                    return


#: The process's live writes (the write queue's live line marks them).
LIVE_WORK = LiveWork()


class GiveWay:
    """Pauses a CPU-bound bulk thread (an import parsing its rows) while live work runs
    (:class:`LiveWork`), called between two units of its work.

    A live lead writes several times in a few milliseconds, with a hop between threads
    and a request to its CRM in between: the thread also waits ``grace`` seconds after
    the last live write, so the lead's next one finds it asleep. It never waits more
    than ``(1 - share) / share`` times as long as it worked since its last pause, so
    under any live load it keeps at least ``share`` of its time: bulk work slows down,
    but never stops.
    """

    def __init__(
        self,
        live: LiveWork = LIVE_WORK,
        *,
        grace: float = 0.01,
        share: float = 0.25,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.live = live
        self.grace = grace
        self.share = share
        self._monotonic = monotonic
        self._resumed = monotonic()

    def __call__(self) -> None:
        """Wait for live work to pause, within this thread's share (see class docstring)."""
        now = self._monotonic()
        worked = now - self._resumed
        self.live.wait_quiet(self.grace, now + worked * (1 - self.share) / self.share)
        self._resumed = self._monotonic()


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
