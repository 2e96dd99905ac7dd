"""The retry policy: a pure function from (policy, attempt, outcome, Retry-After) to a due time.

The engine — not the broker — decides when a failed delivery is tried again,
and writes that time to the ledger. Every wait is finite and at most
:data:`MAX_DELAY`: a policy asking for more is refused when it is saved, and
:func:`next_due` clamps whatever it is handed (a huge ``Retry-After``, a policy
built in code), so computing a due time can never fail.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .errors import ConfigError
from .outcome import Outcome

#: The longest wait a retry policy may ask for, and the longest :func:`next_due` ever
#: returns (30 days): a delivery waiting longer is better off in the failed collection.
MAX_DELAY = 30 * 86400.0
#: The most entries a policy's ``delays`` may list (one per retry at most).
MAX_DELAYS = 100
MAX_ATTEMPTS = 100

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any, *, field: str, maximum: float | None = None) -> float:
    """Seconds from ``90``, ``"90s"``, ``"2m"``, ``"1.5h"``; :class:`ConfigError` otherwise.

    A duration is a finite number of seconds, not negative, and at most ``maximum``
    when one is given (``NaN``, ``Infinity`` and ``1e400`` are refused).
    """
    if isinstance(value, bool):
        raise ConfigError(f"{field}: expected a duration like '2m', got {value!r}", field=field)
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ConfigError(
                f"{field}: expected a duration like '30s', '2m' or '1h', got {_shown(value)}",
                field=field,
            )
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    if not math.isfinite(seconds):
        raise ConfigError(f"{field}: a duration must be a finite number of seconds", field=field)
    if seconds < 0:
        raise ConfigError(f"{field}: a duration cannot be negative", field=field)
    if maximum is not None and seconds > maximum:
        raise ConfigError(
            f"{field}: at most {_human(maximum)}, got {_human(seconds)}", field=field
        )
    return seconds


def _human(seconds: float) -> str:
    """``30d``, ``6h``, ``90s``: the largest whole unit, else seconds."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:.10g}s"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how far apart a delivery is tried.

    ``delays[i]`` is the wait after failed attempt ``i + 1``; the last delay
    repeats when ``max_attempts`` exceeds ``len(delays) + 1``.
    """

    max_attempts: int = 3
    delays: tuple[float, ...] = (120.0, 300.0)
    #: Never retry a throttled (429) delivery sooner than this.
    floor: float = 30.0
    #: A CRM's ``Retry-After`` is honoured up to this bound.
    max_retry_after: float = 6 * 3600.0
    #: Spread retries by up to this fraction, so a CRM outage does not end in a stampede.
    jitter: float = 0.1
    #: Retry when the CRM answered but not as expected (the product default).
    #: ``false``: the integration declares every rejection final.
    retry_rejected: bool = True
    #: Where the policy comes from, as said in attempts: the integration's own or the default.
    origin: str = field(default="the default retry policy", compare=False)

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, *, prefix: str = "retry") -> RetryPolicy:
        """Build a policy from ``{"max_attempts": 3, "delays": ["2m", "5m"], ...}``.

        Keys left out keep the product's defaults; None (or ``{}``) is the default policy.
        """
        if not raw:
            if raw is not None and not isinstance(raw, Mapping):
                raise ConfigError(f"{prefix}: must be an object", field=prefix)
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{prefix}: must be an object", field=prefix)
        # "origin" is what ``integrations show`` adds: accepted back, and ignored.
        known = {"max_attempts", "delays", "floor", "max_retry_after", "jitter", "retry_rejected",
                 "origin"}
        for key in raw:
            if key not in known:
                raise ConfigError(f"{prefix}.{key}: unknown key", field=f"{prefix}.{key}")
        kwargs: dict[str, Any] = {"origin": "the integration's retry policy"}
        if "max_attempts" in raw:
            n = raw["max_attempts"]
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_ATTEMPTS:
                raise ConfigError(
                    f"{prefix}.max_attempts: must be an integer from 1 to {MAX_ATTEMPTS}",
                    field=f"{prefix}.max_attempts",
                )
            kwargs["max_attempts"] = n
        if "delays" in raw:
            delays = raw["delays"]
            if not isinstance(delays, list | tuple) or not delays:
                raise ConfigError(
                    f"{prefix}.delays: must be a non-empty list like ['2m', '5m']",
                    field=f"{prefix}.delays",
                )
            if len(delays) > MAX_DELAYS:
                raise ConfigError(
                    f"{prefix}.delays: at most {MAX_DELAYS} delays, got {len(delays)}",
                    field=f"{prefix}.delays",
                )
            kwargs["delays"] = tuple(
                parse_duration(d, field=f"{prefix}.delays[{i}]", maximum=MAX_DELAY)
                for i, d in enumerate(delays)
            )
        for key in ("floor", "max_retry_after"):
            if key in raw:
                kwargs[key] = parse_duration(
                    raw[key], field=f"{prefix}.{key}", maximum=MAX_DELAY
                )
        if "jitter" in raw:
            j = raw["jitter"]
            if isinstance(j, bool) or not isinstance(j, int | float) or not 0 <= j <= 1:
                raise ConfigError(
                    f"{prefix}.jitter: must be between 0 and 1", field=f"{prefix}.jitter"
                )
            kwargs["jitter"] = float(j)
        if "retry_rejected" in raw:
            if not isinstance(raw["retry_rejected"], bool):
                raise ConfigError(
                    f"{prefix}.retry_rejected: must be true or false",
                    field=f"{prefix}.retry_rejected",
                )
            kwargs["retry_rejected"] = raw["retry_rejected"]
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The policy in its configuration form (``2m``, ``6h``: the largest whole unit)."""
        return {
            "max_attempts": self.max_attempts,
            "delays": [_human(d) for d in self.delays],
            "floor": _human(self.floor),
            "max_retry_after": _human(self.max_retry_after),
            "jitter": self.jitter,
            "retry_rejected": self.retry_rejected,
        }


