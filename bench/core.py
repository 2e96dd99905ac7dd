"""The harness: scenarios, their sizes, repetitions, statistics and results.

A scenario is a function running *one repetition* and returning its metrics as
``{name: value}``: the engine's figure, the baseline measured in the same
repetition, and their ratio. :func:`run` repeats it, bounds it in time, and keeps
median, min and max of every metric. Adding a scenario is one decorated function
in a module of :mod:`bench.scenarios`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .servers import CrmServer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


class Skip(Exception):
    """The scenario cannot run here (a service or a component is missing)."""


class Pending(Skip):
    """The scenario's component does not exist yet (another part of the project is building it)."""


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is. ``--smoke`` shrinks them all to seconds."""

    leads: int = 10_000
    """Scenario 1 and 6: leads delivered end to end per repetition."""
    intake_leads: int = 3_000
    """Scenario 2: leads submitted per repetition."""
    isolation_leads: int = 3_000
    """Scenario 3: healthy leads per repetition (the run also stops at ``isolation_seconds``)."""
    isolation_seconds: float = 15.0
    soap_calls: int = 1_000
    proxy_calls: int = 2_000
    growth_attempts: int = 1_000_000
    """Scenario 6: attempts in the ledger before the run."""
    growth_leads: int = 10_000
    """Scenario 6: leads delivered per measure (full ledger, empty ledger): as many as
    scenario 1, so that its ratio is "the same throughput ratio measured again"."""
    memory_deliveries: int = 100_000
    api_leads: int = 3_000
    """API intake: posts per measure."""
    realtime_posts: int = 300
    """Real-time overhead: sequential posts per repetition."""
    threads: int = 8
    """Worker threads per process (the engine's default) and the raw loops' concurrency."""
    workers: int = 2
    """Worker processes of the PostgreSQL + Redis deployment."""
    intake_batch: int = 1
    """Leads per ``submit``/``submit_many`` call while feeding throughput scenarios."""
    feeders: int = 4
    """Threads submitting leads concurrently in throughput scenarios (API request threads):
    one thread alone is bound by its commit latency on PostgreSQL, not by the engine."""
    timeout: float = 300.0
    """Seconds one repetition may take before it is abandoned."""
    import_rows: int = 50_000
    """Imports: CSV rows per throughput measure, and of the throttled import."""
    import_memory_rows: int = 1_000_000
    """Imports: rows of the CSV whose peak memory is read."""
    import_rate: int = 200
    """Imports: the throttled import's rate per integration, per second."""
    live_leads: int = 200
    """Imports: live leads timed idle, then during the throttled import."""

    @classmethod
    def smoke(cls) -> Sizes:
        """Sizes that run each scenario in a few seconds (the smoke test)."""
        return cls(
            leads=60,
            intake_leads=40,
            isolation_leads=40,
            isolation_seconds=3.0,
            soap_calls=10,
            proxy_calls=20,
            growth_attempts=2_000,
            growth_leads=40,
            memory_deliveries=200,
            api_leads=40,
            realtime_posts=10,
            threads=4,
            workers=2,
            feeders=2,
            timeout=60.0,
            import_rows=300,
            import_memory_rows=2_000,
            live_leads=10,
        )


@dataclass(frozen=True)
class Target:
    """What a metric should reach: ``metric op value`` (``ratio >= 0.6``)."""

    metric: str
    op: str
    value: float

    def met(self, value: float) -> bool:
        """Whether ``value`` meets the target."""
        return value >= self.value if self.op == ">=" else value <= self.value

    def __str__(self) -> str:
        return f"{self.metric} {'≥' if self.op == '>=' else '≤'} {self.value:g}"


@dataclass
class Context:
    """What a repetition gets: sizes, services, the shared CRM, a scratch directory."""

    sizes: Sizes
    crm: CrmServer
    scratch: Path
    postgres_url: str
    redis_url: str
    smoke: bool = False
    notes: dict[str, str] = field(default_factory=dict)
    verbose: bool = True
    rep: int = 0
    """The repetition running (0-based): scenarios alternate what they measure first."""

    def log(self, message: str) -> None:
        """Progress, on stderr."""
        if self.verbose:
            print(f"  · {message}", file=sys.stderr, flush=True)

    def note(self, key: str, text: str) -> None:
        """A fact about this run worth keeping with the results (sizes actually used...)."""
        self.notes[key] = text

    def deadline(self) -> float:
        """The monotonic time by which a repetition must be done."""
        return time.monotonic() + self.sizes.timeout


Repetition = Callable[[Context], dict[str, float]]


@dataclass(frozen=True)
class Scenario:
    """One named scenario: a repetition function, its headline metric and target."""

    name: str
    title: str
    run: Repetition
    headline: str
    target: Target | None = None
    reps: int | None = None
    """Repetitions when ``--reps`` is not given (None: the run's default)."""
    units: dict[str, str] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    """``postgres`` and/or ``redis``: checked before the first repetition."""


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str,
    title: str,
    *,
    headline: str,
    target: Target | None = None,
    reps: int | None = None,
    units: dict[str, str] | None = None,
    needs: tuple[str, ...] = (),
) -> Callable[[Repetition], Repetition]:
    """Register a repetition function as scenario ``name``."""

    def register(fn: Repetition) -> Repetition:
        SCENARIOS[name] = Scenario(name, title, fn, headline, target, reps, units or {}, needs)
        return fn

    return register


