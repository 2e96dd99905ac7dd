"""Loopback servers the scenarios deliver to: a fast CRM, a black hole, and their ceilings.

The CRM is a tiny HTTP/1.1 keep-alive responder on ``asyncio.Protocol`` in its own
process: it parses just enough (request line, ``Content-Length``) to answer every
request with one fixed JSON body, so it costs a few microseconds per request and is
never the bottleneck (its ceiling is measured with wrk and printed with the results).
``GET /stats`` answers the number of requests served so far.

With ``--delay`` it is a slow CRM instead: each POST is answered that many seconds
after it arrived whole (the real-time scenario's CRM), and it keeps its own handling
time of each — from the first byte of the request to the answer written — which
``GET /handled`` hands over (milliseconds, comma-separated) and forgets. Being its own
process, its work never shares the engine's GIL, as no real CRM's does.

The black hole is a listening socket that is never accepted: the kernel completes
the TCP handshake and buffers the request, and no answer ever comes — a CRM that
hangs. Only loopback addresses are ever bound.

Run one by hand: ``python -m bench.servers crm --port 8099``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
#: What the CRM answers to every POST: what a real CRM's "created" answer looks like.
CRM_BODY = b'{"success":true,"data":{"id":"00Q5g000004ZpGnEAK"}}'
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(CRM_BODY)).encode()
    + b"\r\nConnection: keep-alive\r\n\r\n"
    + CRM_BODY
)
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class _CrmProtocol(asyncio.Protocol):
    """One keep-alive connection: answer each complete request, pipelined or not."""

    served = 0
    #: Seconds before each POST is answered (``--delay``); 0: at once.
    delay = 0.0
    #: Milliseconds each delayed POST took, first byte to answer (``GET /handled``).
    handled: list[float] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # no Nagle stall on small answers
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.first_byte = 0.0

    def data_received(self, data: bytes) -> None:
        if not self.buffer:
            self.first_byte = time.perf_counter()
        if _CrmProtocol.delay:
            self._delayed(self.buffer + data)
            return
        buf = self.buffer + data
        out: list[bytes] = []
        while True:
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                break
            head = buf[:head_end]
            match = _CONTENT_LENGTH.search(head)
            total = head_end + 4 + (int(match.group(1)) if match else 0)
            if len(buf) < total:
                break
            if head.startswith(b"GET /stats"):
                body = str(_CrmProtocol.served).encode()
                out.append(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
            else:
                _CrmProtocol.served += 1
                out.append(_RESPONSE)
            buf = buf[total:]
        self.buffer = buf
        if out:
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]

    def _delayed(self, buf: bytes) -> None:
        """The slow CRM: one request at a time on a connection, as HTTP/1.1 clients send."""
        head_end = buf.find(b"\r\n\r\n")
        match = _CONTENT_LENGTH.search(buf[:head_end]) if head_end >= 0 else None
        total = head_end + 4 + (int(match.group(1)) if match else 0)
        if head_end < 0 or len(buf) < total:
            self.buffer = buf
            return
        self.buffer = buf[total:]
        if buf.startswith(b"GET /handled"):
            body = ",".join(f"{ms:.4f}" for ms in _CrmProtocol.handled).encode()
            _CrmProtocol.handled.clear()
            self.transport.write(  # type: ignore[attr-defined]
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\n\r\n" + body)
            return
        started = self.first_byte
        loop = asyncio.get_running_loop()
        loop.call_at(loop.time() + _CrmProtocol.delay, self._answer, started)

    def _answer(self, started: float) -> None:
        _CrmProtocol.served += 1
        self.transport.write(_RESPONSE)  # type: ignore[attr-defined]
        _CrmProtocol.handled.append((time.perf_counter() - started) * 1000)


async def _serve_crm(port: int, ready: Path | None, delay: float = 0.0) -> None:
    _CrmProtocol.delay = delay
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_CrmProtocol, HOST, port, backlog=1024, reuse_address=True)
    if ready is not None:
        ready.write_text(str(server.sockets[0].getsockname()[1]))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def free_port() -> int:
    """A loopback port nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_listening(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20.0
) -> None:
    """Wait until ``127.0.0.1:port`` accepts connections (or the process died)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout:g}s")
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a process this harness started (its own process group), by its id."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


@dataclass
class CrmServer:
    """The fast CRM responder, running in its own process."""

    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """Where integrations POST their leads."""
        return f"http://{HOST}:{self.port}/leads"

    def served(self) -> int:
        """Requests served so far (a GET on its own connection, not counted)."""
        return int(self._get("/stats"))

    def handled_ms(self) -> list[float]:
        """A slow CRM's own handling time of each POST since the last call (ms)."""
        body = self._get("/handled")
        return [float(ms) for ms in body.split(b",")] if body else []

    def _get(self, path: str) -> bytes:
        """The body of ``GET path``, on a connection of its own."""
        with socket.create_connection((HOST, self.port), timeout=5) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                         .encode())
            data = b""
            while True:
                head, sep, body = data.partition(b"\r\n\r\n")
                match = _CONTENT_LENGTH.search(head) if sep else None
                if match is not None and len(body) >= int(match.group(1)):
                    return body[: int(match.group(1))]
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"the CRM closed the connection answering {path}")
                data += chunk


@contextlib.contextmanager
def crm_server(delay: float = 0.0) -> Iterator[CrmServer]:
    """Run the CRM responder in a child process for the duration of the block; with
    ``delay``, the slow CRM answering each POST that many seconds later."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.servers", "crm", "--port", str(port),
         "--delay", str(delay)],
        start_new_session=True,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    try:
        wait_listening(port, proc)
        yield CrmServer(port, proc)
    finally:
        stop_process(proc)


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """A URL whose server accepts TCP (in the kernel) and never answers."""
    sock = socket.socket()
    sock.bind((HOST, 0))
    sock.listen(4096)  # never accept()ed: requests sit in the kernel's queue
    try:
        yield f"http://{HOST}:{sock.getsockname()[1]}/leads"
    finally:
        sock.close()


_WRK_POST = """wrk.method = "POST"
wrk.body = "first_name=Jane&last_name=Doe&email=jane.doe%40example.com&company=ACME+Corp"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
"""


def wrk_ceiling(
    url: str, *, seconds: int = 5, connections: int = 16, threads: int = 2
) -> float | None:
    """Requests/s wrk gets from ``url`` with form POSTs; None when wrk is not installed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(_WRK_POST)
        script = fh.name
    try:
        out = subprocess.run(
            [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", script, url],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        ).stdout
    finally:
        os.unlink(script)
    match = re.search(r"Requests/sec:\s*([\d.]+)", out)
    return float(match.group(1)) if match else None


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.servers crm --port N``."""
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("kind", choices=["crm"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds before each POST is answered (a slow CRM)")
    args = parser.parse_args(argv)
    asyncio.run(_serve_crm(args.port, args.ready_file, args.delay))


if __name__ == "__main__":
    main()
