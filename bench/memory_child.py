"""The process whose memory scenario 7 watches: ``python -m bench.memory_child PAYLOAD``.

An embedded engine (SQLite, in-process broker, worker threads) delivering
``deliveries`` leads to the CRM, fed in batches so that at most two batches wait
at any time (the queue itself never holds many messages). It prints its RSS after
``warmup`` deliveries and at the end, each after a ``gc.collect()``.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

from .rig import EngineSpec, feed, probe, rss_mb, setup_form


def main() -> None:
    """Deliver, sample, print one JSON line."""
    args = json.loads(sys.argv[1])
    home, total, warmup = Path(args["home"]), args["deliveries"], args["warmup"]
    batch, threads = args["batch"], args["threads"]
    database_url = f"sqlite:///{home / 'ledger.db'}"
    app = EngineSpec.new(home, database_url, None, threads=threads).build()
    deadline = time.monotonic() + args["timeout"]
    samples: dict[str, float] = {}
    try:
        form = setup_form(app, {"url": args["url"]})
        app.start_worker(threads=threads)
        app.start_sweeper()
        with probe(database_url) as p:
            sent = 0
            t0 = time.perf_counter()
            while sent < total:
                n = min(batch, total - sent)
                feed(app, [form], n, batch=n, start=sent, deadline=deadline)
                sent += n
                p.wait_delivered(max(0, sent - batch), deadline)  # two batches in flight
                if "start_mb" not in samples and sent >= warmup:
                    p.wait_delivered(sent, deadline)
                    gc.collect()
                    samples["start_mb"] = rss_mb()
                    samples["start_at"] = sent
            p.wait_delivered(total, deadline)
            elapsed = time.perf_counter() - t0
        gc.collect()
        samples["end_mb"] = rss_mb()
        samples["per_s"] = total / elapsed
    finally:
        app.close()
    print(json.dumps(samples), flush=True)


if __name__ == "__main__":
    main()
