"""``leadrelay digest`` and the replay command a digest prints, run as a user would."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.ledger import Delivery, DeliveryState
from smtp_mailbox import Mailbox

from .helpers import LEAD, ONE_TRY, Cli, add_integration


@pytest.fixture
def mailbox(unused_port: int) -> Iterator[Mailbox]:
    """A real SMTP server on loopback."""
    box = Mailbox(unused_port).start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def smtp_cli(cli: Cli, mailbox: Mailbox) -> Cli:
    """The CLI with its digests going to ``mailbox``."""
    cli.env["LEADRELAY_SMTP_URL"] = mailbox.url
    return cli


def at(hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(2026, 1, 1, hour, minute, second, micro, tzinfo=UTC)


def fail_at(app: Leadrelay, clock: FakeClock, form: int, moment: datetime) -> int:
    """One lead whose only attempt fails at ``moment``; its delivery id."""
    clock.advance((moment - clock.now()).total_seconds())
    [delivery] = app.submit(form, LEAD).delivery_ids
    app.deliver_due()
    assert app.inspect(delivery)["delivery"]["state"] == "not_integrated"
    return delivery


def account_with_form(cli: Cli, name: str) -> tuple[int, int]:
    account = cli.json("accounts", "create", "--name", name, "--owner-email",
                       f"owner@{name.lower()}.test", "--plan", "growth", "--json")
    form = cli.json("forms", "create", "--account", str(account["id"]), "--name", "F",
                    "--json")
    return int(account["id"]), int(form["id"])


def test_the_replay_command_a_digest_prints_replays_exactly_its_deliveries(
    smtp_cli: Cli, engine_for: Callable[..., Leadrelay], mailbox: Mailbox,
    httpserver: HTTPServer,
) -> None:
    # Given failures of Acme inside the 06:00-12:00 window, on both of its edges and
    # outside it, and failures of another account inside it
    cli = smtp_cli
    httpserver.expect_request("/crm").respond_with_data("no", status=400)
    acme, acme_form = account_with_form(cli, "Acme")
    other, other_form = account_with_form(cli, "Globex")
    add_integration(cli, acme_form, httpserver.url_for("/crm"), "--retry", json.dumps(ONE_TRY))
    add_integration(cli, other_form, httpserver.url_for("/crm"), "--retry",
                    json.dumps(ONE_TRY))
    clock = FakeClock(at(5))
    app = engine_for(clock=clock)
    before = fail_at(app, clock, acme_form, at(5, 59, 59, 999_999))
    inside = {fail_at(app, clock, acme_form, at(6)),
              fail_at(app, clock, acme_form, at(9, 30)),
              fail_at(app, clock, acme_form, at(11, 59, 59, 999_999))}
    elsewhere = fail_at(app, clock, other_form, at(10))
    after = fail_at(app, clock, acme_form, at(12))

    # When the digest of that window is sent
    clock.advance(minutes=1)
    app.digests.run()
    [mail] = [m for m in mailbox.received if m.rcpt_tos == ["owner@acme.test"]
              and "(2026-01-01 06:00 to 2026-01-01 12:00 UTC)" in m.message["Subject"]]
    text = mail.part("plain")
    assert "3 deliveries failed: 3 given up" in text

    # Then the command it prints, run as printed, replays exactly those three
    [command] = re.findall(r"^  (leadrelay replay --account .*)$", text, re.M)
    args = shlex.split(command)
    assert args[:3] == ["leadrelay", "replay", "--account"] and args[3] == str(acme)
    dry = cli.json(*args[1:], "--dry-run", "--json")
    assert set(dry["delivery_ids"]) == inside
    done = cli.json(*args[1:], "--json")
    assert set(done["delivery_ids"]) == inside
    with app.ledger.session() as s:
        still_failed = set(s.scalars(select(Delivery.id).where(
            Delivery.state == DeliveryState.NOT_INTEGRATED.value)))
    assert still_failed == {before, elsewhere, after}
    # and the per-integration command of the same window names the same deliveries
    [per_integration] = re.findall(r"^Replay: (leadrelay replay --integration .*)$", text, re.M)
    assert shlex.split(per_integration)[4:] == args[4:]
    assert other != acme


def test_preview_prints_the_digest_and_sends_and_records_nothing(
    smtp_cli: Cli, engine_for: Callable[..., Leadrelay], form: int, mailbox: Mailbox,
    httpserver: HTTPServer,
) -> None:
    # Given a failure in the current window
    httpserver.expect_request("/crm").respond_with_data("no", status=400)
    add_integration(smtp_cli, form, httpserver.url_for("/crm"), "--retry", json.dumps(ONE_TRY))
    app = engine_for()
    app.submit(form, LEAD)
    app.deliver_due()

    # When the digest is previewed, as text, HTML and JSON
    text = smtp_cli("digest", "--preview").stdout
    html = smtp_cli("digest", "--preview", "--html", "--account", "1").stdout
    [preview] = smtp_cli.json("digest", "--preview", "--json")

    # Then it shows what would be sent
    assert text.startswith("To: owner@acme.test\nSubject: leadrelay: 1 failed delivery for Acme")
    assert "1 deliveries failed: 1 given up" in text and "leadrelay replay --account 1" in text
    assert "<h1>Failure digest for Acme</h1>" in html
    assert preview["failures"] == 1 and preview["subject"].startswith("leadrelay: 1 failed")
    # and nothing was sent or recorded
    assert mailbox.received == []
    assert smtp_cli.json("digest", "--history", "--json") == []


def test_send_now_sends_the_current_window_once_and_history_lists_it(
    smtp_cli: Cli, engine_for: Callable[..., Leadrelay], form: int, mailbox: Mailbox,
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/crm").respond_with_data("no", status=400)
    add_integration(smtp_cli, form, httpserver.url_for("/crm"), "--retry", json.dumps(ONE_TRY))
    app = engine_for()
    app.submit(form, LEAD)
    app.deliver_due()

    # When the digest is sent now, twice
    first = smtp_cli("digest", "--send-now").stdout
    second = smtp_cli("digest", "--send-now", "--account", "1").stdout

    # Then one email went out, and the second had nothing new to say
    [mail] = mailbox.received
    assert "sent 1 failures to owner@acme.test (Message-ID " in first
    assert "no failures, nothing sent" in second
    [row] = smtp_cli.json("digest", "--history", "--json")
    assert row["state"] == "sent" and row["recipient"] == "owner@acme.test"
    assert row["message_id"] == mail.message["Message-ID"]
    table = smtp_cli("digest", "--history").stdout
    assert "sent" in table and "owner@acme.test" in table and row["message_id"] in table


def test_an_unreachable_smtp_server_is_one_line_exit_1_and_shows_in_history(
    cli: Cli, engine_for: Callable[..., Leadrelay], form: int, unused_port: int,
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/crm").respond_with_data("no", status=400)
    add_integration(cli, form, httpserver.url_for("/crm"), "--retry", json.dumps(ONE_TRY))
    app = engine_for()
    app.submit(form, LEAD)
    app.deliver_due()
    url = f"smtp://digest:pa55word-x@127.0.0.1:{unused_port}?timeout=2"

    error = cli.error("digest", "--send-now", code=1, env={"LEADRELAY_SMTP_URL": url})

    assert "not sent" in error and "cannot reach smtp://digest:***@127.0.0.1" in error
    [row] = cli.json("digest", "--history", "--json")
    assert row["state"] == "claimed" and row["attempts"] == 1
    assert "pa55word-x" not in json.dumps(row) + error


@pytest.mark.parametrize(("env", "field"), [
    ({"LEADRELAY_DIGEST_HOURS": "0"}, "LEADRELAY_DIGEST_HOURS: must be between"),
    ({"LEADRELAY_DIGEST_HOURS": "-6"}, "LEADRELAY_DIGEST_HOURS: must be between"),
    ({"LEADRELAY_DIGEST_HOURS": "six"}, "LEADRELAY_DIGEST_HOURS: must be a number"),
    ({"LEADRELAY_SMTP_URL": "mail.example:25"}, "LEADRELAY_SMTP_URL: the scheme must be"),
    ({"LEADRELAY_SMTP_URL": "smtp://u:hunter22@h?tls=1"}, "LEADRELAY_SMTP_URL: unknown option"),
    ({"LEADRELAY_SMTP_URL": "smtp://u:hunter22@h:port"}, "LEADRELAY_SMTP_URL: not an smtp"),
    ({"LEADRELAY_DIGEST_ATTEMPTS": "0"}, "LEADRELAY_DIGEST_ATTEMPTS: must be a whole number"),
    ({"LEADRELAY_DIGEST_FROM": "leadrelay"}, "LEADRELAY_DIGEST_FROM: 'leadrelay' is not"),
    ({"LEADRELAY_PUBLIC_URL": "leads.example"}, "LEADRELAY_PUBLIC_URL: must be the API's"),
])
def test_bad_digest_settings_name_their_variable(
    cli: Cli, env: dict[str, str], field: str
) -> None:
    error = cli.error("digest", "--preview", env=env)
    assert error.startswith(field)
    assert "hunter22" not in error


def test_bad_digest_input_changes_nothing(cli: Cli) -> None:
    account = cli.json("accounts", "create", "--name", "Acme", "--owner-email",
                       "owner@acme.test", "--json")
    assert cli.error("digest").startswith("give one of --preview, --send-now or --history")
    assert cli.error("digest", "--send-now").startswith("LEADRELAY_SMTP_URL: not set")
    assert cli.error("digest", "--preview", "--account", "99") == "account 99 does not exist"
    for bad in ("owner", "owner@acme", "a,b@acme.test", "owner@acme.test\nBcc: x@y.test"):
        assert "owner_email" in cli.error("accounts", "create", "--name", "X",
                                          "--owner-email", bad)
        assert "owner_email" in cli.error("accounts", "update", str(account["id"]),
                                          "--owner-email", bad)
    for bad in ("0", "-1", "nan", "every day"):
        assert cli.error("accounts", "update", str(account["id"]), "--digest-hours",
                         bad).startswith("digest_hours: must be")
    [unchanged] = cli.json("accounts", "list", "--json")
    assert unchanged["owner_email"] == "owner@acme.test" and unchanged["digest_hours"] is None

    changed = cli.json("accounts", "update", str(account["id"]), "--owner-email",
                       "new@acme.test", "--digest-hours", "12", "--json")
    assert changed["owner_email"] == "new@acme.test" and changed["digest_hours"] == 12
    back = cli.json("accounts", "update", str(account["id"]), "--digest-hours", "default",
                    "--json")
    assert back["digest_hours"] is None
