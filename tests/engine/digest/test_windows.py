"""Digest windows: one grid from the epoch, computed from the injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from leadrelay.engine.clock import FakeClock
from leadrelay.engine.digest.windows import (
    Window,
    closed_since,
    last_closed,
    window_at,
)


def at(hour: int, minute: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(("now", "hours", "start", "end"), [
    (at(9), 6, at(6), at(12)),
    (at(6), 6, at(6), at(12)),          # a window holds its start
    (at(5, 59), 6, at(0), at(6)),
    (at(23, 30), 24, at(0), at(0, day=2)),
    (at(9, 20), 0.25, at(9, 15), at(9, 30)),
])
def test_a_moment_falls_in_one_window_of_the_grid(
    now: datetime, hours: float, start: datetime, end: datetime
) -> None:
    assert window_at(now, hours) == Window(start, end)


def test_the_last_closed_window_follows_the_clock_without_sleeping() -> None:
    # Given the injected clock inside the 06:00-12:00 window
    clock = FakeClock(at(9))
    assert last_closed(clock.now(), 6) == Window(at(0), at(6))

    # When it moves past the window's end, that window is the last closed one
    clock.advance(hours=3)
    assert last_closed(clock.now(), 6) == Window(at(6), at(12))
    clock.advance(hours=5, minutes=59)
    assert last_closed(clock.now(), 6) == Window(at(6), at(12))


def test_windows_since_a_time_are_cut_where_the_last_digest_ended() -> None:
    # A digest sent "now" at 07:30 covered 06:00-07:30: the next starts there
    windows = list(closed_since(at(7, 30), at(19), 6))
    assert windows == [Window(at(7, 30), at(12)), Window(at(12), at(18))]
    # Nothing has closed yet after a time inside the current window
    assert list(closed_since(at(18, 5), at(19), 6)) == []


def test_the_last_instant_names_the_window_for_inclusive_filters() -> None:
    window = Window(at(6), at(12))
    assert window.last_instant == at(12) - timedelta(microseconds=1)
    assert str(window) == "2026-01-01 06:00 to 2026-01-01 12:00 UTC"
