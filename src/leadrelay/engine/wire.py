"""What crosses the wire: a rendered request, the CRM's response, one recorded exchange.

These are plain values. Connectors build :class:`RenderedRequest` and receive
:class:`CrmResponse`; the engine stores :class:`Exchange` records (redacted and
truncated) as part of every attempt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from requests.structures import CaseInsensitiveDict

#: Response bodies are stored up to this many bytes per exchange.
BODY_LIMIT = 16 * 1024
#: A CRM's answer is read up to this many bytes (and inflated up to as many): beyond
#: it, reading stops, the connection is dropped, and the answer is judged on this much.
READ_CAP = 1024 * 1024

# NUL cannot be stored in PostgreSQL text or JSONB; lone surrogates cannot be encoded
# as UTF-8 at all. Both arrive from CRMs (binary junk, broken encoders) and from
# ``errors="surrogateescape"`` decoding.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def safe_text(text: str) -> str:
    """``text`` storable on every backend: NUL shown as the escape ``\\x00``, lone
    surrogates replaced by U+FFFD. Text without either is returned as it is (the
    usual case costs one regex scan)."""
    if _UNSTORABLE.search(text) is None:
        return text
    return _UNSTORABLE.sub(lambda m: "\\x00" if m.group() == "\x00" else "\ufffd", text)


@dataclass(frozen=True)
class RenderedRequest:
    """A request as a connector renders it, before it is sent.

    ``body`` is the exact bytes (or text) that will go on the wire. ``step``
    names the call within a multi-step delivery (``"login"``, ``"create"``).
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | str | None = None
    step: str = "send"

    def body_text(self) -> str:
        """The body as text, for logs and dry runs."""
        if self.body is None:
            return ""
        if isinstance(self.body, bytes):
            return self.body.decode("utf-8", errors="replace")
        return self.body


class CrmResponse:
    """A CRM's answer, as judged by expectations.

    ``data`` holds what a connector parsed out of the body (the SOAP result as
    plain dicts, for example) so expectations can address it by path.
    ``fault`` holds a SOAP fault's code and message when there was one.
    """

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        encoding: str | None = None,
        data: Any = None,
        fault: Mapping[str, str] | None = None,
        url: str = "",
        proxy: str | None = None,
        capped: bool = False,
    ) -> None:
        self.status = status
        self.headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(headers or {})
        self.body = body
        self.encoding = encoding
        self.data = data
        self.fault = dict(fault) if fault else None
        self.url = url
        self.proxy = proxy
        #: The answer was larger than :data:`READ_CAP`: ``body`` is its beginning.
        self.capped = capped

    @cached_property
    def text(self) -> str:
        """The body decoded with the declared charset, falling back to UTF-8."""
        try:
            # utf-8-sig: some CRMs (and proxies) prefix JSON with a byte-order mark.
            encoding = self.encoding or "utf-8"
            if encoding.lower().replace("_", "-") == "utf-8":
                encoding = "utf-8-sig"
            return self.body.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            return self.body.decode("utf-8", errors="replace")

    @cached_property
    def json(self) -> Any:
        """The body parsed as JSON; raises ``ValueError`` when it is not JSON."""
        return json.loads(self.text)

    def __repr__(self) -> str:
        return f"CrmResponse(status={self.status}, bytes={len(self.body)})"


@dataclass
class Exchange:
    """One request/response pair as stored on an attempt (secrets already redacted)."""

    step: str
    method: str
    url: str
    request_headers: dict[str, str]
    request_body: str
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""
    #: The stored body is shorter than the answer (see :data:`BODY_LIMIT`).
    response_truncated: bool = False
    #: Bytes of body the CRM sent that were read (before inflating).
    response_bytes: int = 0
    #: Reading stopped at :data:`READ_CAP`: the answer was larger still.
    response_capped: bool = False
    duration_ms: float = 0.0
    proxy: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view of the exchange."""
        return {
            "step": self.step,
            "request": {
                "method": self.method,
                "url": self.url,
                "headers": self.request_headers,
                "body": self.request_body,
            },
            "response": None
            if self.status is None
            else {
                "status": self.status,
                "headers": self.response_headers,
                "body": self.response_body,
                "truncated": self.response_truncated,
                "bytes": self.response_bytes,
                "capped": self.response_capped,
            },
            "duration_ms": round(self.duration_ms, 2),
            "proxy": self.proxy,
            "error": self.error,
        }
