"""The process whose peak memory ``import-memory`` watches:
``python -m bench.import_child PAYLOAD``.

An embedded engine imports a CSV from disk with integration off; its peak RSS
(``VmHWM``) is read once a tenth of the rows are stored and at the end.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from leadrelay.engine.imports import ImportOptions, parse_integrate

from .rig import EngineSpec, setup_form


def peak_mb() -> float:
    """This process's peak resident set size, in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def main() -> None:
    """Import, sample, print one JSON line."""
    args = json.loads(sys.argv[1])
    home, rows = Path(args["home"]), args["rows"]
    app = EngineSpec.new(home, f"sqlite:///{home / 'ledger.db'}", None).build()
    samples: dict[str, float] = {}

    def progress(report: object) -> None:
        if "tenth_mb" not in samples and getattr(report, "rows", 0) >= rows // 10:
            samples["tenth_mb"] = peak_mb()

    try:
        form = setup_form(app, {"url": args["url"]})
        with open(args["file"], "rb") as stream:
            t0 = time.perf_counter()
            report = app.imports.open(form, stream, filename="big.csv", options=ImportOptions(
                integrate=parse_integrate("off"))).run(progress)
            took = time.perf_counter() - t0
        samples.setdefault("tenth_mb", peak_mb())
        samples["end_mb"] = peak_mb()
        samples["per_s"] = report.stored / took
        print(json.dumps(samples), flush=True)
    finally:
        app.close()


if __name__ == "__main__":
    main()
