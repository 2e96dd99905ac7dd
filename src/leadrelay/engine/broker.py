"""Transport of delivery ids: the Dramatiq broker and the ``deliver`` actor.

Messages carry only delivery ids (and their integration's); the ledger holds
everything else, so a lost message costs a little latency (the sweeper re-sends
it), never a lead.
Dramatiq's Retries middleware is left out: the engine's retry policy alone
decides when a delivery is tried again.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware, TimeLimit

from .announcer import Announcer
from .clock import Clock
from .delivery import RECORD_PATIENCE, AttemptResult, DeliveryRunner
from .ledger import DeliveryState
from .outcome import Outcome
from .priority import bulk
from .throttle import Gate

QUEUE = "deliveries"
#: How long a 429 without ``Retry-After`` pauses its integration for everyone (seconds).
PAUSE_SECONDS = 1.0
#: How long a slow-lane message waits when its integration has its share of the slow
#: lane's threads already (at least, and at most; else its attempts' recent duration).
SLOW_REQUEUE_SECONDS = 0.5
MAX_SLOW_REQUEUE_SECONDS = 30.0
#: The longest pause a 429 may impose on its integration (seconds).
MAX_PAUSE = 3600.0
ACTOR = "leadrelay.deliver"
#: The slow lane: deliveries of integrations whose last attempt was slow (a CRM that
#: hangs or answers after its timeout) run here, on worker threads of their own, so
#: they never hold the threads healthy integrations need (docs/benchmarks.md, isolation).
SLOW_QUEUE = "deliveries_slow"
SLOW_ACTOR = "leadrelay.deliver_slow"
#: Retries, due later: on a queue of their own, consumed by the same workers, so that a
#: retry coming due waits behind the few messages a worker has prefetched, not behind a
#: backlog of new leads (a delayed message is put back at the end of its own queue).
#: Same priority as new leads: neither lane starves the other.
RETRY_QUEUE = "deliveries_retry"
RETRY_ACTOR = "leadrelay.deliver_retry"
#: The bulk lane: imports and replays, on a queue of their own consumed by worker
#: threads of their own (``Leadrelay.start_worker``), so that a 50,000-row import or a
#: large replay never stands between a live form lead and a free thread.
BULK_QUEUE = "deliveries_bulk"
BULK_ACTOR = "leadrelay.deliver_bulk"


def _middleware(time_limit_s: float) -> list[Middleware]:
    # Of Dramatiq's default stack, only the time limit, a guard against a connector that
    # ignores its deadline: sends end within the lease of what they claimed (each attempt
    # by its deadline, a batch starts none past half the lease), and recording them may
    # then take RECORD_PATIENCE through a database outage; past both the sender is stale
    # anyway (the sweeper has taken the claim back), so its thread is freed.
    # Retries is left out (see module docstring); age limits, callbacks, pipelines and
    # shutdown notifications serve options the engine never sets, and each is a hook
    # call before and after every message (docs/benchmarks.md).
    return [TimeLimit(time_limit=int(time_limit_s * 1000))]


def make_broker(url: str | None, *, lease_s: float = 120.0) -> dramatiq.Broker:
    """The in-process broker when ``url`` is None, else the Redis broker at ``url``;
    a message is interrupted after the lease and the record's patience."""
    time_limit_s = lease_s + RECORD_PATIENCE
    if url is None:
        return StubBroker(middleware=_middleware(time_limit_s), fail_fast_default=False)
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(url=url, middleware=_middleware(time_limit_s))


