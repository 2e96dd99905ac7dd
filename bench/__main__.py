"""``python -m bench``: run the scenarios, print the table, write JSON and docs/benchmarks.md."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from . import report
from .core import (
    RESULTS,
    ROOT,
    Context,
    Sizes,
    machine,
    run_scenario,
    scratch_dir,
    select,
    write_json,
)
from .servers import crm_server, wrk_ceiling
from .services import POSTGRES_URL, REDIS_URL


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="leadrelay benchmarks: engine vs a raw baseline, as ratios in one run.",
    )
    p.add_argument(
        "-s",
        "--scenario",
        action="append",
        metavar="NAME",
        help="run scenarios whose name matches (glob or prefix); repeatable",
    )
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--reps", type=int, default=None, help="repetitions per scenario (3)")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, one repetition, no docs: checks every scenario runs",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=1500.0,
        help="seconds for the whole run; later scenarios are skipped after it",
    )
    p.add_argument(
        "--postgres-url",
        default=POSTGRES_URL,
        help="PostgreSQL server on which scratch databases are created",
    )
    p.add_argument("--redis-url", default=REDIS_URL, help="Redis database (flushed!)")
    p.add_argument("--no-wrk", action="store_true", help="skip the CRM ceiling measurement")
    p.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    p.add_argument(
        "--merge",
        action="store_true",
        help="replace only the scenarios run now in the previous results (latest.json) and "
        "keep the others: the docs then name both runs",
    )
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--results", type=Path, default=RESULTS, help="where JSON results go")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    sizes = p.add_argument_group("sizes (defaults: the full run)")
    for f in dataclasses.fields(Sizes):
        flag = "--" + f.name.replace("_", "-")
        sizes.add_argument(
            flag,
            type=type(f.default),
            default=None,
            dest=f"size_{f.name}",
            help=f"default {f.default:,}"
            if isinstance(f.default, int)
            else f"default {f.default:g}",
        )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 0 when every scenario ran (targets met or not)."""
    args = parser().parse_args(argv)
    chosen = select(args.scenario)
    if args.list:
        for sc in chosen:
            target = f"  [target {sc.target}]" if sc.target else ""
            print(f"{sc.name:24} {sc.title}{target}")
        return 0
    sizes = Sizes.smoke() if args.smoke else Sizes()
    overrides = {
        f.name: getattr(args, f"size_{f.name}")
        for f in dataclasses.fields(Sizes)
        if getattr(args, f"size_{f.name}") is not None
    }
    sizes = dataclasses.replace(sizes, **overrides)
    default_reps = args.reps or (1 if args.smoke else 3)
    started = time.monotonic()
    results: dict = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(
            ["python -m bench", shlex.join(argv if argv is not None else sys.argv[1:])]
        ).strip(),
        "machine": machine(),
        "options": {"reps": default_reps, "smoke": args.smoke, "sizes": dataclasses.asdict(sizes)},
        "scenarios": [],
    }
    with scratch_dir() as scratch, crm_server() as crm:
        if not args.no_wrk and not args.smoke:
            wrk = wrk_ceiling(crm.url)
            results["crm_ceiling"] = (
                {"wrk_per_s": wrk, "wrk": "2 threads, 16 connections, 5 s, form POSTs"}
                if wrk
                else {"reason": "wrk is not installed (apt-get install wrk)"}
            )
            if wrk:
                print(f"local CRM ceiling (wrk): {wrk:,.0f} POSTs/s", file=sys.stderr)
        ctx = Context(
            sizes=sizes,
            crm=crm,
            scratch=scratch,
            postgres_url=args.postgres_url,
            redis_url=args.redis_url,
            smoke=args.smoke,
            verbose=not args.quiet,
        )
        for sc in chosen:
            left = args.budget - (time.monotonic() - started)
            if left <= 0:
                results["scenarios"].append(
                    {
                        "name": sc.name,
                        "title": sc.title,
                        "status": "skipped",
                        "reason": "the run's time budget was spent",
                        "stats": {},
                        "notes": {},
                        "units": sc.units,
                        "target": None,
                        "verdict": "-",
                        "reps": [],
                        "headline": sc.headline,
                        "seconds": 0,
                    }
                )
                continue
            reps = args.reps or sc.reps or default_reps
            outcome = run_scenario(sc, ctx, reps, budget=left)
            results["scenarios"].append(outcome.as_json())
    results["seconds"] = time.monotonic() - started
    for sc_result in results["scenarios"]:
        sc_result["run"] = results["started"]
    if args.merge:
        results = merge(results, args.results / "latest.json")
    print()
    print(report.table(results))
    path = write_json(results, args.results)
    print(f"\nresults: {path}")
    if not args.no_docs and not args.smoke:
        report.write_docs(results, args.docs)
        print(f"docs: {args.docs}")
    failed = [s["name"] for s in results["scenarios"] if s["status"] == "failed"]
    return 1 if failed else 0


def merge(new: dict, previous_path: Path) -> dict:
    """``new``'s scenarios in place of the same ones of the previous results."""
    if not previous_path.exists():
        return new
    old = json.loads(previous_path.read_text())
    fresh = {s["name"]: s for s in new["scenarios"]}
    merged = [
        fresh.pop(s["name"], {**s, "run": s.get("run", old["started"])}) for s in old["scenarios"]
    ]
    merged += fresh.values()
    reruns = [
        *old.get("reruns", []),
        {
            "started": new["started"],
            "command": new["command"],
            "scenarios": [s["name"] for s in new["scenarios"]],
        },
    ]
    ceiling = new.get("crm_ceiling") or old.get("crm_ceiling")
    return {**old, "scenarios": merged, "reruns": reruns, "crm_ceiling": ceiling}


if __name__ == "__main__":
    sys.exit(main())
