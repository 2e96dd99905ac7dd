"""The digest as received by a real SMTP server: once per window, what it says, and retries.

Failures are made the real way (leads sent to a real HTTP CRM that refuses them); the
clock is the injected one, moved past window ends instead of slept through.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.digest.windows import Window
from leadrelay.engine.ledger import Delivery, DeliveryState, Digest
from smtp_mailbox import Mailbox

from .conftest import OWNER, THREE_TRIES, Crm


def given_up_in(app: Leadrelay, start: datetime, end: datetime) -> set[int]:
    """The ledger's not-integrated deliveries that failed in [start, end)."""
    with app.ledger.session() as s:
        return set(s.scalars(select(Delivery.id).where(
            Delivery.state == DeliveryState.NOT_INTEGRATED.value,
            Delivery.finished_at >= start, Delivery.finished_at < end)))


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, 1, hour, minute, tzinfo=UTC)


def test_a_window_with_failures_is_one_email_with_both_parts_matching_the_ledger(
    app: Leadrelay, crm: Crm, mailbox: Mailbox, clock: FakeClock
) -> None:
    # Given two failing integrations in the 06:00-12:00 window, and one that works
    bad = crm.integration("Salesforce", "/sf")
    down = crm.integration("Pipedrive", "/pd", status=503, body="Service Unavailable")
    crm.integration("HubSpot", "/hs", status=200, body='{"id": 1}')
    crm.leads(4)

    # When the window has closed and the digest runs
    clock.advance(hours=3)
    [result] = app.digests.run()

    # Then one message reached the owner's address
    [mail] = mailbox.received
    assert result.state == "sent" and mail.rcpt_tos == [OWNER]
    msg = mail.message
    assert msg["To"] == OWNER and msg["From"] == app.settings.digest_from
    assert msg["Subject"] == (
        "leadrelay: 8 failed deliveries for Acme (2026-01-01 06:00 to 2026-01-01 12:00 UTC)")
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content_type() == "multipart/alternative"
    # and its Message-ID is the one the ledger recorded before sending
    [row] = app.digests.history()
    assert msg["Message-ID"] == row["message_id"] == result.message_id
    assert row["state"] == "sent" and row["failures"] == 8 and row["recipient"] == OWNER

    # and both parts carry the counts the ledger holds
    ids = given_up_in(app, at(6), at(12))
    assert len(ids) == 8
    text, html = mail.part("plain"), mail.part("html")
    for part in (text, html):
        assert "8 deliveries failed: 8 given up (in the failed collection), 0 still being " \
               "retried." in part
        assert f"Salesforce (integration {bad}" in part
        assert f"Pipedrive (integration {down}" in part
        assert "HubSpot" not in part
    assert "Given up (in the failed collection): 4" in text
    assert "4 x rejected: response mismatch: status in [2xx] saw 400" in text
    assert "4 x transient: CRM answered HTTP 503, worth retrying" in text
    # one sample answer per reason, as the CRM said it
    assert 'HTTP 400 {"error": "email is invalid"}' in text
    assert "HTTP 503 Service Unavailable" in text
    assert "First failure 2026-01-01 09:00:00 UTC, last 2026-01-01 09:00:00 UTC." in text
    # what to do: the replay of exactly this window, and each failed collection
    command = (f"leadrelay replay --account {crm.account_id} --since 2026-01-01T06:00:00Z "
               "--until 2026-01-01T11:59:59.999999Z")
    assert command in text and command in html
    assert '"since": "2026-01-01T06:00:00Z"' in text
    assert f"https://leads.example/v1/deliveries/failed?integration_id={bad}&since=" in text
    assert '<a href="https://leads.example/v1/deliveries/failed?integration_id=' in html


