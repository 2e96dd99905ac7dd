"""``leadrelay digest --send-now`` and ``leadrelay scheduler`` over STARTTLS with a login:
the message arrives, and the password shows in no output and no log line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock, SystemClock
from leadrelay.engine.digest.windows import last_closed
from smtp_mailbox import Mailbox, self_signed

from .helpers import LEAD, ONE_TRY, Cli, add_integration, start, stop, wait_for

USER = "digest"
PASSWORD = "hunter2:/@%?#-tls"


@pytest.fixture
def mailbox(unused_port: int, tmp_path: Path) -> Iterator[Mailbox]:
    """A real SMTP server on loopback requiring STARTTLS, then a login."""
    box = Mailbox(unused_port, tls="starttls", certificate=self_signed(tmp_path / "tls"),
                  users={USER: PASSWORD}).start()
    try:
        yield box
    finally:
        box.stop()


def assert_no_password(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and quote(PASSWORD, safe="") not in text


def one_failure(cli: Cli, engine: Leadrelay, form: int, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/crm").respond_with_data("no", status=400)
    add_integration(cli, form, httpserver.url_for("/crm"), "--retry", json.dumps(ONE_TRY))
    engine.submit(form, LEAD)
    engine.deliver_due()


def test_send_now_over_starttls_logs_in_and_never_prints_the_password(
    cli: Cli, engine: Leadrelay, form: int, mailbox: Mailbox, httpserver: HTTPServer
) -> None:
    one_failure(cli, engine, form, httpserver)

    # A wrong password: one error line naming the login, exit 1, nothing sent
    wrong = mailbox.url_with(USER, "not-" + PASSWORD)
    error = cli.error("digest", "--send-now", code=1, env={"LEADRELAY_SMTP_URL": wrong})
    assert f"login as '{USER}' refused: 535 5.7.8 Authentication credentials invalid" in error
    assert mailbox.received == []

    # The right one: sent, under that login, over TLS
    env = {"LEADRELAY_SMTP_URL": mailbox.url_with(USER, PASSWORD)}
    sent = cli("digest", "--send-now", env=env)
    [mail] = mailbox.received
    assert f"sent 1 failures to owner@acme.test (Message-ID {mail.message['Message-ID']})" \
        in sent.stdout
    assert [(x.username, x.accepted, x.over_tls) for x in mailbox.logins][-1] == (
        USER, True, True)
    history = cli("digest", "--history", env=env)
    history_json = cli("digest", "--history", "--json", env=env)
    assert_no_password(error, sent.output, history.output, history_json.output)


def test_the_scheduler_sends_over_starttls_and_its_log_shows_no_password(
    cli: Cli, form: int, engine: Leadrelay, engine_for: Callable[..., Leadrelay],
    redis_url: str, mailbox: Mailbox, httpserver: HTTPServer,
) -> None:
    # Given a failure in the last 6-hour window that closed (real time)
    httpserver.expect_request("/crm").respond_with_data("no", status=400)
    add_integration(cli, form, httpserver.url_for("/crm"), "--retry", json.dumps(ONE_TRY))
    window = last_closed(SystemClock().now(), 6)
    app = engine_for(clock=FakeClock(window.start.replace(minute=17)))
    app.submit(form, LEAD)
    assert len(app.deliver_due()) == 1

    # When a scheduler runs with the login in LEADRELAY_SMTP_URL, logging everything
    env = {"LEADRELAY_BROKER_URL": redis_url,
           "LEADRELAY_SMTP_URL": mailbox.url_with(USER, PASSWORD)}
    scheduler = start(cli, "scheduler", "--log-level", "debug", env=env)
    try:
        wait_for(lambda: len(mailbox.received) >= 1, what="the digest", logs=[scheduler])
    finally:
        code, stderr = stop(scheduler)

    # Then the digest went out under the login, and the password is nowhere in its output
    assert code == 0, stderr
    assert mailbox.handler.senders == [USER]
    assert (f"through smtp://{USER}:***@127.0.0.1:{mailbox.port}?starttls=true"
            in stderr)
    assert "sent to owner@acme.test" in stderr
    assert_no_password(stderr)