def next_due(
    policy: RetryPolicy,
    attempt: int,
    outcome: Outcome,
    *,
    now: datetime,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
    final: bool = False,
) -> datetime | None:
    """When to try again after failed attempt number ``attempt`` (1-based), or None to give up.

    An accepted outcome, and a target the egress policy refused, never retry; a
    rejection retries only when the policy says so and it is not ``final``
    (declared so by a rule or the connector). A throttled delivery waits at least
    ``floor``; throttled, transient and proxy failures wait at least the CRM's
    ``Retry-After`` (clamped to ``max_retry_after``). The wait, jitter included, is
    never more than :data:`MAX_DELAY`, and this never raises: out-of-range values
    are clamped (a ``NaN`` counts as the longest wait, the safe side for a CRM).
    """
    if (outcome is Outcome.ACCEPTED or outcome is Outcome.REFUSED_TARGET
            or attempt >= policy.max_attempts):
        return None
    if outcome is Outcome.REJECTED and (final or not policy.retry_rejected):
        return None
    delays = policy.delays or (0.0,)
    delay = _bounded(delays[max(0, min(attempt - 1, len(delays) - 1))])
    if outcome in (Outcome.THROTTLED, Outcome.TRANSIENT, Outcome.PROXY_ERROR):
        # Even a zero-delay policy must not hammer a CRM that said "slow down".
        if outcome is Outcome.THROTTLED:
            delay = max(delay, _bounded(policy.floor))
        if retry_after is not None:
            delay = max(delay, min(_bounded(retry_after), _bounded(policy.max_retry_after)))
    spread = _bounded(policy.jitter, upper=1.0) * _bounded(rand(), upper=1.0)
    delay = min(delay * (1 + spread), MAX_DELAY)
    try:
        return now + timedelta(seconds=delay)
    except OverflowError:  # ``now`` within a month of year 9999
        return datetime.max.replace(tzinfo=now.tzinfo)


def decision(policy: RetryPolicy, attempt: int, outcome: Outcome, final: str,
             due: datetime | None) -> str:
    """Why a failed attempt is, or is not, tried again: said in the attempt's trace.

    ``not retried: final, declared by the expectation rule status in [201] (final: true)``;
    ``retried at 2026-…: attempt 1 of 3 under the default retry policy``.
    """
    if outcome is Outcome.REJECTED and final:
        return f"not retried: final, declared by {final}"
    if outcome is Outcome.REJECTED and not policy.retry_rejected:
        return f"not retried: final, declared by {policy.origin} (retry_rejected: false)"
    count = f"attempt {attempt} of {policy.max_attempts} under {policy.origin}"
    if due is None:
        return f"not retried: {count}"
    return f"retried at {due.isoformat()}: {count}"


def throttled_due(
    policy: RetryPolicy,
    *,
    now: datetime,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> datetime:
    """When to try a throttled (429) delivery again, an attempt the policy does not count:
    after the CRM's ``Retry-After`` (clamped to ``max_retry_after``), and no sooner than
    ``floor``, spread by the jitter."""
    delay = _bounded(policy.floor)
    if retry_after is not None:
        delay = max(delay, min(_bounded(retry_after), _bounded(policy.max_retry_after)))
    spread = _bounded(policy.jitter, upper=1.0) * _bounded(rand(), upper=1.0)
    try:
        return now + timedelta(seconds=min(delay * (1 + spread), MAX_DELAY))
    except OverflowError:
        return datetime.max.replace(tzinfo=now.tzinfo)


def _bounded(value: float, *, upper: float = MAX_DELAY) -> float:
    """``value`` within ``[0, upper]``; ``NaN`` (and anything not a number) is ``upper``."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return upper
    if number != number:  # NaN
        return upper
    return min(max(number, 0.0), upper)
