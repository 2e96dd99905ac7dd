"""Scenario: CLI start-up — how long one ``leadrelay`` command takes, as a process.

An operator's script runs ``leadrelay submit`` once a lead; an operator types ``leadrelay
--help``. Each is timed as a whole process (start, import, work, exit) on the embedded default,
against a bare ``python -c pass`` of the same interpreter timed alternately with it: the ratio
carries from machine to machine. The targets are the issue's 0.3 s (``--help``) and 0.8 s
(``submit``) on the machine of docs/benchmarks.md, where ``python -c pass`` takes about 14 ms.

Bytecode is written (``PYTHONDONTWRITEBYTECODE`` is dropped for the commands) and one
untimed run of each comes first, as on an installed machine.

- ``cli-help``: ``leadrelay --help``.
- ``cli-submit``: ``leadrelay submit --form 1 --json …`` storing one lead with one delivery.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ..core import Context, Target, scenario
from ..rig import EngineSpec, lead, setup_form

UNITS = {
    "pass_s": "s (python -c pass)",
    "command_s": "s (the command)",
    "ratio": "command ÷ python -c pass",
}


def leadrelay_command() -> list[str]:
    """The installed ``leadrelay`` script beside this interpreter, or ``python -m``."""
    script = Path(sys.executable).with_name("leadrelay")
    return [str(script)] if script.exists() else [sys.executable, "-m", "leadrelay.cli"]


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Seconds one run of ``argv`` took, start to exit; a failure stops the scenario."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} exited {done.returncode}: {done.stderr[-500:]}")
    return seconds


def compare(ctx: Context, command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Median of the command and of ``python -c pass``, run alternately, and the ratio."""
    bare = [sys.executable, "-c", "pass"]
    for warm_up in (bare, command):  # bytecode written, caches warm
        timed(warm_up, env)
    runs = 2 if ctx.smoke else 15
    base, cost = [], []
    for i in range(runs):
        pair = (bare, command) if (i + ctx.rep) % 2 == 0 else (command, bare)
        first, second = timed(pair[0], env), timed(pair[1], env)
        b, c = (first, second) if pair[0] is bare else (second, first)
        base.append(b)
        cost.append(c)
    pass_s, command_s = statistics.median(base), statistics.median(cost)
    return {"pass_s": pass_s, "command_s": command_s, "ratio": command_s / pass_s}


def environment(home: Path, spec: EngineSpec | None = None) -> dict[str, str]:
    """The commands' environment: the embedded default in ``home``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LEADRELAY_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["LEADRELAY_HOME"] = str(home)
    if spec is not None:
        env["LEADRELAY_DATABASE_URL"] = spec.database_url
        env["LEADRELAY_SECRET_KEY"] = spec.secret_key
        env["LEADRELAY_EGRESS_ALLOW"] = "127.0.0.1"
    return env


@scenario(
    "cli-help",
    "CLI start-up — leadrelay --help",
    headline="ratio",
    target=Target("ratio", "<=", 21.0),
    units=UNITS,
)
def cli_help(ctx: Context) -> dict[str, float]:
    """One repetition: ``--help`` against ``python -c pass``."""
    home = ctx.scratch / f"cli-help-{ctx.rep}"
    home.mkdir(parents=True, exist_ok=True)
    ctx.note("shape", "leadrelay --help, as a process; medians of 15 alternating pairs")
    return compare(ctx, [*leadrelay_command(), "--help"], environment(home))


@scenario(
    "cli-submit",
    "CLI start-up — leadrelay submit (embedded default)",
    headline="ratio",
    target=Target("ratio", "<=", 57.0),
    units=UNITS,
)
def cli_submit(ctx: Context) -> dict[str, float]:
    """One repetition: ``submit`` of one lead with one active integration."""
    home = ctx.scratch / f"cli-submit-{ctx.rep}"
    shutil.rmtree(home, ignore_errors=True)
    spec = EngineSpec.new(home, f"sqlite:///{home / 'leadrelay.db'}")
    app = spec.build()
    try:
        form = setup_form(app, {"url": ctx.crm.url})
    finally:
        app.close()
    ctx.note("shape", "leadrelay submit of one lead (one active integration) on SQLite, as a "
                      "process; medians of 15 alternating pairs")
    command = [*leadrelay_command(), "submit", "--form", str(form), "--json", json.dumps(lead(0))]
    return compare(ctx, command, environment(home, spec))
