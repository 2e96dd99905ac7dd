"""Demo CRMs: real HTTP servers on 127.0.0.1 that answer like real CRMs do.

- ``pipedrive``: answers ``201`` with ``{"success": true, "data": {"id": "<uuid>"}}``
  when the ``api_token`` query parameter is right, as Pipedrive's Leads API does;
- ``odoo``: answers ``200`` with a JSON-RPC ``error`` body, as Odoo does for
  every failure (only an expectation rule can tell);
- ``down``: a port that is reserved but not listening, so connections are refused.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: The token the Pipedrive-like CRM expects (a demo secret: it must never be shown).
PIPEDRIVE_TOKEN = "demo-pipedrive-token-5f3a9c"

PIPEDRIVE_PATH = "/api/v1/leads"
ODOO_PATH = "/jsonrpc"


@dataclass
class Received:
    """What the demo CRMs were sent, by path."""

    requests: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, body: bytes) -> None:
        """Record one request."""
        with self.lock:
            self.requests.append((path, body))

    def count(self, path: str) -> int:
        """How many requests ``path`` got."""
        with self.lock:
            return sum(1 for p, _ in self.requests if p == path)


class _Handler(BaseHTTPRequestHandler):
    # Without this, each keep-alive request stalls ~40 ms (Nagle + delayed ACK).
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        url = urlsplit(self.path)
        self.server.received.add(url.path, body)
        if url.path == PIPEDRIVE_PATH:
            self._pipedrive(parse_qs(url.query), body)
        elif url.path == ODOO_PATH:
            self._answer(200, {
                "jsonrpc": "2.0", "id": None,
                "error": {"code": 200, "message": "Odoo Server Error",
                          "data": {"name": "odoo.exceptions.AccessDenied",
                                   "message": "Access Denied", "arguments": ["Access Denied"]}},
            })
        else:
            self._answer(404, {"error": "not found"})

    def _pipedrive(self, query: dict[str, list[str]], body: bytes) -> None:
        if query.get("api_token") != [PIPEDRIVE_TOKEN]:
            self._answer(401, {"success": False, "error": "You need to be authorized",
                               "errorCode": 401})
            return
        try:
            lead = json.loads(body or b"{}")
        except ValueError:
            self._answer(400, {"success": False, "error": "body is not JSON"})
            return
        if not lead.get("title"):
            self._answer(400, {"success": False, "error": "Validation failed: title: required"})
            return
        self._answer(201, {"success": True,
                           "data": {"id": str(uuid.uuid4()), "title": lead["title"]}})

    def _answer(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the demo shows what the engine recorded instead."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    received: Received


class DemoCrms:
    """The demo CRMs, on loopback ports chosen by the system. Use as a context manager."""

    def __init__(self) -> None:
        self.received = Received()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._reserved: socket.socket | None = None

    def __enter__(self) -> DemoCrms:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server, and reserve the port of the CRM that is down."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.received = self.received
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="demo-crms",
                                        daemon=True, kwargs={"poll_interval": 0.1})
        self._thread.start()
        # Bound but never listening: nobody else can take the port, and every
        # connection to it is refused — a CRM that is down.
        reserved = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        reserved.bind(("127.0.0.1", 0))
        self._reserved = reserved

    def stop(self) -> None:
        """Stop the server and free the reserved port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running CRMs."""
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def pipedrive_url(self) -> str:
        """The Pipedrive-like leads endpoint (the token goes in ``secret_query``)."""
        return self.base_url + PIPEDRIVE_PATH

    @property
    def odoo_url(self) -> str:
        """The Odoo-like JSON-RPC endpoint."""
        return self.base_url + ODOO_PATH

    @property
    def down_url(self) -> str:
        """A URL on a port nobody listens on."""
        assert self._reserved is not None, "start() first"
        return f"http://127.0.0.1:{self._reserved.getsockname()[1]}/leads"
