"""Scenario 5: proxy overhead — the static-IP variant over direct delivery.

One local forward proxy (proxy.py, the one the static-IP tests run; PyPI
``proxy.py``) in its own process. Three measures per repetition, same leads, same
concurrency (the embedded engine, ``threads`` worker threads):

- ``direct_per_s``: ``http_post`` straight to the CRM;
- ``static_ip_per_s``: the same integration with ``static_ip_pool = "default"``,
  whose pool is that proxy (so every POST goes through it);
- ``raw_proxy_per_s``: a raw ``requests`` loop through the same proxy: what the
  proxy itself allows at this concurrency.

``overhead`` is direct ÷ static-IP (how many times longer a static-IP delivery
takes); ``ratio_vs_raw`` is static-IP ÷ raw through the proxy (the engine's share
of that ceiling).
"""

from __future__ import annotations

import subprocess
import sys

from .. import raw
from ..core import Context, Pending, scenario
from ..servers import free_port, stop_process, wait_listening
from .throughput import embedded_rate

UNITS = {
    "direct_per_s": "deliveries/s",
    "static_ip_per_s": "deliveries/s",
    "raw_proxy_per_s": "POSTs/s",
    "overhead": "direct ÷ static-IP",
    "ratio_vs_raw": "static-IP ÷ raw via proxy",
}

PLUGINS_TOML = """[proxies.default]
proxies = [
  {{name = "bench-egress", url = "http://127.0.0.1:{port}", egress_ips = ["203.0.113.10"]}},
]
"""


def _check_available() -> None:
    try:
        import proxy  # noqa: F401

        from leadrelay.engine import proxies  # noqa: F401
    except ImportError as exc:
        raise Pending(f"static-IP pools or proxy.py are not installed: {exc}") from None


@scenario(
    "proxy",
    "Proxy overhead — static-IP variant over direct, through one local proxy",
    headline="overhead",
    units=UNITS,
)
def proxy_overhead(ctx: Context) -> dict[str, float]:
    """One repetition: direct, static-IP and raw-through-proxy (order rotates)."""
    _check_available()
    n, threads = ctx.sizes.proxy_calls, ctx.sizes.threads
    home = ctx.scratch / f"proxy-{ctx.rep}"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = home / "proxy.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "proxy",
            "--hostname",
            "127.0.0.1",
            "--port",
            str(port),
            "--num-workers",
            "1",
            "--num-acceptors",
            "1",
            "--log-file",
            str(log),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ctx.note(
        "shape",
        f"{n} leads per measure, embedded engine, {threads} worker threads; "
        "proxy.py --num-workers 1 --num-acceptors 1",
    )
    try:
        wait_listening(port, proc)
        plugins = home / "plugins.toml"
        plugins.write_text(PLUGINS_TOML.format(port=port))
        runs = {
            "direct_per_s": lambda: embedded_rate(
                ctx, f"sqlite:///{home / 'direct.db'}", n, home / "direct"
            ),
            "static_ip_per_s": lambda: embedded_rate(
                ctx,
                f"sqlite:///{home / 'static.db'}",
                n,
                home / "static",
                plugins_file=plugins,
                integration={"url": ctx.crm.url, "static_ip_pool": "default"},
            ),
            "raw_proxy_per_s": lambda: raw.rate(
                ctx.crm.url, n, threads, proxy=f"http://127.0.0.1:{port}"
            ),
        }
        order = list(runs)
        k = ctx.rep % len(order)
        out = {name: runs[name]() for name in order[k:] + order[:k]}
    finally:
        stop_process(proc)
    out = {name: out[name] for name in runs}
    out["overhead"] = out["direct_per_s"] / out["static_ip_per_s"]
    out["ratio_vs_raw"] = out["static_ip_per_s"] / out["raw_proxy_per_s"]
    return out
