"""A hostile CRM on loopback: a real threaded HTTP server that misbehaves on purpose.

Each request is answered in one *mode*: the instance's mode, or the one the request's
first path segment names (``POST /drip/leads`` drips whatever the instance's mode is).
Query parameters tune a mode per request (``?interval_ms=50&bytes=200``):

========== ==============================================================================
ok         200 with a small JSON body (``{"id": N, "ok": true}``), keep-alive
drip       status and headers at once, then the body one byte every ``interval_ms``
drip_head  the status line, then one header byte every ``interval_ms``: never a whole head
gzip_bomb  ``Content-Encoding: gzip``: a few KB that inflate to ``bomb_bytes`` (10 MiB)
nul        200 JSON whose body has NUL bytes and invalid UTF-8, a header with NUL and latin-1
reset      reads the request, then closes with a TCP RST (``SO_LINGER`` 0): no answer
short_body ``Content-Length`` larger than the bytes sent, then the connection closes
slow       waits ``seconds`` (2), then answers like ``ok``
huge       a plain 200 body of ``huge_bytes`` (20 MiB), with its length or ``chunked=1``
========== ==============================================================================

Every request is recorded (method, path, headers — ``Idempotency-Key`` included —,
body, mode) under a lock, so a test can count how often the CRM received a lead.
Every loop is bounded (a drip sends ``bytes`` bytes at most, a wait ends at ``stop()``)
and :meth:`HostileCrm.stop` ends open connections and joins every handler thread.

Standalone, for tests with several processes::

    python -m tests.faults.hostile_crm --port 0 --mode drip --interval-ms 1000

prints the URL on its first line, serves until SIGTERM/SIGINT or ``--max-seconds``,
and answers two control paths that are not recorded: ``GET /_received`` (the requests
as JSON) and ``PUT /_mode?mode=M&interval_ms=…`` (the instance's mode and options).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import http.server
import json
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

MODES = ("ok", "drip", "drip_head", "gzip_bomb", "nul", "reset", "short_body", "slow", "huge")

#: The body of the ``nul`` mode: NUL bytes, bytes that are not UTF-8 (a lone 0xff, a
#: truncated sequence) and an encoded surrogate half (CESU-8), inside JSON-looking text.
NUL_BODY = b'{"id": 7, "note": "nul\x00here", "bad": "\xff\xfe\xc3(", "half": "\xed\xa0\x80"}'
#: A header of the ``nul`` mode: a NUL and latin-1 bytes (decoded by clients as latin-1).
NUL_HEADER = b"X-Note: nul\x00here caf\xe9 \xff"
#: Requests bodies read beyond this are refused (413): the server's own reads are bounded.
MAX_REQUEST_BODY = 10 * 1024 * 1024


@dataclass(frozen=True)
class Options:
    """How a mode misbehaves (instance defaults, overridden per request by the query)."""

    #: Seconds between two bytes of ``drip`` and ``drip_head``.
    interval: float = 1.0
    #: Bytes ``drip`` announces and sends at most (``drip_head``: header bytes at most).
    drip_bytes: int = 1000
    #: Seconds ``slow`` waits before answering.
    slow_seconds: float = 2.0
    #: What the ``gzip_bomb`` body inflates to.
    bomb_bytes: int = 10 * 1024 * 1024
    #: The size of the ``huge`` body.
    huge_bytes: int = 20 * 1024 * 1024
    #: Status of ``ok``, ``slow``, ``nul``, ``gzip_bomb``, ``huge`` and ``drip`` answers.
    status: int = 200
    #: ``huge`` sends its body chunked (no ``Content-Length``).
    chunked: bool = False

    def with_query(self, query: dict[str, list[str]]) -> Options:
        """These options with the request's query parameters applied."""
        def number(name: str) -> float | None:
            values = query.get(name)
            return float(values[-1]) if values else None

        changes: dict[str, Any] = {}
        if (ms := number("interval_ms")) is not None:
            changes["interval"] = ms / 1000
        if (n := number("bytes")) is not None:
            changes["drip_bytes"] = int(n)
        if (s := number("seconds")) is not None:
            changes["slow_seconds"] = s
        if (n := number("bomb_bytes")) is not None:
            changes["bomb_bytes"] = int(n)
        if (n := number("huge_bytes")) is not None:
            changes["huge_bytes"] = int(n)
        if (n := number("status")) is not None:
            changes["status"] = int(n)
        if (n := number("chunked")) is not None:
            changes["chunked"] = bool(n)
        return replace(self, **changes) if changes else self


