"""The engine assembled: one object that the CLI, the API and tests drive.

``Leadrelay`` wires the ledger, the plugins, the broker, the delivery runner
and the sweeper together. It holds no global state: tests build as many as
they like, each with its own database, broker and clock.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dramatiq
from sqlalchemy import select

from .apikeys import ApiKeys
from .broker import BULK_QUEUE, QUEUE, RETRY_QUEUE, SLOW_QUEUE, Dispatcher, make_broker
from .clock import Clock, SystemClock
from .delivery import AttemptResult, DeliveryRunner
from .egress import EgressPolicy
from .imports import Importer
from .intake import Accepted, Intake, LeadIn
from .lead_status import LeadStatus
from .ledger import Delivery, DeliveryState, Ledger
from .management import Management
from .plans import PlansSource, plans_file_path
from .plugins import Plugins
from .posting import Posts
from .realtime import RealtimeResult, RealtimeSender
from .replay import Replayer, ReplayPlan
from .report import (
    DeliveryFilter,
    Page,
    integration_object,
    lead_object,
    list_deliveries,
    page_deliveries,
)
from .runtime import ProxyRoutes, RuntimeCache
from .scheduler import DIGEST_EVERY, Scheduler
from .secrets import SecretBox
from .settings import Settings
from .sweeper import Sweeper, SweepReport
from .throttle import Gate, Limiter

if TYPE_CHECKING:
    from leadrelay.facebook import GraphSettings

log = logging.getLogger(__name__)


class Leadrelay:
    """One leadrelay engine: ledger, connectors, broker, worker and sweeper."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Clock | None = None,
        plugins: Plugins | None = None,
        routes: ProxyRoutes | None = None,
        graph: GraphSettings | None = None,
        plans_file: Path | None = None,
        egress: EgressPolicy | None = None,
    ) -> None:
        """``plans_file``: the plans file (see :mod:`.plans`); by default
        ``LEADRELAY_PLANS_FILE``, or ``plans.toml`` in the home directory if there is one."""
        self.settings = settings or Settings.from_env()
        self.clock = clock or SystemClock()
        plugins_file = self.settings.plugins()
        self.plugins = plugins or Plugins(plugins_file.connectors)
        #: Where integrations may connect (``LEADRELAY_EGRESS_ALLOW``; see :mod:`.egress`).
        self.egress = egress or self.settings.egress()
        self.routes = routes or _routes_from(plugins_file.proxies, self.clock, self.egress)
        self.box = SecretBox(self.settings.secret_key)
        self.ledger = Ledger(self.settings.database_url)
        self.runtimes = RuntimeCache(self.plugins, self.box, self.routes, egress=self.egress)
        self.manage = Management(
            self.ledger, self.plugins, self.box, self.clock, self.routes,
            plans_source=PlansSource(plans_file_path(self.settings.home)
                                     if plans_file is None else plans_file),
            egress=self.egress,
        )
        self.intake = Intake(self.ledger, self.clock)
        self.runner = DeliveryRunner(
            self.ledger, self.runtimes, self.clock, lease_seconds=self.settings.lease_seconds
        )
        self.broker = make_broker(
            self.settings.broker_url, lease_s=self.settings.lease_seconds
        )
        self.dispatcher = Dispatcher(self.broker, self.runner, self.clock)
        #: Per-integration rate limits and 429 pauses, shared by every worker process.
        self.gate = Gate(
            self.ledger, self.clock, Limiter(self.settings.broker_url),
            namespace=_namespace(self.settings.database_url),
        )
        self.dispatcher.gate = self.gate
        self.sweeper = Sweeper(
            self.ledger, self.clock, self.dispatcher.announce, bulk=self.dispatcher.announce_bulk
        )
        self.replayer = Replayer(self.ledger, self.runtimes, self.clock)
        self.realtime = RealtimeSender(
            self.runner,
            self.dispatcher.after,
            lambda ids: self._enqueue((None, i) for i in ids),
        )
        self.manage.announce = self._enqueue
        self.manage.queued = lambda: self._consumed_here
        self.keys = ApiKeys(self.ledger, self.clock)
        self.lead_status = LeadStatus(self.ledger, self.settings.secret_key)
        #: Bulk imports (``leadrelay import``, ``POST /v1/imports``), on the bulk lane.
        self.imports = Importer(
            self.ledger, self.clock, self.intake, self.box, self.dispatcher.announce_bulk,
            lambda: self._consumed_here,
        )
        self.posts = Posts(self)
        from .digest.service import Digests

        #: The failure digest (``LEADRELAY_SMTP_URL``): runs, send now, preview, history.
        self.digests = Digests(self.ledger, self.clock, self.settings)
        from leadrelay.facebook import FacebookSource

        #: Facebook Lead Ads: page connections, the webhook, the background Graph reads
        #: (``graph``: where the Graph API is; ``LEADRELAY_FACEBOOK_GRAPH_*`` otherwise).
        self.facebook = FacebookSource(self, graph)
        self._worker: dramatiq.Worker | None = None
        self._slow_worker: dramatiq.Worker | None = None
        self._bulk_worker: dramatiq.Worker | None = None
        self._scheduler: Scheduler | None = None

    # -- intake ---------------------------------------------------------------------

    def submit(
        self,
        form_id: int,
        payload: Any,
        *,
        source: str = "form",
        external_id: str | None = None,
        realtime: bool = False,
    ) -> Accepted:
        """Accept one lead: durable with its deliveries before this returns, then enqueued.

        With ``realtime``, the deliveries of real-time integrations are left for the
        caller to send with :meth:`deliver_realtime` (a lost caller's are sent by the
        sweeper); the others are enqueued as usual.
        """
        accepted = self.intake.accept(
            LeadIn(form_id, payload, source, external_id), queued=self._consumed_here
        )
        self._enqueue(_background(accepted, realtime))
        return accepted

    def submit_many(
        self, leads: Sequence[LeadIn], *, integrate: bool = True, realtime: bool = False
    ) -> list[Accepted]:
        """Accept several leads in one transaction (imports, batches); ``realtime`` as in
        :meth:`submit`."""
        accepted = self.intake.accept_many(leads, integrate=integrate, queued=self._consumed_here)
        self._enqueue(d for a in accepted for d in _background(a, realtime))
        return accepted

    def deliver_realtime(self, accepted: Accepted) -> list[RealtimeResult]:
        """Send a lead's real-time deliveries now, concurrently, each waited for at most
        its integration's budget; where each stands then (see :mod:`.realtime`)."""
        return self.realtime.deliver(accepted)

    @property
    def _consumed_here(self) -> bool:
        """Whether a message sent now will reach a worker: always through Redis; through
        the in-process broker only when this process runs one (``serve``, not ``submit``)."""
        return self.settings.broker_url is not None or self._worker is not None

    @property
    def queued(self) -> bool:
        """Whether deliveries stored now will be announced to a worker (see ``submit``)."""
        return self._consumed_here

    def announce(self, accepted: Iterable[Accepted], *, realtime: bool = False) -> None:
        """Announce deliveries stored outside :meth:`submit` (idempotent posts);
        ``realtime`` as in :meth:`submit`."""
        self._enqueue(d for a in accepted for d in _background(a, realtime))

    def _enqueue(self, deliveries: Iterable[tuple[int | None, int]]) -> None:
        if not self._consumed_here:
            return  # the deliveries are marked unqueued: a running sweeper sends them
        self.dispatcher.announce(deliveries)  # never raises: the sweeper covers a lost one

    # -- delivering -----------------------------------------------------------------

    def deliver(self, delivery_id: int) -> AttemptResult | None:
        """Run one attempt of one delivery now, in this thread, if it is due."""
        return self.runner.run(delivery_id)

    def deliver_due(self, *, limit: int = 10_000) -> list[AttemptResult]:
        """Run every due delivery once, in this thread (tests, one-shot runs)."""
        with self.ledger.session() as s:
            ids = list(
                s.scalars(
                    select(Delivery.id)
                    .where(
                        Delivery.state == DeliveryState.PENDING.value,
                        Delivery.next_due_at <= self.clock.now(),
                    )
                    .order_by(Delivery.next_due_at, Delivery.id)
                    .limit(limit)
                )
            )
        return [r for r in map(self.runner.run, ids) if r is not None]

    def sweep(self) -> SweepReport:
        """One sweeper pass."""
        return self.sweeper.sweep()

    # -- reading and replaying ------------------------------------------------------

    def inspect(self, delivery_id: int, *, scope: int | None = None) -> dict[str, Any]:
        """The integration object of one delivery (``scope``: of that account only)."""
        return integration_object(self.ledger, delivery_id, scope=scope)

    def lead(self, lead_id: int, *, scope: int | None = None) -> dict[str, Any]:
        """One lead with the state of each of its deliveries (``scope``: that account's)."""
        return lead_object(self.ledger, lead_id, scope=scope)

    def deliveries(self, flt: DeliveryFilter | None = None) -> list[dict[str, Any]]:
        """Deliveries matching ``flt``, newest first."""
        return list_deliveries(self.ledger, flt or DeliveryFilter())

    def deliveries_csv(self, flt: DeliveryFilter | None = None) -> str:
        """Deliveries matching ``flt`` as CSV with their leads' fields, no cell of which a
        spreadsheet runs as a formula (see :mod:`.export`)."""
        from .export import deliveries_csv

        return deliveries_csv(self.ledger, flt or DeliveryFilter())

    def deliveries_page(
        self, flt: DeliveryFilter | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page:
        """One page of :meth:`deliveries` from ``cursor``, and the next page's cursor."""
        return page_deliveries(self.ledger, flt or DeliveryFilter(), limit=limit, cursor=cursor)

    def replay(self, flt: DeliveryFilter | None = None, *, dry_run: bool = False) -> ReplayPlan:
        """Replay failed deliveries; with ``dry_run``, only say what would be sent."""
        plan = self.replayer.replay(
            flt or DeliveryFilter(), dry_run=dry_run, queued=self._consumed_here
        )
        if not dry_run and self._consumed_here:
            self.dispatcher.announce_bulk(plan.deliveries())
        return plan

    # -- running as a service -------------------------------------------------------

    def start_worker(self, *, threads: int | None = None) -> None:
        """Start Dramatiq worker threads consuming the delivery queue.

        As many again consume the slow lane, so that integrations that hang hold
        those threads, never the ones healthy integrations need; and a few
        (:func:`bulk_threads`) the bulk lane of imports and replays, so they never hold
        the threads live leads need.
        """
        if self._worker is None:
            count = threads or self.settings.worker_threads
            self._worker = dramatiq.Worker(
                self.broker, queues={QUEUE, RETRY_QUEUE}, worker_threads=count, worker_timeout=100
            )
            self._slow_worker = dramatiq.Worker(
                self.broker, queues={SLOW_QUEUE}, worker_threads=count, worker_timeout=100
            )
            self._bulk_worker = dramatiq.Worker(
                self.broker, queues={BULK_QUEUE}, worker_threads=bulk_threads(count),
                worker_timeout=100,
            )
            self.dispatcher.slow_cap = max(1, count // 2)
            self._worker.start()
            # Dramatiq warns when a second worker joins one broker; three are meant here.
            with _quiet(self.broker.logger, "same type twice"):
                self._slow_worker.start()
                self._bulk_worker.start()

    def start_scheduler(
        self, *, sweep_every: float | None = None, digest: bool = True,
        digest_every: float = DIGEST_EVERY,
    ) -> Scheduler:
        """Start the periodic jobs in background threads (see :mod:`.scheduler`): the
        sweeper every ``sweep_every`` seconds (``LEADRELAY_SWEEP_INTERVAL``) and, with
        ``digest``, the failure digest every ``digest_every``. Each runs once at once."""
        if self._scheduler is None:
            scheduler = Scheduler()
            scheduler.every("sweep", sweep_every or self.settings.sweep_interval,
                            self.sweeper.sweep)
            scheduler.every("facebook", sweep_every or self.settings.sweep_interval,
                            self.facebook.sweep)
            if digest:
                scheduler.every("digest", digest_every, self.digests.run)
            scheduler.start()
            self._scheduler = scheduler
        return self._scheduler

    def start_sweeper(self, interval: float | None = None) -> None:
        """Start the sweeper alone, every ``interval`` seconds, in a background thread."""
        self.start_scheduler(sweep_every=interval, digest=False)

    def join(self, timeout: float = 30.0) -> None:
        """Wait until the in-process queue is drained (in-process broker only)."""
        from dramatiq.brokers.stub import StubBroker

        self.dispatcher.announcer.flush()
        self.dispatcher.bulk_announcer.flush()
        if isinstance(self.broker, StubBroker):
            self.broker.join(QUEUE, timeout=int(timeout * 1000))
            self.broker.join(RETRY_QUEUE, timeout=int(timeout * 1000))
            self.broker.join(BULK_QUEUE, timeout=int(timeout * 1000))
            self.broker.join(SLOW_QUEUE, timeout=int(timeout * 1000))
            for worker in (self._worker, self._bulk_worker, self._slow_worker):
                if worker is not None:
                    worker.join()

    def close(self) -> None:
        """Stop the worker and the scheduler, close connections."""
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None
        self.realtime.close()
        self.dispatcher.announcer.close()
        self.dispatcher.bulk_announcer.close()
        for worker in (self._worker, self._bulk_worker, self._slow_worker):
            if worker is not None:
                worker.stop()
        self._worker = self._slow_worker = self._bulk_worker = None
        self.broker.close()
        self.runtimes.close()
        self.facebook.close()
        self.ledger.dispose()


def bulk_threads(threads: int) -> int:
    """Worker threads of the bulk lane for ``threads`` on the live lanes: a quarter, at
    least one."""
    return max(1, threads // 4)


def _namespace(database_url: str) -> str:
    """The rate-limit keys of one ledger's integrations, apart from another's on a shared
    Redis (every process of one deployment names the same database)."""
    import hashlib

    return hashlib.sha256(database_url.encode()).hexdigest()[:12] + ":"


def _background(accepted: Accepted, realtime: bool) -> list[tuple[int | None, int]]:
    """The deliveries of ``accepted`` the workers should be told about: all of them, or,
    when the caller sends the real-time ones itself, the others."""
    deliveries = accepted.deliveries()
    if not (realtime and accepted.realtime):
        return deliveries
    held = {delivery_id for delivery_id, _ in accepted.realtime}
    return [d for d in deliveries if d[1] not in held]


@contextlib.contextmanager
def _quiet(logger: logging.Logger, text: str) -> Iterator[None]:
    """Drop ``logger``'s records containing ``text`` for the duration of the block."""

    def keep(record: logging.LogRecord) -> bool:
        return text not in record.getMessage()

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def _routes_from(proxies: Any, clock: Clock, egress: EgressPolicy) -> ProxyRoutes:
    """The static-IP pools of ``plugins.toml``, validated: a bad pool stops the engine here."""
    from .proxies import StaticIpPools

    return StaticIpPools.from_config(proxies, clock=clock, egress=egress)
