"""Live work first for the ledger's writer (issue 17): live writes are served before
queued bulk writes, bulk work gives way to a live lead between its writes but never
stops, and the bulk lane keeps its own work.

Threads are driven with events and the lock's own view of who waits; the grace a bulk
writer gives live ones runs on an injected clock (nothing sleeps).
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from typing import Any

import pytest

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.batching import WriteQueue
from leadrelay.engine.broker import BULK_QUEUE, QUEUE
from leadrelay.engine.imports import ImportOptions, parse_integrate, service
from leadrelay.engine.priority import (
    BULK,
    BULK_SWITCH_INTERVAL,
    LIVE,
    LIVE_WORK,
    NORMAL,
    GiveWay,
    LiveWork,
    WriterLock,
    bulk,
    in_bulk,
)


def _no_grace() -> WriterLock:
    return WriterLock(grace=0.0)


def _waiter(lock: WriterLock, level: int, order: list[str], name: str) -> threading.Thread:
    def run() -> None:
        with lock.hold(level):
            order.append(name)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_live_writer_goes_before_bulk_and_ordinary_writers_waiting_longer(
    wait_for: Callable[..., None],
) -> None:
    lock, order = _no_grace(), []
    lock.acquire(NORMAL)
    threads = [_waiter(lock, BULK, order, "bulk")]
    wait_for(lambda: lock.waiting == [BULK], 10)
    threads.append(_waiter(lock, NORMAL, order, "normal"))
    wait_for(lambda: lock.waiting == [BULK, NORMAL], 10)
    threads.append(_waiter(lock, LIVE, order, "live"))
    wait_for(lambda: lock.waiting == [BULK, NORMAL, LIVE], 10)
    lock.release()
    for thread in threads:
        thread.join(10)
    assert order == ["live", "normal", "bulk"]


def test_bulk_work_passed_over_max_passes_times_goes_next(
    wait_for: Callable[..., None],
) -> None:
    lock, order = WriterLock(grace=0.0, max_passes=2), []
    lock.acquire(LIVE)
    threads = [_waiter(lock, BULK, order, "bulk")]
    wait_for(lambda: lock.waiting == [BULK], 10)
    # Each live writer takes the lock, then lets the next one queue before releasing:
    # a steady stream of live writes, the bulk writer waiting all along.
    gates = [threading.Event() for _ in range(3)]

    def live(n: int) -> None:
        with lock.hold(LIVE):
            order.append(f"live{n}")
            gates[n].wait(10)

    for n in range(3):
        threads.append(threading.Thread(target=live, args=(n,), daemon=True))
        threads[-1].start()
        wait_for(lambda: lock.waiting.count(LIVE) == 1, 10)
        if n == 0:
            lock.release()
        else:
            gates[n - 1].set()
        wait_for(lambda n=n: f"live{n}" in order, 10)
    gates[2].set()
    for thread in threads:
        thread.join(10)
    # Passed over twice (live0, live1), the bulk writer went before live2.
    assert order == ["live0", "live1", "bulk", "live2"]


def test_the_lock_is_reentrant_and_only_its_holder_releases_it() -> None:
    lock = _no_grace()
    with lock.hold(LIVE), lock.hold(BULK):
        pass
    with pytest.raises(RuntimeError):
        lock.release()
    lock.acquire(BULK)  # free again
    lock.release()


class _Clock:
    """Monotonic time that moves only when somebody sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_bulk_work_waits_for_a_live_lead_s_next_write_within_patience() -> None:
    clock = _Clock()
    lock = WriterLock(grace=0.01, patience=0.1, monotonic=clock.monotonic, sleep=clock.sleep)
    with lock.hold(BULK):  # no live write yet: at once
        pass
    assert clock.slept == []
    with lock.hold(LIVE):
        pass
    clock.now += 0.004
    with lock.hold(BULK):  # a live write ended 4 ms ago: 6 ms more
        pass
    assert clock.slept == [0.006]
    with lock.hold(NORMAL):  # ordinary writers never wait for live ones
        pass
    assert clock.slept == [0.006]


def test_a_stream_of_live_writes_holds_bulk_work_back_patience_at_most() -> None:
    clock = _Clock()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        with lock.hold(LIVE):  # a live write ends as each nap does
            pass

    lock = WriterLock(grace=0.01, patience=0.05, monotonic=clock.monotonic, sleep=sleep)
    with lock.hold(LIVE):
        pass
    with lock.hold(BULK):
        pass
    assert sum(clock.slept) == pytest.approx(0.05)


