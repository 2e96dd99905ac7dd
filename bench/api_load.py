"""The API scenarios' load client: keep-alive connections posting one JSON body.

Runs as its own process (``python -m bench.api_load``), so the server under test has
the interpreter of the benchmark to itself; prints one JSON line: requests per second,
the status codes seen and, with ``--latencies``, each request's time in milliseconds.
Both sides of a ratio are measured with this same client.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import threading
import time
from collections import Counter
from urllib.parse import urlsplit


def post_many(url: str, body: bytes, count: int, latencies: list[float] | None,
              statuses: Counter[int], lock: threading.Lock) -> None:
    """``count`` POSTs of ``body`` to ``url`` on one keep-alive connection."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80)
    conn.connect()
    # A request's head and body may leave in two writes: without this, each request
    # would wait for the server's delayed ACK (~40 ms), like any client with Nagle on.
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
    seen: Counter[int] = Counter()
    mine: list[float] = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            conn.request("POST", parts.path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append((time.perf_counter() - started) * 1000)
            seen[response.status] += 1
    finally:
        conn.close()
    with lock:
        statuses.update(seen)
        if latencies is not None:
            latencies.extend(mine)


def main(argv: list[str] | None = None) -> None:
    """Post, then print the figures as one JSON line."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--body", required=True, help="the JSON body of every request")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--latencies", action="store_true")
    args = p.parse_args(argv)
    body = args.body.encode()
    latencies: list[float] | None = [] if args.latencies else None
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    share, extra = divmod(args.count, args.connections)
    threads = [
        threading.Thread(
            target=post_many,
            args=(args.url, body, share + (1 if i < extra else 0), latencies, statuses, lock),
        )
        for i in range(args.connections)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    print(json.dumps({
        "per_s": args.count / elapsed,
        "statuses": {str(k): v for k, v in statuses.items()},
        "latencies_ms": latencies,
    }))


if __name__ == "__main__":
    main()
