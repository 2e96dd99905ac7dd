"""Real forward proxies on loopback for the static-IP tests.

:class:`ForwardProxy` runs proxy.py (PyPI ``proxy-py``) as a subprocess — the
same proxy an operator could deploy — that a test can stop and start again on
the same port. :class:`CannedProxy` is a loopback server that answers every
proxied request with one fixed answer: the error pages squid and tinyproxy
send, byte for byte, for the software the suite does not run.
"""

from __future__ import annotations

import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.secrets import SecretBox
from leadrelay.engine.settings import Settings


def free_port() -> int:
    """A loopback port nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    """Whether something accepts connections on ``127.0.0.1:port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class ForwardProxy:
    """proxy.py on ``127.0.0.1:port``, logging to ``log``; stoppable and restartable."""

    def __init__(self, directory: Path, name: str, *, basic_auth: str | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.log = directory / f"{name}.log"
        self.basic_auth = basic_auth
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, user: str | None = None) -> str:
        """The proxy URL as plugins.toml declares it (a user name, never a password)."""
        return f"http://{user + '@' if user else ''}127.0.0.1:{self.port}"

    def start(self) -> ForwardProxy:
        """Start proxy.py and wait until it accepts connections."""
        assert self._proc is None, "already running"
        command = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1",
                   "--port", str(self.port), "--num-workers", "1", "--num-acceptors", "1",
                   "--log-file", str(self.log)]
        if self.basic_auth:
            command += ["--basic-auth", self.basic_auth]
        # Its own process group, so stop() ends proxy.py and the workers it forks.
        self._proc = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 20
        while not listening(self.port):
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                self._proc = None
                raise RuntimeError(f"proxy.py {self.name} exited at start: {err[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"proxy.py {self.name} did not listen within 20s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop proxy.py and wait until its port refuses connections."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        if proc.stderr:
            proc.stderr.close()
        deadline = time.monotonic() + 10
        while listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def requests_logged(self, path: str, *, expect: int = 0) -> list[str]:
        """The proxy's access-log lines for requests whose target contains ``path``.

        proxy.py logs a request when its client connection ends, a moment after
        the answer: with ``expect``, wait up to 5 s for that many lines.
        """
        deadline = time.monotonic() + 5
        while True:
            lines = [line for line in
                     (self.log.read_text().splitlines() if self.log.exists() else [])
                     if "access_log" in line and path in line]
            if len(lines) >= expect or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


class _CannedHandler(socketserver.BaseRequestHandler):
    server: CannedProxy

    def handle(self) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next((int(v) for k, _, v in (line.partition(":") for line in lines[1:])
                       if k.strip().lower() == "content-length"), 0)
        while len(body) < length:
            chunk = self.request.recv(65536)
            if not chunk:
                break
            body += chunk
        self.server.seen.append(lines[0])
        self.request.sendall(self.server.answer)


class CannedProxy(socketserver.ThreadingTCPServer):
    """Answers every request with ``answer`` (raw HTTP bytes) and closes; records request lines."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answer: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _CannedHandler)
        self.answer = answer
        self.seen: list[str] = []
        self.port = int(self.server_address[1])
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def url(self) -> str:
        """The proxy URL."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CannedProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class OneProxy:
    """A static-IP route of one proxy, never marked down: what a transport test needs to
    send through a given proxy without a pool."""

    def __init__(self, url: str) -> None:
        self.url = url

    def candidates(self) -> list[tuple[str, str]]:
        return [("egress-a", self.url)]

    def mark_down(self, name: str) -> None:
        pass

    def mark_up(self, name: str) -> None:
        pass


def http_answer(status_line: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """Raw HTTP response bytes."""
    head = "\r\n".join([status_line, *(f"{k}: {v}" for k, v in headers)])
    return head.encode("latin-1") + b"\r\n\r\n" + body


_SQUID_PAGE = (b"<!DOCTYPE html PUBLIC \"-//W3C//DTD HTML 4.01//EN\">\n<html><head>"
               b"<title>ERROR: The requested URL could not be retrieved</title></head><body>"
               b"<div id=\"titles\"><h1>ERROR</h1><h2>The requested URL could not be "
               b"retrieved</h2></div><p>The system returned: <i>(111) Connection refused"
               b"</i></p><p>Generated Thu, 01 Jan 2026 09:00:00 GMT by egress "
               b"(squid/5.7)</p></body></html>\n")
_TINYPROXY_PAGE = (b"<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<!DOCTYPE html>\n<html>"
                   b"<head><title>502 Unable to connect</title></head><body><h1>Unable to "
                   b"connect</h1><p>Tinyproxy was unable to connect to the remote web server."
                   b"</p><hr /><p><em>Generated by <a href=\"https://tinyproxy.github.io/\">"
                   b"tinyproxy</a> version 1.11.1.</em></p></body></html>\n")


def squid_error(status: int = 503, reason: str = "Service Unavailable",
                error: str = "ERR_CONNECT_FAIL 111") -> bytes:
    """The error page squid 5 sends when it cannot reach (or wait for) the origin."""
    return http_answer(f"HTTP/1.1 {status} {reason}", [
        ("Server", "squid/5.7"), ("Mime-Version", "1.0"),
        ("Date", "Thu, 01 Jan 2026 09:00:00 GMT"),
        ("Content-Type", "text/html;charset=utf-8"), ("Content-Length", str(len(_SQUID_PAGE))),
        ("X-Squid-Error", error), ("Vary", "Accept-Language"), ("Content-Language", "en"),
        ("Via", "1.1 egress (squid/5.7)"), ("Connection", "close"),
    ], _SQUID_PAGE)


def tinyproxy_error() -> bytes:
    """The page tinyproxy 1.11 sends when it cannot connect to the origin."""
    return http_answer("HTTP/1.0 502 Unable to connect", [
        ("Server", "tinyproxy/1.11.1"), ("Content-Type", "text/html"),
        ("Connection", "close"),
    ], _TINYPROXY_PAGE)


def pool_toml(pools: dict[str, list[dict[str, object]]], *,
              health_check: str = 'interval = "30s", timeout = "2s"') -> str:
    """A plugins.toml declaring ``pools`` (name -> proxy tables)."""
    out = []
    for name, proxies in pools.items():
        out.append(f"[proxies.{name}]")
        out.append("proxies = [")
        for p in proxies:
            fields = ", ".join(f"{k} = {_toml(v)}" for k, v in p.items())
            out.append(f"  {{{fields}}},")
        out.append("]")
        out.append(f"health_check = {{{health_check}}}")
        out.append("")
    return "\n".join(out)


def _toml(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def engine(tmp_path: Path, database_url: str, clock: object, plugins_toml: str | None,
           ) -> Leadrelay:
    """An engine on ``database_url`` with ``plugins_toml`` as its plugins.toml."""
    plugins_file = None
    if plugins_toml is not None:
        plugins_file = tmp_path / "plugins.toml"
        plugins_file.write_text(plugins_toml)
    settings = Settings(home=tmp_path, database_url=database_url, broker_url=None,
                        secret_key=SecretBox.generate_key(), plugins_file=plugins_file,
                        egress_allow=("127.0.0.1",))
    return Leadrelay(settings, clock=clock)  # type: ignore[arg-type]


def new_form(app: Leadrelay) -> int:
    """A form of a fresh account on the growth plan."""
    account = app.manage.create_account("Acme", "owner@acme.test", plan="growth")
    return app.manage.create_form(account.id, "Contact us").id
