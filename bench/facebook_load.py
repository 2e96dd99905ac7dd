"""The Facebook webhook's load client: keep-alive connections posting signed notifications.

Runs as its own process (``python -m bench.facebook_load``), like ``bench.api_load``, so
the server under test has the benchmark's interpreter to itself. Every notification names
a new ``leadgen_id`` (a duplicate would take the shorter path) and is signed with the app
secret over its exact bytes, as Facebook does. Prints one JSON line: notifications per
second and the status codes seen.
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

from leadrelay.facebook.signature import sign


def body_for(page_id: str, form_id: str, leadgen_id: int) -> bytes:
    """A one-change notification for ``leadgen_id``."""
    return json.dumps({"object": "page", "entry": [{"id": page_id, "time": 1764684000,
        "changes": [{"field": "leadgen", "value": {
            "ad_id": "23851234567890123", "adgroup_id": "23851234567890123",
            "form_id": form_id, "leadgen_id": str(leadgen_id), "page_id": page_id,
            "created_time": 1764683998}}]}]}).encode()


def post_many(url: str, secret: str, page_id: str, form_id: str, ids: range,
              statuses: Counter[int], lock: threading.Lock) -> None:
    """One signed notification per id of ``ids`` on one keep-alive connection."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    seen: Counter[int] = Counter()
    try:
        for leadgen_id in ids:
            body = body_for(page_id, form_id, leadgen_id)
            conn.request("POST", parts.path, body=body, headers={
                "Content-Type": "application/json", "Connection": "keep-alive",
                "X-Hub-Signature-256": sign(body, secret)})
            response = conn.getresponse()
            response.read()
            seen[response.status] += 1
    finally:
        conn.close()
    with lock:
        statuses.update(seen)


def main(argv: list[str] | None = None) -> None:
    """Post, then print the figures as one JSON line."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--page", required=True)
    p.add_argument("--form", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--first-id", type=int, default=9_000_000_000)
    args = p.parse_args(argv)
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    share, extra = divmod(args.count, args.connections)
    threads, start = [], args.first_id
    for i in range(args.connections):
        n = share + (1 if i < extra else 0)
        threads.append(threading.Thread(target=post_many, args=(
            args.url, args.secret, args.page, args.form, range(start, start + n), statuses,
            lock)))
        start += n
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    print(json.dumps({"per_s": args.count / elapsed,
                      "statuses": {str(k): v for k, v in statuses.items()}}))


if __name__ == "__main__":
    main()
