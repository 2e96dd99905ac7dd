"""The engine assembled: one object that the CLI, the API and tests drive.

``Leadrelay`` wires the ledger, the plugins, the broker, the delivery runner
and the sweeper together. It holds no global state: tests build as many as
they like, each with its own database, broker and clock.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .clock import Clock, SystemClock
from .intake import Accepted, Intake, LeadIn
from .ledger import Ledger
from .settings import Settings

if TYPE_CHECKING:
    import dramatiq

    from leadrelay.facebook import FacebookSource, GraphSettings

    from .apikeys import ApiKeys
    from .broker import Dispatcher
    from .delivery import AttemptResult, Claimed, DeliveryRunner
    from .digest.service import Digests
    from .egress import EgressPolicy
    from .imports import Importer
    from .lead_status import LeadStatus
    from .management import Management
    from .plugins import Plugins
    from .posting import Posts
    from .realtime import RealtimeResult, RealtimeSender
    from .replay import Replayer, ReplayPlan
    from .report import DeliveryFilter, Page
    from .runtime import ProxyRoutes, RuntimeCache
    from .scheduler import Scheduler
    from .secrets import SecretBox
    from .sweeper import Sweeper, SweepReport
    from .throttle import Gate

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class _part(cached_property[_T]):
    """A part of the engine, built on first use, once: under the engine's lock, so two
    threads' first uses (two API requests) never build two (Python 3.12's
    ``cached_property`` takes no lock; a second ``Posts`` would register a second writer)."""

    def __get__(self, instance: Any, owner: type | None = None) -> _T:  # type: ignore[override]
        if instance is None:
            return self  # type: ignore[return-value]
        try:
            return instance.__dict__[self.attrname]
        except KeyError:
            pass
        with instance._parts_lock:
            return super().__get__(instance, owner)


class Leadrelay:
    """One leadrelay engine: ledger, connectors, broker, worker and sweeper.

    Only the ledger and intake are built at once; every other part (connectors, broker,
    management, digests…) on first use, so a one-shot command such as ``leadrelay
    submit`` pays for what it uses: no connector, broker or Alembic is loaded to store
    a lead (docs/benchmarks.md, "CLI start-up").
    """

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
        #: Held while a part is built (re-entrant: a part builds the parts it needs).
        self._parts_lock = threading.RLock()
        self._plugins_file = self.settings.plugins()
        for name, given in (("plugins", plugins), ("routes", routes), ("egress", egress)):
            if given is not None:
                self.__dict__[name] = given  # what cached_property would have built
        self._graph = graph
        self._plans_file = plans_file
        if routes is None and self._plugins_file.proxies:
            # A bad static-IP pool stops the engine here, before the ledger is opened.
            self.routes  # noqa: B018
        self.ledger = Ledger(self.settings.database_url)
        self.intake = Intake(self.ledger, self.clock)
        self._worker: dramatiq.Worker | None = None
        self._slow_worker: dramatiq.Worker | None = None
        self._bulk_worker: dramatiq.Worker | None = None
        self._scheduler: Scheduler | None = None

    # -- parts, built on first use ------------------------------------------------

    @_part
    def plugins(self) -> Plugins:
        """The installed connectors and expectation kinds (``plugins.toml`` settings)."""
        from .plugins import Plugins

        return Plugins(self._plugins_file.connectors)

    @_part
    def egress(self) -> EgressPolicy:
        """Where integrations may connect (``LEADRELAY_EGRESS_ALLOW``; see :mod:`.egress`)."""
        return self.settings.egress()

    @_part
    def routes(self) -> ProxyRoutes:
        """The static-IP pools of ``plugins.toml``, validated."""
        return _routes_from(self._plugins_file.proxies, self.clock, self.egress)

    @_part
    def box(self) -> SecretBox:
        """Encrypts integration secrets at rest with ``LEADRELAY_SECRET_KEY``."""
        from .secrets import SecretBox

        return SecretBox(self.settings.secret_key)

    @_part
    def runtimes(self) -> RuntimeCache:
        """Each integration's connector, settings and policy, ready to send."""
        from .runtime import RuntimeCache

        return RuntimeCache(self.plugins, self.box, self.routes, egress=self.egress)

    @_part
    def manage(self) -> Management:
        """Accounts, forms, integrations, plans: every change an operator makes."""
        from .management import Management
        from .plans import PlansSource, plans_file_path

        manage = Management(
            self.ledger, self.plugins, self.box, self.clock, self.routes,
            plans_source=PlansSource(plans_file_path(self.settings.home)
                                     if self._plans_file is None else self._plans_file),
            egress=self.egress,
        )
        manage.announce = self._enqueue
        manage.queued = lambda: self._consumed_here
        return manage

    @_part
    def runner(self) -> DeliveryRunner:
        """Runs one attempt of one delivery: claim, send, judge, record."""
        from .delivery import DeliveryRunner

        return DeliveryRunner(
            self.ledger, self.runtimes, self.clock, lease_seconds=self.settings.lease_seconds
        )

    @_part
    def broker(self) -> dramatiq.Broker:
        """Redis with ``LEADRELAY_BROKER_URL``, the in-process broker otherwise."""
        from .broker import make_broker

        return make_broker(self.settings.broker_url, lease_s=self.settings.lease_seconds)

    @_part
    def dispatcher(self) -> Dispatcher:
        """Announces deliveries to the workers and runs them there."""
        from .broker import Dispatcher

        dispatcher = Dispatcher(self.broker, lambda: self.runner, self.clock)
        dispatcher.gate = self.gate
        return dispatcher

    @_part
    def gate(self) -> Gate:
        """Per-integration rate limits and 429 pauses, shared by every worker process."""
        from .throttle import Gate, Limiter

        return Gate(
            self.ledger, self.clock, Limiter(self.settings.broker_url),
            namespace=_namespace(self.settings.database_url),
        )

    @_part
    def sweeper(self) -> Sweeper:
        """Finds deliveries due or lost and announces them again."""
        from .sweeper import Sweeper

        return Sweeper(
            self.ledger, self.clock, self.dispatcher.announce, bulk=self.dispatcher.announce_bulk
        )

    @_part
    def replayer(self) -> Replayer:
        """Gives failed deliveries a fresh set of attempts."""
        from .replay import Replayer

        return Replayer(self.ledger, self.runtimes, self.clock)

    @_part
    def realtime(self) -> RealtimeSender:
        """Sends a lead's real-time deliveries while its poster waits (see :mod:`.realtime`)."""
        from .realtime import RealtimeSender

        return RealtimeSender(
            self.runner,
            self.dispatcher.after,
            lambda ids: self._enqueue((None, i) for i in ids),
            admit=self.gate.admit,
            free=self.gate.free,
        )

    @_part
    def keys(self) -> ApiKeys:
        """The API's keys: issued, listed, revoked."""
        from .apikeys import ApiKeys

        return ApiKeys(self.ledger, self.clock)

    @_part
    def lead_status(self) -> LeadStatus:
        """Signed tokens a poster reads its lead's state with."""
        from .lead_status import LeadStatus

        return LeadStatus(self.ledger, self.settings.secret_key, self.clock)

    @_part
    def imports(self) -> Importer:
        """Bulk imports (``leadrelay import``, ``POST /v1/imports``), on the bulk lane."""
        from .imports import Importer

        return Importer(
            self.ledger, self.clock, self.box, self.dispatcher.announce_bulk,
            lambda: self._consumed_here,
        )

    @_part
    def posts(self) -> Posts:
        """Leads posted to the API: validated, stored once per idempotency key, answered."""
        from .posting import Posts

        return Posts(self)

    @_part
    def digests(self) -> Digests:
        """The failure digest (``LEADRELAY_SMTP_URL``): runs, send now, preview, history."""
        from .digest.service import Digests

        return Digests(self.ledger, self.clock, self.settings)

    @_part
    def facebook(self) -> FacebookSource:
        """Facebook Lead Ads: page connections, the webhook, the background Graph reads
        (``graph``: where the Graph API is; ``LEADRELAY_FACEBOOK_GRAPH_*`` otherwise)."""
        from leadrelay.facebook import FacebookSource

        return FacebookSource(self, self._graph)

    def _built(self, name: str) -> bool:
        """Whether the part ``name`` has been built (so there is something to close)."""
        return name in self.__dict__

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

    def deliver_realtime(
        self, accepted: Accepted, claimed: Mapping[int, Claimed] | None = None
    ) -> list[RealtimeResult]:
        """Send a lead's real-time deliveries now, concurrently, each waited for at most
        its integration's budget; where each stands then (see :mod:`.realtime`).
        ``claimed``: those claimed with the lead (:meth:`RealtimeSender.claim_in`)."""
        return self.realtime.deliver(accepted, claimed)

    def realtime_if_built(self) -> RealtimeSender | None:
        """The real-time sender, if this process has built it (never builds it: a caller
        inside a transaction must not load the connectors)."""
        return cast("RealtimeSender | None", self.__dict__.get("realtime"))

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
        from sqlalchemy import select

        from .ledger import Delivery, DeliveryState

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
        from .report import integration_object

        return integration_object(self.ledger, delivery_id, scope=scope)

    def lead(self, lead_id: int, *, scope: int | None = None) -> dict[str, Any]:
        """One lead with the state of each of its deliveries (``scope``: that account's)."""
        from .report import lead_object

        return lead_object(self.ledger, lead_id, scope=scope)

    def deliveries(self, flt: DeliveryFilter | None = None) -> list[dict[str, Any]]:
        """Deliveries matching ``flt``, newest first."""
        from .report import DeliveryFilter, list_deliveries

        return list_deliveries(self.ledger, flt or DeliveryFilter())

    def deliveries_csv(self, flt: DeliveryFilter | None = None) -> str:
        """Deliveries matching ``flt`` as CSV with their leads' fields, no cell of which a
        spreadsheet runs as a formula (see :mod:`.export`)."""
        from .export import deliveries_csv
        from .report import DeliveryFilter

        return deliveries_csv(self.ledger, flt or DeliveryFilter())

    def deliveries_page(
        self, flt: DeliveryFilter | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page:
        """One page of :meth:`deliveries` from ``cursor``, and the next page's cursor."""
        from .report import DeliveryFilter, page_deliveries

        return page_deliveries(self.ledger, flt or DeliveryFilter(), limit=limit, cursor=cursor)

    def replay(self, flt: DeliveryFilter | None = None, *, dry_run: bool = False) -> ReplayPlan:
        """Replay failed deliveries; with ``dry_run``, only say what would be sent."""
        from .report import DeliveryFilter

        with self.ledger.bulk():  # a large replay is bulk work: live leads go first
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
        import dramatiq

        from .broker import BULK_QUEUE, QUEUE, RETRY_QUEUE, SLOW_QUEUE

        if self._worker is None:
            dispatcher = self.dispatcher  # declares the actors, and so the queues, first
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
            dispatcher.slow_cap = max(1, count // 2)
            self._worker.start()
            # Dramatiq warns when a second worker joins one broker; three are meant here.
            with _quiet(self.broker.logger, "same type twice"):
                self._slow_worker.start()
                self._bulk_worker.start()

    def start_scheduler(
        self, *, sweep_every: float | None = None, digest: bool = True,
        digest_every: float | None = None,
    ) -> Scheduler:
        """Start the periodic jobs in background threads (see :mod:`.scheduler`): the
        sweeper every ``sweep_every`` seconds (``LEADRELAY_SWEEP_INTERVAL``) and, with
        ``digest``, the failure digest every ``digest_every`` (:data:`.scheduler.DIGEST_EVERY`
        by default). Each runs once at once."""
        from .scheduler import DIGEST_EVERY, Scheduler

        if self._scheduler is None:
            scheduler = Scheduler()
            scheduler.every("sweep", sweep_every or self.settings.sweep_interval,
                            self.sweeper.sweep)
            scheduler.every("facebook", sweep_every or self.settings.sweep_interval,
                            self.facebook.sweep)
            if digest:
                scheduler.every("digest", digest_every or DIGEST_EVERY, self.digests.run)
            scheduler.start()
            self._scheduler = scheduler
        return self._scheduler

    def start_sweeper(self, interval: float | None = None) -> None:
        """Start the sweeper alone, every ``interval`` seconds, in a background thread."""
        self.start_scheduler(sweep_every=interval, digest=False)

    def join(self, timeout: float = 30.0) -> None:
        """Wait until the in-process queue is drained (in-process broker only)."""
        from dramatiq.brokers.stub import StubBroker

        from .broker import BULK_QUEUE, QUEUE, RETRY_QUEUE, SLOW_QUEUE

        if not self._built("dispatcher"):
            return  # nothing was ever announced from here

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
        if self._built("realtime"):
            self.realtime.close()
        if self._built("dispatcher"):
            self.dispatcher.announcer.close()
            self.dispatcher.bulk_announcer.close()
        for worker in (self._worker, self._bulk_worker, self._slow_worker):
            if worker is not None:
                worker.stop()
        self._worker = self._slow_worker = self._bulk_worker = None
        for part in ("broker", "runtimes", "facebook"):
            if self._built(part):
                getattr(self, part).close()
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