@dataclass(frozen=True)
class Received:
    """One request as the CRM received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    mode: str
    #: ``time.monotonic()`` when the whole request had been read.
    at: float = field(default=0.0, compare=False)
    #: The client's port: requests on one keep-alive connection share it.
    peer: int = field(default=0, compare=False)

    @property
    def idempotency_key(self) -> str | None:
        """The request's ``Idempotency-Key`` header, if it had one."""
        return next((v for k, v in self.headers.items() if k.lower() == "idempotency-key"),
                    None)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the body as latin-1 text, which maps every byte)."""
        return {"method": self.method, "path": self.path, "headers": self.headers,
                "body": self.body.decode("latin-1"), "mode": self.mode,
                "idempotency_key": self.idempotency_key, "peer": self.peer}


@functools.lru_cache(maxsize=4)
@functools.lru_cache(maxsize=4)
def gzip_bomb(size: int) -> bytes:
    """A gzip body that inflates to ``size`` bytes of JSON-looking text.

    Made once per size: compressing a gigabyte takes seconds and a gigabyte of memory,
    which a CRM answering ten bombs at once must not spend ten times over."""
    return gzip.compress(b'{"pad": "' + b"a" * max(0, size - 11) + b'"}', compresslevel=9)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, like a real CRM
    # Without it every keep-alive answer waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    #: An idle keep-alive connection is closed after this many seconds.
    timeout = 30

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        self.server.track(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the record is :attr:`HostileCrm.received`; stderr stays quiet

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _handle(self) -> None:
        crm = self.server.crm
        split = urlsplit(self.path)
        body = self._read_body()
        if body is None:
            return
        if split.path.startswith("/_"):
            self._control(split.path, parse_qs(split.query), crm)
            return
        first = split.path.strip("/").split("/", 1)[0]
        mode, options = crm.mode_and_options()
        if first in MODES:
            mode = first
        options = options.with_query(parse_qs(split.query))
        crm.record(Received(self.command, self.path, dict(self.headers.items()), body, mode,
                            time.monotonic(), self.client_address[1]))
        try:
            getattr(self, f"_{mode}")(options, crm)
        except OSError:  # the client gave up (a deadline, a read cap): nothing to answer
            self.close_connection = True

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._plain(411, b"send a Content-Length")
            return None
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BODY:
            self.close_connection = True
            self._plain(413, b"request body too large")
            return None
        return self.rfile.read(length) if length else b""

    # -- answers ----------------------------------------------------------------------------

    def _plain(self, status: int, body: bytes, content_type: str = "text/plain",
               extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _ok(self, options: Options, crm: HostileCrm) -> None:
        body = json.dumps({"id": crm.count(), "ok": True}).encode()
        self._plain(options.status, body, "application/json")

    def _slow(self, options: Options, crm: HostileCrm) -> None:
        if crm.stopping.wait(options.slow_seconds):
            self.close_connection = True
            return
        self._ok(options, crm)

    def _drip(self, options: Options, crm: HostileCrm) -> None:
        self.close_connection = True
        self.send_response(options.status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(options.drip_bytes))
        self.end_headers()
        for _ in range(options.drip_bytes):
            if crm.stopping.wait(options.interval):
                return
            try:
                self.wfile.write(b"x")
            except OSError:  # the client gave up: what a drip is for
                return

    def _drip_head(self, options: Options, crm: HostileCrm) -> None:
        self.close_connection = True
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            for _ in range(options.drip_bytes):
                if crm.stopping.wait(options.interval):
                    return
                self.wfile.write(b"x")
        except OSError:
            return

    def _gzip_bomb(self, options: Options, crm: HostileCrm) -> None:
        self._plain(options.status, gzip_bomb(options.bomb_bytes), "application/json",
                    (("Content-Encoding", "gzip"),))

    def _nul(self, options: Options, crm: HostileCrm) -> None:
        # Written by hand: send_header would encode the NUL header's value.
        self.wfile.write(
            f"HTTP/1.1 {options.status} Hostile\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(NUL_BODY)}\r\n".encode()
            + NUL_HEADER + b"\r\n\r\n" + NUL_BODY)

    def _reset(self, options: Options, crm: HostileCrm) -> None:
        self.close_connection = True
        sock = self.connection
        # Linger 0: close() sends RST instead of FIN, as a crashed or hostile peer does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # the last reference to the socket besides the handler's own
        sock.close()

    def _short_body(self, options: Options, crm: HostileCrm) -> None:
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b'{"id": 7, "st')

    def _huge(self, options: Options, crm: HostileCrm) -> None:
        self.send_response(options.status)
        self.send_header("Content-Type", "text/plain")
        if options.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(options.huge_bytes))
        self.end_headers()
        chunk = b"a" * 65536
        left = options.huge_bytes
        while left > 0 and not crm.stopping.is_set():  # bounded by the size
            piece = chunk if left >= len(chunk) else chunk[:left]
            if options.chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                self.wfile.write(piece)
            left -= len(piece)
        if left:
            self.close_connection = True
        elif options.chunked:
            self.wfile.write(b"0\r\n\r\n")

    # -- control paths (standalone use) ------------------------------------------------------

    def _control(self, path: str, query: dict[str, list[str]], crm: HostileCrm) -> None:
        if path == "/_received":
            body = json.dumps([r.as_dict() for r in crm.received]).encode()
            self._plain(200, body, "application/json")
        elif path == "/_mode" and self.command in ("PUT", "POST"):
            mode = (query.get("mode") or [""])[-1]
            if mode and mode not in MODES:
                self._plain(400, f"unknown mode {mode!r} (modes: {', '.join(MODES)})".encode())
                return
            crm.set_mode(mode or None, query)
            self._plain(204, b"")
        else:
            self._plain(404, b"no such control path")


class _Server(http.server.ThreadingHTTPServer):
    # Handler threads are joined by server_close(), after stop() ended their connections.
    daemon_threads = False
    block_on_close = True
    crm: HostileCrm

    def __init__(self, address: tuple[str, int], crm: HostileCrm) -> None:
        self.crm = crm
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, sock: socket.socket, *, add: bool) -> None:
        with self._open_lock:
            if add:
                self._open.add(sock)
            else:
                self._open.discard(sock)

    def end_connections(self) -> None:
        """Wake every handler blocked on its client: idle keep-alives, drips, huge bodies."""
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class HostileCrm:
    """The hostile CRM: ``with HostileCrm("drip", interval=0.1) as crm: crm.url_for("/x")``."""

    def __init__(self, mode: str = "ok", *, port: int = 0, interval: float = 1.0,
                 drip_bytes: int = 1000, slow_seconds: float = 2.0,
                 bomb_bytes: int = 10 * 1024 * 1024, huge_bytes: int = 20 * 1024 * 1024,
                 status: int = 200) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (modes: {', '.join(MODES)})")
        self._mode = mode
        self._options = Options(interval, drip_bytes, slow_seconds, bomb_bytes, huge_bytes,
                                status)
        self._received: list[Received] = []
        self._lock = threading.Lock()
        #: Set by :meth:`stop`: every wait of a mode ends at once.
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", port), self)
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> HostileCrm:
        """Serve in a background thread."""
        assert self._thread is None, "already started"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"hostile-crm-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end every connection and join every thread (bounded: each wait
        of a mode ends when ``stopping`` is set, each blocked socket is shut down)."""
        self.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(10)
            self._thread = None
        self._server.end_connections()
        self._server.server_close()

    def __enter__(self) -> HostileCrm:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- configuration ----------------------------------------------------------------------

    def url_for(self, path: str) -> str:
        """The URL of ``path`` on this CRM (``/drip/leads`` picks the drip mode)."""
        return self.url + (path if path.startswith("/") else "/" + path)

    def set_mode(self, mode: str | None, query: dict[str, list[str]] | None = None) -> None:
        """Change the instance's mode and (from query-style values) its options."""
        if mode is not None and mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (modes: {', '.join(MODES)})")
        with self._lock:
            if mode is not None:
                self._mode = mode
            if query:
                self._options = self._options.with_query(query)

    def mode_and_options(self) -> tuple[str, Options]:
        """The instance's current mode and options."""
        with self._lock:
            return self._mode, self._options

    # -- what was received ------------------------------------------------------------------

    def record(self, request: Received) -> None:
        """Keep ``request`` (called by the handler once the whole request was read)."""
        with self._lock:
            self._received.append(request)

    @property
    def received(self) -> list[Received]:
        """Every request received so far, in order (a copy)."""
        with self._lock:
            return list(self._received)

    def count(self, path: str | None = None) -> int:
        """How many requests were received (whose path starts with ``path``, if given)."""
        with self._lock:
            return sum(1 for r in self._received if path is None or r.path.startswith(path))

    def idempotency_keys(self) -> list[str | None]:
        """The ``Idempotency-Key`` of each request received, in order."""
        return [r.idempotency_key for r in self.received]


