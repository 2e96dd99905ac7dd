"""Installing a connector package for a test, the way a user would: with pip.

A package is installed with ``pip install --no-deps --target DIR``, never into
the project's virtualenv: the test puts ``DIR`` on ``sys.path`` (or on
``PYTHONPATH`` for a subprocess) for as long as it needs the package, so no
other test — and no other test session sharing the virtualenv — ever sees it.
The engine finds it exactly as it would find a ``pip install``-ed package:
through the ``*.dist-info/entry_points.txt`` pip writes.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
HUBSPOT_EXAMPLE = ROOT / "examples" / "leadrelay-connector-hubspot"


def builds_offline() -> bool:
    """True when this environment's setuptools can build a wheel with nothing downloaded.

    setuptools builds wheels with ``bdist_wheel``, which is part of setuptools
    from 70.1 and of the ``wheel`` package before that.
    """
    try:
        import setuptools
    except ImportError:
        return False
    if importlib.util.find_spec("wheel") is not None:
        return True
    major, minor, *_ = (int(p) if p.isdigit() else 0 for p in setuptools.__version__.split("."))
    return (major, minor) >= (70, 1)


def pip_install(project: Path, target: Path) -> None:
    """Build ``project`` and install it (without dependencies) into ``target``.

    The build runs on a copy, so the source tree gets no ``build/`` or
    ``*.egg-info`` and a stale one is never reused. Without build isolation when
    the environment can build offline; otherwise pip fetches setuptools for an
    isolated build from its configured index.
    """
    with tempfile.TemporaryDirectory(prefix="leadrelay-build-") as scratch:
        source = Path(scratch) / project.name
        shutil.copytree(project, source, ignore=shutil.ignore_patterns(
            "build", "dist", "*.egg-info", ".*cache", "__pycache__"))
        command = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
                   "--disable-pip-version-check", "--target", str(target)]
        if builds_offline():
            command.append("--no-build-isolation")
        done = subprocess.run([*command, str(source)], capture_output=True, text=True,
                              timeout=300, check=False)
    if done.returncode != 0:
        hint = "" if builds_offline() else (
            " (this environment cannot build offline: install `wheel` or setuptools>=70.1 "
            "in the virtualenv)")
        pytest.fail(f"pip could not install {project.name}{hint}:\n{done.stdout}{done.stderr}",
                    pytrace=False)


def run_with(site: Path, args: Sequence[str], *, cwd: Path,
             env: Mapping[str, str] | None = None, timeout: float = 300,
             ) -> subprocess.CompletedProcess[str]:
    """Run ``args`` in a subprocess that sees the packages installed in ``site``."""
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("LEADRELAY_", "PYTEST_"))}
    environ["PYTHONPATH"] = os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    environ.update(env or {})
    return subprocess.run(list(args), cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=timeout, check=False)


def forget_modules(prefix: str) -> None:
    """Drop ``prefix``'s modules from ``sys.modules`` once their directory leaves ``sys.path``."""
    for name in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        del sys.modules[name]
