"""Attempts of deliveries: claim them, send them, judge them, record them.

The ledger is the truth. A delivery is *claimed* by moving it from ``pending``
to ``sending`` with a lease, in one conditional UPDATE: two workers (or a
duplicate broker message) can never send the same attempt twice. An attempt
and its delivery's next state are then written in one transaction.

A broker message carries a batch of one integration's deliveries: it is claimed
in one statement, sent one delivery after the other, and recorded in one
transaction (:meth:`DeliveryRunner.run_batch`). This is the engine's hot path: its
statements are built once, as Core statements with bound parameters, rows are read
as plain values, and the writes of concurrent batches (and of intake) share
transactions (:class:`~.batching.WriteQueue`); ``docs/benchmarks.md`` has the figures.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, delete, exists, insert, select, update
from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError

from .clock import Clock
from .connector import LeadEnvelope
from .errors import (
    DeliveryError,
    LeadrelayError,
    ProxyFailure,
    RefusedTarget,
    RejectedError,
    ThrottledError,
    TransientError,
)
from .ledger import (
    SENDING,
    Attempt,
    AttemptLane,
    Delivery,
    DeliveryState,
    Integration,
    Lead,
    Ledger,
)
from .outcome import Outcome, RuleTrace, Verdict
from .priority import GiveWay, in_bulk
from .retry import decision, next_due, throttled_due
from .runtime import IntegrationRuntime, RuntimeCache
from .wire import safe_text

log = logging.getLogger(__name__)

#: An attempt that takes this long (or most of its connect or read timeout, if shorter)
#: marks its integration slow, as soon as it is overdue: its next deliveries go to the
#: slow lane (see broker) until one of its attempts is fast again.
SLOW_ATTEMPT_SECONDS = 1.0
#: About how long a worker thread spends on one message's batch: a CRM that answers in
#: 2 ms gets batches of 25, one that answers in 50 ms or more gets one delivery per
#: message, so its deliveries spread over every worker thread as before.
BATCH_SECONDS = 0.05
#: Batch size for an integration with no attempt seen yet in this process.
FIRST_BATCH = 4
MAX_BATCH = 64
#: How long the record of attempts already sent is retried through a database outage.
RECORD_PATIENCE = 300.0
#: Attempts in a row that may end without a recorded outcome (the sender died or lost
#: its lease) before the delivery is parked in the failed collection: a lead that kills
#: the worker sending it must not be resent forever.
MAX_IN_DOUBT = 3
#: Throttled attempts (429) do not count against the retry policy, up to this many
#: attempts over a delivery's life: a CRM that never stops answering 429 still ends in
#: the failed collection one day.
MAX_UNSPENT = 1000


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
    integration_id: int | None = None
    #: The claim had been taken back before the outcome was recorded (the lease ran
    #: out): the attempt is kept for audit and the delivery's state was not changed.
    stale: bool = False
    #: Seconds the CRM asked to wait (``Retry-After``), when it said.
    retry_after: float | None = None
    #: The rule that decided the outcome, as the attempt's row keeps it.
    decided_by: str | None = None
    #: Attempts the delivery has on record, this one included.
    attempts: int | None = None


class _Delivery(NamedTuple):
    """What an attempt needs of its delivery row."""

    id: int
    attempts_count: int
    #: This attempt's number: the claim counted it already.
    total_attempts: int
    idempotency_key: str
    crm_reference: str | None
    #: The claim this attempt is sent under: only it may record the outcome.
    claims: int
    in_doubt: int


class _Lead(NamedTuple):
    """What an attempt needs of its lead row."""

    id: int
    payload: Any
    form_id: int
    source: str
    received_at: datetime
    external_id: str | None


#: A claimed delivery, with what sending it needs.
Claimed = tuple[_Delivery, _Lead, Integration]


class _Claim(NamedTuple):
    """Claim those of these deliveries that are pending and due, and write the intent
    (an attempt row in state ``sending``) of each before anything is sent."""

    delivery_ids: tuple[int, ...]
    lane: str = AttemptLane.WORKER.value


class _Record(NamedTuple):
    """Settle these attempts and move their deliveries to their next states, each only
    if its claim is still the current one."""

    attempts: list[dict[str, Any]]
    finishes: list[dict[str, Any]]

    def without_exchanges(self, problem: str) -> _Record:
        """These records with each attempt's exchanges and trace replaced by a note of
        why they could not be stored: the verdict and the move still go on record."""
        note = [{"error": f"the exchanges of this attempt could not be stored: {problem}"}]
        return _Record(
            [{**a, "exchanges": note, "trace": []} for a in self.attempts], self.finishes
        )


class _Release(NamedTuple):
    """Give back these claimed deliveries, unsent, to be announced again."""

    claimed: tuple[_Delivery, ...]


class DeliveryRunner:
    """Runs delivery attempts against the ledger and the connectors."""

    def __init__(
        self,
        ledger: Ledger,
        runtimes: RuntimeCache,
        clock: Clock,
        *,
        lease_seconds: float = 120,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ledger = ledger
        self.sleep = sleep
        self.runtimes = runtimes
        self.clock = clock
        self.lease = timedelta(seconds=lease_seconds)
        self._integrations: dict[int, Integration] = {}
        #: Integrations whose last attempt in this process was slow.
        self._slow: set[int] = set()
        #: Attempts in flight: token → (integration id, when it becomes slow).
        self._running: dict[int, tuple[int, float]] = {}
        self._tokens = itertools.count()
        #: Recent attempt duration per integration (seconds, moving average).
        self._latency: dict[int, float] = {}
        #: Records, releases and claims of concurrent batches share transactions with
        #: each other and with intake (batching.WriteQueue).
        self.writes = ledger.writes
        self.writes.handle(_Record, self._write_records)
        self.writes.handle(_Release, self._write_releases)
        self.writes.handle(_Claim, self._write_claims)

    def run(
        self, delivery_id: int, *, lane: str = AttemptLane.WORKER.value
    ) -> AttemptResult | None:
        """One attempt, if the delivery is due and unclaimed; None when there was nothing to do."""
        results = self.run_batch([delivery_id], lane=lane)
        return results[0] if results else None

    def run_batch(
        self,
        delivery_ids: Sequence[int],
        *,
        spill: Callable[[list[int]], None] | None = None,
        lane: str = AttemptLane.WORKER.value,
    ) -> list[AttemptResult]:
        """One attempt of each of ``delivery_ids`` that is due and unclaimed, in turn.

        The batch is claimed in one transaction — which also writes each attempt's row,
        in state ``sending``, before any request leaves — and its attempts recorded in
        one. So a message of many deliveries costs about the ledger work of one. With
        ``spill``, the batch gives back what it should not hold on to: deliveries of an
        integration that turned slow meanwhile (for the slow lane), and everything left
        once half the lease is gone (so nothing is sent on a lease about to expire: an
        attempt ends by its deadline, which the settings keep below half the lease).
        Those are released unsent and handed to ``spill``.
        """
        claimed_at = self.clock.now()
        claimed: list[Claimed] = self.writes(_Claim(tuple(delivery_ids), lane))
        return self.send_claimed(claimed, spill=spill, claimed_at=claimed_at)

    def claim_in(self, conn: Any, delivery_ids: Sequence[int], *, lane: str) -> list[Claimed]:
        """Claim, on ``conn`` and inside its caller's transaction, those of
        ``delivery_ids`` that are pending and due — the workers' claim, with its lease and
        each attempt's intent — for the caller to send with :meth:`send_claimed` once
        that transaction is committed (a page's post claims its real-time deliveries in
        the transaction that stores them)."""
        return self._write_claims(conn, [_Claim(tuple(delivery_ids), lane)])[0]

    def release(self, claimed: Sequence[Claimed]) -> None:
        """Give claimed deliveries back unsent (their intents undone), pending again."""
        if claimed:
            self.writes(_Release(tuple(d for d, _, _ in claimed)))

    def send_claimed(
        self,
        claimed: Sequence[Claimed],
        *,
        spill: Callable[[list[int]], None] | None = None,
        claimed_at: datetime | None = None,
    ) -> list[AttemptResult]:
        """Send deliveries this process claimed and record their attempts in one
        transaction (see :meth:`run_batch`)."""
        claimed_at = claimed_at or self.clock.now()
        results: list[AttemptResult] = []
        records = _Record([], [])
        unsent: list[_Delivery] = []
        spilled: list[int] = []
        stale: set[int] = set()
        # Bulk work (the bulk lane, a replay) pauses between its sends while live leads
        # are sent: they share this process's GIL (priority.GiveWay).
        give_way = GiveWay() if in_bulk() and len(claimed) > 1 else None
        try:
            for index, (delivery, lead, integration) in enumerate(claimed):
                if give_way is not None and index:
                    give_way()
                if spill is not None and (
                    self.slow(integration.id) or self.clock.now() - claimed_at > self.lease / 2
                ):
                    unsent.append(delivery)
                    spilled.append(delivery.id)
                    continue
                try:
                    results.append(self._attempt(delivery, lead, integration, records))
                except BaseException:
                    # Interrupted (a time limit, shutdown): the rest was never sent.
                    unsent.extend(d for d, _, _ in claimed[index + 1 :])
                    raise
        finally:
            # Even when interrupted: what was sent is recorded, so it is not sent again
            # when the lease of the rest runs out; what was not sent is given back, so
            # it is not taken for an attempt in doubt.
            if records.attempts:
                stale = self._write_durably(records)
            if unsent:
                self.writes(_Release(tuple(unsent)))
        if stale:
            results = [replace(r, stale=True) if r.delivery_id in stale else r for r in results]
        if spilled:
            assert spill is not None
            spill(spilled)
        for result in results:
            log.info(
                "delivery %s attempt %s: %s%s%s (%s)",
                result.delivery_id,
                result.attempt,
                result.outcome.value,
                f", next at {result.next_due_at.isoformat()}" if result.next_due_at else "",
                ", stale claim: nothing changed" if result.stale else "",
                result.reason,
            )
        return results

    def _write_durably(self, records: _Record) -> set[int]:
        """Write what was sent, retrying through a database outage.

        The CRM has answered: dropping this write would leave no trace of the send, and
        the lease would then resend it. So it is retried, backing off, until it lands or
        :data:`RECORD_PATIENCE` has passed — by then the lease is long gone, the sweeper
        has marked the attempt in doubt, and the record, if it lands later still, is kept
        as stale.
        """
        delay, waited, stripped = 0.05, 0.0, False
        while True:
            try:
                stale: set[int] = self.writes(records)
                return stale
            except (DataError, IntegrityError, ProgrammingError) as exc:
                # The database refuses these rows themselves (what a CRM answered and no
                # backend stores): waiting will not change that, so keep the verdict
                # without the exchanges rather than leave the send unrecorded.
                if stripped:
                    raise
                log.error("recording %d attempt(s) refused (%s), keeping them without "
                          "their exchanges", len(records.attempts), type(exc.orig).__name__)
                records = records.without_exchanges(type(exc.orig).__name__)
                stripped = True
            except Exception as exc:
                if waited >= RECORD_PATIENCE:
                    log.error(
                        "could not record %d attempt(s) after %.0f s: %s",
                        len(records.attempts), waited, exc,
                    )
                    raise
                log.warning("recording %d attempt(s) failed, retrying: %s",
                            len(records.attempts), exc)
                self.sleep(delay)
                waited += delay
                delay = min(delay * 2, 2.0)

    def _attempt(
        self, delivery: _Delivery, lead: _Lead, integration: Integration, records: _Record
    ) -> AttemptResult:
        """Send one claimed delivery and judge the answer; its rows go to ``records``."""
        started_at = self.clock.now()
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
            return self._result(
                delivery, attempt_no, started_at, 0.0, verdict, [], None, None, records
            )
        envelope = envelope_for(lead, delivery, attempt_no)
        http = runtime.transport.client(runtime.redactor)
        limit = _slow_after(runtime)
        token = next(self._tokens)
        started = time.perf_counter()
        self._running[token] = (integration.id, started + limit)
        try:
            # A CRM may echo what it was sent: its words pass the same redaction.
            verdict = attempt(runtime, envelope, http).redacted(http.redactor.text)
        finally:
            del self._running[token]
        duration_ms = (time.perf_counter() - started) * 1000
        seconds = duration_ms / 1000
        self._latency[integration.id] = (
            0.8 * self._latency.get(integration.id, seconds) + 0.2 * seconds
        )
        if seconds >= limit:
            self._slow.add(integration.id)
        else:
            self._slow.discard(integration.id)
        proxy = next((e.proxy for e in reversed(http.exchanges) if e.proxy), None)
        return self._result(
            delivery,
            attempt_no,
            started_at,
            duration_ms,
            verdict,
            [_safe_json(e.as_dict()) for e in http.exchanges],
            proxy,
            runtime,
            records,
        )

    def latency(self, integration_id: int) -> float | None:
        """Recent duration of this integration's attempts here (seconds), if any ran."""
        return self._latency.get(integration_id)

    def batch_size(self, integration_id: int) -> int:
        """How many deliveries of this integration one message's batch should hold here,
        from its recent attempt durations (see :data:`BATCH_SECONDS`)."""
        latency = self._latency.get(integration_id)
        if latency is None:
            return FIRST_BATCH
        return max(1, min(MAX_BATCH, int(BATCH_SECONDS / max(latency, 1e-4))))

    # -- the slow lane --------------------------------------------------------------

    def slow(self, integration_id: int) -> bool:
        """Whether an integration is slow here: its last attempt in this process was, or
        one of its attempts has been running for too long already."""
        self._notice_overdue()
        return integration_id in self._slow

    def is_slow(self, delivery_id: int) -> bool:
        """Whether the delivery's integration is slow here (see :meth:`slow`).

        Free while no integration is slow; otherwise one primary-key read.
        """
        self._notice_overdue()
        if not self._slow:
            return False
        with self.ledger.transaction() as conn:
            integration_id = conn.execute(_INTEGRATION_OF, {"delivery_id": delivery_id}).scalar()
        return integration_id in self._slow

    def _notice_overdue(self) -> None:
        """Mark slow the integrations of attempts running past their slow limit."""
        if self._running:
            now = time.perf_counter()
            for running, overdue_at in list(self._running.values()):
                if now >= overdue_at:
                    self._slow.add(running)

    # -- ledger steps ---------------------------------------------------------------

    def _claim(self, delivery_id: int, now: datetime) -> Claimed | None:
        """Move the delivery to ``sending`` if it is due and unclaimed; what sending it needs."""
        claimed: list[Claimed] = self.writes(_Claim((delivery_id,)))
        return claimed[0] if claimed else None

    def _result(
        self,
        delivery: _Delivery,
        attempt_no: int,
        started_at: datetime,
        duration_ms: float,
        verdict: Verdict,
        exchanges: list[dict[str, object]],
        proxy: str | None,
        runtime: IntegrationRuntime | None,
        records: _Record,
    ) -> AttemptResult:
        """The attempt's outcome for its delivery; the rows recording it go to ``records``."""
        now = self.clock.now()
        due: datetime | None = None
        if verdict.outcome is Outcome.ACCEPTED:
            state = DeliveryState.DELIVERED
        elif verdict.outcome is Outcome.THROTTLED and runtime is not None and (
            delivery.total_attempts <= MAX_UNSPENT
        ):
            # The CRM did not judge the lead, it asked us to slow down: the attempt is on
            # record but not spent, so a backlog drains instead of failing (throttle.py
            # pauses the integration for everyone meanwhile).
            attempt_no = delivery.attempts_count
            due = throttled_due(runtime.policy, now=now, retry_after=verdict.retry_after)
            state = DeliveryState.PENDING
            said = (f"retried at {due.isoformat()}: throttled, not counted against "
                    f"{runtime.policy.origin}")
            verdict = replace(verdict, trace=(*verdict.trace, RuleTrace("retry", True, said)))
        else:
            due = (
                next_due(
                    runtime.policy,
                    attempt_no,
                    verdict.outcome,
                    now=now,
                    retry_after=verdict.retry_after,
                    final=bool(verdict.final),
                )
                if runtime is not None
                else now + timedelta(minutes=5)
            )
            state = DeliveryState.PENDING if due is not None else DeliveryState.NOT_INTEGRATED
            if runtime is not None:
                # The attempt says which rule of retrying applied (a final rejection's
                # declarer, or the policy and the attempt count).
                said = decision(runtime.policy, attempt_no, verdict.outcome, verdict.final, due)
                verdict = replace(
                    verdict, trace=(*verdict.trace, RuleTrace("retry", due is not None, said))
                )
        reason = safe_text(verdict.reason)
        decided_by = safe_text(verdict.decided_by[:200])
        records.attempts.append(
            {
                "a_delivery_id": delivery.id,
                "a_number": delivery.total_attempts,
                "a_claim": delivery.claims,
                "started_at": started_at,
                "duration_ms": round(duration_ms, 3),
                "outcome": verdict.outcome.value,
                "reason": reason,
                "decided_by": decided_by,
                "exchanges": exchanges,
                "trace": _safe_json(verdict.trace_dicts()),
                "proxy": proxy,
            }
        )
        records.finishes.append(
            {
                "delivery_id": delivery.id,
                "claim": delivery.claims,
                "new_state": state.value,
                "new_attempts_count": attempt_no,
                "new_next_due_at": due,
                "new_queued_for": due,
                "new_last_outcome": verdict.outcome.value,
                "new_last_reason": reason,
                "new_crm_reference": (
                    safe_text(verdict.crm_reference[:500])
                    if verdict.crm_reference
                    else delivery.crm_reference
                ),
                "new_finished_at": None if state is DeliveryState.PENDING else now,
            }
        )
        return AttemptResult(
            delivery.id,
            attempt_no,
            verdict.outcome,
            verdict.reason,
            state,
            due,
            verdict.crm_reference,
            integration_id=runtime.integration_id if runtime is not None else None,
            retry_after=verdict.retry_after,
            decided_by=decided_by,
            attempts=delivery.total_attempts,
        )

    # Rows are written in delivery-id order, so that two processes' transactions over
    # the same rows (duplicate messages) lock them in the same order.

    def _write_records(self, conn: Any, ops: list[_Record]) -> list[set[int]]:
        """Each op's attempts settled and deliveries moved; per op, the deliveries whose
        claim had been taken back (stale: their attempt is kept, their state untouched)."""
        finishes = sorted((f for op in ops for f in op.finishes), key=_by_delivery)
        attempts = sorted((a for op in ops for a in op.attempts), key=_by_attempt)
        moved = conn.execute(_FINISH, finishes).rowcount
        conn.execute(_SETTLE, attempts)
        if moved == len(finishes):  # the usual case: every claim was still current
            return [set() for _ in ops]
        claims = {f["delivery_id"]: f["claim"] for f in finishes}
        stale = {
            delivery_id
            for delivery_id, current, state in conn.execute(_CLAIMS, {"ids": list(claims)})
            if current != claims[delivery_id] or state == DeliveryState.SENDING.value
        }
        return [{f["delivery_id"] for f in op.finishes} & stale for op in ops]

    def _write_releases(self, conn: Any, ops: list[_Release]) -> list[None]:
        released = sorted((d for op in ops for d in op.claimed), key=lambda d: d.id)
        rows = [
            {"r_id": d.id, "r_claim": d.claims, "r_number": d.total_attempts} for d in released
        ]
        conn.execute(_UNDO_INTENT, rows)
        conn.execute(_RELEASE, [{**r, "now": self.clock.now()} for r in rows])
        return [None] * len(ops)

    def _write_claims(self, conn: Any, ops: list[_Claim]) -> list[list[Claimed]]:
        now = self.clock.now()
        wanted = sorted({i for op in ops for i in op.delivery_ids})
        ids = list(conn.scalars(_CLAIM, {"ids": wanted, "now": now, "lease": now + self.lease}))
        claimed: dict[int, Claimed] = {}
        if ids:
            for row in conn.execute(_LOAD, {"ids": ids}):
                delivery = _Delivery._make(row[:_N_DELIVERY])
                lead = _Lead._make(row[_N_DELIVERY : _N_DELIVERY + _N_LEAD])
                integration = self._integration(conn, *row[_N_DELIVERY + _N_LEAD :])
                claimed[delivery.id] = (delivery, lead, integration)
        # In the order asked; a delivery asked for twice (a duplicate message) goes to
        # the first asking.
        mine = [
            [c for c in map(claimed.pop, op.delivery_ids, itertools.repeat(None)) if c is not None]
            for op in ops
        ]
        # The intent of every attempt, in the claim's transaction: from here on a crash
        # leaves an attempt on record, never a send nobody knows about.
        intents: list[dict[str, Any]] = [
            {
                "delivery_id": d.id,
                "number": d.total_attempts,
                "started_at": now,
                "duration_ms": 0.0,
                "outcome": SENDING,
                "reason": "",
                "decided_by": "",
                "exchanges": [],
                "trace": [],
                "claim": d.claims,
                "stale": False,
                "lane": op.lane,
                "resend_of": d.total_attempts - 1 if d.in_doubt else None,
                "revision": integration.revision,
                "idempotency_key": d.idempotency_key,
            }
            for op, batch in zip(ops, mine, strict=True)
            for d, _, integration in batch
        ]
        if intents:
            conn.execute(_INSERT_ATTEMPT, sorted(intents, key=_by_delivery))
        return mine

    def _integration(self, conn: Any, integration_id: int, revision: int) -> Integration:
        """The integration as a detached row, fetched again only when its revision changed."""
        integration = self._integrations.get(integration_id)
        if integration is None or integration.revision != revision:
            values = conn.execute(_INTEGRATION, {"integration_id": integration_id}).one()
            integration = Integration(**dict(zip(_INTEGRATION_KEYS, values, strict=True)))
            self._integrations[integration_id] = integration
        return integration


