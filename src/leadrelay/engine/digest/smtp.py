"""Sending one message over SMTP with the standard library, and knowing how it ended.

``LEADRELAY_SMTP_URL`` names the server: ``smtp://host:port`` (plain, or STARTTLS with
``?starttls=true``), ``smtps://host:465`` (TLS from the first byte), credentials as
``user:password@`` (percent-encoded), and ``timeout`` / ``cafile`` as query options.

A send ends in one of four ways, and the caller acts on each differently:

- accepted (the server answered 250 to the message);
- :class:`SmtpUnavailable`: nothing was accepted (no connection, TLS or login failed, a
  4xx "try later", the connection lost before the message's end was sent): try again;
- :class:`SmtpRefused`: the server said no for good (5xx to the sender, the recipient or
  the message): counted, and given up after a few;
- :class:`SmtpInDoubt`: the whole message was sent and the answer never came: the server
  may have it, so it must not be sent again.

That is why the DATA step is written out here instead of ``send_message``: only there can
"the message's end was sent" be told from "it was not".
"""

from __future__ import annotations

import re
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import ConfigError

FIELD = "LEADRELAY_SMTP_URL"
_SCHEMES = {"smtp": 25, "smtps": 465}
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}
_OPTIONS = ("starttls", "timeout", "cafile")


class SmtpError(Exception):
    """A send did not end with the server accepting the message.

    :param reason: one line safe to log and show (the server's words, never a password).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SmtpUnavailable(SmtpError):
    """Nothing was accepted, and nothing refused for good: try again later."""


class SmtpRefused(SmtpError):
    """The server refused the sender, the recipient or the message (a 5xx answer)."""


class SmtpInDoubt(SmtpError):
    """The message was sent whole and no answer came: the server may have it."""


@dataclass(frozen=True)
class SmtpServer:
    """Where digests are sent from, parsed from ``LEADRELAY_SMTP_URL``."""

    host: str
    port: int
    tls: bool = False
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    cafile: str | None = None

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        """The server a URL names; :class:`ConfigError` naming ``LEADRELAY_SMTP_URL`` if
        it is not one (the message never repeats the password)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"{FIELD}: not an smtp:// or smtps:// URL ({exc})",
                              field=FIELD) from None
        if parts.scheme not in _SCHEMES:
            raise ConfigError(f"{FIELD}: the scheme must be smtp:// or smtps://, "
                              f"not {parts.scheme + '://' if parts.scheme else 'none'}",
                              field=FIELD)
        if not parts.hostname:
            raise ConfigError(f"{FIELD}: no host (smtp://host:port)", field=FIELD)
        if parts.path not in ("", "/") or parts.fragment:
            raise ConfigError(f"{FIELD}: a path has no meaning here; "
                              "options go in the query (?starttls=true)", field=FIELD)
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigError(f"{FIELD}: unknown option {unknown[0]!r} "
                              f"(known: {', '.join(_OPTIONS)})", field=FIELD)
        tls = parts.scheme == "smtps"
        starttls = _flag(options.get("starttls", "false"), "starttls")
        if tls and starttls:
            raise ConfigError(f"{FIELD}: smtps:// is TLS already; starttls is for smtp://",
                              field=FIELD)
        timeout = _timeout(options.get("timeout", "30"))
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if not (username or "").isascii() or not (password or "").isascii():
            # smtplib sends the login as ASCII: any other character could never log in.
            raise ConfigError(f"{FIELD}: the user name and password must be ASCII "
                              "(percent-encoded where a URL needs it)", field=FIELD)
        return cls(
            host=parts.hostname,
            port=port or _SCHEMES[parts.scheme],
            tls=tls,
            starttls=starttls,
            username=username,
            password=password,
            timeout=timeout,
            cafile=options.get("cafile") or None,
        )

    def safe_url(self) -> str:
        """The URL fit to print: the password shown as ``***``."""
        scheme = "smtps" if self.tls else "smtp"
        who = f"{self.username}:***@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "?starttls=true" if self.starttls else ""
        return f"{scheme}://{who}{host}:{self.port}{query}"

    def send(self, message: EmailMessage, *, sender: str, recipient: str) -> None:
        """Send ``message`` to ``recipient``; returns once the server accepted it, or
        raises one of :class:`SmtpUnavailable`, :class:`SmtpRefused`, :class:`SmtpInDoubt`."""
        payload = _data(message.as_bytes(policy=SMTP_POLICY))
        conn = self._connect()
        try:
            self._envelope(conn, sender, recipient)
            try:
                conn.send(payload)
            except (OSError, smtplib.SMTPException) as exc:
                # The end of the message never left: a server keeps no partial message.
                raise SmtpUnavailable(f"lost the connection while sending: {_words(exc)}"
                                      ) from None
            try:
                code, answer = conn.getreply()
            except (OSError, smtplib.SMTPException) as exc:
                raise SmtpInDoubt(
                    "the message was sent but the server's answer never came "
                    f"({_words(exc)}): it may have been delivered, so it is not sent again"
                ) from None
            _judge("message", code, answer)
        finally:
            _close(conn)

    def _connect(self) -> smtplib.SMTP:
        try:
            conn: smtplib.SMTP
            if self.tls:
                conn = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                        context=self._context())
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise SmtpUnavailable(f"cannot reach {self.safe_url()}: {_words(exc)}") from None
        try:
            conn.ehlo_or_helo_if_needed()
            if self.starttls:
                if not conn.has_extn("starttls"):
                    raise SmtpUnavailable(f"{self.safe_url()} does not offer STARTTLS")
                conn.starttls(context=self._context())
                conn.ehlo()
            if self.username:
                conn.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            _close(conn)
            raise SmtpUnavailable(f"login as {self.username!r} refused: "
                                  f"{exc.smtp_code} {_text(exc.smtp_error)}") from None
        except (OSError, smtplib.SMTPException) as exc:
            _close(conn)
            raise SmtpUnavailable(f"{self.safe_url()}: {_words(exc)}") from None
        except SmtpError:
            _close(conn)
            raise
        return conn

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile)

    @staticmethod
    def _envelope(conn: smtplib.SMTP, sender: str, recipient: str) -> None:
        try:
            _judge("sender", *conn.mail(sender))
            _judge("recipient", *conn.rcpt(recipient))
            code, answer = conn.docmd("DATA")
        except (OSError, smtplib.SMTPException) as exc:
            raise SmtpUnavailable(f"lost the connection: {_words(exc)}") from None
        if code != 354:
            _judge("message", code, answer)
            raise SmtpUnavailable(f"message: unexpected answer {code} {_text(answer)}")


def _judge(what: str, code: int, answer: bytes) -> None:
    """Nothing when ``code`` accepts; else the error a refusal or a "later" is."""
    if code in (250, 251, 354):
        return
    words = f"{what} refused: {code} {_text(answer)}"
    if code >= 500:
        raise SmtpRefused(words)
    raise SmtpUnavailable(words)


def _data(raw: bytes) -> bytes:
    """The DATA payload: dot-stuffed (RFC 5321 4.5.2), ending with the lone dot."""
    stuffed = re.sub(rb"(?m)^\.", b"..", raw)
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


def _close(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException):
        conn.close()


def _text(answer: bytes | str) -> str:
    text = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else answer
    return " ".join(text.split())[:300]


def _words(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_text(str(exc)) or 'no detail'}"


def _flag(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{FIELD}: {name} must be true or false, not {raw!r}", field=FIELD)


def _timeout(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value <= 600:
        raise ConfigError(f"{FIELD}: timeout must be seconds between 0 and 600, "
                          f"not {raw!r}", field=FIELD)
    return value
