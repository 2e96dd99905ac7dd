"""A worker process of the PostgreSQL + Redis deployment, as the scenarios spawn it.

``python -m bench.worker SPEC_JSON``: builds a ``Leadrelay`` from the spec (the Redis
broker), starts its worker threads, prints ``{"ready": pid}``, and runs until its
standard input closes; then it stops cleanly and prints its RSS.
"""

from __future__ import annotations

import json
import sys

from .rig import EngineSpec, rss_mb


def main() -> None:
    """Run one worker until stdin closes."""
    spec = EngineSpec(**json.loads(sys.argv[1]))
    app = spec.build()
    app.start_worker(threads=spec.worker_threads)
    print(json.dumps({"ready": True, "rss_mb": rss_mb()}), flush=True)
    for _ in sys.stdin:  # a line is a request for the current RSS
        print(json.dumps({"rss_mb": rss_mb()}), flush=True)
    app.close()


if __name__ == "__main__":
    main()
