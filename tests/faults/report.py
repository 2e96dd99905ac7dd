"""The figures of ``docs/reliability.md``, measured by the fault suite and written back.

Each scenario records what it measured (:class:`FigureBook`); run with
``--reliability-report``, the suite rewrites the table between the markers of
``docs/reliability.md`` at the end of the session. As a script it runs the suite at the
issue's sizes and does just that::

    python -m tests.faults.report            # --full sizes (a few minutes)
    python -m tests.faults.report --small    # the test command's sizes
    python -m tests.faults.report -- -k kill # extra pytest arguments after --
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
START = "<!-- figures:start: written by `python -m tests.faults.report`, do not edit -->"
END = "<!-- figures:end -->"

#: The table's columns: (key of a recorded row, heading).
COLUMNS = (
    ("scenario", "scenario"),
    ("backend", "backend"),
    ("leads", "leads"),
    ("crm_requests", "CRM requests"),
    ("duplicates", "duplicates"),
    ("lost_answers", "answers lost"),
    ("stale", "stale records"),
    ("lost", "leads lost"),
    ("ended", "ended"),
    ("attempts", "most attempts (policy)"),
    ("measured", "measured"),
)


@dataclass
class FigureBook:
    """The rows the scenarios of one session recorded, and the tests that failed."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def add(self, row: dict[str, Any]) -> None:
        """Keep one scenario's figures (recorded once its assertions passed)."""
        self.rows.append(row)

    def table(self, *, full: bool) -> str:
        """The Markdown between the markers: how it was measured, then the table."""
        commit = _git("rev-parse", "--short", "HEAD") or "unknown"
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        minutes = (time.monotonic() - self.started) / 60
        lines = [
            f"Measured {when} at commit `{commit}`, "
            f"{'the issue sizes (`--full`)' if full else 'the test command sizes'}, "
            f"on {os.cpu_count()} cores ({platform.python_implementation()} "
            f"{platform.python_version()}); the run took {minutes:.1f} min.",
            "",
            "| " + " | ".join(h for _, h in COLUMNS) + " |",
            "|" + "---|" * len(COLUMNS),
        ]
        for row in sorted(self.rows, key=lambda r: (r["order"], r["scenario"], r["backend"])):
            lines.append("| " + " | ".join(_cell(row.get(k, "")) for k, _ in COLUMNS) + " |")
        if self.failed:
            lines += ["", "Failed in this run (no figures above): "
                      + ", ".join(f"`{n}`" for n in self.failed) + "."]
        return "\n".join(lines)

    def write(self, *, full: bool, doc: Path = DOC) -> None:
        """Replace the table of ``doc`` (between :data:`START` and :data:`END`)."""
        text = doc.read_text()
        head, start, rest = text.partition(START)
        _, end, tail = rest.partition(END)
        if not start or not end:
            raise SystemExit(f"{doc}: the figure markers are missing ({START} ... {END})")
        doc.write_text(f"{head}{START}\n{self.table(full=full)}\n{END}{tail}")


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def main(argv: list[str] | None = None) -> int:
    """Run the fault suite with ``--reliability-report``; pytest's exit code."""
    parser = argparse.ArgumentParser(prog="python -m tests.faults.report",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--small", action="store_true",
                        help="the test command's sizes instead of the issue's")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    command = [sys.executable, "-m", "pytest", "tests/faults", "-q", "--reliability-report",
               *([] if args.small else ["--full"]), *args.pytest_args]
    print(" ".join(command), flush=True)
    env = {**os.environ, "LEADRELAY_REQUIRE_SERVICES": "1"}  # no figures from a skipped run
    return subprocess.run(command, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
