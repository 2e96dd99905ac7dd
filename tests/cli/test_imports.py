"""``import FILE``, ``send --import``, ``imports list|show`` and ``--rate-limit`` as an
operator runs them, on each ledger backend; bad input is one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pytest_httpserver import HTTPServer

from .helpers import Cli, add_integration

ROWS = "email;name\r\nana@x.test;Ana\r\n;No email\r\nbo@x.test;Bö\r\nana@x.test;Ana\r\n"


def test_an_import_reports_its_rows_and_a_rerun_stores_nothing_twice(
    cli: Cli, form: int, tmp_path: Path
) -> None:
    # Given a semicolon CSV exported from Excel in cp1252, and a form requiring an email
    cli("forms", "update", str(form), "--required-field", "email")
    path = tmp_path / "export.csv"
    path.write_bytes(ROWS.encode("cp1252"))
    # When it is imported with integration off
    report = cli.json("import", str(path), "--form", str(form), "--integrate", "off", "--json")
    # Then its rows are counted, the bad one reported by line, the repeated one skipped
    assert (report["rows"], report["stored"], report["duplicates"], report["rejected"]) == (
        4, 2, 1, 1)
    assert (report["encoding"], report["delimiter"]) == ("cp1252", ";")
    assert report["rejections"][0]["line"] == 3
    assert "email" in report["rejections"][0]["reason"]
    # And a second run of the same file stores nothing new
    again = cli.json("import", str(path), "--form", str(form), "--integrate", "off", "--json")
    assert (again["stored"], again["duplicates"]) == (0, 3)
    listed = cli.json("imports", "list", "--json")
    assert [i["id"] for i in listed] == [again["id"], report["id"]]
    shown = cli("imports", "show", str(report["id"])).stdout
    assert "line" in shown and "rejected because" in shown and "cp1252" in shown
    table = cli("import", str(path), "--form", str(form), "--integrate", "off").stdout
    assert "duplicates" in table


def test_send_creates_the_deliveries_of_an_import_made_with_integration_off(
    cli: Cli, form: int, tmp_path: Path, httpserver: HTTPServer
) -> None:
    add_integration(cli, form, httpserver.url_for("/crm"))
    path = tmp_path / "leads.jsonl"
    path.write_text('{"email": "a@x.test"}\n{"email": "b@x.test"}\n')
    report = cli.json("import", str(path), "--form", str(form), "--integrate", "off", "--json")
    assert report["deliveries"] == 0
    sent = cli.json("send", "--import", str(report["id"]), "--json")
    assert sent == {"import_id": report["id"], "deliveries_created": 2}
    assert cli.json("imports", "show", str(report["id"]), "--json")["waiting"] == 2
    assert cli("send", "--import", str(report["id"])).stdout.strip().endswith(
        "0 deliveries created")


def test_bad_input_is_one_line_and_exit_2(cli: Cli, form: int, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    binary = tmp_path / "photo.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    headerless = tmp_path / "rows.csv"
    headerless.write_text("ana@x.test,Ana\nbo@x.test,Bo\n")
    good = tmp_path / "good.csv"
    good.write_text("email\na@x.test\n")
    assert "it is empty" in cli.error("import", str(empty), "--form", str(form))
    assert "looks binary" in cli.error("import", str(binary), "--form", str(form))
    assert "does not look like a header" in cli.error("import", str(headerless), "--form",
                                                      str(form))
    for rate in ("throttled=0/s", "throttled=-5/s"):
        assert "more than 0" in cli.error("import", str(good), "--form", str(form),
                                          "--integrate", rate)
    assert "does not exist" in cli.error("import", str(good), "--form", "999")
    assert "COLUMN=FIELD" in cli.error("import", str(good), "--form", str(form), "--map", "x")
    assert "not in the file's header" in cli.error("import", str(good), "--form", str(form),
                                                   "--map", "Mail=email")
    assert "does not exist" in cli.error("imports", "show", "42")
    assert cli.json("imports", "list", "--json") == []  # nothing half-imported


def test_an_integration_takes_a_rate_limit(cli: Cli, form: int) -> None:
    integration = add_integration(cli, form, "https://crm.example/", "--rate-limit", "120/min")
    shown = cli.json("integrations", "show", str(integration))
    assert shown["rate_limit"] == "120/min" and shown["paused_until"] is None
    assert "more than 0" in cli.error("integrations", "update", str(integration),
                                      "--rate-limit", "0/s")
    cli("integrations", "update", str(integration), "--rate-limit", "none")
    assert cli.json("integrations", "show", str(integration))["rate_limit"] is None


def test_the_progress_bar_shows_on_a_terminal(cli: Cli, form: int, tmp_path: Path) -> None:
    # Given a terminal (a pseudo-terminal for standard error)
    import pty

    path = tmp_path / "leads.csv"
    path.write_text("email\n" + "".join(f"u{i}@x.test\n" for i in range(3000)))
    leader, follower = pty.openpty()
    env = {k: v for k, v in cli.environ().items() if k != "COLUMNS"}
    process = subprocess.run(
        [sys.executable, "-m", "leadrelay.cli", "import", str(path), "--form", str(form),
         "--integrate", "off"],
        env={**env, "COLUMNS": "200", "TERM": "xterm"}, stdout=subprocess.PIPE,
        stderr=follower, timeout=120, check=False,
    )
    import os

    os.close(follower)
    shown = b""
    try:
        while chunk := os.read(leader, 65536):
            shown += chunk
    except OSError:
        pass
    os.close(leader)
    assert process.returncode == 0, process.stdout
    text = shown.decode(errors="replace")
    assert "3,000 read" in text and "3,000 stored" in text and "rows/s" in text
    assert "3000" in process.stdout.decode()