def test_each_window_is_sent_once_and_an_empty_one_not_at_all(
    app: Leadrelay, crm: Crm, mailbox: Mailbox, clock: FakeClock
) -> None:
    # Given failures in the 06:00-12:00 window, sent at its end
    crm.integration("Salesforce", "/sf")
    crm.leads(2)
    clock.advance(hours=3)
    app.digests.run()
    assert len(mailbox.received) == 1

    # When the digest runs again in the same window, nothing more is sent
    clock.advance(minutes=1)
    assert app.digests.run() == []
    # and a window without failures sends nothing and records nothing
    clock.advance(hours=6)
    assert app.digests.run() == []
    assert len(mailbox.received) == 1 and len(app.digests.history()) == 1

    # Then new failures make the next window's digest, about them only
    crm.leads(1)
    clock.advance(hours=6)
    [result] = app.digests.run()
    assert result.failures == 1 and result.window.start == at(18)
    assert "1 failed delivery for Acme" in mailbox.received[-1].message["Subject"]
    assert len(mailbox.received) == 2


def test_deliveries_still_retried_are_shown_apart_from_those_given_up(
    app: Leadrelay, crm: Crm, mailbox: Mailbox, clock: FakeClock
) -> None:
    # Given an integration retrying 3 times (1 minute apart) and one giving up at once
    retrying = crm.integration("Retrying CRM", "/r", status=500, body="oops",
                               retry=THREE_TRIES)
    crm.integration("Given-up CRM", "/g")
    crm.leads(3)

    clock.advance(hours=3)
    app.digests.run()

    text = mailbox.received[0].part("plain")
    assert "6 deliveries failed: 3 given up (in the failed collection), 3 still being " \
           "retried." in text
    section = text.split(f"== Retrying CRM (integration {retrying}")[1].split("\n\n")[0]
    assert "Still being retried: 3" in section and "Given up" not in section
    assert "Deliveries still being retried need nothing yet" in text


def test_integrations_failing_every_attempt_come_first_with_how_long(
    app: Leadrelay, crm: Crm, mailbox: Mailbox, clock: FakeClock, httpserver
) -> None:
    # Given an integration that worked at 07:00, then broke (every attempt failing)
    ok = {"status": 200, "body": '{"ok": true}'}
    flaky = crm.integration("Flaky CRM", "/flaky", **ok)
    clock.advance(hours=-2)  # 07:00
    crm.leads(1)
    clock.advance(hours=2)   # 09:00: the CRM now refuses everything
    httpserver.clear()
    httpserver.expect_request("/flaky").respond_with_data("no", status=400)
    mixed = crm.integration("Mixed CRM", "/mixed")
    crm.leads(5)
    # and another whose CRM was fixed after the failures (a lead accepted since)
    httpserver.clear()
    httpserver.expect_request("/flaky").respond_with_data("no", status=400)
    httpserver.expect_request("/mixed").respond_with_data("ok", status=200)
    clock.advance(minutes=30)
    crm.leads(1)
    clock.advance(minutes=-30)

    clock.advance(hours=3)
    app.digests.run()

    text = mailbox.received[0].part("plain")
    failing = text.split("FAILING EVERY ATTEMPT")[1].split("\n\n")[0]
    assert f"Flaky CRM (integration {flaky}" in failing
    assert "no lead accepted since 2026-01-01 07:00:00 UTC (for 5 h 0 min)" in failing
    assert "Mixed CRM" not in failing
    # and it is listed first among the integrations
    assert text.index("== Flaky CRM") < text.index(f"== Mixed CRM (integration {mixed}")


