#!/usr/bin/env python3
"""Set up a development environment from a fresh clone, then run the demo or the tests.

Needs only Python 3.11+::

    python3 dev.py demo     # set up, then run `leadrelay demo`
    python3 dev.py test     # set up, then ruff, mypy and pytest (extra arguments go to pytest)
    python3 dev.py setup    # set up only

Setting up creates ``.venv`` when it is missing, installs the exact pins of
``requirements.lock`` and the project itself (editable). A marker in ``.venv``
holds a hash of the lock file, ``pyproject.toml`` and the Python version: when
none of them changed, setting up again does nothing.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LOCK = ROOT / "requirements.lock"
MARKER = VENV / ".leadrelay-dev-setup"
MINIMUM = (3, 11)


def say(message: str) -> None:
    """A progress line of this script."""
    print(f"dev.py: {message}", flush=True)


def bin_path(name: str) -> Path:
    """An executable of the virtual environment."""
    scripts = VENV / ("Scripts" if os.name == "nt" else "bin")
    return scripts / (f"{name}.exe" if os.name == "nt" else name)


def fingerprint() -> str:
    """What the environment was built from: the lock, the project's metadata, the Python."""
    digest = hashlib.sha256()
    for path in (LOCK, ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    python = subprocess.run(
        [str(bin_path("python")), "-c", "import sys; print(sys.version)"],
        check=True, capture_output=True, text=True,
    ).stdout
    digest.update(python.encode())
    return digest.hexdigest()


def run(command: Sequence[str | Path]) -> int:
    """Run a command from the repository root; its exit code."""
    return subprocess.run([str(c) for c in command], cwd=ROOT).returncode


def setup() -> None:
    """Create ``.venv`` if missing and install the pinned dependencies, unless up to date."""
    if not bin_path("python").exists():
        say(f"creating {VENV.relative_to(ROOT)}")
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    wanted = fingerprint()
    if MARKER.exists() and MARKER.read_text().strip() == wanted:
        return
    say(f"installing the pinned dependencies of {LOCK.name}")
    pip: list[str | Path] = [bin_path("python"), "-m", "pip", "--disable-pip-version-check"]
    steps: list[list[str | Path]] = [
        # Every file checked against the lock's hashes: an install cannot pick up another.
        [*pip, "install", "--quiet", "--require-hashes", "-r", LOCK],
        [*pip, "install", "--quiet", "--no-deps", "--no-build-isolation", "-e", ROOT],
    ]
    for step in steps:
        if run(step) != 0:
            sys.exit(f"dev.py: setup failed: {' '.join(str(s) for s in step)}")
    MARKER.write_text(wanted + "\n")
    say("environment ready")


def demo(args: Sequence[str]) -> int:
    """``leadrelay demo``, with any extra arguments."""
    return run([bin_path("leadrelay"), "demo", *args])


def test(args: Sequence[str]) -> int:
    """ruff, mypy, then pytest (with ``args``); every suite runs, the summary says which failed.

    pytest's ``-ra`` summary lists every skipped test with its reason; under
    CI (``CI=true`` or ``LEADRELAY_REQUIRE_SERVICES=1``) tests that need
    PostgreSQL or Redis fail instead of skipping.
    """
    suites: list[tuple[str, list[str | Path]]] = [
        ("ruff", [bin_path("ruff"), "check", "."]),
        ("mypy", [bin_path("mypy")]),
        ("pytest", [bin_path("python"), "-m", "pytest", "-ra", *args]),
    ]
    results: list[tuple[str, int]] = []
    for name, command in suites:
        say(f"running {name}: {' '.join(str(c) for c in command[1:]) or name}")
        results.append((name, run(command)))
    print()
    for name, code in results:
        verdict = "ok" if code == 0 else f"FAILED (exit {code})"
        if name == "pytest" and code == 5:
            verdict = "FAILED (no tests ran)"
        say(f"{name}: {verdict}")
    return 0 if all(code == 0 for _, code in results) else 1


COMMANDS = {"demo": demo, "test": test}


def main(argv: Sequence[str]) -> int:
    """Dispatch ``dev.py COMMAND [ARGS...]``."""
    if sys.version_info < MINIMUM:
        return _usage(f"needs Python {'.'.join(map(str, MINIMUM))} or newer, "
                      f"this is {sys.version.split()[0]}")
    if not argv or argv[0] not in (*COMMANDS, "setup"):
        return _usage("give a command: demo, test or setup")
    setup()
    if argv[0] == "setup":
        return 0
    return COMMANDS[argv[0]](argv[1:])


def _usage(problem: str) -> int:
    print(f"dev.py: {problem}", file=sys.stderr)
    print("usage: python3 dev.py demo [ARGS] | test [PYTEST ARGS] | setup", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
