"""The announcer: new deliveries reach the workers in few messages, never late when idle."""

from __future__ import annotations

import logging
import threading

import pytest

from leadrelay.engine.announcer import Announcer


class Clock:
    """An injected monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sent:
    """Records messages; can be told to fail for one integration."""

    def __init__(self) -> None:
        self.messages: list[tuple[int | None, list[int]]] = []
        self.failing: set[int | None] = set()
        self.arrived = threading.Event()

    def __call__(self, integration_id: int | None, ids: list[int]) -> None:
        if integration_id in self.failing:
            raise ConnectionError("broker down")
        self.messages.append((integration_id, ids))
        self.arrived.set()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sent() -> Sent:
    return Sent()


def announcer(sent: Sent, clock: Clock, **kw: object) -> Announcer:
    # A window no test waits for: only flush() and close() send what is held.
    return Announcer(sent, window=kw.pop("window", 3600.0), monotonic=clock, **kw)  # type: ignore[arg-type]


def test_an_idle_announcer_sends_at_once(sent: Sent, clock: Clock) -> None:
    a = announcer(sent, clock)
    a.announce([(7, 1)])
    assert sent.messages == [(7, [1])]
    clock.now += 3601  # idle again after a window without messages
    a.announce([(7, 2)])
    assert sent.messages == [(7, [1]), (7, [2])]
    a.close()


def test_announcements_within_the_window_go_together_per_integration(
    sent: Sent, clock: Clock
) -> None:
    a = announcer(sent, clock)
    a.announce([(7, 1)])
    a.announce([(7, 2), (8, 3)])
    a.announce([(7, 4), (None, 5)])
    assert sent.messages == [(7, [1])]  # the rest is held for the window
    a.flush()
    assert sent.messages == [(7, [1]), (7, [2, 4]), (8, [3]), (None, [5])]
    assert (a.messages, a.ids) == (4, 5)
    a.close()


def test_a_full_message_goes_at_once_and_none_is_larger_than_max_ids(
    sent: Sent, clock: Clock
) -> None:
    a = announcer(sent, clock, max_ids=3)
    a.announce([(7, 1)])
    a.announce([(7, i) for i in range(2, 9)])  # 7 held: over max_ids, sent by this call
    assert sent.messages == [(7, [1]), (7, [2, 3, 4]), (7, [5, 6, 7]), (7, [8])]
    a.close()


def test_a_message_that_cannot_be_sent_is_logged_and_the_rest_go(
    sent: Sent, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    sent.failing.add(8)
    a = announcer(sent, clock)
    a.announce([(7, 1)])
    a.announce([(8, 2), (9, 3)])
    with caplog.at_level(logging.WARNING, logger="leadrelay.engine.announcer"):
        a.flush()  # does not raise: the ledger has delivery 2, the sweeper sends it
    assert sent.messages == [(7, [1]), (9, [3])]
    assert "announcing 1 deliveries failed; the sweeper will send them" in caplog.text
    a.close()


def test_close_sends_what_is_held(sent: Sent, clock: Clock) -> None:
    a = announcer(sent, clock)
    a.announce([(7, 1)])
    a.announce([(7, 2)])
    a.close()
    assert sent.messages == [(7, [1]), (7, [2])]


def test_the_flusher_sends_held_announcements_at_the_end_of_the_window(
    sent: Sent, clock: Clock
) -> None:
    a = announcer(sent, clock, window=0.01)
    a.announce([(7, 1)])
    sent.arrived.clear()
    a.announce([(7, 2), (7, 3)])  # same instant on the injected clock: held
    assert sent.arrived.wait(10), "the flusher never sent the held announcements"
    assert sent.messages == [(7, [1]), (7, [2, 3])]
    a.close()
