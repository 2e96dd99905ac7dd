"""The retry policy as a table: (attempt, outcome, Retry-After) → wait or give up."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from leadrelay.engine.errors import ConfigError
from leadrelay.engine.outcome import Outcome
from leadrelay.engine.retry import RetryPolicy, next_due, parse_duration

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