# -- the hot path's statements, built once --------------------------------------------

_D = cast(Table, Delivery.__table__)
_L = cast(Table, Lead.__table__)
_I = cast(Table, Integration.__table__)

#: Those of some deliveries that are pending and due, and whose integration is active
#: (a message sent before the integration was switched off claims nothing) → sending,
#: with a lease, under the next claim number, counting the attempt about to be made;
#: their ids. Bound: ids, now, lease.
_CLAIM = (
    update(_D)
    .where(
        _D.c.id.in_(bindparam("ids", expanding=True)),
        _D.c.state == DeliveryState.PENDING.value,
        _D.c.next_due_at <= bindparam("now", type_=_D.c.next_due_at.type),
        exists().where(_I.c.id == _D.c.integration_id, _I.c.active.is_(True)),
    )
    .values(
        state=DeliveryState.SENDING.value,
        lease_until=bindparam("lease"),
        claims=_D.c.claims + 1,
        total_attempts=_D.c.total_attempts + 1,
    )
    .returning(_D.c.id)
)
_DELIVERY_COLUMNS = _Delivery._fields
_LEAD_COLUMNS = _Lead._fields
_INTEGRATION_KEYS = tuple(c.key for c in _I.columns)
_N_DELIVERY, _N_LEAD = len(_DELIVERY_COLUMNS), len(_LEAD_COLUMNS)
#: Claimed deliveries, their leads and their integrations' revisions. Bound: ids.
_LOAD = (
    select(
        *(_D.c[k] for k in _DELIVERY_COLUMNS),
        *(_L.c[k] for k in _LEAD_COLUMNS),
        _I.c.id,
        _I.c.revision,
    )
    .select_from(_D.join(_L, _L.c.id == _D.c.lead_id).join(_I, _I.c.id == _D.c.integration_id))
    .where(_D.c.id.in_(bindparam("ids", expanding=True)))
)
_A = cast(Table, Attempt.__table__)
#: A claimed delivery given back unsent, under its claim, announced again now; its
#: attempt was never made. Bound: r_id, r_claim, now.
_RELEASE = (
    update(_D)
    .where(
        _D.c.id == bindparam("r_id"),
        _D.c.state == DeliveryState.SENDING.value,
        _D.c.claims == bindparam("r_claim"),
    )
    .values(
        state=DeliveryState.PENDING.value,
        lease_until=None,
        total_attempts=_D.c.total_attempts - 1,
        queued_for=bindparam("now", type_=_D.c.queued_for.type),
    )
)
#: The intent of an attempt that was never made. Bound: r_id, r_claim, r_number.
_UNDO_INTENT = delete(_A).where(
    _A.c.delivery_id == bindparam("r_id"),
    _A.c.number == bindparam("r_number"),
    _A.c.claim == bindparam("r_claim"),
    _A.c.outcome == SENDING,
)
#: The integration of a delivery. Bound: delivery_id.
_INTEGRATION_OF = select(_D.c.integration_id).where(_D.c.id == bindparam("delivery_id"))
#: An integration's whole row. Bound: integration_id.
_INTEGRATION = select(*_I.columns).where(_I.c.id == bindparam("integration_id"))
_INSERT_ATTEMPT = insert(_A)
#: The delivery's state after an attempt, only under the claim it was sent with (a
#: sender whose lease ran out and was taken back changes nothing).
#: Bound: delivery_id, claim and each ``new_*`` value.
_FINISH = (
    update(_D)
    .where(
        _D.c.id == bindparam("delivery_id"),
        _D.c.state == DeliveryState.SENDING.value,
        _D.c.claims == bindparam("claim"),
    )
    .values(
        state=bindparam("new_state"),
        attempts_count=bindparam("new_attempts_count"),
        next_due_at=bindparam("new_next_due_at"),
        queued_for=bindparam("new_queued_for"),
        lease_until=None,
        in_doubt=0,
        last_outcome=bindparam("new_last_outcome"),
        last_reason=bindparam("new_last_reason"),
        crm_reference=bindparam("new_crm_reference"),
        finished_at=bindparam("new_finished_at"),
    )
)
#: An attempt's verdict on its intent row, after :data:`_FINISH` in the same transaction:
#: stale unless that moved its delivery under the attempt's claim.
#: Bound: a_delivery_id, a_number, a_claim and the verdict's columns.
_SETTLE = (
    update(_A)
    .where(
        _A.c.delivery_id == bindparam("a_delivery_id"),
        _A.c.number == bindparam("a_number"),
        _A.c.claim == bindparam("a_claim"),
    )
    .values(
        started_at=bindparam("started_at", type_=_A.c.started_at.type),
        duration_ms=bindparam("duration_ms"),
        outcome=bindparam("outcome"),
        reason=bindparam("reason"),
        decided_by=bindparam("decided_by"),
        exchanges=bindparam("exchanges", type_=_A.c.exchanges.type),
        trace=bindparam("trace", type_=_A.c.trace.type),
        proxy=bindparam("proxy"),
        stale=~exists().where(
            _D.c.id == bindparam("a_delivery_id"),
            _D.c.claims == bindparam("a_claim"),
            _D.c.state != DeliveryState.SENDING.value,
        ),
    )
)
#: Where some deliveries' claims stand. Bound: ids. Read only when a record moved fewer
#: deliveries than it recorded attempts.
_CLAIMS = select(_D.c.id, _D.c.claims, _D.c.state).where(
    _D.c.id.in_(bindparam("ids", expanding=True))
)


