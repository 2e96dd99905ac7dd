"""Helpers for the CLI tests: invoking ``leadrelay`` in-process or as its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from click.testing import CliRunner, Result

from leadrelay.cli import main

LEAD = {"first_name": "Jane", "last_name": "Doe", "email": "jane.doe@example.com",
        "company": "ACME Corp"}
#: Fail at once: one attempt, then the failed collection.
ONE_TRY = {"max_attempts": 1}


@dataclass
class Cli:
    """Runs ``leadrelay`` in-process with a fixed environment."""

    env: dict[str, str | None]
    runner: CliRunner = field(default_factory=CliRunner)

    def __call__(self, *args: str, input: str | None = None, code: int = 0,
                 env: dict[str, str | None] | None = None) -> Result:
        """Invoke ``leadrelay ARGS``; assert the exit code and that no traceback leaked."""
        result = self.runner.invoke(main, list(args), input=input,
                                    env={**self.env, **(env or {})}, prog_name="leadrelay",
                                    catch_exceptions=False)
        assert "Traceback" not in result.output, result.output
        assert result.exit_code == code, (
            f"exit {result.exit_code} != {code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        )
        return result

    def json(self, *args: str, **kw: Any) -> Any:
        """Invoke and parse standard output as JSON."""
        return json.loads(self(*args, **kw).stdout)

    def error(self, *args: str, code: int = 2, **kw: Any) -> str:
        """Invoke a command that must fail; return its one-line error (without ``error: ``)."""
        result = self(*args, code=code, **kw)
        # Warnings (a plugin left out) may come first; the error is one line, the last.
        lines = result.stderr.splitlines()
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
        assert result.stdout == "", result.stdout
        return errors[0].removeprefix("error: ")

    def environ(self) -> dict[str, str]:
        """The process environment with this CLI's settings, for subprocesses."""
        merged = {**os.environ, **self.env}
        return {k: v for k, v in merged.items() if v is not None}


def add_integration(cli: Cli, form: int, url: str, *extra: str, **config: Any) -> int:
    """An active ``http_post`` integration to ``url``, created through the CLI."""
    body = json.dumps({"url": url, **config})
    created = cli.json("integrations", "create", "--form", str(form), "--name", "CRM",
                       "--connector", "http_post", "--config", body, "--active", "--json", *extra)
    return int(created["id"])


def wait_for(
    check: Callable[[], bool], timeout: float = 20.0, what: str = "condition",
    logs: Sequence[subprocess.Popen[str]] = (),
) -> None:
    """Poll ``check`` until it holds; after ``timeout`` seconds stop the processes in
    ``logs`` and fail the test with what they printed."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            printed = "\n".join(f"--- {p.args!r}:\n{stop(p)[1]}" for p in logs)
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}\n{printed}")
        time.sleep(0.25)


def start(cli: Cli, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``leadrelay ARGS`` as its own process (for serve, worker, scheduler)."""
    return subprocess.Popen(
        [sys.executable, "-m", "leadrelay.cli", *args],
        env={**cli.environ(), **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def stop(process: subprocess.Popen[str], timeout: float = 20.0) -> tuple[int, str]:
    """SIGTERM a process started by :func:`start`; its exit code and standard error."""
    if process.poll() is None:
        process.terminate()
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        pytest.fail(f"did not stop within {timeout:g}s after SIGTERM:\n{stderr}")
    return process.returncode, stderr
