"""Running the API on uvicorn: in this process over a given engine (``serve``), or as
one or several processes building their own engines (``api``).

The socket is bound before uvicorn starts, so the URL printed is the one that
answers — with ``--port 0``, the port the system chose.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn
from uvicorn.supervisors import Multiprocess

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.errors import LeadrelayError

from .app import create_app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (``port`` 0: one the system picks)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it. asyncio sets TCP_NODELAY itself only on sockets it
    # opens: without this, every keep-alive answer (head and body written apart) waited
    # for the client's delayed ACK — 44 ms per request, measured (bench: api-intake).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LeadrelayError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    # Listening at once: a client that connects as soon as the URL is printed waits in
    # the backlog until uvicorn accepts, instead of being refused.
    sock.listen(2048)
    sock.set_inheritable(True)  # the worker processes of `api --workers N` serve it too
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _config(app: object, **options: object) -> uvicorn.Config:
    # The access log is ours (api/middleware.py: no paths, keys or payloads), and the
    # logging setup the command's: uvicorn keeps its hands off both.
    return uvicorn.Config(app, log_config=None, access_log=False,  # type: ignore[arg-type]
                          server_header=False, **options)  # type: ignore[arg-type]


def serve_engine(
    engine: Leadrelay, host: str, port: int, *, ready: Callable[[str], None]
) -> None:
    """Serve the API over ``engine`` in this process until SIGINT or SIGTERM; returns then
    (the caller stops the engine)."""
    sock = bind(host, port)
    ready(url_of(sock))
    serve_app(create_app(engine), sock)


def serve_app(app: object, sock: socket.socket) -> None:
    """Serve ``app`` on a bound socket until SIGINT or SIGTERM; returns then."""
    with _signals_end_serving():
        uvicorn.Server(_config(app)).run(sockets=[sock])


def serve_processes(
    host: str, port: int, *, workers: int, ready: Callable[[str], None]
) -> None:
    """Serve the API from ``workers`` processes, each with its own engine built from the
    ``LEADRELAY_*`` environment, until SIGINT or SIGTERM."""
    sock = bind(host, port)
    ready(url_of(sock))
    config = _config("leadrelay.api:create_app", factory=True, workers=workers)
    with _signals_end_serving():
        if workers > 1:
            Multiprocess(config, sockets=[sock]).run()
        else:
            uvicorn.Server(config).run(sockets=[sock])


@contextlib.contextmanager
def _signals_end_serving() -> Iterator[None]:
    """uvicorn shuts down on SIGINT/SIGTERM, then raises the signal again for the handler
    it found: let that handler be a no-op, so the command goes on to stop the engine
    gracefully instead of dying there."""

    def ignore(_signum: int, _frame: FrameType | None) -> None:
        return None

    previous = {sig: signal.signal(sig, ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
