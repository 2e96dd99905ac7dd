"""``GET /metrics``: Prometheus figures of this process and of the ledger.

Counted by this process: leads it received (by source) and its real-time
deliveries (finished in time, or handed to the background at their budget). Read
from the ledger at each scrape, so that every process reports the same truth:
deliveries by state and last outcome, the queue's depth (deliveries due and
waiting), and the latency of attempts as they finish, per connector and lane
(worker or real-time), wherever they were sent from.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.realtime import RealtimeResult
from leadrelay.engine.stats import AttemptTail, delivery_counts, queue_depth

#: Attempt latency buckets (seconds): a fast CRM answers in milliseconds, a slow one
#: runs to its read timeout.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """One registry per app (no global state: tests build many apps)."""

    def __init__(self, engine: Leadrelay) -> None:
        self.engine = engine
        self.registry = CollectorRegistry(auto_describe=True)
        self.leads = Counter("leadrelay_leads_received", "Leads this process accepted",
                             ["source"], registry=self.registry)
        self.realtime = Counter(
            "leadrelay_realtime_deliveries",
            "Real-time deliveries of this process, by how they ended in the request "
            "(handed_off: the budget ran out and the background carries on)",
            ["result"], registry=self.registry)
        self.attempts = Histogram("leadrelay_attempt_duration_seconds",
                                  "Attempts as they finish, by connector and lane",
                                  ["connector", "lane", "outcome"], buckets=BUCKETS,
                                  registry=self.registry)
        self._tail: AttemptTail | None = None
        self._lock = threading.Lock()
        self.registry.register(_Ledger(self))

    def lead_received(self, source: str, count: int = 1) -> None:
        """Count leads this process stored."""
        self.leads.labels(source=source).inc(count)

    def realtime_results(self, results: Iterable[RealtimeResult]) -> None:
        """Count how a request's real-time deliveries ended in it: their state when they
        finished in budget, ``handed_off`` when the background carries on."""
        for r in results:
            self.realtime.labels(result=r.state if r.finished else "handed_off").inc()

    def start(self) -> None:
        """Start counting attempts from the ledger's newest one (not the whole history)."""
        with self._lock:
            if self._tail is None:
                self._tail = AttemptTail(self.engine.ledger)

    def refresh(self) -> None:
        """Observe the attempts finished since the last scrape."""
        self.start()
        with self._lock:
            assert self._tail is not None
            for a in self._tail.finished():
                self.attempts.labels(connector=a.connector, lane=a.lane,
                                     outcome=a.outcome).observe(a.seconds)


class _Ledger(Collector):
    """Gauges read from the ledger at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterator[Metric]:
        return iter(())  # read at scrape time only: nothing to touch at registration

    def collect(self) -> Iterator[Metric]:
        engine = self.metrics.engine
        deliveries = GaugeMetricFamily("leadrelay_deliveries",
                                       "Deliveries in the ledger by state and last outcome",
                                       labels=["state", "outcome"])
        for (state, outcome), n in sorted(delivery_counts(engine.ledger).items()):
            deliveries.add_metric([state, outcome], n)
        yield deliveries
        yield GaugeMetricFamily("leadrelay_queue_depth",
                                "Deliveries due now and waiting for a worker",
                                value=queue_depth(engine.ledger, engine.clock.now()))
