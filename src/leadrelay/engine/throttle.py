"""Flow control per integration: the CRM's rate limit and the pause a 429 asks for.

An integration may declare ``rate_limit`` (``"5/s"``, ``"300/min"``, ``"10000/day"``):
what the CRM's API allows. Every worker process honours it together, through a moving
window kept by the `limits <https://limits.readthedocs.io>`_ library — in Redis when
the deployment has one (``LEADRELAY_BROKER_URL``), in memory in the embedded default.

A CRM that answers 429 with ``Retry-After`` pauses its integration for everyone: the
pause is written on the integration's row (``paused_until``), so every process sees it
at its next refresh of the limited integrations (:data:`REFRESH_SECONDS`), the process
that got the 429 at once.

The check happens before deliveries are claimed (:meth:`Gate.admit`, called by the
broker's actor with the integration of a message): what the window does not admit now
is postponed in the ledger — due later, spread over the time the window needs to take
it — and left to the sweeper, so no worker thread waits and no message bounces. An
integration with no rate limit and no pause costs one dictionary look-up per message.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, or_, select, update

from .clock import Clock
from .errors import BadInput
from .ledger import Delivery, DeliveryState, Integration, Ledger

log = logging.getLogger(__name__)

#: Seconds between two reads of the limited and paused integrations in a process.
REFRESH_SECONDS = 1.0
#: A pause ending this close to the one in force is not written again.
_SAME_PAUSE = timedelta(seconds=0.5)
#: The most a rate may be (per second): beyond it, leave the CRM unlimited.
MAX_PER_SECOND = 10_000.0

_UNITS = {
    "s": 1, "sec": 1, "second": 1,
    "m": 60, "min": 60, "minute": 60,
    "h": 3600, "hour": 3600,
    "d": 86400, "day": 86400,
}
_RATE = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(\d+\s*)?([a-z]+?)s?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Rate:
    """A rate: ``count`` sends every ``seconds``."""

    count: int
    seconds: int
    text: str

    @property
    def per_second(self) -> float:
        """Sends per second."""
        return self.count / self.seconds

    def item(self) -> Any:
        """The `limits` item for this rate, as smooth as the numbers allow: ``300/min``
        is 5 a second (no burst of 300 then a minute's silence), ``10/min`` one every
        6 seconds."""
        import limits

        count, seconds = self.count, self.seconds
        if count % seconds == 0:
            count, seconds = count // seconds, 1
        elif seconds % count == 0:
            count, seconds = 1, seconds // count
        return limits.RateLimitItemPerSecond(count, seconds, namespace="leadrelay")


def parse_rate(value: Any, *, field: str = "rate_limit") -> Rate:
    """A rate from ``"5/s"``, ``"300/min"``, ``"2 per second"``, ``"1000/1h"``.

    :raises BadInput: anything else, a rate of 0 or a negative one, naming ``field``.
    """
    text = str(value).strip() if isinstance(value, str | int) else None
    if isinstance(value, bool) or text is None:
        raise BadInput(f"{field}: expected a rate like '5/s' or '300/min', got {value!r}",
                       field=field)
    if text.startswith("-"):
        raise BadInput(f"{field}: a rate must be more than 0, got {text!r}", field=field)
    m = _RATE.match(text)
    unit = _UNITS.get(m.group(3).lower()) if m else None
    if m is None or unit is None:
        raise BadInput(
            f"{field}: expected a rate like '5/s', '300/min' or '10000/day', got {text[:40]!r}",
            field=field,
        )
    count, multiple = int(m.group(1)), int(m.group(2) or 1)
    if count <= 0 or multiple <= 0:
        raise BadInput(f"{field}: a rate must be more than 0, got {text!r}", field=field)
    seconds = unit * multiple
    if count / seconds > MAX_PER_SECOND:
        raise BadInput(
            f"{field}: at most {MAX_PER_SECOND:g} a second, got {text!r}", field=field
        )
    return Rate(count, seconds, text)


def check_rate_limit(value: Any) -> str | None:
    """An integration's ``rate_limit`` as stored: None (no limit) or a valid rate."""
    if value is None or value == "":
        return None
    return parse_rate(value).text


class Limiter:
    """A moving window per key, shared by every process on one storage (see module)."""

    def __init__(self, storage_url: str | None = None) -> None:
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        self.storage = storage_from_string(storage_url or "memory://")
        self.strategy = MovingWindowRateLimiter(self.storage)

    def take(self, rate: Rate, key: str, wanted: int) -> tuple[int, float]:
        """Take up to ``wanted`` sends of ``rate`` under ``key``: how many were granted,
        and the seconds until the window admits the next one."""
        item = rate.item()
        stats = self.strategy.get_window_stats(item, key)
        granted = min(wanted, stats.remaining)
        if granted and not self.strategy.hit(item, key, cost=granted):
            granted = 1 if self.strategy.hit(item, key) else 0  # another process was faster
        if granted == wanted:
            return granted, 0.0
        reset = self.strategy.get_window_stats(item, key).reset_time
        return granted, max(0.0, reset - time.time())

    def clear(self, rate: Rate, key: str) -> None:
        """Forget the window of ``key`` (tests)."""
        self.strategy.clear(rate.item(), key)


class Gate:
    """What may be sent now of a message's deliveries (see module docstring)."""

    def __init__(
        self,
        ledger: Ledger,
        clock: Clock,
        limiter: Limiter,
        *,
        namespace: str = "",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.clock = clock
        self.limiter = limiter
        self.namespace = namespace
        self._monotonic = monotonic
        self._lock = threading.Lock()
        #: Integration id → (its rate or None, paused until or None), refreshed.
        self._limited: dict[int, tuple[Rate | None, datetime | None]] = {}
        self._next_refresh = float("-inf")

    # -- the hot path --------------------------------------------------------------

    def admit(self, integration_id: int, delivery_ids: list[int]) -> list[int]:
        """Those of ``delivery_ids`` that may be sent now; the rest are postponed in the
        ledger, due when the integration's window or pause lets them go."""
        if self._monotonic() >= self._next_refresh:
            self.refresh()
        limits = self._limited.get(integration_id)
        if limits is None:
            return delivery_ids
        rate, paused_until = limits
        now = self.clock.now()
        if paused_until is not None and paused_until > now:
            self._postpone(integration_id, delivery_ids, paused_until, rate)
            return []
        if rate is None:
            return delivery_ids
        key = f"{self.namespace}i{integration_id}"
        granted, wait = self.limiter.take(rate, key, len(delivery_ids))
        if granted < len(delivery_ids):
            self._postpone(integration_id, delivery_ids[granted:],
                           now + timedelta(seconds=wait), rate)
        return delivery_ids[:granted]

    def free(self, integration_id: int) -> bool:
        """Whether the integration has neither a rate limit nor a pause, as of a refresh
        that is still current: its deliveries may be sent now without :meth:`admit`.
        Never reads the ledger (False when a refresh is due), so it may be asked inside
        a transaction."""
        return (self._monotonic() < self._next_refresh
                and integration_id not in self._limited)

    # -- pauses and the limited integrations ------------------------------------------

    def pause(self, integration_id: int, until: datetime) -> None:
        """The CRM asked everybody to wait until ``until``: on record for every process,
        and in force here at once."""
        with self._lock:
            rate, paused = self._limited.get(integration_id, (None, None))
            if paused is not None and paused >= until - _SAME_PAUSE:
                return  # a storm of 429s: one write per pause, not one per answer
            self._limited[integration_id] = (rate, until)
        with self.ledger.transaction() as conn:
            conn.execute(_PAUSE, {"integration_id": integration_id, "until": until})

    def refresh(self) -> None:
        """Read the integrations that have a rate limit or a pause now."""
        with self._lock:
            if self._monotonic() < self._next_refresh:
                return
            self._next_refresh = self._monotonic() + REFRESH_SECONDS
        now = self.clock.now()
        limited: dict[int, tuple[Rate | None, datetime | None]] = {}
        try:
            with self.ledger.transaction() as conn:
                rows = list(conn.execute(_LIMITED, {"now": now}))
        except Exception as exc:  # the ledger down: keep what we knew, try again later
            log.warning("could not read the integrations' rate limits: %s", exc)
            return
        for integration_id, text, paused_until in rows:
            rate = None
            if text:
                try:
                    rate = parse_rate(text)
                except BadInput:
                    log.error("integration %s: unusable rate_limit %r", integration_id, text)
            paused = paused_until if paused_until is not None and paused_until > now else None
            if rate is not None or paused is not None:
                limited[integration_id] = (rate, paused)
        self._limited = limited

    def forget(self) -> None:
        """Read the limited integrations again at the next message (after a change)."""
        self._next_refresh = float("-inf")

    def _postpone(
        self, integration_id: int, delivery_ids: list[int], at: datetime, rate: Rate | None
    ) -> None:
        """Make ``delivery_ids`` due from ``at`` on, one after the other at ``rate``, after
        those postponed before them; unannounced, so the sweeper sends them when due."""
        step = timedelta(seconds=1 / rate.per_second) if rate is not None else timedelta(0)
        with self.ledger.transaction() as conn:
            if rate is not None:
                # After the last one any process postponed already: the ledger is the
                # horizon every process shares, so two of them never book the same slots.
                last = conn.execute(_HORIZON, {"integration_id": integration_id,
                                               "ids": delivery_ids, "now": at}).scalar()
                if last is not None:
                    at = max(at, last + step)
            rows = [{"p_id": d, "due": at + step * i} for i, d in enumerate(delivery_ids)]
            conn.execute(_POSTPONE, rows)


def spread(count: int, rate: Rate, start: datetime) -> list[datetime]:
    """``count`` due times from ``start``, ``rate`` apart (a throttled import's plan)."""
    step = 1 / rate.per_second
    return [start + timedelta(seconds=math.floor(i * step * 1000) / 1000) for i in range(count)]


_I = cast(Table, Integration.__table__)
_D = cast(Table, Delivery.__table__)
#: Integrations with a rate limit or a pause still running. Bound: now.
_LIMITED = select(_I.c.id, _I.c.rate_limit, _I.c.paused_until).where(
    or_(
        _I.c.rate_limit.is_not(None),
        _I.c.paused_until > bindparam("now", type_=_I.c.paused_until.type),
    )
)
#: A pause, never shortened by a later, shorter one. Bound: integration_id, until.
_PAUSE = (
    update(_I)
    .where(
        _I.c.id == bindparam("integration_id"),
        or_(
            _I.c.paused_until.is_(None),
            _I.c.paused_until < bindparam("until", type_=_I.c.paused_until.type),
        ),
    )
    .values(paused_until=bindparam("until", type_=_I.c.paused_until.type))
)
#: When the last postponed delivery of an integration is due, others than these (a
#: postponed one has no message on its way; a retry has its due time as ``queued_for``).
#: Bound: integration_id, ids, now.
_HORIZON = select(func.max(_D.c.next_due_at)).where(
    _D.c.integration_id == bindparam("integration_id"),
    _D.c.state == DeliveryState.PENDING.value,
    _D.c.queued_for.is_(None),
    _D.c.next_due_at > bindparam("now", type_=_D.c.next_due_at.type),
    _D.c.id.not_in(bindparam("ids", expanding=True)),
)
#: A pending delivery due later, no message on its way. Bound: p_id, due.
_POSTPONE = (
    update(_D)
    .where(_D.c.id == bindparam("p_id"), _D.c.state == DeliveryState.PENDING.value)
    .values(next_due_at=bindparam("due", type_=_D.c.next_due_at.type), queued_for=None)
)
