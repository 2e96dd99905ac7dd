"""The digest over STARTTLS and over TLS from the first byte, with a login (SMTP AUTH).

The SMTP server is a real aiosmtpd on loopback presenting a self-signed certificate made
in the test; ``cafile=`` in ``LEADRELAY_SMTP_URL`` is what makes the engine trust it. The
login's password has characters that must be percent-encoded in the URL, and it must
never show: not in a log line, not in ``safe_url()``, not in the digest history.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.digest.smtp import SmtpServer
from leadrelay.engine.errors import ConfigError
from smtp_mailbox import Certificate, Login, Mailbox, self_signed

from .conftest import OWNER, Crm

USER = "digest"
#: A password with a character of each kind a URL gives meaning to.
PASSWORD = "s3cr:t/p@ss%w?rd#1"


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    """The server's self-signed certificate for 127.0.0.1."""
    return self_signed(tmp_path / "tls")


@pytest.fixture(params=["starttls", "implicit"])
def mailbox(request: pytest.FixtureRequest, unused_port: int, certificate: Certificate
            ) -> Iterator[Mailbox]:
    """A real SMTP server on loopback, over STARTTLS or TLS, asking for a login."""
    box = Mailbox(unused_port, tls=request.param, certificate=certificate,
                  users={USER: PASSWORD}).start()
    try:
        yield box
    finally:
        box.stop()


def url(box: Mailbox, *, password: str = PASSWORD, cafile: Path | bool | None = True) -> str:
    """``LEADRELAY_SMTP_URL`` for ``box`` logging in as :data:`USER`."""
    return box.url_with(USER, password, cafile=cafile)


