"""Transport of delivery ids: the Dramatiq broker and the ``deliver`` actor.

Messages carry only a delivery id; the ledger holds everything else, so a lost
message costs a little latency (the sweeper re-sends it), never a lead.
Dramatiq's Retries middleware is left out: the engine's retry policy alone
decides when a delivery is tried again.
"""

from __future__ import annotations

from datetime import datetime

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware, TimeLimit

from .clock import Clock
from .delivery import AttemptResult, DeliveryRunner
from .ledger import DeliveryState

QUEUE = "deliveries"
ACTOR = "leadrelay.deliver"
#: The slow lane: deliveries of integrations whose last attempt was slow (a CRM that
#: hangs or answers after its timeout) run here, on worker threads of their own, so
#: they never hold the threads healthy integrations need (docs/benchmarks.md, isolation).
SLOW_QUEUE = "deliveries_slow"
SLOW_ACTOR = "leadrelay.deliver_slow"


def _middleware() -> list[Middleware]:
    # Of Dramatiq's default stack, only the time limit, a guard against a connector that
    # ignores its timeouts. Retries is left out (see module docstring); age limits,
    # callbacks, pipelines and shutdown notifications serve options the engine never
    # sets, and each is a hook call before and after every message (docs/benchmarks.md).
    return [TimeLimit(time_limit=15 * 60_000)]


def make_broker(url: str | None) -> dramatiq.Broker:
    """The in-process broker when ``url`` is None, else the Redis broker at ``url``."""
    if url is None:
        return StubBroker(middleware=_middleware(), fail_fast_default=False)
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(url=url, middleware=_middleware())


class Dispatcher:
    """Sends delivery ids to the broker and runs them when they come back."""

    def __init__(self, broker: dramatiq.Broker, runner: DeliveryRunner, clock: Clock) -> None:
        self.broker = broker
        self.runner = runner
        self.clock = clock
        register = dramatiq.actor(actor_name=ACTOR, queue_name=QUEUE, broker=broker)
        self.actor = register(self._deliver)
        register_slow = dramatiq.actor(actor_name=SLOW_ACTOR, queue_name=SLOW_QUEUE, broker=broker)
        self.slow_actor = register_slow(self._deliver_slow)

    def enqueue(self, delivery_id: int, *, at: datetime | None = None) -> None:
        """Ask a worker to run ``delivery_id`` now, or not before ``at``."""
        delay = None
        if at is not None:
            ms = int((at - self.clock.now()).total_seconds() * 1000)
            delay = ms if ms > 0 else None
        self.actor.send_with_options(args=(delivery_id,), delay=delay)

    def _deliver(self, delivery_id: int) -> None:
        if self.runner.is_slow(delivery_id):
            # Handed to the slow lane unclaimed: the ledger is untouched, and a lost
            # hand-off is recovered by the sweeper like any lost message.
            self.slow_actor.send(delivery_id)
            return
        result = self.runner.run(delivery_id)
        self.after(result)

    def _deliver_slow(self, delivery_id: int) -> None:
        result = self.runner.run(delivery_id)
        self.after(result)

    def after(self, result: AttemptResult | None) -> None:
        """Schedule the next attempt of a delivery that will be retried."""
        if result is not None and result.state is DeliveryState.PENDING and result.next_due_at:
            self.enqueue(result.delivery_id, at=result.next_due_at)
