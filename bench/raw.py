"""The baseline: a raw ``requests.Session`` loop POSTing the same bodies to the same server.

The session is configured the way the engine's transport configures its own
(``trust_env`` off, a pool as large as the thread count), so the ratio measures
what the engine adds, not a difference of HTTP client settings. ``threads``
threads share one session, like the engine's worker threads share an
integration's session; a process is one of the "2 processes" of the production
shape when run as ``python -m bench.raw PAYLOAD_JSON``.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from typing import Any

import requests
import requests.adapters

from .rig import form_body, new_key

HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


class _NoDelayProxyAdapter(requests.adapters.HTTPAdapter):
    """``TCP_NODELAY`` on connections to a proxy too, as the engine's static-IP transport
    sets it: requests leaves it off there, and every POST then stalls ~40 ms (Nagle)."""

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs.setdefault("socket_options", [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        return super().proxy_manager_for(proxy, **proxy_kwargs)


def session(pool: int = 16, proxy: str | None = None) -> requests.Session:
    """A session like the engine's: no environment scan, a pool per thread."""
    s = requests.Session()
    s.trust_env = False
    adapter = _NoDelayProxyAdapter(pool_connections=4, pool_maxsize=max(pool, 1))
    s.mount("http://", adapter)
    if proxy:
        s.proxies = {"http": proxy, "https": proxy}
    return s


def post_loop(
    url: str,
    count: int,
    threads: int,
    *,
    start: int = 0,
    proxy: str | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """POST ``count`` lead bodies with ``threads`` threads; wall-clock start/end and errors."""
    s = session(threads, proxy)
    bodies = [form_body(start + i) for i in range(count)]
    lock = threading.Lock()
    state: dict[str, Any] = {"next": 0, "errors": 0, "error": ""}
    end_by = deadline or time.monotonic() + 600

    def work() -> None:
        while True:
            with lock:
                i = state["next"]
                state["next"] = i + 1
            if i >= count or time.monotonic() > end_by:
                return
            try:
                r = s.post(
                    url,
                    data=bodies[i],
                    headers={**HEADERS, "Idempotency-Key": new_key()},
                    timeout=(5, 30),
                    allow_redirects=False,
                )
                r.content  # noqa: B018 - read the body, as the engine does
                if r.status_code >= 300:
                    raise RuntimeError(f"HTTP {r.status_code}")
            except Exception as exc:
                with lock:
                    state["errors"] += 1
                    state["error"] = f"{type(exc).__name__}: {exc}"

    pool = [threading.Thread(target=work) for _ in range(threads)]
    started, cpu = time.time(), time.process_time()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    ended, cpu = time.time(), time.process_time() - cpu
    s.close()
    sent = min(state["next"], count)
    if sent < count:
        raise TimeoutError(f"raw loop sent {sent} of {count} in time")
    if state["errors"]:
        raise RuntimeError(f"raw loop: {state['errors']} errors, e.g. {state['error']}")
    return {"start": started, "end": ended, "sent": sent, "cpu": cpu}


def rate(url: str, count: int, threads: int, **kw: Any) -> float:
    """Requests/s of one in-process loop."""
    return measure(url, count, threads, **kw)[0]


def measure(url: str, count: int, threads: int, **kw: Any) -> tuple[float, float]:
    """Requests/s of one in-process loop, and its CPU milliseconds per request."""
    r = post_loop(url, count, threads, **kw)
    return r["sent"] / (r["end"] - r["start"]), r["cpu"] * 1000 / r["sent"]


def main() -> None:
    """Child mode: say ready, wait for ``go``, run the loop, print its timings."""
    args = json.loads(sys.argv[1])
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    print(json.dumps(post_loop(**args)), flush=True)


if __name__ == "__main__":
    main()


def rate_processes(url: str, count: int, processes: int, threads: int, **kw: Any) -> float:
    """Requests/s of ``processes`` child loops (see :func:`measure_processes`)."""
    return measure_processes(url, count, processes, threads, **kw)[0]


def measure_processes(
    url: str,
    count: int,
    processes: int,
    threads: int,
    *,
    proxy: str | None = None,
    timeout: float = 300.0,
) -> tuple[float, float]:
    """Requests/s of ``processes`` loops in child processes, ``count`` requests in all,
    and their CPU milliseconds per request.

    Each child starts, says ready, and is released at the same moment; the rate is
    every request over the span from the first start to the last end.
    """
    from .rig import ChildProcess

    share = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    children = [
        ChildProcess(
            "raw",
            {"url": url, "count": n, "threads": threads, "start": sum(share[:i]), "proxy": proxy},
        )
        for i, n in enumerate(share)
    ]
    try:
        for c in children:
            c.wait_ready()
        for c in children:
            c.say("go")
        results = [c.result(timeout) for c in children]
    finally:
        for c in children:
            c.stop()
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    sent = sum(r["sent"] for r in results)
    return sent / span, sum(r["cpu"] for r in results) * 1000 / sent