def test_a_live_write_does_not_wait_in_line_behind_a_bulk_batch() -> None:
    # Given a bulk batch that has begun and waits (for the writer, as behind live work)
    entered, release = threading.Event(), threading.Event()
    levels: list[int] = []

    @contextmanager
    def transaction(level: int) -> Any:
        levels.append(level)
        if level == BULK:
            entered.set()
            assert release.wait(10)
        yield None

    queue = WriteQueue(transaction)
    queue.handle(str, lambda conn, items: items)

    def bulk_write() -> None:
        with bulk():
            queue("bulk")

    waiting = threading.Thread(target=bulk_write, daemon=True)
    waiting.start()
    assert entered.wait(10)
    # When a live write comes: it is written meanwhile, in a transaction of its own
    try:
        assert queue("live") == "live"
        assert levels == [BULK, LIVE]
    finally:
        release.set()
        waiting.join(10)
    assert queue.batches == 2


def test_without_a_bulk_line_bulk_and_live_writes_share_one_line(
    wait_for: Callable[..., None],
) -> None:
    # PostgreSQL's: no single writer to wait for, so one line batches both
    entered, release = threading.Event(), threading.Event()
    batches: list[tuple[int, list[str]]] = []

    @contextmanager
    def transaction(level: int) -> Any:
        if not batches:
            entered.set()
            assert release.wait(10)
        yield None

    queue = WriteQueue(transaction, bulk_line=False)
    queue.handle(str, lambda conn, items: [batches.append((0, list(items)))] * len(items))

    def write(item: str, as_bulk: bool) -> None:
        with bulk() if as_bulk else nullcontext():
            queue(item)

    first = threading.Thread(target=write, args=("first", False), daemon=True)
    first.start()
    assert entered.wait(10)
    later = [threading.Thread(target=write, args=(name, name == "bulk"), daemon=True)
             for name in ("bulk", "live")]
    for n, thread in enumerate(later, start=1):
        thread.start()
        wait_for(lambda n=n: len(queue._live._waiting) == n, 10)
    release.set()
    for thread in (first, *later):
        thread.join(10)
    assert [items for _, items in batches] == [["first"], ["bulk", "live"]]
    assert queue.batches == 2


class _Still:
    """Monotonic time that moves only when a waiter sleeps on it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _live_work(clock: _Still) -> LiveWork:
    live = LiveWork(monotonic=clock)

    def wait(timeout: float | None = None) -> bool:  # sleeping is time passing
        assert timeout is not None
        clock.now += timeout
        return False

    live._changed.wait = wait  # type: ignore[method-assign]
    return live


def test_bulk_work_gives_way_while_live_writes_run_and_for_their_grace_after() -> None:
    clock = _Still()
    live = _live_work(clock)
    give_way = GiveWay(live, grace=0.01, share=0.25, monotonic=clock)
    clock.now += 1.0  # worked a second: may wait up to three
    with live.running():
        assert live.within(0.0)
        start = clock.now
        give_way()
        # a live write that never ends: bulk work waits its share out, then goes on
        assert clock.now == pytest.approx(start + 3.0)
    start = clock.now
    clock.now += 0.004  # the live write ended 4 ms ago; bulk worked 4 ms since
    give_way()  # waits for the rest of the grace only
    assert clock.now == pytest.approx(start + 0.01)
    clock.now += 1.0
    before = clock.now
    give_way()  # nothing live for a second: no wait at all
    assert clock.now == before
    assert not live.within(0.5) and live.within(2.0)


def test_bulk_work_that_barely_worked_barely_waits() -> None:
    clock = _Still()
    live = _live_work(clock)
    give_way = GiveWay(live, grace=0.01, share=0.25, monotonic=clock)
    with live.running():
        clock.now += 0.001
        start = clock.now
        give_way()
        assert clock.now == pytest.approx(start + 0.003)  # a quarter of its time, kept


def test_the_write_queue_s_live_writes_are_live_work(app: Leadrelay) -> None:
    seen: list[bool] = []
    app.ledger.writes.handle(_Probe, lambda conn, items: [seen.append(LIVE_WORK.within(0.0))
                                                          for _ in items])
    app.ledger.writes(_Probe())
    with bulk():
        app.ledger.writes(_Probe())
    assert seen == [True, False]


class _Probe:
    """A write of no data, to watch the queue's transactions."""


