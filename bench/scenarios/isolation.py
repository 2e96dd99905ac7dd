"""Scenario 3: isolation — a hanging CRM must not slow the healthy ones.

Two accounts on one embedded engine (SQLite, in-process broker, ``threads``
worker threads); leads alternate between their forms. Account A's form delivers
to the fast CRM. Account B's form delivers, in the control run, to a healthy CRM
too, and in the measured run to a CRM that black-holes connections (the kernel
accepts them, nothing ever answers; ``connect_timeout`` 1 s, ``read_timeout`` 2 s
in its http_post config): same leads, same intake, only B's CRM differs. The
figure is A's deliveries/s while B hangs ÷ A's deliveries/s while B is healthy;
each run stops at ``isolation_leads`` of A's deliveries or ``isolation_seconds``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from leadrelay.engine.app import Leadrelay

from ..core import Context, Target, scenario
from ..rig import EngineSpec, feed, integration_ids, probe, setup_form
from ..servers import black_hole

UNITS = {
    "healthy_alone_per_s": "A's deliveries/s, B healthy",
    "healthy_with_hang_per_s": "A's deliveries/s, B hanging",
    "ratio": "hanging ÷ healthy",
}
HANGING = {"connect_timeout": 1, "read_timeout": 2}


def _feed_until(app: Leadrelay, forms: list[int], count: int, deadline: float) -> None:
    """Feed until ``count`` leads or the deadline, whichever first (the window is the bound)."""
    with contextlib.suppress(TimeoutError):
        feed(app, forms, count, deadline=deadline)


def healthy_rate(ctx: Context, home: Path, b_url: str) -> float:
    """A's deliveries/s while B's CRM is ``b_url`` (healthy or hanging); half the leads go to B."""
    n, window = ctx.sizes.isolation_leads, ctx.sizes.isolation_seconds
    database_url = f"sqlite:///{home / 'ledger.db'}"
    app = EngineSpec.new(home, database_url, None, threads=ctx.sizes.threads).build()
    try:
        forms = [
            setup_form(app, {"name": "healthy", "url": ctx.crm.url}, account="A"),
            setup_form(app, {"name": "other", "url": b_url, "config": HANGING}, account="B"),
        ]
        healthy = integration_ids(app)["healthy"]
        with probe(database_url) as p:
            app.start_worker(threads=ctx.sizes.threads)
            app.start_sweeper()
            t0 = time.perf_counter()
            feeder = threading.Thread(
                target=_feed_until,
                args=(app, forms, n * len(forms), time.monotonic() + window),
                daemon=True,
            )
            feeder.start()
            end = time.monotonic() + window
            done = 0
            while time.monotonic() < end:
                done = p.delivered(healthy)
                if done >= n:
                    break
                time.sleep(0.1)
            elapsed = time.perf_counter() - t0
            failed, reason = p.failed_attempts(healthy)
            if failed:
                raise RuntimeError(f"{failed} healthy attempts failed: {reason}")
            feeder.join(window + 30)
    finally:
        app.close()
    return done / elapsed


@scenario(
    "isolation",
    "Isolation — a healthy CRM's throughput while another CRM hangs",
    headline="ratio",
    target=Target("ratio", ">=", 0.9),
    units=UNITS,
)
def isolation(ctx: Context) -> dict[str, float]:
    """One repetition: healthy alone, then healthy beside a black hole (order alternates)."""
    ctx.note(
        "shape",
        f"embedded, {ctx.sizes.threads} worker threads; leads alternate between "
        "account A (healthy CRM) and B (healthy in the control run, hanging with "
        f"read_timeout 2 s in the measured one); up to {ctx.sizes.isolation_leads} of A's "
        f"deliveries or {ctx.sizes.isolation_seconds:g} s",
    )
    with black_hole() as hole:
        runs = [("alone", ctx.crm.url + "?crm=b"), ("with", hole)]
        if ctx.rep % 2:
            runs.reverse()
        rates = {
            name: healthy_rate(ctx, ctx.scratch / f"iso-{ctx.rep}-{name}", url)
            for name, url in runs
        }
    return {
        "healthy_alone_per_s": rates["alone"],
        "healthy_with_hang_per_s": rates["with"],
        "ratio": rates["with"] / rates["alone"],
    }
