"""The example third-party connector, installed with pip, is found and used by an unchanged engine.

``examples/leadrelay-connector-hubspot`` is built and installed once a session
into a directory of its own (see ``sdk_install``); each test puts it on the
path, and takes it off again. Nothing in the engine names it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from sdk_install import HUBSPOT_EXAMPLE, run_with

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.errors import UnknownConnector
from leadrelay.engine.plugins import Plugins
from leadrelay.engine.secrets import SecretBox
from leadrelay.engine.settings import Settings
from leadrelay.engine.testing import ContractEngine, FakeCrm, Reply

pytest_plugins = ["leadrelay.engine.testing.plugin"]

NAME, PACKAGE = "hubspot_forms", "leadrelay-connector-hubspot"
CONFIG = {"portal_id": "62515", "form_guid": "c3a1ef2e-75b6-4a2c-9d0e-1f2b3c4d5e6f"}
LEAD = {"email": "jane.doe@example.com", "firstname": "Jane", "lastname": "Doe"}


def engine_settings(tmp_path: Path, plugins_file: Path | None = None) -> Settings:
    return Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'ledger.db'}",
                    broker_url=None, secret_key=SecretBox.generate_key(),
                    plugins_file=plugins_file)


def test_the_engine_finds_the_installed_example(hubspot_installed: Path) -> None:
    # Given the example installed beside leadrelay

    # When the engine loads its plugins
    plugins = Plugins()

    # Then its connector is listed with its package and version, ready to use
    info = {i.name: i for i in plugins.listing()}[NAME]
    assert (info.package, info.version, info.enabled) == (PACKAGE, "0.1.0", True)
    assert plugins.problems == []
    assert type(plugins.build(NAME, CONFIG)).__module__ == "leadrelay_connector_hubspot.connector"


def test_the_engine_delivers_a_lead_through_the_example(
    hubspot_installed: Path, tmp_path: Path, fake_crm: FakeCrm
) -> None:
    # Given an integration using the example connector, whose HubSpot is a fake CRM
    fake_crm.reply(Reply(200, {"inlineMessage": "Thanks for submitting the form."}))
    engine = ContractEngine(tmp_path, NAME)
    try:
        engine.integrate({**CONFIG, "api_base": fake_crm.url})

        # When a lead is submitted and delivered
        delivered = engine.deliver(LEAD)
    finally:
        engine.close()

    # Then HubSpot got the form submission, and the delivery is done
    assert delivered.outcome == "accepted", delivered.describe()
    assert fake_crm.last.path == f"/submissions/v3/integration/submit/62515/{CONFIG['form_guid']}"
    assert {"objectTypeId": "0-1", "name": "email", "value": "jane.doe@example.com"} in (
        fake_crm.last.json()["fields"])


def test_plugins_toml_disables_the_example(hubspot_installed: Path, tmp_path: Path) -> None:
    # Given plugins.toml switching the example off
    plugins_file = tmp_path / "plugins.toml"
    plugins_file.write_text(f"[connectors.{NAME}]\nenabled = false\n")

    # When the engine starts with it
    app = Leadrelay(engine_settings(tmp_path, plugins_file), clock=FakeClock())
    try:
        account = app.manage.create_account("Acme", "owner@acme.test", plan="growth")
        form = app.manage.create_form(account.id, "Contact us")

        # Then the connector is listed as disabled, was never imported, and can't be used
        info = {i.name: i for i in app.plugins.listing()}[NAME]
        assert (info.package, info.enabled, info.why_not) == (
            PACKAGE, False, "disabled in plugins.toml")
        assert "leadrelay_connector_hubspot" not in sys.modules
        with pytest.raises(UnknownConnector, match=r"disabled in plugins\.toml"):
            app.manage.create_integration(form.id, name="HubSpot", connector=NAME,
                                          config=CONFIG, active=True)
        assert app.manage.integrations() == []
    finally:
        app.close()


@pytest.mark.parametrize("disabled", [False, True], ids=["enabled", "disabled"])
def test_leadrelay_plugins_lists_the_example(
    hubspot_site: Path, tmp_path: Path, disabled: bool
) -> None:
    # Given the example installed, and plugins.toml disabling it or not
    plugins_file = tmp_path / "plugins.toml"
    plugins_file.write_text(f"[connectors.{NAME}]\nenabled = {str(not disabled).lower()}\n")

    # When an operator runs `leadrelay plugins --json` in a fresh process
    done = run_with(hubspot_site, [sys.executable, "-c", "from leadrelay.cli import main; main()",
                                   "plugins", "--json"], cwd=tmp_path,
                    env={"LEADRELAY_HOME": str(tmp_path / "home"),
                         "LEADRELAY_PLUGINS_FILE": str(plugins_file)})

    # Then the example is listed with its package, version and state
    assert done.returncode == 0, done.stderr
    listing = {c["name"]: c for c in json.loads(done.stdout)["connectors"]}
    assert listing[NAME]["package"] == PACKAGE and listing[NAME]["version"] == "0.1.0"
    assert listing[NAME]["enabled"] is not disabled


def test_the_examples_own_tests_pass(hubspot_site: Path) -> None:
    # Given the example installed

    # When its own test suite runs, as its authors run it
    done = run_with(hubspot_site, [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                   "-W", "error::pytest.PytestUnraisableExceptionWarning"],
                    cwd=HUBSPOT_EXAMPLE)

    # Then it passes: the whole connector contract and HubSpot's own cases
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


@pytest.mark.parametrize("tool", [["ruff", "check", "--no-cache", "."],
                                  ["mypy", "--no-incremental"]])
def test_the_example_passes_the_projects_own_checks(tool: list[str], tmp_path: Path) -> None:
    # Given the example as it is in the repository, and the tools beside this Python
    binary = Path(sys.executable).parent / tool[0]
    assert binary.exists(), f"{tool[0]} is not beside this Python (requirements.lock pins it)"

    # When ruff and mypy check it with its own configuration
    done = run_with(tmp_path, [str(binary), *tool[1:]], cwd=HUBSPOT_EXAMPLE)

    # Then there is nothing to fix
    assert done.returncode == 0, done.stdout + done.stderr