def _by_delivery(row: dict[str, Any]) -> Any:
    return row["delivery_id"]


def _by_attempt(row: dict[str, Any]) -> Any:
    return row["a_delivery_id"]


def _safe_json(value: Any) -> Any:
    """``value`` with every string made storable on every backend (see ``safe_text``)."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        return {safe_text(str(k)): _safe_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe_json(v) for v in value]
    return value


def _slow_after(runtime: IntegrationRuntime) -> float:
    """Seconds after which an attempt counts as slow: a second, or most of a shorter timeout."""
    t = runtime.transport.timeouts
    return min(SLOW_ATTEMPT_SECONDS, 0.9 * t.connect, 0.9 * t.read)


def envelope_for(lead: Any, delivery: Any, attempt: int = 1) -> LeadEnvelope:
    """The connector's view of ``lead`` for ``delivery`` (rows or ORM objects alike)."""
    return LeadEnvelope(
        fields=lead.payload,
        lead_id=lead.id,
        delivery_id=delivery.id,
        idempotency_key=delivery.idempotency_key,
        form_id=lead.form_id,
        source=lead.source,
        received_at=lead.received_at,
        attempt=attempt,
        external_id=lead.external_id,
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
    if isinstance(exc, RefusedTarget):
        outcome, by = Outcome.REFUSED_TARGET, "egress policy"
    elif isinstance(exc, ProxyFailure):
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
        final=getattr(exc, "final", ""),
    )