@pytest.fixture
def app(make_app: Callable[..., Leadrelay], mailbox: Mailbox) -> Leadrelay:
    """An engine whose digests go to ``mailbox`` with the right login and trust."""
    return make_app(smtp_url=url(mailbox), public_url="https://leads.example")


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Everything the engine logs, down to DEBUG."""
    caplog.set_level(logging.DEBUG, logger="leadrelay")
    return caplog


def engine_text(logs: pytest.LogCaptureFixture) -> str:
    """What leadrelay logged (the test SMTP server's own log lines left out)."""
    return "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in logs.records
                     if r.name.startswith("leadrelay"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_no_password(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and quote(PASSWORD, safe="") not in text


def test_a_digest_goes_over_tls_logged_in_with_the_credentials_of_the_url(
    app: Leadrelay, crm: Crm, mailbox: Mailbox, clock: FakeClock,
    logs: pytest.LogCaptureFixture,
) -> None:
    # Given failures in the 06:00-12:00 window
    crm.integration("Salesforce", "/sf")
    crm.leads(2)

    # When the window has closed and the digest runs
    clock.advance(hours=3)
    [result] = app.digests.run()

    # Then the message arrived, sent under the login of the URL, once, over TLS
    assert result.state == "sent"
    [mail] = mailbox.received
    assert mail.rcpt_tos == [OWNER] and "2 failed deliveries for Acme" in mail.message["Subject"]
    [login] = mailbox.logins
    assert (login.username, login.password, login.accepted, login.over_tls) == (
        USER, PASSWORD, True, True)
    assert mailbox.handler.senders == [USER]
    # and the password shows nowhere: logs, the printable URL, the history
    server = app.digests.smtp
    assert server is not None and server.password == PASSWORD
    scheme = "smtps" if mailbox.tls == "implicit" else "smtp"
    query = "?starttls=true" if mailbox.tls == "starttls" else ""
    assert server.safe_url() == f"{scheme}://{USER}:***@127.0.0.1:{mailbox.port}{query}"
    assert PASSWORD not in repr(server)
    assert "sent to owner@acme.test" in engine_text(logs)
    assert_no_password(engine_text(logs), server.safe_url(),
                       json.dumps(app.digests.history()), mail.raw.decode())


@pytest.mark.parametrize("trust", ["system store", "another certificate"])
def test_a_certificate_not_trusted_is_unavailable_and_no_login_is_sent(
    make_app: Callable[..., Leadrelay], crm: Crm, mailbox: Mailbox, clock: FakeClock,
    logs: pytest.LogCaptureFixture, tmp_path: Path, trust: str,
) -> None:
    # Given an engine that does not trust the server's certificate
    cafile = None if trust == "system store" else self_signed(tmp_path / "other").cert
    untrusting = make_app(smtp_url=url(mailbox, cafile=cafile))
    crm.integration("Salesforce", "/sf")
    crm.leads(1)
    clock.advance(hours=3)

    # When the digest runs
    [result] = untrusting.digests.run()

    # Then nothing was sent, the password never left (no login reached the server)
    assert result.state == "claimed" and mailbox.received == [] and mailbox.logins == []
    # and the reason says what is wrong with the certificate, the password left out
    reason = result.error or ""
    assert "CERTIFICATE_VERIFY_FAILED" in reason and "self-signed certificate" in reason
    assert f"{USER}:***@127.0.0.1:{mailbox.port}" in reason
    [row] = untrusting.digests.history()
    assert row["state"] == "claimed" and row["last_error"] == reason
    assert reason in engine_text(logs)
    assert_no_password(engine_text(logs), json.dumps(row))

    # When the next try is due with the certificate trusted (cafile= fixed)
    clock.advance(minutes=5)
    [later] = make_app(smtp_url=url(mailbox)).digests.run()

    # Then the window's digest is sent then, once
    assert later.state == "sent" and later.message_id == result.message_id
    [mail] = mailbox.received
    assert "(2026-01-01 06:00 to 2026-01-01 12:00 UTC)" in mail.message["Subject"]


def test_a_certificate_for_another_name_is_unavailable(
    make_app: Callable[..., Leadrelay], crm: Crm, clock: FakeClock, tmp_path: Path,
    mailbox: Mailbox,
) -> None:
    # Given a server whose certificate (trusted) names mail.example, reached as 127.0.0.1
    other = self_signed(tmp_path / "named", "mail.example")
    box = Mailbox(free_port(), tls=mailbox.tls, certificate=other,
                  users={USER: PASSWORD}).start()
    try:
        crm.integration("Salesforce", "/sf")
        crm.leads(1)
        clock.advance(hours=3)
        [result] = make_app(smtp_url=url(box)).digests.run()
    finally:
        box.stop()

    # Then nothing was sent, and the reason is the name
    assert result.state == "claimed" and box.received == [] and box.logins == []
    assert "IP address mismatch, certificate is not valid for '127.0.0.1'" in (
        result.error or "")


def test_a_refused_login_is_tried_again_at_the_next_run_and_never_logged(
    make_app: Callable[..., Leadrelay], crm: Crm, mailbox: Mailbox, clock: FakeClock,
    logs: pytest.LogCaptureFixture,
) -> None:
    # Given an engine whose password the server refuses
    wrong = "wr0ng:pa55/word"
    refused = make_app(smtp_url=url(mailbox, password=wrong))
    crm.integration("Salesforce", "/sf")
    crm.leads(1)
    clock.advance(hours=3)

    # When the digest runs
    [result] = refused.digests.run()

    # Then nothing was sent; the login tried was refused, over TLS
    assert mailbox.received == []
    assert mailbox.logins and all(
        attempt == Login(attempt.mechanism, USER, wrong, False, True)
        for attempt in mailbox.logins)
    # and, as smtp.py's rules say for a login refused, the digest waits for the next try
    # (a refused login is a setting to fix, not the owner's address refused: it does not
    # count toward giving the digest up)
    assert result.state == "claimed"
    assert result.error == f"login as '{USER}' refused: 535 5.7.8 Authentication " \
                           "credentials invalid"
    [row] = refused.digests.history()
    assert (row["state"], row["attempts"], row["refusals"]) == ("claimed", 1, 0)
    assert row["last_error"] == result.error
    text = engine_text(logs)
    assert result.error in text
    for secret in (wrong, quote(wrong, safe=""), PASSWORD):
        assert secret not in text and secret not in json.dumps(row)

    # When the password is fixed and the next try is due
    clock.advance(minutes=5)
    [later] = make_app(smtp_url=url(mailbox)).digests.run()

    # Then the same digest is sent, once
    assert later.state == "sent" and later.message_id == result.message_id
    assert len(mailbox.received) == 1 and mailbox.logins[-1].accepted


def test_credentials_smtplib_cannot_send_are_refused_when_read() -> None:
    # smtplib sends the login as ASCII: any other character could never log in
    with pytest.raises(ConfigError, match="LEADRELAY_SMTP_URL: the user name and password "
                                          "must be ASCII") as error:
        SmtpServer.parse("smtp://digest:p%C3%A4ssw0rd@127.0.0.1:25?starttls=true")
    assert "ssw0rd" not in str(error.value)
