"""``X-Hub-Signature-256``: the HMAC-SHA256 of the raw body, keyed with the app secret."""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="


def sign(body: bytes, app_secret: str) -> str:
    """The header value Facebook sends with ``body``: ``sha256=<lowercase hex>``."""
    return _PREFIX + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, app_secret: str) -> bool:
    """Whether ``header`` signs exactly ``body`` with ``app_secret`` (constant time)."""
    if not header or not header.startswith(_PREFIX):
        return False
    given = header[len(_PREFIX):].strip().lower().encode("ascii", "replace")
    expected = sign(body, app_secret)[len(_PREFIX):].encode()
    return hmac.compare_digest(given, expected)
