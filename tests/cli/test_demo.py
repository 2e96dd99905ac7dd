"""The demo's story ends as it should: delivered, caught at 200, down and retried."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from click.testing import CliRunner

from leadrelay.cli import main
from leadrelay.demo import ACCEPTS, DEMO_LEADS, DOWN, ERROR_AT_200, run_demo


def test_the_demo_story_settles_every_delivery(tmp_path: Path) -> None:
    # When the demo's story runs on a fresh home
    result = run_demo(tmp_path)

    # Then it finished well under a minute, one delivery per lead and integration
    assert result.finished and result.elapsed < 30
    assert result.problems() == []
    leads = len(DEMO_LEADS)
    assert len(result.deliveries) == 3 * leads
    by_integration = {name: [d for d in result.deliveries if d["integration_id"] == i]
                      for name, i in result.integrations.items()}

    # the CRM that accepts has every lead, with its id as the CRM reference
    assert [d["state"] for d in by_integration[ACCEPTS]] == ["delivered"] * leads
    assert all(d["attempts"] == 1 and d["crm_reference"] for d in by_integration[ACCEPTS])

    # the 200-with-an-error CRM was caught by a rule, three times, then not integrated
    assert Counter((d["state"], d["attempts"], d["last_outcome"])
                   for d in by_integration[ERROR_AT_200]) == {
        ("not_integrated", 3, "rejected"): leads}
    assert all("json_field error absent" in d["last_reason"] for d in by_integration[ERROR_AT_200])

    # the Down CRM was retried, then not integrated
    assert Counter((d["state"], d["attempts"], d["last_outcome"])
                   for d in by_integration[DOWN]) == {("not_integrated", 3, "transient"): leads}

    # and the failed collection holds exactly those
    assert sorted(d["id"] for d in result.failed) == sorted(
        d["id"] for d in by_integration[ERROR_AT_200] + by_integration[DOWN])

    # The inspected delivery shows the rule that caught the error at 200
    obj = result.inspected
    assert obj["integration"]["name"] == ERROR_AT_200
    assert [a["outcome"] for a in obj["attempts"]] == ["rejected"] * 3
    assert obj["attempts"][0]["decided_by"] == "json_field error absent"
    assert obj["attempts"][0]["exchanges"][0]["response"]["status"] == 200


def test_leadrelay_demo_prints_the_story_and_leaves_no_trace(tmp_path: Path) -> None:
    # When `leadrelay demo` runs with a home of its own
    home = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--home", str(home)], prog_name="leadrelay",
                                env={"COLUMNS": "200"})

    # Then it exits 0 and shows the deliveries, the failed collection and an inspect
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Deliveries" in out and "Failed collection (not integrated)" in out
    assert "$ leadrelay inspect " in out and '"attempts": [' in out
    assert f"{len(DEMO_LEADS)} delivered, {2 * len(DEMO_LEADS)} not integrated" in out
    # and the demo CRM's token is shown nowhere
    assert "demo-pipedrive-token" not in out
    assert (home / "leadrelay.db").exists()
