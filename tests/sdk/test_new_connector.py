"""``leadrelay new-connector NAME`` writes a connector package whose tests pass as generated."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sdk_install import forget_modules, pip_install, run_with

from leadrelay.cli import LeadrelayGroup, main
from leadrelay.cli.new_connector import new_connector
from leadrelay.engine.plugins import Plugins
from leadrelay.templates import connector_names


def cli() -> click.Group:
    """The ``leadrelay`` group with ``new-connector`` on it, registered or not yet."""
    if "new-connector" in main.commands:
        return main
    group = LeadrelayGroup("leadrelay")
    group.add_command(new_connector)
    return group


def test_new_connector_is_a_leadrelay_command() -> None:
    assert main.commands.get("new-connector") is new_connector


def test_the_generated_package_passes_its_contract_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a package generated for a new connector
    result = CliRunner().invoke(cli(), ["new-connector", "acme-crm", "-d", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "leadrelay-connector-acme-crm"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == ["README.md", "pyproject.toml",
                     "src/leadrelay_connector_acme_crm/__init__.py",
                     "src/leadrelay_connector_acme_crm/connector.py",
                     "src/leadrelay_connector_acme_crm/py.typed",
                     "tests/test_contract.py"]
    assert str(root) in result.output

    # When it is installed with pip and its tests run, as generated
    site = tmp_path / "site"
    pip_install(root, site)
    done = run_with(site, [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                    cwd=root)

    # Then they pass: the whole connector contract
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
    # and the engine finds the connector through the generated entry point
    monkeypatch.syspath_prepend(str(site))
    try:
        info = {i.name: i for i in Plugins().listing()}["acme_crm"]
        assert (info.package, info.version, info.enabled) == (
            "leadrelay-connector-acme-crm", "0.1.0", True)
    finally:
        forget_modules("leadrelay_connector_acme_crm")


def test_the_generated_code_is_lint_clean(tmp_path: Path) -> None:
    # Given a generated package
    CliRunner().invoke(cli(), ["new-connector", "acme_crm", "-d", str(tmp_path)])
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert ruff is not None, "ruff is not installed beside this Python (requirements.lock pins it)"

    # When ruff checks it with the generated configuration
    done = run_with(tmp_path, [ruff, "check", "--no-cache", "."],
                    cwd=tmp_path / "leadrelay-connector-acme-crm")

    # Then there is nothing to fix
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_generated_code_is_type_clean(tmp_path: Path) -> None:
    # Given a generated package
    CliRunner().invoke(cli(), ["new-connector", "acme_crm", "-d", str(tmp_path)])
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    assert mypy is not None, "mypy is not installed beside this Python (requirements.lock pins it)"

    # When mypy checks its code and its tests with the generated (strict) configuration
    done = run_with(tmp_path, [mypy, "--no-incremental", ".", "--exclude", "build"],
                    cwd=tmp_path / "leadrelay-connector-acme-crm")

    # Then it finds nothing, against leadrelay's own type hints
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_generated_connector_does_not_claim_idempotency_it_cannot_know(
    tmp_path: Path,
) -> None:
    # Whether a retry creates a second lead depends on the CRM, not on the skeleton
    CliRunner().invoke(cli(), ["new-connector", "acme_crm", "-d", str(tmp_path)])
    source = (tmp_path / "leadrelay-connector-acme-crm" / "src" / "leadrelay_connector_acme_crm"
              / "connector.py").read_text()
    assert "supports_idempotency_key = False" in source


@pytest.mark.parametrize(
    ("raw", "name", "distribution", "module", "cls"),
    [("acme", "acme", "leadrelay-connector-acme", "leadrelay_connector_acme", "Acme"),
     ("Acme-CRM", "acme_crm", "leadrelay-connector-acme-crm", "leadrelay_connector_acme_crm",
      "AcmeCrm"),
     ("zoho_v2", "zoho_v2", "leadrelay-connector-zoho-v2", "leadrelay_connector_zoho_v2",
      "ZohoV2")],
)
def test_names_derive_from_the_connector_name(
    raw: str, name: str, distribution: str, module: str, cls: str
) -> None:
    names = connector_names(raw)
    assert (names.name, names.distribution, names.module, names.class_prefix) == (
        name, distribution, module, cls)


@pytest.mark.parametrize("raw", ["2crm", "acme crm", "acme!", "", "_acme", "acme__crm", "a" * 41])
def test_a_bad_name_is_one_usage_error_and_writes_nothing(tmp_path: Path, raw: str) -> None:
    # When new-connector is given a name that is not a connector name
    result = CliRunner().invoke(cli(), ["new-connector", raw, "-d", str(tmp_path)])

    # Then it fails as a usage error, on one line naming the argument, and writes nothing
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: name:") and result.output.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_not_overwritten(tmp_path: Path) -> None:
    # Given a package directory that already has content
    existing = tmp_path / "leadrelay-connector-acme"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")

    # When new-connector would write there
    result = CliRunner().invoke(cli(), ["new-connector", "acme", "-d", str(tmp_path)])

    # Then it refuses, and leaves the directory alone
    assert result.exit_code == 2, result.output
    assert "already exists" in result.output
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]
