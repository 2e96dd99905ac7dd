"""Digest windows: which stretch of time one digest covers, from the injected clock.

Windows of an interval lie on one grid counted from the Unix epoch, in UTC: with 6 hours,
00:00-06:00, 06:00-12:00, … Every scheduler, on any machine, computes the same windows
from the same time, which is what lets the ledger's unique (account, window start) stop a
second sender. A window is half-open: it holds what happened at or after its start and
before its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The smallest step the ledger stores times to (PostgreSQL and SQLite: microseconds).
TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    @property
    def last_instant(self) -> datetime:
        """The last time the window holds: filters that take inclusive bounds
        (``--until``) name exactly this window with it."""
        return self.end - TICK

    def __str__(self) -> str:
        return f"{_short(self.start)} to {_short(self.end)} UTC"


def length_of(hours: float) -> timedelta:
    """An interval in hours as a duration, to the microsecond."""
    return timedelta(microseconds=round(hours * 3_600_000_000))


def window_at(moment: datetime, hours: float) -> Window:
    """The grid window of ``hours`` that holds ``moment``."""
    length = length_of(hours)
    start = EPOCH + ((moment - EPOCH) // length) * length
    return Window(start, start + length)


def last_closed(now: datetime, hours: float) -> Window:
    """The newest window that has ended by ``now``."""
    current = window_at(now, hours)
    return Window(current.start - length_of(hours), current.start)


def closed_since(after: datetime, now: datetime, hours: float) -> Iterator[Window]:
    """The windows that ended by ``now`` and end after ``after``, oldest first; one that
    began before ``after`` is cut to start there (so no instant is covered twice)."""
    newest = last_closed(now, hours)
    if newest.end <= after:
        return
    window = window_at(after, hours)
    while window.end <= newest.end:
        yield Window(max(window.start, after), window.end)
        window = Window(window.end, window.end + length_of(hours))


def _short(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
