"""One attempt of one delivery: claim it, send it, judge it, record it.

The ledger is the truth. A delivery is *claimed* by moving it from ``pending``
to ``sending`` with a lease, in one conditional UPDATE: two workers (or a
duplicate broker message) can never send the same attempt twice. The attempt
and the delivery's next state are then written in one transaction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from .clock import Clock
from .connector import LeadEnvelope
from .errors import (
    DeliveryError,
    LeadrelayError,
    ProxyFailure,
    RejectedError,
    ThrottledError,
    TransientError,
)
from .ledger import Attempt, Delivery, DeliveryState, Integration, Lead, Ledger
from .outcome import Outcome, RuleTrace, Verdict
from .retry import next_due
from .runtime import IntegrationRuntime, RuntimeCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt did to its delivery."""

    delivery_id: int
    attempt: int
    outcome: Outcome
    reason: str
    state: DeliveryState
    next_due_at: datetime | None = None
    crm_reference: str | None = None


class DeliveryRunner:
    """Runs delivery attempts against the ledger and the connectors."""

    def __init__(
        self, ledger: Ledger, runtimes: RuntimeCache, clock: Clock, *, lease_seconds: float = 120
    ) -> None:
        self.ledger = ledger
        self.runtimes = runtimes
        self.clock = clock
        self.lease = timedelta(seconds=lease_seconds)

    def run(self, delivery_id: int) -> AttemptResult | None:
        """One attempt, if the delivery is due and unclaimed; None when there was nothing to do."""
        now = self.clock.now()
        claimed = self._claim(delivery_id, now)
        if claimed is None:
            return None
        delivery, lead, integration = claimed
        attempt_no = delivery.attempts_count + 1
        try:
            runtime = self.runtimes.get(integration)
        except LeadrelayError as exc:
            # The integration's config no longer loads (connector uninstalled,
            # key rotated): record it like any failed attempt so it is visible.
            verdict = Verdict(
                Outcome.TRANSIENT,
                f"integration cannot be loaded: {exc}",
                decided_by="configuration",
            )
            return self._record(delivery, attempt_no, now, 0.0, verdict, [], None, None)
        envelope = LeadEnvelope(
            fields=lead.payload,
            lead_id=lead.id,
            delivery_id=delivery.id,
            idempotency_key=delivery.idempotency_key,
            form_id=lead.form_id,
            source=lead.source,
            received_at=lead.received_at,
            attempt=attempt_no,
        )
        http = runtime.transport.client(runtime.redactor)
        started = time.perf_counter()
        verdict = attempt(runtime, envelope, http)
        duration_ms = (time.perf_counter() - started) * 1000
        proxy = next((e.proxy for e in reversed(http.exchanges) if e.proxy), None)
        return self._record(
            delivery,
            attempt_no,
            now,
            duration_ms,
            verdict,
            [e.as_dict() for e in http.exchanges],
            proxy,
            runtime,
        )

    # -- ledger steps ---------------------------------------------------------------

    def _claim(self, delivery_id: int, now: datetime) -> tuple[Delivery, Lead, Integration] | None:
        with self.ledger.session() as s:
            result = s.execute(
                update(Delivery)
                .where(
                    Delivery.id == delivery_id,
                    Delivery.state == DeliveryState.PENDING.value,
                    Delivery.next_due_at <= now,
                )
                .values(state=DeliveryState.SENDING.value, lease_until=now + self.lease)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = s.execute(
                select(Delivery, Lead, Integration)
                .join(Lead, Lead.id == Delivery.lead_id)
                .join(Integration, Integration.id == Delivery.integration_id)
                .where(Delivery.id == delivery_id)
            ).one()
            return row[0], row[1], row[2]

    def _record(
        self,
        delivery: Delivery,
        attempt_no: int,
        started_at: datetime,
        duration_ms: float,
        verdict: Verdict,
        exchanges: list[dict[str, object]],
        proxy: str | None,
        runtime: IntegrationRuntime | None,
    ) -> AttemptResult:
        now = self.clock.now()
        due: datetime | None = None
        if verdict.outcome is Outcome.ACCEPTED:
            state = DeliveryState.DELIVERED
        else:
            due = (
                next_due(
                    runtime.policy,
                    attempt_no,
                    verdict.outcome,
                    now=now,
                    retry_after=verdict.retry_after,
                )
                if runtime is not None
                else now + timedelta(minutes=5)
            )
            state = DeliveryState.PENDING if due is not None else DeliveryState.NOT_INTEGRATED
        with self.ledger.session() as s:
            s.execute(
                insert(Attempt),
                {
                    "delivery_id": delivery.id,
                    "number": delivery.total_attempts + 1,
                    "started_at": started_at,
                    "duration_ms": round(duration_ms, 3),
                    "outcome": verdict.outcome.value,
                    "reason": verdict.reason,
                    "decided_by": verdict.decided_by[:200],
                    "exchanges": exchanges,
                    "trace": verdict.trace_dicts(),
                    "proxy": proxy,
                },
            )
            s.execute(
                update(Delivery)
                .where(Delivery.id == delivery.id)
                .values(
                    state=state.value,
                    attempts_count=attempt_no,
                    total_attempts=delivery.total_attempts + 1,
                    next_due_at=due,
                    queued_for=due,
                    lease_until=None,
                    last_outcome=verdict.outcome.value,
                    last_reason=verdict.reason,
                    crm_reference=verdict.crm_reference or delivery.crm_reference,
                    finished_at=None if state is DeliveryState.PENDING else now,
                )
                .execution_options(synchronize_session=False)
            )
        return AttemptResult(
            delivery.id,
            attempt_no,
            verdict.outcome,
            verdict.reason,
            state,
            due,
            verdict.crm_reference,
        )


def attempt(runtime: IntegrationRuntime, lead: LeadEnvelope, http: object) -> Verdict:
    """Send ``lead`` with the integration's connector and judge the answer. Never raises."""
    connector = runtime.connector
    try:
        response = connector.send(lead, http)  # type: ignore[arg-type]
        return connector.judge(response, runtime.expectations)
    except DeliveryError as exc:
        return verdict_for_error(exc)
    except Exception as exc:  # a connector bug must not kill the worker or lose the lead
        log.exception("connector %s failed on delivery %s", connector.name, lead.delivery_id)
        return Verdict(
            Outcome.TRANSIENT,
            f"connector {connector.name!r} failed: {type(exc).__name__}",
            decided_by="connector error",
        )


def verdict_for_error(exc: DeliveryError) -> Verdict:
    """The verdict for a delivery error raised before a response could be judged."""
    if isinstance(exc, ProxyFailure):
        outcome, by = Outcome.PROXY_ERROR, f"proxy {exc.proxy}"
    elif isinstance(exc, ThrottledError):
        outcome, by = Outcome.THROTTLED, "throttled"
    elif isinstance(exc, TransientError):
        outcome, by = Outcome.TRANSIENT, "transport"
    elif isinstance(exc, RejectedError):
        outcome, by = Outcome.REJECTED, "connector"
    else:
        outcome, by = Outcome.TRANSIENT, "connector"
    retry_after = getattr(exc, "retry_after", None)
    return Verdict(
        outcome,
        str(exc),
        decided_by=by,
        trace=(RuleTrace(by, False, str(exc)),),
        retry_after=retry_after,
    )
