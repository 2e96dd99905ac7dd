"""The deadline of one attempt, enforced on the socket of every request it sends.

Socket timeouts bound each ``recv``, not an answer: a CRM that sends one byte of its
head or body every few seconds never trips a 30 s read timeout, and holds a worker
thread for as long as it likes. :class:`Deadline` is the attempt's end (see
:mod:`.limits` for its length and why it bounds the lease). While an attempt sends
(``active.deadline``), every answer read through the connection pools of a
:class:`~.transport.Transport` — its direct path, its ``requests`` path through a proxy,
a CONNECT tunnel's answer, and anything else sent on its session meanwhile — reads
through :class:`_DeadlineReader`, which lowers the socket's timeout to the time left
before each ``recv`` and refuses to read past the deadline. The head and the body of
an answer both end there; the reader costs one clock read per ``recv`` (one or two per
ordinary answer).

The pools get this reader from their connection class (:func:`install`): the
connections are urllib3's own, whose ``response_class`` builds ``http.client``'s
response on a reader of ours. Outside an attempt nothing changes.
"""

from __future__ import annotations

import http.client
import io
import socket
import threading
import time
from typing import Any

import urllib3
import urllib3.connection
import urllib3.connectionpool

_clock = time.monotonic


class Deadline:
    """An attempt's end: ``seconds`` after it was made (``time.monotonic``)."""

    __slots__ = ("at", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = _clock() + seconds

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - _clock()

    def passed(self) -> bool:
        """Whether the deadline has passed, within the few milliseconds a socket
        timeout set to the time left may fire early by rounding."""
        return self.at - _clock() <= 0.005

    def __repr__(self) -> str:
        return f"Deadline({self.seconds:g}s, {self.remaining():.3f}s left)"


class _Active(threading.local):
    #: The deadline of what this thread is sending, if any.
    deadline: Deadline | None = None


#: The deadline of what each thread is sending: an attempt sets ``active.deadline`` for
#: the time of a request and puts back what was there (plain attribute writes, not a
#: context manager: this runs twice per request on the hot path).
active = _Active()


class _DeadlineReader(io.RawIOBase):
    """A socket's raw reader that never waits past the deadline."""

    def __init__(self, raw: Any, sock: socket.socket, deadline: Deadline) -> None:
        super().__init__()
        self._raw = raw
        self._sock = sock
        self._deadline = deadline
        # The per-read timeout urllib3 just set (the request's read timeout).
        self._timeout = sock.gettimeout()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        left = self._deadline.at - _clock()
        if left <= 0:
            # Raised as the socket raises its own timeouts: urllib3 and http.client
            # treat it as a read timeout, whatever they were reading.
            raise TimeoutError("timed out")
        if self._timeout is None or left < self._timeout:
            self._sock.settimeout(left)
        n: int | None = self._raw.readinto(buffer)
        return n

    def fileno(self) -> int:
        return int(self._raw.fileno())

    def close(self) -> None:
        if not self.closed:
            self._raw.close()  # hands the socket's makefile reference back
        super().close()


class _BoundedResponse(http.client.HTTPResponse):
    """``http.client``'s response, read through :class:`_DeadlineReader` while an attempt
    sends."""

    def __init__(self, sock: socket.socket, debuglevel: int = 0, method: str | None = None,
                 url: str | None = None) -> None:
        super().__init__(sock, debuglevel, method, url)
        deadline = active.deadline
        if deadline is not None:
            raw = self.fp.detach()  # the SocketIO that makefile() made, kept and wrapped
            self.fp = io.BufferedReader(_DeadlineReader(raw, sock, deadline))


class HTTPConnection(urllib3.connection.HTTPConnection):
    """urllib3's connection, whose answers honour the attempt's deadline."""

    response_class = _BoundedResponse


class HTTPSConnection(urllib3.connection.HTTPSConnection):
    """urllib3's TLS connection, whose answers honour the attempt's deadline."""

    response_class = _BoundedResponse


class HTTPConnectionPool(urllib3.connectionpool.HTTPConnectionPool):
    """A pool of :class:`HTTPConnection`."""

    ConnectionCls = HTTPConnection


class HTTPSConnectionPool(urllib3.connectionpool.HTTPSConnectionPool):
    """A pool of :class:`HTTPSConnection`."""

    ConnectionCls = HTTPSConnection


_POOL_CLASSES: dict[str, type[urllib3.HTTPConnectionPool]] = {
    "http": HTTPConnectionPool,
    "https": HTTPSConnectionPool,
}


def install(manager: urllib3.PoolManager) -> urllib3.PoolManager:
    """Make the pools ``manager`` creates from now on honour attempts' deadlines (a
    requests adapter's pool manager, or one of its proxy managers)."""
    manager.pool_classes_by_scheme = _POOL_CLASSES
    return manager
