"""Scenario 4: SOAP overhead — the ``webservice_soap`` connector over a raw cached zeep call.

Both sides call Salesforce Partner ``create`` on the same local SOAP server with a
zeep ``Client`` built once and one login; the connector goes through the engine's
transport (recorded, redacted exchange) and judges the answer, as the delivery
runner drives it. The server and both callers come from ``bench/soap_overhead.py``
(written with the connector, runnable on its own); this module runs them in the
harness: ``soap_calls`` calls per side per repetition, order alternating.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

from ..core import Context, Pending, Target, scenario

UNITS = {
    "raw_us": "µs/call",
    "connector_us": "µs/call",
    "ratio": "connector ÷ raw (time)",
    "cpu_ratio": "connector ÷ raw (CPU)",
}


def _load() -> Any:
    try:
        import leadrelay.connectors.webservice_soap  # noqa: F401

        from .. import soap_overhead
    except ImportError as exc:
        raise Pending(f"the SOAP connector or its benchmark is not there yet: {exc}") from None
    return soap_overhead


def _per_call(call: Any, n: int) -> tuple[float, float]:
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        call()
    return (time.perf_counter() - started) / n, (time.process_time() - cpu) / n


@scenario(
    "soap",
    "SOAP overhead — webservice_soap connector over a raw cached zeep call",
    headline="ratio",
    target=Target("ratio", "<=", 1.5),
    units=UNITS,
)
def soap(ctx: Context) -> dict[str, float]:
    """One repetition: warm both sides, then time each."""
    draft = _load()
    n = ctx.sizes.soap_calls
    ctx.note(
        "shape",
        f"{n} calls per side, one thread; server: asyncio responder in its "
        "own process (bench/soap_overhead.py)",
    )
    ports: Any = multiprocessing.get_context("fork").Queue()
    server = multiprocessing.get_context("fork").Process(
        target=draft._serve, args=(ports,), daemon=True
    )
    server.start()
    try:
        base = f"http://127.0.0.1:{ports.get(timeout=20)}"
        raw, connector = draft.raw_caller(base), draft.connector_caller(base)
        if not raw():
            raise RuntimeError("the raw zeep call got no id back")
        connector()  # raises unless the delivery was judged accepted
        warm = max(5, min(200, n // 5))
        _per_call(raw, warm)
        _per_call(connector, warm)
        sides = [("raw", raw), ("connector", connector)]
        if ctx.rep % 2:
            sides.reverse()
        times = {name: _per_call(call, n) for name, call in sides}
    finally:
        server.terminate()
        server.join(5)
    (rw, rc), (cw, cc) = times["raw"], times["connector"]
    return {"raw_us": rw * 1e6, "connector_us": cw * 1e6, "ratio": cw / rw, "cpu_ratio": cc / rc}