def test_smtp_down_for_one_run_sends_once_late_with_the_right_window(
    app: Leadrelay, crm: Crm, mailbox: Mailbox, clock: FakeClock
) -> None:
    # Given failures in 06:00-12:00 and the SMTP server down when the window closes
    crm.integration("Salesforce", "/sf")
    crm.leads(2)
    mailbox.stop()
    clock.advance(hours=3)
    [first] = app.digests.run()
    assert first.state == "claimed" and "cannot reach" in (first.error or "")
    [row] = app.digests.history()
    assert row["state"] == "claimed" and row["attempts"] == 1 and row["last_error"]

    # When the server is back and the next try is due
    mailbox.start()
    clock.advance(minutes=4)
    assert app.digests.run() == []  # not due yet: nothing sent early, nothing twice
    clock.advance(minutes=1)
    [second] = app.digests.run()

    # Then one email arrived, late, about the 06:00-12:00 window, with the same Message-ID
    assert second.state == "sent"
    [mail] = mailbox.received
    assert "(2026-01-01 06:00 to 2026-01-01 12:00 UTC)" in mail.message["Subject"]
    assert mail.message["Message-ID"] == first.message_id
    assert mail.message["Date"] == "Thu, 01 Jan 2026 12:05:00 +0000"
    clock.advance(minutes=10)
    assert app.digests.run() == [] and len(mailbox.received) == 1


def test_a_refused_recipient_is_tried_the_configured_number_of_times(
    make_app: Callable[..., Leadrelay], mailbox: Mailbox, clock: FakeClock, httpserver
) -> None:
    # Given an owner address the server refuses, and two tries allowed
    app = make_app(smtp_url=mailbox.url, digest_attempts=2)
    account = app.manage.create_account("Acme", "gone@acme.test")
    mailbox.handler.refused.add("gone@acme.test")
    crm = Crm(app, httpserver, account.id, app.manage.create_form(account.id, "F").id)
    crm.integration("Salesforce", "/sf")
    crm.leads(1)

    # When the digest runs at the window's end and at each next try
    clock.advance(hours=3)
    [first] = app.digests.run()
    clock.advance(minutes=5)
    [second] = app.digests.run()
    clock.advance(hours=1)
    assert app.digests.run() == []

    # Then it was refused twice, logged with the reason, and given up: shown in history
    assert first.state == "claimed" and second.state == "failed"
    assert "recipient refused: 550 5.1.1 <gone@acme.test>: mailbox unavailable" in (
        second.error or "")
    [row] = app.digests.history()
    assert (row["state"], row["attempts"], row["refusals"]) == ("failed", 2, 2)
    assert "mailbox unavailable" in row["last_error"]
    assert mailbox.handler.rcpt_tries == ["gone@acme.test", "gone@acme.test"]
    assert mailbox.received == []


def test_a_message_whose_answer_never_came_is_not_sent_again(
    app: Leadrelay, crm: Crm, mailbox: Mailbox, clock: FakeClock
) -> None:
    # Given a server that keeps the message but answers after the client's timeout (2 s)
    crm.integration("Salesforce", "/sf")
    crm.leads(1)
    mailbox.handler.answer_after = 3.0
    clock.advance(hours=3)

    # When the digest is sent
    [result] = app.digests.run()

    # Then it is in doubt, recorded with its Message-ID, and never sent again
    assert result.state == "in_doubt"
    assert "answer never came" in (result.error or "")
    mailbox.handler.answer_after = 0
    clock.advance(hours=1)
    assert app.digests.run() == []
    assert len(mailbox.received) == 1
    [row] = app.digests.history()
    assert row["state"] == "in_doubt"
    assert row["message_id"] == mailbox.received[0].message["Message-ID"]


def test_a_sender_that_died_mid_send_leaves_its_digest_in_doubt(
    app: Leadrelay, crm: Crm, mailbox: Mailbox, clock: FakeClock
) -> None:
    # Given a digest claimed and taken to "sending" by a scheduler that then died
    crm.integration("Salesforce", "/sf")
    crm.leads(1)
    clock.advance(hours=3)
    now = clock.now()
    owner = app.digests.book.owners()[0]
    row = app.digests.book.claim(owner, Window(at(6), at(12)), message_id="<x@y.z>", now=now,
                                 failures=1)
    assert row is not None and app.digests.book.begin_try(row.id, now)

    # When later runs come, past the sending lease
    clock.advance(minutes=11)
    assert app.digests.run() == []

    # Then it was never sent again: it is in doubt
    assert mailbox.received == []
    with app.ledger.session() as s:
        assert s.scalar(select(Digest.state)) == "in_doubt"