class Dispatcher:
    """Sends delivery ids to the broker and runs them when they come back.

    A message carries the ids of some deliveries of one integration (``None`` when the
    sender does not know it): new deliveries are announced in few messages
    (:class:`~.announcer.Announcer`), and a worker runs a message's deliveries as one
    batch (:meth:`DeliveryRunner.run_batch`).
    """

    def __init__(
        self,
        broker: dramatiq.Broker,
        runner: DeliveryRunner | Callable[[], DeliveryRunner],
        clock: Clock,
        *,
        window: float = 0.02,
    ) -> None:
        """``runner``, or a function building it when the first message is run: a process
        that only announces (``leadrelay submit``) never loads a connector."""
        self.broker = broker
        self._runner = runner
        self.clock = clock
        register = dramatiq.actor(actor_name=ACTOR, queue_name=QUEUE, broker=broker)
        self.actor = register(self._deliver)
        register_slow = dramatiq.actor(actor_name=SLOW_ACTOR, queue_name=SLOW_QUEUE, broker=broker)
        self.slow_actor = register_slow(self._deliver_slow)
        register_retry = dramatiq.actor(
            actor_name=RETRY_ACTOR, queue_name=RETRY_QUEUE, broker=broker
        )
        self.retry_actor = register_retry(self._deliver)
        register_bulk = dramatiq.actor(actor_name=BULK_ACTOR, queue_name=BULK_QUEUE, broker=broker)
        self.bulk_actor = register_bulk(self._deliver_bulk)
        self.announcer = Announcer(self._send, window=window)
        self.bulk_announcer = Announcer(self._send_bulk, window=window)
        #: Rate limits and 429 pauses per integration (set by the engine; see throttle.py).
        self.gate: Gate | None = None
        #: At most this many slow-lane attempts of one integration at once in this
        #: process (set by ``start_worker``: half the slow lane's threads), so that two
        #: hanging CRMs never hold every slow-lane thread between them; None: no cap.
        self.slow_cap: int | None = None
        self._slow_running: Counter[int] = Counter()
        self._slow_lock = threading.Lock()

    @property
    def runner(self) -> DeliveryRunner:
        """The delivery runner the actors run messages with."""
        if not isinstance(self._runner, DeliveryRunner) and callable(self._runner):
            self._runner = self._runner()
        return self._runner

    def announce(self, deliveries: Iterable[tuple[int | None, int]]) -> None:
        """Announce new ``(integration id, delivery id)`` pairs to the workers."""
        self.announcer.announce(deliveries)

    def announce_bulk(self, deliveries: Iterable[tuple[int | None, int]]) -> None:
        """Announce ``(integration id, delivery id)`` pairs of imports and replays, on the
        bulk lane."""
        self.bulk_announcer.announce(deliveries)

    def enqueue(
        self, delivery_id: int, *, at: datetime | None = None, integration_id: int | None = None
    ) -> None:
        """Ask a worker to run ``delivery_id`` now, or — a retry — not before ``at``, on the
        retry lane, in its own message."""
        if at is None:
            self.actor.send([delivery_id], integration_id)
            return
        ms = int((at - self.clock.now()).total_seconds() * 1000)
        self.retry_actor.send_with_options(
            args=([delivery_id], integration_id), delay=ms if ms > 0 else None
        )

    def _send(self, integration_id: int | None, delivery_ids: list[int]) -> None:
        self.actor.send(delivery_ids, integration_id)

    def _send_bulk(self, integration_id: int | None, delivery_ids: list[int]) -> None:
        self.bulk_actor.send(delivery_ids, integration_id)

    def _deliver_bulk(
        self, delivery_ids: list[int] | int, integration_id: int | None = None
    ) -> None:
        # Bulk work: its claims and records queue behind live ones for the ledger's
        # writer, and what its batch cannot hold stays on the bulk lane.
        with bulk():
            self._deliver(delivery_ids, integration_id, send=self._send_bulk)

    def _deliver(
        self,
        delivery_ids: list[int] | int,
        integration_id: int | None = None,
        *,
        send: Callable[[int | None, list[int]], None] | None = None,
    ) -> None:
        ids = [delivery_ids] if isinstance(delivery_ids, int) else list(delivery_ids)
        # Deliveries of slow integrations go to the slow lane unclaimed: the ledger is
        # untouched, and a lost hand-off is recovered by the sweeper like any lost message.
        if integration_id is not None:
            if self.gate is not None:
                ids = self.gate.admit(integration_id, ids)
                if not ids:
                    return
            if self.runner.slow(integration_id):
                self._to_slow_lane(ids, integration_id)
                return
            # More than this CRM's pace allows in one batch: the rest back to the queue
            # (its own lane's: bulk work never lands among live leads), in batches other
            # threads take up at once.
            size = self.runner.batch_size(integration_id)
            for start in range(size, len(ids), size):
                (send or self._send)(integration_id, ids[start : start + size])
            ids = ids[:size]
        else:
            slow = [i for i in ids if self.runner.is_slow(i)]
            if slow:
                self._to_slow_lane(slow)
                ids = [i for i in ids if i not in slow]
        self.after(self.runner.run_batch(
            ids, spill=lambda spilled: self._to_slow_lane(spilled, integration_id)))

    def _to_slow_lane(self, delivery_ids: list[int], integration_id: int | None = None,
                      *, delay_ms: int | None = None) -> None:
        for delivery_id in delivery_ids:  # one each: slow CRMs are worked on in parallel
            self.slow_actor.send_with_options(args=([delivery_id], integration_id),
                                              delay=delay_ms)

    def _deliver_slow(
        self, delivery_ids: list[int] | int, integration_id: int | None = None
    ) -> None:
        ids = [delivery_ids] if isinstance(delivery_ids, int) else delivery_ids
        cap = self.slow_cap
        if integration_id is None or cap is None:
            for delivery_id in ids:
                self.after(self.runner.run_batch([delivery_id]))
            return
        with self._slow_lock:
            busy = self._slow_running[integration_id] >= cap
            if not busy:
                self._slow_running[integration_id] += 1
        if busy:
            # Its share of the slow lane is taken: back to the queue for about as long as
            # one of its attempts takes, leaving the threads to other slow CRMs.
            wait = self.runner.latency(integration_id) or SLOW_REQUEUE_SECONDS
            self._to_slow_lane(ids, integration_id, delay_ms=int(
                1000 * min(MAX_SLOW_REQUEUE_SECONDS, max(SLOW_REQUEUE_SECONDS, wait))))
            return
        try:
            for delivery_id in ids:
                self.after(self.runner.run_batch([delivery_id]))
        finally:
            with self._slow_lock:
                self._slow_running[integration_id] -= 1

    def after(self, results: Iterable[AttemptResult | None]) -> None:
        """Schedule the next attempt of deliveries that will be retried."""
        for result in results:
            if (
                result is not None
                and result.outcome is Outcome.THROTTLED
                and result.integration_id is not None
                and self.gate is not None
                and not result.stale
            ):
                # The CRM said slow down: everybody waits, not only this delivery.
                wait = result.retry_after if result.retry_after is not None else PAUSE_SECONDS
                self.gate.pause(result.integration_id,
                                self.clock.now() + timedelta(seconds=min(wait, MAX_PAUSE)))
            if (
                result is not None
                and result.state is DeliveryState.PENDING
                and result.next_due_at
                and not result.stale  # the current claim's sender schedules it
            ):
                self.enqueue(
                    result.delivery_id, at=result.next_due_at, integration_id=result.integration_id
                )
