"""A TCP forwarder on loopback that can be cut: the database outage of the fault suite.

Processes under test connect to the forwarder instead of PostgreSQL. :meth:`Forwarder.cut`
resets every connection it carries and stops listening, so new connections are refused
by the kernel — from the processes' side the database is gone, as when its host dies or
the network splits. :meth:`Forwarder.restore` listens on the same port again.

Threads, not asyncio: two pump threads per connection, each ending when either side
closes; a cut closes both sockets, which ends both pumps. Nothing loops forever.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

_CHUNK = 64 * 1024


@dataclass
class ForwarderStats:
    """What the forwarder did, for the report."""

    accepted: int = 0
    #: Connections reset by cuts.
    reset: int = 0
    #: ``(cut at, restored at)`` in ``time.monotonic()`` seconds.
    outages: list[tuple[float, float | None]] = field(default_factory=list)


class Forwarder:
    """Relays ``127.0.0.1:<port>`` to ``target``; cut and restored on demand."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.stats = ForwarderStats()
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._port = 0
        self._timer: threading.Timer | None = None

    @property
    def port(self) -> int:
        """The loopback port to connect to instead of the target."""
        return self._port

    @property
    def is_cut(self) -> bool:
        """Whether the forwarder is refusing connections."""
        return self._listener is None

    def start(self) -> Forwarder:
        """Listen (on a free port the first time, the same port after a cut)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._port))
        listener.listen(128)
        self._port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept, args=(listener,), name="forwarder-accept", daemon=True
        )
        self._acceptor.start()
        return self

    def cut(self) -> None:
        """Reset every connection and refuse new ones until :meth:`restore`."""
        with self._lock:
            listener, self._listener = self._listener, None
            pairs, self._pairs = self._pairs, set()
            if listener is not None:
                self.stats.outages.append((time.monotonic(), None))
        if listener is not None:
            _close(listener)
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        for pair in pairs:
            for sock in pair:
                _reset(sock)
        self.stats.reset += len(pairs)

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.is_cut:
            return
        self.start()
        start, _ = self.stats.outages[-1]
        self.stats.outages[-1] = (start, time.monotonic())

    def cut_for(self, seconds: float) -> None:
        """Cut now and restore after ``seconds``, in the background."""
        self.cut()
        self._timer = threading.Timer(seconds, self.restore)
        self._timer.daemon = True
        self._timer.start()

    def close(self) -> None:
        """Stop for good: no listener, no connection."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.cut()

    def __enter__(self) -> Forwarder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- relaying -------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed: a cut or close
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = (client, upstream)
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    _reset(client)
                    _reset(upstream)
                    return
                self._pairs.add(pair)
                self.stats.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(src, dst, pair), name="forwarder-pump", daemon=True
                ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        try:
            while chunk := src.recv(_CHUNK):
                dst.sendall(chunk)
        except OSError:
            pass
        # One side ended: end the other too (a half-open database connection is not
        # what either end expects). A pair no longer listed is being reset by a cut.
        with self._lock:
            mine = pair in self._pairs
            self._pairs.discard(pair)
        if mine:
            for sock in pair:
                _close(sock)


def _reset(sock: socket.socket) -> None:
    """Close with an RST, as a dead host's peer or a broken network would show it.

    ``SHUT_RD`` wakes a pump blocked in ``recv`` on this socket without sending anything;
    closing with a zero linger then sends the RST.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
