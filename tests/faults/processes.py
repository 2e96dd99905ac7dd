"""Real ``leadrelay`` processes for the fault suite: started, stopped, killed, measured.

A :class:`Deployment` is what every process of one test shares — the ledger, the
broker, the ``LEADRELAY_*`` settings — exactly as operators configure production.
Each :class:`Service` is one ``python -m leadrelay.cli worker|scheduler|serve``; its
output goes to a file (a pipe nobody reads would block it), which a failing test prints.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: The line every long-running verb prints once it runs (cli/run.py, ``_announce``).
READY = "Ctrl-C or SIGTERM stops"
STOPPED = "leadrelay: stopped"


class ServiceFailed(AssertionError):
    """A process under test did not do what the harness waited for; carries its log."""


@dataclass
class Service:
    """One running ``leadrelay`` process."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        """The process id (the Python interpreter itself: no wrapper in between)."""
        return self.popen.pid

    def log(self) -> str:
        """What the process printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.popen.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait for the start line; fail with the log if the process exits or never says it."""
        deadline = time.monotonic() + timeout
        while READY not in self.log():
            if not self.alive():
                raise ServiceFailed(f"{self.name} exited with {self.popen.returncode}:\n"
                                    f"{self.log()}")
            if time.monotonic() > deadline:
                raise ServiceFailed(f"{self.name} not ready after {timeout:g}s:\n{self.log()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """``kill -9``: no cleanup, no final write, as when a machine loses power."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def pause(self) -> None:
        """``SIGSTOP``: frozen mid-whatever (a VM paused, a process swapped out)."""
        self.popen.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """``SIGCONT``: carries on where it was frozen, unaware of the time that passed."""
        self.popen.send_signal(signal.SIGCONT)

    def terminate(self, timeout: float = 30.0) -> float:
        """SIGTERM and wait for the exit; the seconds it took. Killed (and failed) after
        ``timeout``; a non-zero exit fails too."""
        if not self.alive():
            raise ServiceFailed(f"{self.name} had already exited ({self.popen.returncode}):\n"
                                f"{self.log()}")
        start = time.monotonic()
        self.popen.send_signal(signal.SIGTERM)
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServiceFailed(
                f"{self.name} still running {timeout:g}s after SIGTERM:\n{self.log()}"
            ) from None
        took = time.monotonic() - start
        if code != 0 or STOPPED not in self.log():
            raise ServiceFailed(f"{self.name} exited with {code} after SIGTERM:\n{self.log()}")
        return took

    def rss_mb(self) -> float:
        """Resident memory now, in MB (Linux ``/proc``)."""
        return _status_kb(self.pid, "VmRSS") / 1024

    def peak_rss_mb(self) -> float:
        """The most resident memory the process ever had, in MB: a spike between two
        samples cannot hide from it."""
        return _status_kb(self.pid, "VmHWM") / 1024


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise ServiceFailed(f"/proc/{pid}/status has no {key}")


@dataclass
class Deployment:
    """The processes of one test and the settings they share."""

    env: dict[str, str]
    logs: Path
    services: list[Service] = field(default_factory=list)

    @property
    def embedded(self) -> bool:
        """No broker URL: one ``serve`` process does everything, on SQLite."""
        return "LEADRELAY_BROKER_URL" not in self.env

    def start(self, verb: str, *args: str, name: str | None = None, wait: bool = True,
              **env: str) -> Service:
        """Start ``leadrelay VERB ARGS`` with the deployment's settings (and ``env``)."""
        name = name or f"{verb}-{len(self.services) + 1}"
        log_path = self.logs / f"{name}.log"
        environ = {**os.environ, **self.env, **env}
        with log_path.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "leadrelay.cli", verb, *args],
                env=environ, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        service = Service(name, popen, log_path)
        self.services.append(service)
        if wait:
            service.wait_ready()
        return service

    def start_all(self, *specs: tuple[str, ...]) -> list[Service]:
        """Start several processes at once, then wait until each runs (they import in
        parallel: two cores make that about twice as fast as one after the other)."""
        started = [self.start(*spec, wait=False) for spec in specs]
        for service in started:
            service.wait_ready()
        return started

    def logs_text(self, lines: int = 40, width: int = 400) -> str:
        """The end of every process's output (``lines`` lines each, cut at ``width``
        characters), for a failure message; the whole logs stay in the test's directory."""
        parts = []
        for s in self.services:
            tail = [line[:width] for line in s.log().splitlines()[-lines:]]
            parts.append(f"--- {s.name} (pid {s.pid}, {s.log_path}):\n" + "\n".join(tail))
        return "\n".join(parts)

    def stop_all(self) -> None:
        """Kill whatever still runs (a test's own stops come first; this is cleanup)."""
        for service in self.services:
            if service.alive():
                with contextlib.suppress(OSError):
                    service.resume()  # a paused process ignores SIGTERM until continued
                service.kill()


def wait_until(
    check: Callable[[], object], *, timeout: float, what: str,
    deployment: Deployment | None = None, every: float = 0.05,
) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` with the processes' logs."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            logs = deployment.logs_text() if deployment is not None else ""
            raise ServiceFailed(f"timed out after {timeout:g}s waiting for {what}\n{logs}")
        time.sleep(every)


@contextlib.contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """``with timed() as took: ...; took()`` — seconds since the block began."""
    start = time.monotonic()
    yield lambda: time.monotonic() - start
