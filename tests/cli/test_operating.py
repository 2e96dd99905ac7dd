"""plans, accounts show, integrations test|history|discard-held|delete, forms delete, audit:
through the CLI as a user types them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay

from .helpers import Cli, add_integration

TOKEN = "tok-very-secret-123"


def test_plans_are_listed_created_and_updated(cli: Cli) -> None:
    assert "starter" in cli("plans", "list").stdout
    made = cli.json("plans", "create", "--name", "duo", "--limit", "2", "--json")
    assert made["max_active_integrations"] == 2
    assert cli.json("plans", "update", "duo", "--limit", "unlimited", "--json")[
        "max_active_integrations"] == "unlimited"
    assert "max_active_integrations: a whole number from 0" in cli.error(
        "plans", "create", "--name", "neg", "--limit", "-1")
    assert "unknown plan 'platinum'" in cli.error("plans", "update", "platinum", "--limit", "3")
    assert [p["name"] for p in cli.json("plans", "list", "--json")][-1] == "duo"


def test_accounts_show_gives_plan_limit_and_active_count_over_a_downgrade(
    cli: Cli, form: int
) -> None:
    for n in range(3):
        add_integration(cli, form, f"https://crm{n}.example/leads")
    account = cli.json("forms", "show", str(form))["account_id"]
    cli("accounts", "update", str(account), "--plan", "free")
    shown = cli.json("accounts", "show", str(account))
    assert (shown["plan"], shown["plan_limit"], shown["active_integrations"],
            shown["over_limit"]) == ("free", 1, 3, True)
    extra = cli.json("integrations", "create", "--form", str(form), "--name", "More",
                     "--connector", "http_post", "--config", '{"url": "https://x.example"}',
                     "--json")["id"]
    error = cli.error("integrations", "activate", str(extra), code=1)
    assert "over its plan's limit" in error


def test_test_send_renders_then_sends_once(
    cli: Cli, form: int, httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request("/leads").respond_with_json({"id": "L-1"}, status=201)
    integration = str(cli.json(
        "integrations", "create", "--form", str(form), "--name", "CRM",
        "--connector", "http_post", "--json", "--config",
        json.dumps({"url": httpserver.url_for("/leads"),
                    "auth": {"type": "bearer", "token": TOKEN}}))["id"])
    lead = tmp_path / "lead.json"
    lead.write_text(json.dumps({"email": "ada@example.com"}))
    # Without --send: the request, redacted, and nothing sent
    result = cli("integrations", "test", integration, "--lead", f"@{lead}")
    rendered = json.loads(result.stdout)
    assert rendered["sent"] is False and TOKEN not in result.stdout
    assert rendered["request"]["headers"]["Authorization"] == "[REDACTED]"
    assert httpserver.log == []
    # With --send: the CRM's answer and verdict
    sent = cli.json("integrations", "test", integration, "--sample", "--send")
    assert sent["outcome"] == "accepted" and len(httpserver.log) == 1
    assert cli.json("deliveries", "--json") == []
    # Bad input
    assert "lead: must be a JSON object" in cli.error("integrations", "test", integration,
                                                      "--lead", "[1, 2]")
    assert "lead: give a lead or ask for the sample" in cli.error(
        "integrations", "test", integration, "--lead", "{}", "--sample")


def test_a_failing_test_send_exits_1(cli: Cli, form: int, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/leads").respond_with_data("no", status=400)
    integration = add_integration(cli, form, httpserver.url_for("/leads"))
    result = cli("integrations", "test", str(integration), "--send", code=1)
    assert json.loads(result.stdout)["outcome"] == "rejected"


def test_history_diff_discard_delete_and_audit(
    cli: Cli, form: int, engine_for: Callable[..., Leadrelay]
) -> None:
    integration = str(add_integration(cli, form, "https://crm.example/leads",
                                      auth={"type": "bearer", "token": TOKEN}))
    cli("integrations", "update", integration, "--config", json.dumps(
        {"url": "https://crm.example/v2/leads", "auth": {"type": "bearer", "token": TOKEN}}))
    table = cli("integrations", "history", integration).stdout
    assert "updated" in table and "created" in table
    diff = cli("integrations", "history", integration, "--diff", "1", "2").stdout
    assert "config.url: \"https://crm.example/leads\" → \"https://crm.example/v2/leads\"" in diff
    assert "config.auth.token: secret unchanged" in diff and TOKEN not in diff
    assert "has no revision 9" in cli.error("integrations", "history", integration,
                                            "--diff", "1", "9")

    cli("submit", "--form", str(form), "--json", '{"email": "a@b.test"}')
    cli("integrations", "deactivate", integration)
    (held,) = cli.json("deliveries", "--state", "held", "--json")
    assert "reason: say why" in cli.error("integrations", "discard-held", integration,
                                          "--reason", "")
    assert "discarded 1 held delivery" in cli("integrations", "discard-held", integration,
                                              "--reason", "test data").stdout
    assert cli.json("inspect", str(held["id"]))["delivery"]["state"] == "discarded"

    deleted = cli.json("integrations", "delete", integration, "--json")
    assert deleted["archived_at"] is not None
    assert cli.json("integrations", "list", "--json") == []
    assert len(cli.json("integrations", "list", "--archived", "--json")) == 1
    account = cli.json("forms", "show", str(form))["account_id"]
    audit = cli.json("audit", "--account", str(account), "--json")["items"]
    assert [e["action"] for e in audit][:3] == [
        "integration.delete", "integration.discard_held", "integration.deactivate"]
    assert {e["actor"] for e in audit} == {"cli"} and TOKEN not in str(audit)
    assert "integration.delete" in cli("audit", "--account", str(account)).stdout
    cli("forms", "delete", str(form))
    assert cli.json("forms", "list", "--json") == []
