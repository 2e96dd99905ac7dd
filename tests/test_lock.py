"""requirements.lock pins every distribution with its hashes, and is what is installed."""

from __future__ import annotations

import importlib.metadata
import re
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
#: ``name==version`` then ``--hash=sha256:…`` entries, joined over continuation lines.
REQUIREMENT = re.compile(r"^([A-Za-z0-9._-]+)(?:\[[a-z0-9,-]+\])?==([^\s\\;]+)(.*)$")


def normalized(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements() -> dict[str, tuple[str, list[str]]]:
    """Each locked distribution: its version and hashes."""
    text = LOCK.read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = REQUIREMENT.match(line.strip())
        assert match, f"requirements.lock: not an exact pin: {line.strip()[:80]}"
        name, version, rest = match.groups()
        found[normalized(name)] = (version, re.findall(r"--hash=sha256:([0-9a-f]{64})", rest))
    return found


def test_every_locked_distribution_is_pinned_with_its_hashes() -> None:
    locked = requirements()
    assert len(locked) > 50
    unhashed = sorted(name for name, (_, hashes) in locked.items() if not hashes)
    assert not unhashed, f"pinned without a hash: {unhashed}"


def test_the_environment_holds_exactly_the_locked_versions() -> None:
    # Given the distributions installed in this environment's site-packages (the project
    # itself aside; not what a package vendors and puts on sys.path, as setuptools does)
    paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    installed = {
        normalized(d.metadata["Name"]): d.version
        for d in importlib.metadata.distributions(path=paths)
    }
    installed.pop("leadrelay", None)
    locked = requirements()
    # Then each locked one is installed at its version, and nothing else but pip's own
    wrong = {n: (v, installed.get(n)) for n, (v, _) in locked.items() if installed.get(n) != v}
    assert not wrong, f"locked version, installed version: {wrong}"
    extra = set(installed) - set(locked) - {"pip", "py-spy", "pyinstrument"}
    assert not extra, f"installed but not in requirements.lock: {sorted(extra)}"


def test_dev_py_installs_the_lock_checking_hashes() -> None:
    dev = (ROOT / "dev.py").read_text()
    assert '"install", "--quiet", "--require-hashes", "-r", LOCK' in dev
