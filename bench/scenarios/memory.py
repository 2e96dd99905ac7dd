"""Scenario 7: worker memory — RSS growth over ``memory_deliveries`` deliveries (< 50 MB).

A child process runs the embedded engine (the one process of ``leadrelay serve``:
intake, broker, worker threads, sweeper) and delivers that many leads to the CRM.
Its RSS is read after a warm-up (5 % of the deliveries, at least 1,000: connections,
caches and code paths in place) and at the end, both after a ``gc.collect()``.
One repetition by default: the run is long.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from ..core import ROOT, Context, Target, scenario

UNITS = {
    "rss_after_warmup_mb": "MiB",
    "rss_end_mb": "MiB",
    "growth_mb": "MiB",
    "deliveries_per_s": "deliveries/s",
}


@scenario(
    "memory",
    "Worker memory — RSS growth over 100,000 deliveries",
    headline="growth_mb",
    target=Target("growth_mb", "<=", 50),
    reps=1,
    units=UNITS,
)
def memory(ctx: Context) -> dict[str, float]:
    """One long repetition in a child process."""
    total = ctx.sizes.memory_deliveries
    warmup = min(total // 2, max(1_000, total // 20))
    home = ctx.scratch / f"memory-{ctx.rep}"
    home.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "home": str(home),
        "deliveries": total,
        "warmup": warmup,
        "batch": 1_000,
        "threads": ctx.sizes.threads,
        "url": ctx.crm.url,
        "timeout": ctx.sizes.timeout * max(1, total // 10_000),
    }
    ctx.note(
        "shape",
        f"{total:,} deliveries, embedded engine in a child process, "
        f"{ctx.sizes.threads} worker threads, fed 1,000 leads per submit_many; RSS after "
        f"{warmup:,} deliveries and at the end",
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory_child", json.dumps(payload)],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env=env,
        timeout=payload["timeout"] + 60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory child failed: {done.stderr.strip()[-1500:]}")
    s = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "rss_after_warmup_mb": s["start_mb"],
        "rss_end_mb": s["end_mb"],
        "growth_mb": s["end_mb"] - s["start_mb"],
        "deliveries_per_s": s["per_s"],
    }