def select(patterns: list[str] | None) -> list[Scenario]:
    """Scenarios whose name matches any of ``patterns`` (globs or prefixes), in order."""
    from . import scenarios  # noqa: F401 - registers them

    if not patterns:
        return list(SCENARIOS.values())
    chosen = [
        s
        for s in SCENARIOS.values()
        if any(fnmatch.fnmatch(s.name, p) or s.name.startswith(p) for p in patterns)
    ]
    if not chosen:
        known = ", ".join(SCENARIOS)
        raise SystemExit(f"no scenario matches {' '.join(patterns)} (known: {known})")
    return chosen


@dataclass
class Outcome:
    """Every repetition of one scenario, or why it did not run."""

    scenario: Scenario
    status: str = "ok"
    """``ok``, ``skipped``, ``pending`` or ``failed``."""
    reason: str = ""
    reps: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    notes: dict[str, str] = field(default_factory=dict)

    def stats(self) -> dict[str, dict[str, float]]:
        """Median, min and max of each metric over the repetitions."""
        names = list(dict.fromkeys(k for r in self.reps for k in r))
        out = {}
        for name in names:
            values = [r[name] for r in self.reps if name in r]
            out[name] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "n": len(values),
            }
        return out

    def verdict(self) -> str:
        """``met``, ``short`` or ``-`` (no target, or no figures)."""
        target = self.scenario.target
        stats = self.stats()
        if target is None or target.metric not in stats:
            return "-"
        return "met" if target.met(stats[target.metric]["median"]) else "short"

    def as_json(self) -> dict[str, Any]:
        """The outcome as stored in ``bench/results/*.json``."""
        s = self.scenario
        return {
            "name": s.name,
            "title": s.title,
            "status": self.status,
            "reason": self.reason,
            "headline": s.headline,
            "target": dataclasses.asdict(s.target) if s.target else None,
            "verdict": self.verdict(),
            "units": s.units,
            "seconds": round(self.seconds, 1),
            "reps": self.reps,
            "stats": self.stats(),
            "notes": self.notes,
        }


def run_scenario(
    sc: Scenario,
    ctx: Context,
    reps: int,
    *,
    budget: float | None = None,
    raise_errors: bool = False,
) -> Outcome:
    """Run ``reps`` repetitions of ``sc`` (fewer if ``budget`` seconds run out)."""
    from .services import check_needs

    outcome = Outcome(sc)
    started = time.monotonic()
    ctx.notes = outcome.notes
    try:
        check_needs(sc.needs, ctx)
        for i in range(reps):
            if i and budget is not None and time.monotonic() - started > budget:
                outcome.notes["reps"] = f"stopped after {i} of {reps}: time budget spent"
                break
            ctx.log(f"{sc.name}: repetition {i + 1}/{reps}")
            ctx.rep = i
            metrics = sc.run(ctx)
            ctx.log(f"{sc.name}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items()))
            outcome.reps.append(metrics)
    except Pending as exc:
        outcome.status, outcome.reason = "pending", str(exc)
    except Skip as exc:
        outcome.status, outcome.reason = "skipped", str(exc)
    except Exception as exc:
        if raise_errors:
            raise
        outcome.status = "failed"
        outcome.reason = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    outcome.seconds = time.monotonic() - started
    return outcome


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temporary directory for ledgers, settings and logs of one run."""
    with tempfile.TemporaryDirectory(prefix="leadrelay-bench-") as d:
        yield Path(d)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def write_json(payload: dict[str, Any], directory: Path = RESULTS) -> Path:
    """Write a run's results as ``bench/results/<timestamp>.json`` (and ``latest.json``)."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{stamp}.json"
    text = json.dumps(payload, indent=2, sort_keys=False)
    path.write_text(text)
    (directory / "latest.json").write_text(text)
    return path


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if value else "0"


fmt = _fmt
