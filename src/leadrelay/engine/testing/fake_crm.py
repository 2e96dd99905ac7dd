"""A fake CRM: a real HTTP server on loopback that a test scripts and inspects.

Connectors are tested against real sockets, not mocks: what a connector does
on a refused connection, a hung answer or a 429 is only known by meeting one.
A test scripts what the CRM answers (a success body, a rejection, a 5xx, a
429 with ``Retry-After``, an answer that never comes, a dropped connection,
or no listener at all) and reads back every request the CRM received::

    fake_crm.reply(Reply(200, {"inlineMessage": "Thanks"}))
    fake_crm.throttle(retry_after=120)          # the next requests get a 429
    fake_crm.reply(Reply(200, wsdl), method="GET", path="/service")
    ...
    assert fake_crm.last.json()["fields"][0]["name"] == "email"

Scripted replies are matched most specific first (method and path, then path,
then method, then a catch-all), and among equally specific ones the newest
first, so a test can override a default set up by a fixture.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from requests.structures import CaseInsensitiveDict

__all__ = ["HANG_LIMIT", "FakeCrm", "RecordedRequest", "Reply", "http_date"]

#: Longest a hung answer keeps its connection open before the fake CRM lets go, in seconds.
#: A connector that honours the transport's read timeout gives up long before.
HANG_LIMIT = 15.0

Body = bytes | str | Mapping[str, Any] | list[Any]


@dataclass(frozen=True)
class Reply:
    """One scripted answer of the fake CRM.

    :param status: the HTTP status.
    :param body: bytes as they are; ``str`` as UTF-8 text; a dict or list as JSON
        (``Content-Type: application/json`` unless ``headers`` says otherwise).
    :param headers: extra response headers.
    :param delay: seconds to wait before answering.
    :param hang: never answer: keep the connection open until the test ends
        (or :data:`HANG_LIMIT`), so the client's read timeout fires.
    :param drop: close the connection without answering.
    """

    status: int = 200
    body: Body = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False
    drop: bool = False

    @classmethod
    def from_contract(cls, shape: Mapping[str, Any]) -> Reply:
        """A reply from a ``{"status", "headers", "body"}`` shape, as the shared
        ``http-contracts`` fixtures record CRM answers."""
        return cls(int(shape["status"]), shape.get("body", b""), dict(shape.get("headers", {})))

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        """The body as bytes and the headers to send with it (Content-Type filled in)."""
        headers = dict(self.headers)
        has_type = any(k.lower() == "content-type" for k in headers)
        if isinstance(self.body, bytes):
            payload = self.body
        elif isinstance(self.body, str):
            payload = self.body.encode()
            if not has_type:
                headers["Content-Type"] = "text/plain; charset=utf-8"
        else:
            payload = json.dumps(self.body).encode()
            if not has_type:
                headers["Content-Type"] = "application/json"
        return payload, headers


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake CRM received, exactly as it arrived."""

    method: str
    path: str
    query: str
    headers: CaseInsensitiveDict[str]
    body: bytes

    @property
    def target(self) -> str:
        """Path and query, as in the request line (``/submit/1?x=y``)."""
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def text(self) -> str:
        """The body as UTF-8 text."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        """The body parsed as ``application/x-www-form-urlencoded``."""
        return parse_qs(self.text, keep_blank_values=True)

    def args(self) -> dict[str, list[str]]:
        """The query string parsed."""
        return parse_qs(self.query, keep_blank_values=True)

    def contains(self, value: str) -> bool:
        """True when ``value`` appears in the target, a header value or the body."""
        return (
            value in self.target
            or any(value in v for v in self.headers.values())
            or value in self.text
        )


@dataclass
class _Rule:
    reply: Reply
    method: str | None
    path: str | None
    times: int | None
    order: int

    def matches(self, request: RecordedRequest) -> bool:
        return (self.times is None or self.times > 0) and (
            (self.method is None or self.method == request.method)
            and (self.path is None or self.path == request.path)
        )

    def rank(self) -> tuple[int, int]:
        specific = (self.path is not None) * 2 + (self.method is not None)
        return specific, self.order


class FakeCrm:
    """A scripted CRM on ``127.0.0.1``; start it with ``FakeCrm()``, stop it with :meth:`close`.

    The ``fake_crm`` fixture of :mod:`leadrelay.engine.testing.plugin` gives one
    per test. Unscripted requests get a 501 that names them, so a forgotten
    script shows in the attempt's reason.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._counter = 0
        self._connections: set[socket.socket] = set()
        self._release = threading.Event()
        self.requests: list[RecordedRequest] = []
        """Every request received, oldest first."""
        self._server = _Server((host, 0), self)
        self.host: str = str(self._server.server_address[0])
        self.port: int = int(self._server.server_address[1])
        self._listening = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"fake-crm-{self.port}", daemon=True,
        )
        self._thread.start()

    # -- addresses --------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The CRM's base URL, without a trailing slash (``http://127.0.0.1:PORT``)."""
        return f"http://{self.host}:{self.port}"

    def url_for(self, path: str) -> str:
        """The absolute URL of ``path`` on this CRM."""
        return self.url + ("" if path.startswith("/") else "/") + path

    # -- scripting --------------------------------------------------------------------

    def reply(
        self,
        reply: Reply | int = 200,
        body: Body = b"",
        headers: Mapping[str, str] | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int | None = None,
    ) -> Reply:
        """Answer matching requests with ``reply`` (or a status, body and headers).

        :param method: only requests with this method (``"POST"``); any when None.
        :param path: only requests to this path (no query string); any when None.
        :param times: answer this many requests, then fall back to older scripts;
            every matching request when None.
        :returns: the scripted :class:`Reply`.
        """
        if not isinstance(reply, Reply):
            reply = Reply(reply, body, dict(headers or {}))
        with self._lock:
            self._counter += 1
            self._rules.append(
                _Rule(reply, method.upper() if method else None, path, times, self._counter)
            )
        return reply

    def server_error(
        self, status: int = 503, *, retry_after: int | str | None = None, **match: Any
    ) -> Reply:
        """Answer with a 5xx (plain text, as a load balancer would), optionally with Retry-After."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return self.reply(Reply(status, "Service Unavailable", headers), **match)

    def throttle(self, retry_after: int | str | None = 120, **match: Any) -> Reply:
        """Answer with ``429 Too Many Requests`` and ``Retry-After`` (seconds or an HTTP date)."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return self.reply(Reply(429, {"status": "error", "message": "rate limit"}, headers),
                          **match)

    def hang(self, **match: Any) -> Reply:
        """Never answer matching requests: the client's read timeout must fire."""
        return self.reply(Reply(hang=True), **match)

    def drop_connection(self, **match: Any) -> Reply:
        """Close the connection of matching requests without answering."""
        return self.reply(Reply(drop=True), **match)

    def refuse_connections(self) -> None:
        """Stop listening: from now on every connection attempt is refused."""
        with self._lock:
            if not self._listening:
                return
            self._listening = False
        self._server.shutdown()
        self._server.server_close()
        self._close_connections()

    def clear(self) -> None:
        """Forget every script and every recorded request."""
        with self._lock:
            self._rules.clear()
            self.requests.clear()

    # -- inspecting -------------------------------------------------------------------

    @property
    def last(self) -> RecordedRequest:
        """The most recent request; fails the test when none came."""
        with self._lock:
            if not self.requests:
                raise AssertionError("the fake CRM received no request")
            return self.requests[-1]

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """The requests received on ``path`` (and ``method``, when given), oldest first."""
        with self._lock:
            return [
                r for r in self.requests
                if r.path == path and (method is None or r.method == method.upper())
            ]

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """Release hung answers, stop the server and close every connection."""
        self._release.set()
        self.refuse_connections()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeCrm:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FakeCrm({self.url}, {len(self.requests)} requests)"

    # -- used by the handler ----------------------------------------------------------

    def _receive(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            candidates = [r for r in self._rules if r.matches(request)]
            if not candidates:
                return Reply(501, f"fake CRM: no reply scripted for {request.method} "
                                  f"{request.path}")
            rule = max(candidates, key=_Rule.rank)
            if rule.times is not None:
                rule.times -= 1
            return rule.reply

    def _wait(self, seconds: float) -> None:
        self._release.wait(seconds)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _close_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def http_date(seconds_from_now: float) -> str:
    """An HTTP date ``seconds_from_now`` in the future, for a ``Retry-After`` header."""
    return formatdate(time.time() + seconds_from_now, usegmt=True)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], crm: FakeCrm) -> None:
        self.crm = crm
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive like a real CRM; without TCP_NODELAY each keep-alive request
    # stalls ~40 ms (measured, see design.md).
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.crm._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.crm._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads :attr:`FakeCrm.requests` instead."""

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        request = RecordedRequest(
            self.command, parts.path, parts.query,
            CaseInsensitiveDict(dict(self.headers.items())), self._read_body(),
        )
        reply = self.server.crm._receive(request)
        if reply.hang:
            self.server.crm._wait(HANG_LIMIT)
            self.close_connection = True
            return
        if reply.drop:
            self.close_connection = True
            return
        if reply.delay:
            self.server.crm._wait(reply.delay)
        payload, headers = reply.encoded()
        self.send_response(reply.status)
        for name, value in headers.items():
            self.send_header(name, value)
        if not any(k.lower() == "content-length" for k in headers):
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""
