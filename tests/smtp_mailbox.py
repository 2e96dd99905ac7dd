"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, and can be told
to refuse a recipient, to answer the message late, or to be down."""

from __future__ import annotations

import asyncio
import email
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as DEFAULT_POLICY
from typing import Any

from aiosmtpd.controller import Controller


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
    lock: threading.Lock = field(default_factory=threading.Lock)

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
        if self.answer_after:
            await asyncio.sleep(self.answer_after)
        return "250 2.0.0 Message accepted for delivery"


class Mailbox:
    """The server on one loopback port, which can be stopped and started again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.handler = Handler()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        """``LEADRELAY_SMTP_URL`` for this server (a short timeout: tests do not wait long)."""
        return f"smtp://127.0.0.1:{self.port}?timeout=2"

    @property
    def received(self) -> list[Received]:
        """What it received so far."""
        with self.handler.lock:
            return list(self.handler.received)

    def start(self) -> Mailbox:
        """Listen (again)."""
        if self._controller is None:
            self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
            self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused until :meth:`start`."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
