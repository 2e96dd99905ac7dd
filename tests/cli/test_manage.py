"""Accounts, forms and integrations, set up through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from .helpers import Cli, add_integration


def test_accounts_and_forms_are_created_and_listed(cli: Cli) -> None:
    # When an account and a form are created
    account = cli.json("accounts", "create", "--name", "Acme", "--owner-email",
                       "owner@acme.test", "--json")
    form = cli.json("forms", "create", "--account", str(account["id"]), "--name", "Contact us",
                    "--json")

    # Then they are listed, as JSON and as tables
    assert account["plan"] == "starter"
    assert cli.json("accounts", "list", "--json") == [account]
    assert cli.json("forms", "list", "--account", str(account["id"]), "--json") == [form]
    assert cli.json("forms", "list", "--account", str(account["id"] + 1), "--json") == []
    table = cli("accounts", "list").stdout
    assert "owner@acme.test" in table and "starter" in table
    assert "Contact us" in cli("forms", "list").stdout


def test_empty_lists_say_so(cli: Cli) -> None:
    assert "no accounts" in cli("accounts", "list").stdout
    assert "no integrations" in cli("integrations", "list").stdout


def test_an_integration_is_created_shown_updated_and_switched(cli: Cli, form: int) -> None:
    # Given an inactive integration
    created = cli.json(
        "integrations", "create", "--form", str(form), "--name", "Pipedrive",
        "--connector", "http_post", "--json",
        "--config", '{"url": "https://acme.pipedrive.example/api/v1/leads", "body": "json"}',
        "--expectations", '{"rules": [{"kind": "json_field", "path": "success", "equals": true}]}',
        "--retry", '{"max_attempts": 5, "delays": ["1m", "10m"]}',
    )
    integration = str(created["id"])
    assert created["active"] is False and created["revision"] == 1
    # The retry policy in effect: the integration's settings over the defaults.
    assert created["retry"] == {"max_attempts": 5, "delays": ["1m", "10m"], "floor": "30s",
                                "max_retry_after": "6h", "jitter": 0.1, "retry_rejected": True,
                                "origin": "the integration's retry policy"}

    # When it is shown, listed, activated, updated and deactivated
    assert cli.json("integrations", "show", integration) == created
    assert [i["id"] for i in cli.json("integrations", "list", "--form", str(form), "--json")] == [
        created["id"]]
    assert cli.json("integrations", "activate", integration, "--json")["active"] is True
    updated = cli.json("integrations", "update", integration, "--name", "Pipedrive EU",
                       "--realtime", "--json")
    assert cli.json("integrations", "deactivate", integration, "--json")["active"] is False

    # Then each change is kept
    assert updated["name"] == "Pipedrive EU" and updated["realtime"] is True
    assert updated["revision"] == 3 and updated["active"] is True  # created, activated, updated
    shown = cli.json("integrations", "show", integration)
    assert shown["active"] is False and shown["name"] == "Pipedrive EU"
    table = cli("integrations", "list").stdout
    assert "Pipedrive EU" in table and "http_post" in table


def test_json_options_read_files(cli: Cli, form: int, tmp_path: Path) -> None:
    config = tmp_path / "crm.json"
    config.write_text(json.dumps({"url": "https://crm.example/leads"}))
    created = cli.json("integrations", "create", "--form", str(form), "--name", "CRM",
                       "--connector", "http_post", "--config", f"@{config}", "--json")
    assert created["config"]["url"] == "https://crm.example/leads"


def test_the_config_is_replaced_by_update(cli: Cli, form: int) -> None:
    integration = add_integration(cli, form, "https://one.example/leads")
    cli("integrations", "update", str(integration), "--config",
        '{"url": "https://two.example/leads", "body": "json"}')
    shown = cli.json("integrations", "show", str(integration))
    assert shown["config"]["url"] == "https://two.example/leads"
    assert shown["config"]["body"] == "json"


def test_update_with_nothing_to_change_is_a_usage_error(cli: Cli, form: int) -> None:
    integration = add_integration(cli, form, "https://crm.example/leads")
    assert cli.error("integrations", "update", str(integration)).startswith("nothing to change")


def test_activation_beyond_the_plan_is_a_failure(cli: Cli) -> None:
    # Given an account on the free plan (one active integration) with one active
    account = cli.json("accounts", "create", "--name", "Tiny", "--owner-email", "a@tiny.test",
                       "--plan", "free", "--json")
    form = cli.json("forms", "create", "--account", str(account["id"]), "--name", "F",
                    "--json")["id"]
    add_integration(cli, form, "https://one.example/leads")
    second = cli.json("integrations", "create", "--form", str(form), "--name", "Two",
                      "--connector", "http_post", "--config", '{"url": "https://two.example/"}',
                      "--json")

    # When a second one is activated
    message = cli.error("integrations", "activate", str(second["id"]), code=1)

    # Then it is refused with exit code 1, and stays inactive
    assert message == "plan 'free' allows 1 active integrations and 1 are active"
    assert cli.json("integrations", "show", str(second["id"]))["active"] is False