def test_the_write_queue_takes_the_writer_at_bulk_level_for_bulk_writes_alone() -> None:
    levels: list[int] = []

    @contextmanager
    def transaction(level: int) -> Any:
        levels.append(level)
        yield None

    queue = WriteQueue(transaction)
    queue.handle(str, lambda conn, items: items)
    assert queue("live") == "live"
    with bulk():
        assert in_bulk()
        assert queue("bulk") == "bulk"
    assert not in_bulk()
    assert levels == [LIVE, BULK]


def test_cpu_bound_bulk_work_shortens_the_switch_interval_while_it_runs() -> None:
    before = sys.getswitchinterval()
    with bulk(cpu_bound=True):
        assert sys.getswitchinterval() == min(before, BULK_SWITCH_INTERVAL)
        with bulk(cpu_bound=True):
            pass
        assert sys.getswitchinterval() == min(before, BULK_SWITCH_INTERVAL)
    assert sys.getswitchinterval() == before


def test_the_ledger_takes_its_writer_at_bulk_level_inside_bulk(app: Leadrelay) -> None:
    lock = app.ledger._writer
    if lock is None:  # PostgreSQL: many writers, no process lock to take at any level
        assert app.ledger.dialect == "postgresql"
        with app.ledger.bulk(), app.ledger.transaction():
            return
    seen: list[int] = []
    take = lock._take

    def spy(me: int, level: int) -> None:
        seen.append(level)
        take(me, level)

    lock._take = spy  # type: ignore[method-assign]
    with app.ledger.transaction():
        pass
    with app.ledger.bulk(), app.ledger.transaction():
        pass
    assert seen == [NORMAL, BULK]


class _Runner:
    """What the dispatcher asks of its delivery runner, recording the batches it runs."""

    def __init__(self) -> None:
        self.ran: list[tuple[list[int], bool]] = []

    def slow(self, integration_id: int) -> bool:
        return False

    def batch_size(self, integration_id: int) -> int:
        return 2

    def run_batch(self, ids: list[int], **_: Any) -> list[None]:
        self.ran.append((list(ids), in_bulk()))
        return []


def test_a_bulk_message_too_big_for_one_batch_sends_the_rest_on_the_bulk_lane(
    app: Leadrelay,
) -> None:
    runner = _Runner()
    dispatcher = app.dispatcher
    dispatcher._runner = runner  # type: ignore[assignment]
    dispatcher.gate = None
    before = {q: app.broker.queues[q].qsize() for q in (QUEUE, BULK_QUEUE)}
    dispatcher._deliver_bulk([1, 2, 3, 4, 5], 7)
    assert runner.ran == [([1, 2], True)]  # run as bulk work
    assert app.broker.queues[QUEUE].qsize() == before[QUEUE]
    assert app.broker.queues[BULK_QUEUE].qsize() == before[BULK_QUEUE] + 2


def test_imports_send_and_replays_run_as_bulk_work(
    app: Leadrelay, form_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an engine whose import stores, import sends and replays say what they run as
    seen: dict[str, tuple[bool, float]] = {}

    def spy(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            seen.setdefault(name, (in_bulk(), sys.getswitchinterval()))
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(service, "insert_leads", spy("import", service.insert_leads))
    monkeypatch.setattr(service, "create_deliveries",
                        spy("send", service.create_deliveries))
    monkeypatch.setattr(app.replayer, "replay", spy("replay", app.replayer.replay))
    before = sys.getswitchinterval()
    app.manage.create_integration(form_id, name="CRM", connector="http_post", active=True,
                                  config={"url": "https://crm.example/leads"})

    # When an operator imports a file with integration off, sends it, then replays
    data = b"email\na@example.com\nb@example.com\n"
    report = app.imports.open(form_id, io.BytesIO(data), filename="leads.csv",
                              options=ImportOptions(integrate=parse_integrate("off"))).run()
    app.imports.send(report.id)
    app.replay()

    # Then each ran as bulk work (the import, which parses rows, with the GIL handed
    # over more often), and nothing of it is left once done
    assert seen["import"] == (True, min(before, BULK_SWITCH_INTERVAL))
    assert seen["send"][0] and seen["replay"][0]
    assert not in_bulk() and sys.getswitchinterval() == before
