"""Announcing new deliveries to the workers in few messages.

A broker message costs about the same for one delivery id as for thirty: encoding,
the queue, the consumer thread, the hand-over to a worker thread, the ack; and a
message of several deliveries is claimed and recorded by its worker in one
transaction each way. The :class:`Announcer` therefore groups the ids announced
close together, per integration, into one message — without making anybody wait
when the engine is idle:

- an announcement that finds the announcer idle (nothing sent for ``window``
  seconds) goes out at once, alone;
- announcements arriving within ``window`` of the last message are held and sent
  together by a flusher thread at the end of the window (or at once by the
  announcing thread when ``max_ids`` are waiting).

The ledger already holds every announced delivery, so a message that cannot be sent
(or a process that dies with announcements held) costs latency, not leads: the
sweeper re-announces what is due and not on its way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

#: Sends the ids of some deliveries of one integration as one message.
Send = Callable[[int | None, list[int]], None]


class Announcer:
    """Groups delivery announcements into broker messages (see module docstring)."""

    def __init__(
        self,
        send: Send,
        *,
        window: float = 0.02,
        max_ids: int = 32,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self.window = window
        self.max_ids = max_ids
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._held: dict[int | None, list[int]] = {}
        self._count = 0
        self._last_sent = float("-inf")
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._flusher: threading.Thread | None = None
        #: Messages sent and ids they carried, for benchmarks and tests.
        self.messages = 0
        self.ids = 0

    def announce(self, deliveries: Iterable[tuple[int | None, int]]) -> None:
        """Announce ``(integration id, delivery id)`` pairs. Never raises for the broker:
        a message that cannot be sent is logged and left to the sweeper."""
        with self._lock:
            for integration_id, delivery_id in deliveries:
                self._held.setdefault(integration_id, []).append(delivery_id)
                self._count += 1
            if not self._count:
                return
            now = self._monotonic()
            if self._count < self.max_ids and now - self._last_sent < self.window:
                self._start_flusher()
                self._wake.set()  # busy: the flusher sends them at the end of the window
                return
            held = self._take(now)
        self._deliver(held)

    def flush(self) -> None:
        """Send whatever is held now."""
        with self._lock:
            held = self._take(self._monotonic())
        self._deliver(held)

    def close(self) -> None:
        """Send what is held and stop the flusher."""
        self._closing.set()
        self._wake.set()
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        self.flush()

    # -- inside -------------------------------------------------------------------

    def _take(self, now: float) -> dict[int | None, list[int]]:
        held, self._held, self._count = self._held, {}, 0
        if held:
            self._last_sent = now
        return held

    def _deliver(self, held: dict[int | None, list[int]]) -> None:
        for integration_id, ids in held.items():
            for start in range(0, len(ids), self.max_ids):
                chunk = ids[start : start + self.max_ids]
                try:
                    self._send(integration_id, chunk)
                except Exception:  # the ledger has them: the sweeper will send them
                    log.warning(
                        "announcing %d deliveries failed; the sweeper will send them",
                        len(chunk),
                        exc_info=True,
                    )
                    continue
                self.messages += 1
                self.ids += len(chunk)

    def _start_flusher(self) -> None:
        if self._flusher is None and not self._closing.is_set():
            self._flusher = threading.Thread(
                target=self._flush_loop, name="leadrelay-announcer", daemon=True
            )
            self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._closing.is_set():
            self._wake.wait()
            # Let the window fill: everything announced meanwhile goes in this message
            # (cut short by close(), which sends what is held itself).
            if self._closing.wait(self.window):
                return
            with self._lock:
                self._wake.clear()
                held = self._take(self._monotonic())
            self._deliver(held)
