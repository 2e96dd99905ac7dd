"""Real-time delivery: a lead's real-time integrations, sent inside its submission.

A visitor must never be left waiting on a CRM. Each real-time delivery is sent at once,
concurrently with the others, through the same claim as every sender
(:meth:`~.delivery.DeliveryRunner.run` on the ``realtime`` lane), and waited for at most
its integration's ``realtime_budget``. At the budget the answer goes out with that
delivery ``queued``: the attempt in flight is not abandoned — it holds the claim, ends
by its deadline, is recorded, and a failure is retried in the background like any other
(it was attempt 1 of the retry policy). No worker can send it meanwhile: the claim is
the workers' claim. A delivery whose send never started within its budget (every
real-time thread busy) is handed to the workers instead. An integration's rate limit and a
CRM's 429 pause hold here too (``admit``, the workers' :class:`~.throttle.Gate`): a delivery
they do not admit now is answered ``queued``, made due when they let it go.

A page's post claims its real-time deliveries in the very transaction that stores them
(:meth:`RealtimeSender.claim_in`), when their integration has no limit or pause to ask:
the same claim and intent, one transaction fewer while the visitor waits. A claimed
delivery whose send never started is given back (released) before it is handed over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .delivery import AttemptResult, Claimed, DeliveryRunner
from .intake import Accepted
from .ledger import AttemptLane, DeliveryState

log = logging.getLogger(__name__)

#: Real-time sends in flight at once per process; more wait for a thread, and are
#: handed to the workers if none frees up within their budget.
REALTIME_THREADS = 32


@dataclass(frozen=True)
class RealtimeResult:
    """Where one real-time delivery stands when the submission is answered.

    ``state`` is ``delivered`` or ``not_integrated`` when its attempt ended in budget
    with that verdict, ``retrying`` when it ended in budget and failed (the retry is
    scheduled), and ``queued`` when the budget ran out first: it goes on in the
    background, under the same delivery and idempotency key.
    """

    delivery_id: int
    state: str
    finished: bool
    outcome: str | None = None
    crm_reference: str | None = None
    reason: str | None = None
    #: The rule that decided the outcome, and the delivery's attempts on record then.
    decided_by: str | None = None
    attempts: int | None = None

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "delivery_id": self.delivery_id,
            "state": self.state,
            "finished": self.finished,
            "outcome": self.outcome,
            "crm_reference": self.crm_reference,
            "reason": self.reason,
        }


class RealtimeSender:
    """Sends real-time deliveries within their budgets, on threads of its own."""

    def __init__(
        self,
        runner: DeliveryRunner,
        after: Callable[[Iterable[AttemptResult | None]], None],
        hand_off: Callable[[list[int]], None],
        *,
        threads: int = REALTIME_THREADS,
        admit: Callable[[int, list[int]], list[int]] | None = None,
        free: Callable[[int], bool] | None = None,
    ) -> None:
        """``admit(integration_id, delivery_ids)``: those that may be sent now, the rest
        postponed in the ledger (the workers' rate limits and pauses); None admits all.
        ``free(integration_id)``: whether it has no rate limit or pause (known without
        reading the ledger), so that its deliveries may be claimed as they are stored."""
        self.runner = runner
        self._admit = admit
        self._free = free
        self._after = after
        self._hand_off = hand_off
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        #: Real-time deliveries answered ``queued`` because their budget ran out.
        self.handed_off = 0

    def claim_in(self, conn: Any, accepted: Iterable[Accepted]) -> dict[int, Claimed]:
        """Claim, on ``conn`` inside the transaction that stores these leads, their
        real-time deliveries whose integration is free of rate limits and pauses: the
        workers' claim, taken with the lead instead of in a transaction of its own. Pass
        them to :meth:`deliver`. The others are claimed by :meth:`deliver`, after
        ``admit``."""
        if self._free is None:
            return {}
        wanted = []
        for a in accepted:
            if a.realtime:
                realtime = {delivery_id for delivery_id, _ in a.realtime}
                wanted += [d for d, i in zip(a.delivery_ids, a.integration_ids, strict=False)
                           if d in realtime and self._free(i)]
        if not wanted:
            return {}
        claimed = self.runner.claim_in(conn, wanted, lane=AttemptLane.REALTIME.value)
        return {c[0].id: c for c in claimed}

    def deliver(
        self, accepted: Accepted, claimed: Mapping[int, Claimed] | None = None
    ) -> list[RealtimeResult]:
        """Send ``accepted``'s real-time deliveries; each one's state at its budget.
        ``claimed``: those :meth:`claim_in` claimed already."""
        if not accepted.realtime:
            return []
        claimed = claimed or {}
        started = time.monotonic()
        held = self._held_back(accepted, claimed)
        pool = self._executor()
        running = []
        for delivery_id, budget in accepted.realtime:
            if delivery_id not in held:
                mine = claimed.get(delivery_id)
                future = pool.submit(self._send, delivery_id, mine)
                running.append((delivery_id, started + budget, mine, future))
        sent = {d: self._wait(d, until, mine, future) for d, until, mine, future in running}
        return [sent.get(d) or RealtimeResult(d, "queued", finished=False)
                for d, _ in accepted.realtime]

    def _held_back(self, accepted: Accepted, claimed: Mapping[int, Claimed]) -> set[int]:
        """The real-time deliveries their integration's rate limit or pause does not admit
        now: postponed in the ledger by ``admit``, sent by the sweeper when due (those
        claimed already had no limit to ask)."""
        if self._admit is None:
            return set()
        integration_of = dict(zip(accepted.delivery_ids, accepted.integration_ids, strict=False))
        held = set()
        for delivery_id, _ in accepted.realtime:
            integration_id = integration_of.get(delivery_id)
            if delivery_id in claimed or integration_id is None:
                continue
            if not self._admit(integration_id, [delivery_id]):
                held.add(delivery_id)
        return held

    def close(self) -> None:
        """Let sends in flight finish and record; stop the threads."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=False)

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="realtime")
            return self._pool

    def _send(self, delivery_id: int, claimed: Claimed | None) -> AttemptResult | None:
        if claimed is None:
            result = self.runner.run(delivery_id, lane=AttemptLane.REALTIME.value)
        else:
            result = next(iter(self.runner.send_claimed([claimed])), None)
        # Whether the visitor still waits or not: a failure's retry is scheduled now.
        self._after([result])
        return result

    def _wait(
        self, delivery_id: int, until: float, claimed: Claimed | None,
        future: Future[AttemptResult | None],
    ) -> RealtimeResult:
        try:
            result = future.result(timeout=max(0.0, until - time.monotonic()))
        except TimeoutError:
            if future.cancel():  # never started: the workers take it from here
                if claimed is not None:
                    self.runner.release([claimed])
                self._hand_off([delivery_id])
            self.handed_off += 1
            return RealtimeResult(delivery_id, "queued", finished=False)
        except Exception:
            # The ledger failed under the send (the claim or the record): the lead is
            # stored, and the sweeper sends it once the ledger is back.
            log.exception("real-time delivery %s could not be sent", delivery_id)
            return RealtimeResult(delivery_id, "queued", finished=False)
        if result is None:  # somebody else holds the claim (a sweep): it is on its way
            return RealtimeResult(delivery_id, "queued", finished=False)
        state = (
            "retrying" if result.state is DeliveryState.PENDING else result.state.value
        )
        return RealtimeResult(
            delivery_id,
            state,
            finished=True,
            outcome=result.outcome.value,
            crm_reference=result.crm_reference,
            reason=result.reason,
            decided_by=result.decided_by,
            attempts=result.attempts,
        )
