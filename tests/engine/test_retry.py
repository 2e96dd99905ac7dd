"""The retry policy as a table: (attempt, outcome, Retry-After) → wait or give up."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from leadrelay.engine.errors import ConfigError
from leadrelay.engine.outcome import Outcome
from leadrelay.engine.retry import MAX_DELAY, RetryPolicy, next_due, parse_duration

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT = RetryPolicy(jitter=0)


@pytest.mark.parametrize(
    ("policy", "attempt", "outcome", "retry_after", "wait"),
    [
        (DEFAULT, 1, Outcome.REJECTED, None, 120),
        (DEFAULT, 2, Outcome.REJECTED, None, 300),
        (DEFAULT, 3, Outcome.REJECTED, None, None),  # the third failure gives up
        (DEFAULT, 1, Outcome.ACCEPTED, None, None),
        (DEFAULT, 1, Outcome.TRANSIENT, None, 120),
        (DEFAULT, 1, Outcome.PROXY_ERROR, None, 120),
        (DEFAULT, 1, Outcome.TRANSIENT, 600, 600),  # Retry-After longer than the schedule wins
        (DEFAULT, 1, Outcome.THROTTLED, 10, 120),  # shorter Retry-After: the schedule wins
        (DEFAULT, 1, Outcome.THROTTLED, 10**9, 6 * 3600),  # clamped
        (RetryPolicy(delays=(0,), jitter=0), 1, Outcome.THROTTLED, None, 30),  # 429 floor
        (RetryPolicy(delays=(5,), jitter=0), 1, Outcome.TRANSIENT, None, 5),
        (RetryPolicy(max_attempts=5, delays=(60, 120), jitter=0), 4, Outcome.REJECTED, None, 120),
        (RetryPolicy(retry_rejected=False, jitter=0), 1, Outcome.REJECTED, None, None),
        (RetryPolicy(retry_rejected=False, jitter=0), 1, Outcome.TRANSIENT, None, 120),
        (RetryPolicy(max_attempts=1), 1, Outcome.TRANSIENT, None, None),
    ],
)
def test_next_due(policy, attempt, outcome, retry_after, wait) -> None:
    due = next_due(policy, attempt, outcome, now=NOW, retry_after=retry_after)
    if wait is None:
        assert due is None
    else:
        assert due is not None and (due - NOW).total_seconds() == pytest.approx(wait)


def test_jitter_spreads_retries_within_its_bound() -> None:
    policy = RetryPolicy(jitter=0.1)
    waits = {
        (next_due(policy, 1, Outcome.TRANSIENT, now=NOW, rand=lambda r=r: r) - NOW).total_seconds()
        for r in (0.0, 0.5, 0.999)
    }
    assert min(waits) == 120 and max(waits) < 132 and len(waits) == 3


@pytest.mark.parametrize(
    ("raw", "seconds"), [(90, 90), ("90s", 90), ("2m", 120), ("1.5h", 5400), ("250ms", 0.25)]
)
def test_durations(raw, seconds) -> None:
    assert parse_duration(raw, field="d") == seconds


def test_parse_reads_the_configuration_form() -> None:
    policy = RetryPolicy.parse({"max_attempts": 4, "delays": ["1m", "10m"], "jitter": 0})
    assert policy.max_attempts == 4 and policy.delays == (60, 600)
    assert RetryPolicy.parse(policy.to_dict()) == policy


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"max_attempts": 0}, "retry.max_attempts: must be an integer from 1 to 100"),
        ({"delays": []}, "retry.delays: must be a non-empty list"),
        ({"delays": ["soon"]}, "retry.delays[0]: expected a duration"),
        ({"tries": 3}, "retry.tries: unknown key"),
        ({"jitter": 2}, "retry.jitter: must be between 0 and 1"),
    ],
)
def test_bad_policies_name_the_field(raw, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RetryPolicy.parse(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        # Case 2 of issue 10: delays that cannot become a due time.
        ({"delays": [1e14]}, "retry.delays[0]: at most 30d, got 1e+14s"),
        ({"delays": ["2m", math.inf]}, "retry.delays[1]: a duration must be a finite number"),
        ({"delays": [math.nan]}, "retry.delays[0]: a duration must be a finite number"),
        ({"delays": [10**400]}, "retry.delays[0]: a duration must be a finite number"),
        ({"delays": ["9" * 5000 + "s"]}, "retry.delays[0]: a duration must be a finite number"),
        ({"delays": [-1]}, "retry.delays[0]: a duration cannot be negative"),
        ({"delays": ["31d"]}, "retry.delays[0]: at most 30d, got 31d"),
        ({"delays": ["1m"] * 101}, "retry.delays: at most 100 delays, got 101"),
        ({"floor": math.inf}, "retry.floor: a duration must be a finite number"),
        ({"floor": "1000h"}, "retry.floor: at most 30d, got 1000h"),
        ({"max_retry_after": 1e300}, "retry.max_retry_after: at most 30d"),
        ({"max_retry_after": -5}, "retry.max_retry_after: a duration cannot be negative"),
        ({"jitter": math.nan}, "retry.jitter: must be between 0 and 1"),
        ({"jitter": math.inf}, "retry.jitter: must be between 0 and 1"),
        ({"jitter": True}, "retry.jitter: must be between 0 and 1"),
        ({"max_attempts": 101}, "retry.max_attempts: must be an integer from 1 to 100"),
        ({"max_attempts": 10**20}, "retry.max_attempts: must be an integer from 1 to 100"),
        ({"max_attempts": -3}, "retry.max_attempts: must be an integer from 1 to 100"),
        ({"max_attempts": 3.0}, "retry.max_attempts: must be an integer from 1 to 100"),
        ({"max_attempts": True}, "retry.max_attempts: must be an integer from 1 to 100"),
    ],
)
def test_unbounded_policies_are_refused_naming_the_field(raw, message) -> None:
    with pytest.raises(ConfigError) as caught:
        RetryPolicy.parse(raw)
    assert str(caught.value).startswith(message), str(caught.value)
    assert caught.value.field == message.split(":")[0]


def test_the_longest_delays_allowed_are_accepted() -> None:
    policy = RetryPolicy.parse({"delays": ["30d", 0], "floor": "30d", "max_retry_after": "30d"})
    assert policy.delays == (MAX_DELAY, 0) and policy.floor == MAX_DELAY
    assert RetryPolicy.parse({"delays": ["1m"] * 100, "max_attempts": 100}).max_attempts == 100


HUGE = [1e14, 1e300, math.inf, 10**400]


@pytest.mark.parametrize(
    ("policy", "outcome", "retry_after", "wait"),
    [
        # Policies built in code bypass parse(): next_due still clamps them.
        *[(RetryPolicy(delays=(h,), jitter=0), Outcome.REJECTED, None, MAX_DELAY) for h in HUGE],
        (RetryPolicy(delays=(math.nan,), jitter=0), Outcome.REJECTED, None, MAX_DELAY),
        (RetryPolicy(delays=(-math.inf,), jitter=0), Outcome.REJECTED, None, 0),
        (RetryPolicy(delays=(-60,), jitter=0), Outcome.REJECTED, None, 0),
        (RetryPolicy(delays=(), jitter=0), Outcome.REJECTED, None, 0),
        (RetryPolicy(floor=math.inf, delays=(0,), jitter=0), Outcome.THROTTLED, None, MAX_DELAY),
        # A CRM's Retry-After, however large, is clamped to max_retry_after...
        *[(RetryPolicy(jitter=0), Outcome.THROTTLED, h, 6 * 3600) for h in HUGE],
        (RetryPolicy(jitter=0), Outcome.TRANSIENT, math.nan, 6 * 3600),
        (RetryPolicy(jitter=0), Outcome.TRANSIENT, -1e9, 120),
        # ...and to the maximum when the policy's own bound is unbounded.
        (RetryPolicy(max_retry_after=math.inf, jitter=0), Outcome.TRANSIENT, 1e300, MAX_DELAY),
        # Jitter never takes a wait past the maximum.
        (RetryPolicy(delays=(MAX_DELAY,), jitter=1), Outcome.REJECTED, None, MAX_DELAY),
        (RetryPolicy(delays=(60,), jitter=math.inf), Outcome.REJECTED, None, 60 * 1.999),
        (RetryPolicy(delays=(60,), jitter=math.nan), Outcome.REJECTED, None, 60 * 1.999),
    ],
)
def test_next_due_never_overflows(policy, outcome, retry_after, wait) -> None:
    due = next_due(policy, 1, outcome, now=NOW, retry_after=retry_after, rand=lambda: 0.999)
    assert due is not None
    assert (due - NOW).total_seconds() == pytest.approx(wait)


@pytest.mark.parametrize("rand", [lambda: 5.0, lambda: -1.0, lambda: math.nan])
def test_next_due_bounds_a_bad_random_source(rand) -> None:
    due = next_due(RetryPolicy(delays=(60,), jitter=0.5), 1, Outcome.TRANSIENT, now=NOW, rand=rand)
    assert due is not None and 60 <= (due - NOW).total_seconds() <= 90


def test_next_due_at_the_end_of_time_does_not_raise() -> None:
    late = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)
    due = next_due(RetryPolicy(delays=(MAX_DELAY,)), 1, Outcome.REJECTED, now=late)
    assert due == datetime.max.replace(tzinfo=UTC)


@pytest.mark.parametrize("attempt", [0, -5, 10**6])
def test_next_due_takes_any_attempt_number(attempt) -> None:
    policy = RetryPolicy(max_attempts=10**7, delays=(60, 120), jitter=0)
    due = next_due(policy, attempt, Outcome.REJECTED, now=NOW)
    assert due is not None and (due - NOW).total_seconds() in (60, 120)


def test_parse_duration_bounds() -> None:
    assert parse_duration("30d", field="d", maximum=MAX_DELAY) == MAX_DELAY
    with pytest.raises(ConfigError, match=r"^d: at most 30d, got 2592001s$"):
        parse_duration(MAX_DELAY + 1, field="d", maximum=MAX_DELAY)
    # Without a maximum only finiteness and the sign are checked (timeouts bound their own).
    assert parse_duration(1e9, field="d") == 1e9


def test_the_documented_maximum_is_the_engines() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "configuring.md").read_text()
    retry_section = doc.split("## Retry policy", 1)[1].split("\n## ", 1)[0]
    assert f"**{MAX_DELAY / 86400:g} days**" in retry_section
    assert f'"{MAX_DELAY / 86400:g}d"' in retry_section
