"""Two `leadrelay scheduler` processes on one ledger: each digest is sent once."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest
from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock, SystemClock
from leadrelay.engine.digest.windows import last_closed
from smtp_mailbox import Mailbox

from .helpers import LEAD, ONE_TRY, Cli, add_integration, start, stop, wait_for


@pytest.fixture
def mailbox(unused_port: int) -> Iterator[Mailbox]:
    """A real SMTP server on loopback."""
    box = Mailbox(unused_port).start()
    try:
        yield box
    finally:
        box.stop()


def test_two_schedulers_send_one_email_per_account_and_window(
    cli: Cli, form: int, engine: Leadrelay, engine_for: Callable[..., Leadrelay],
    redis_url: str, mailbox: Mailbox, httpserver: HTTPServer,
) -> None:
    # Given three failures in the last 6-hour window that closed (real time)
    httpserver.expect_request("/crm").respond_with_data("no", status=400)
    add_integration(cli, form, httpserver.url_for("/crm"), "--retry", json.dumps(ONE_TRY))
    window = last_closed(SystemClock().now(), 6)
    app = engine_for(clock=FakeClock(window.start.replace(minute=17)))
    for _ in range(3):
        app.submit(form, LEAD)
    assert len(app.deliver_due()) == 3

    # When two schedulers start at once on the same ledger, with the same SMTP server
    env = {"LEADRELAY_BROKER_URL": redis_url, "LEADRELAY_SMTP_URL": mailbox.url}
    schedulers = [start(cli, "scheduler", env=env), start(cli, "scheduler", env=env)]
    try:
        wait_for(lambda: len(mailbox.received) >= 1, what="the digest", logs=schedulers)
        # both have made their first digest run (they run at start; give the slower one
        # time to finish it, then a little more)
        time.sleep(3)
    finally:
        results = [stop(p) for p in schedulers]

    # Then exactly one email went out, for that window, recorded once
    for code, stderr in results:
        assert code == 0, stderr
        assert "failure digests of 6 h windows through smtp://127.0.0.1:" in stderr
    [mail] = mailbox.received
    assert "3 failed deliveries for Acme" in mail.message["Subject"]
    [row] = engine.digests.history()
    assert row["state"] == "sent" and row["message_id"] == mail.message["Message-ID"]
    assert row["window_start"] == window.start.isoformat().replace("+00:00", "Z")