def test_a_secret_the_crm_echoes_never_reaches_the_email(
    app: Leadrelay, crm: Crm, mailbox: Mailbox, clock: FakeClock
) -> None:
    # Given a CRM that answers with the API key it was sent
    crm.server.expect_request("/echo").respond_with_data(
        '{"error": "bad key s3cret-key-123"}', status=401)
    crm.app.manage.create_integration(
        crm.form_id, name="Echo CRM", connector="http_post", active=True,
        config={"url": crm.server.url_for("/echo"),
                "secret_headers": {"X-Api-Key": "s3cret-key-123"}},
        retry={"max_attempts": 1})
    crm.leads(1)
    clock.advance(hours=3)
    app.digests.run()

    raw = mailbox.received[0].raw.decode()
    assert "s3cret-key-123" not in raw
    assert "bad key [REDACTED]" in mailbox.received[0].part("plain")


def test_names_from_users_cannot_break_out_of_the_html_or_the_subject(
    app: Leadrelay, crm: Crm, mailbox: Mailbox, clock: FakeClock
) -> None:
    app.manage.update_account(crm.account_id, name="Acme <script>alert(1)</script>")
    crm.integration("<b>CRM</b>", "/sf", body="<img src=x onerror=alert(1)>")
    crm.leads(1)
    clock.advance(hours=3)
    app.digests.run()

    mail = mailbox.received[0]
    html = mail.part("html")
    assert "<script>" not in html and "<img" not in html and "<b>CRM" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert re.fullmatch(r"leadrelay: 1 failed delivery for Acme <script>.*UTC\)",
                        mail.message["Subject"])


def test_an_account_with_its_own_interval_gets_windows_of_that_length(
    app: Leadrelay, crm: Crm, mailbox: Mailbox, clock: FakeClock, httpserver
) -> None:
    # Given Acme on the deployment's 6 hours and Globex on its own 12, both failing at 09:00
    globex = app.manage.create_account("Globex", "owner@globex.test", plan="growth")
    app.manage.update_account(globex.id, digest_hours=12)
    other = Crm(app, httpserver, globex.id, app.manage.create_form(globex.id, "F").id)
    crm.integration("Salesforce", "/sf")
    other.integration("Pipedrive", "/pd")
    crm.leads(1)
    other.leads(2)

    # When both windows have closed at 12:00
    clock.advance(hours=3)
    sent = {r.recipient: r for r in app.digests.run()}

    # Then each owner got the window of its own interval
    assert sent[OWNER].window == Window(at(6), at(12))
    assert sent["owner@globex.test"].window == Window(at(0), at(12))
    subjects = {m.rcpt_tos[0]: m.message["Subject"] for m in mailbox.received}
    assert subjects == {
        OWNER: "leadrelay: 1 failed delivery for Acme (2026-01-01 06:00 to 2026-01-01 12:00 UTC)",
        "owner@globex.test": "leadrelay: 2 failed deliveries for Globex "
                             "(2026-01-01 00:00 to 2026-01-01 12:00 UTC)",
    }

    # and new failures at 15:00 reach Acme at 18:00, Globex not before midnight
    clock.advance(hours=3)
    crm.leads(1)
    other.leads(1)
    clock.advance(hours=3)
    assert [r.recipient for r in app.digests.run()] == [OWNER]
    clock.advance(hours=6)
    [late] = [r for r in app.digests.run() if r.state == "sent"]
    assert late.recipient == "owner@globex.test" and late.window == Window(at(12), at(0) +
                                                                           timedelta(days=1))
    assert late.failures == 1 and len(mailbox.received) == 4