@contextlib.contextmanager
def running(mode: str = "ok", **options: Any) -> Iterator[HostileCrm]:
    """A started :class:`HostileCrm`, stopped on exit."""
    crm = HostileCrm(mode, **options)
    with crm:
        yield crm


def main(argv: list[str] | None = None) -> int:
    """Run one hostile CRM as a process; its URL is the first line printed."""
    parser = argparse.ArgumentParser(prog="python -m tests.faults.hostile_crm",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--mode", choices=MODES, default="ok")
    parser.add_argument("--interval-ms", type=float, default=1000.0,
                        help="drip: milliseconds between two bytes")
    parser.add_argument("--drip-bytes", type=int, default=1000)
    parser.add_argument("--slow-seconds", type=float, default=2.0)
    parser.add_argument("--bomb-bytes", type=int, default=10 * 1024 * 1024)
    parser.add_argument("--huge-bytes", type=int, default=20 * 1024 * 1024)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="exit after this long even if never signalled")
    args = parser.parse_args(argv)
    crm = HostileCrm(args.mode, port=args.port, interval=args.interval_ms / 1000,
                     drip_bytes=args.drip_bytes, slow_seconds=args.slow_seconds,
                     bomb_bytes=args.bomb_bytes, huge_bytes=args.huge_bytes,
                     status=args.status)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    with crm:
        print(crm.url, flush=True)
        done.wait(args.max_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
