"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, and can be told
to refuse a recipient, to answer the message late, or to be down; optionally behind
STARTTLS or TLS from the first byte with a self-signed certificate made here, and asking
for a login (SMTP AUTH)."""

from __future__ import annotations

import asyncio
import datetime
import email
import ipaddress
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as DEFAULT_POLICY
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate and its key, as PEM files (the certificate is its own CA)."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side TLS context presenting this certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def self_signed(directory: Path, name: str = "127.0.0.1") -> Certificate:
    """A fresh self-signed certificate for ``name`` (an IP address or a host name), valid
    from a few minutes ago for one day, written under ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        alt = x509.DNSName(name)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"smtp-{name}-{cert.serial_number:x}"
    cert_file, key_file = stem.with_suffix(".pem"), stem.with_suffix(".key")
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Certificate(cert_file, key_file)


@dataclass(frozen=True)
class Login:
    """One AUTH the server was asked for."""

    mechanism: str
    username: str
    password: str
    accepted: bool
    #: Whether the connection was encrypted when the login came.
    over_tls: bool


@dataclass
class Received:
    """One message as the server got it: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage

    def part(self, subtype: str) -> str:
        """The text of the ``text/SUBTYPE`` part."""
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None and body.get_content_type() == f"text/{subtype}", subtype
        # The wire's CRLF line ends, read back as Python's.
        return str(body.get_content()).replace("\r\n", "\n")


@dataclass
class Handler:
    """aiosmtpd's handler: refuses, delays, records."""

    received: list[Received] = field(default_factory=list)
    #: Recipients answered 550 at RCPT.
    refused: set[str] = field(default_factory=set)
    #: Seconds to wait before answering the message (after keeping it).
    answer_after: float = 0.0
    rcpt_tries: list[str] = field(default_factory=list)
    #: Accounts the server accepts (username to password); empty: no login asked for.
    users: dict[str, str] = field(default_factory=dict)
    #: Every AUTH tried, in order.
    logins: list[Login] = field(default_factory=list)
    #: The login each received message was sent under (``None``: none).
    senders: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: Any) -> AuthResult:
        """aiosmtpd's authenticator: a known username with its password, nothing else."""
        assert isinstance(auth_data, LoginPassword)
        username = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        accepted = self.users.get(username) == password
        with self.lock:
            self.logins.append(Login(mechanism, username, password, accepted,
                                     over_tls=_encrypted(server)))
        return AuthResult(success=accepted, handled=False, auth_data=auth_data)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        with self.lock:
            self.rcpt_tries.append(address)
        if address in self.refused:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        message = email.message_from_bytes(raw, policy=DEFAULT_POLICY)
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), raw,
                                          message))  # type: ignore[arg-type]
            auth = session.auth_data
            self.senders.append(auth.login.decode() if isinstance(auth, LoginPassword)
                                else None)
        if self.answer_after:
            await asyncio.sleep(self.answer_after)
        return "250 2.0.0 Message accepted for delivery"


class Mailbox:
    """The server on one loopback port, which can be stopped and started again.

    :param tls: ``"starttls"`` (plain until STARTTLS, which it requires before mail) or
        ``"implicit"`` (TLS from the first byte, like port 465); both need ``certificate``.
    :param users: when given, a login is required (offered only over TLS) and only these
        username/password pairs are accepted.
    """

    def __init__(self, port: int, *, tls: Literal["starttls", "implicit"] | None = None,
                 certificate: Certificate | None = None,
                 users: dict[str, str] | None = None) -> None:
        if tls is not None and certificate is None:
            raise ValueError("a TLS mailbox needs a certificate")
        self.port = port
        self.tls, self.certificate = tls, certificate
        self.handler = Handler(users=dict(users or {}))
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        """``LEADRELAY_SMTP_URL`` for this server (a short timeout: tests do not wait long);
        over TLS, trusting its certificate through ``cafile``."""
        return self.url_with()

    def url_with(self, username: str | None = None, password: str = "", *,
                 cafile: Path | bool | None = True) -> str:
        """``LEADRELAY_SMTP_URL`` logging in as ``username`` with ``password`` (both
        percent-encoded); over TLS, ``cafile`` ``True`` trusts this server's certificate,
        ``None`` leaves the system's trust store, a path trusts that file."""
        login = f"{quote(username, safe='')}:{quote(password, safe='')}@" if username else ""
        if self.tls is None:
            return f"smtp://{login}127.0.0.1:{self.port}?timeout=2"
        scheme, starttls = ("smtps", "") if self.tls == "implicit" else ("smtp", "&starttls=true")
        if cafile is True:
            assert self.certificate is not None
            cafile = self.certificate.cert
        trust = f"&cafile={quote(str(cafile), safe='/')}" if cafile else ""
        return f"{scheme}://{login}127.0.0.1:{self.port}?timeout=2{starttls}{trust}"

    @property
    def logins(self) -> list[Login]:
        """Every login tried so far."""
        with self.handler.lock:
            return list(self.handler.logins)

    @property
    def received(self) -> list[Received]:
        """What it received so far."""
        with self.handler.lock:
            return list(self.handler.received)

    def start(self) -> Mailbox:
        """Listen (again)."""
        if self._controller is None:
            self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                          **self._options())
            self._controller.start()
        return self

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.certificate is not None and self.tls == "starttls":
            options.update(tls_context=self.certificate.server_context(),
                           require_starttls=True)
        elif self.certificate is not None and self.tls == "implicit":
            # aiosmtpd counts only STARTTLS as "TLS" for AUTH; here every byte is.
            options.update(ssl_context=self.certificate.server_context(),
                           auth_require_tls=False)
        if self.handler.users:
            # Required where aiosmtpd can tell the connection is TLS (after STARTTLS);
            # offered, and checked, from the first byte of implicit TLS.
            options.update(authenticator=self.handler.authenticate,
                           auth_required=self.tls != "implicit")
        return options

    def stop(self) -> None:
        """Stop listening: connections are refused until :meth:`start`."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def _encrypted(server: SMTP) -> bool:
    """Whether ``server``'s connection is TLS now (after STARTTLS, or from the start)."""
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None
