"""A form's intake settings: public key, allowed origins, required fields, thank-you URL
and message.

A web page cannot keep a secret, so browsers post to a form by its *public key*:
unguessable (so forms cannot be enumerated by id), and rotatable when it has been
abused. The settings are validated here, once, for the CLI and the API alike, and
checked here against each lead that arrives.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .errors import BadInput

#: Public keys start so: never all digits, so ``/v1/forms/{id}`` and ``/v1/forms/{key}``
#: cannot be mistaken for one another.
PUBLIC_KEY_PREFIX = "fk_"
#: ``allowed_origins`` entry that lets a page of any origin post.
ANY_ORIGIN = "*"
MAX_ORIGINS = 100
MAX_REQUIRED_FIELDS = 100


def new_public_key() -> str:
    """A new public form key: 192 random bits."""
    return PUBLIC_KEY_PREFIX + secrets.token_urlsafe(24)


def looks_like_public_key(value: str) -> bool:
    """Whether ``value`` has the shape of a public key (not whether such a form exists)."""
    return value.startswith(PUBLIC_KEY_PREFIX) and 8 < len(value) <= 64


def normalize_origin(value: Any, *, field: str = "allowed_origins") -> str:
    """``value`` as a browser sends it in ``Origin`` (``https://shop.example[:port]``)."""
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{field}: an origin must be a non-empty string", field=field)
    text = value.strip()
    if text == ANY_ORIGIN:
        return text
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
        or port == -1
    ):
        raise BadInput(
            f"{field}: {text!r} is not an origin: give scheme://host[:port], "
            "such as https://shop.example, or * for any",
            field=field,
        )
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def check_origins(values: Any) -> list[str]:
    """A list of allowed origins, normalized, without repeats."""
    items = _list(values, "allowed_origins", MAX_ORIGINS)
    return list(dict.fromkeys(normalize_origin(v) for v in items))


def check_required_fields(values: Any) -> list[str]:
    """A list of required field names, without repeats."""
    items = _list(values, "required_fields", MAX_REQUIRED_FIELDS)
    for item in items:
        if not isinstance(item, str) or not item.strip() or len(item) > 200:
            raise BadInput(
                "required_fields: each must be a field name of 1 to 200 characters",
                field="required_fields",
            )
    return list(dict.fromkeys(i.strip() for i in items))


def check_thank_you_url(value: Any) -> str | None:
    """An absolute http(s) URL, or ``None`` for "no redirect"."""
    if value is None or value == "":
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or len(value) > 2000
        or any(c in value for c in "\r\n\t ")
    ):
        raise BadInput(
            "thank_you_url: must be an absolute http(s) URL of at most 2000 characters",
            field="thank_you_url",
        )
    return str(value)


MAX_THANK_YOU_MESSAGE = 500


def check_thank_you_message(value: Any) -> str | None:
    """One line of text (at most 500 characters), or ``None`` for the embed's default."""
    if value is None or value == "":
        return None
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > MAX_THANK_YOU_MESSAGE
        or not value.isprintable()
    ):
        raise BadInput(
            f"thank_you_message: one line of at most {MAX_THANK_YOU_MESSAGE} printable "
            "characters",
            field="thank_you_message",
        )
    return value.strip()


def origin_allowed(allowed: Iterable[str], origin: str) -> bool:
    """Whether a page of ``origin`` may post to a form allowing ``allowed``."""
    allowed = list(allowed)
    if ANY_ORIGIN in allowed:
        return True
    try:
        return normalize_origin(origin, field="Origin") in allowed
    except BadInput:
        return False  # "null" (a sandboxed page, a file) and other non-origins


def check_required(required: Iterable[str], payload: Mapping[str, Any]) -> None:
    """Refuse a lead lacking a required field (absent, null, or blank)."""
    missing = [f for f in required if _blank(payload.get(f))]
    if missing:
        names = ", ".join(missing)
        raise BadInput(f"{missing[0]}: required by this form (missing: {names})",
                       field=missing[0])


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | dict):
        return not value
    return False


def _list(values: Any, field: str, most: int) -> list[Any]:
    if values is None:
        return []
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise BadInput(f"{field}: must be a list", field=field)
    if len(values) > most:
        raise BadInput(f"{field}: at most {most} entries", field=field)
    return list(values)


def describe_form(f: Any) -> dict[str, Any]:
    """A form (ledger row) as shown to its account: public key and intake settings."""
    return {
        "id": f.id,
        "account_id": f.account_id,
        "name": f.name,
        "public_key": f.public_key,
        "active": f.active,
        "allowed_origins": list(f.allowed_origins or []),
        "required_fields": list(f.required_fields or []),
        "thank_you_url": f.thank_you_url,
        "thank_you_message": f.thank_you_message,
        "created_at": f.created_at.isoformat(),
        "archived_at": f.archived_at.isoformat() if f.archived_at else None,
    }
