"""The digest's settings, checked: a bad value is a :class:`ConfigError` naming its variable.

Shared by ``Settings.from_env`` (the deployment's ``LEADRELAY_*`` variables) and the
account settings (an account's own interval), so both refuse the same values.
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from ..errors import BadInput, ConfigError
from .addresses import check_address
from .smtp import SmtpServer

#: The longest digest interval, in hours (30 days).
MAX_HOURS = 720.0
#: The shortest: a quarter of an hour (shorter windows are a stream of mails, not a digest).
MIN_HOURS = 0.25
#: The digest's sender when ``LEADRELAY_DIGEST_FROM`` is unset.
DEFAULT_SENDER = "leadrelay@localhost.localdomain"
#: The most tries of a refused digest.
MAX_ATTEMPTS = 100


def check_hours(value: object, field: str, *, error: type[BadInput] = ConfigError) -> float:
    """An interval in hours: a number between :data:`MIN_HOURS` and :data:`MAX_HOURS`."""
    if isinstance(value, bool):
        number = math.nan
    elif isinstance(value, int | float):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise error(f"{field}: must be a number of hours, got {_shown(value)}",
                        field=field) from None
    if not math.isfinite(number) or not MIN_HOURS <= number <= MAX_HOURS:
        raise error(f"{field}: must be between {MIN_HOURS:g} and {MAX_HOURS:g} hours, "
                    f"got {_shown(value)}", field=field)
    return number


def check_attempts(raw: str) -> int:
    """``LEADRELAY_DIGEST_ATTEMPTS``: a whole number from 1 to :data:`MAX_ATTEMPTS`."""
    field = "LEADRELAY_DIGEST_ATTEMPTS"
    text = raw.strip()
    if (not (text.isascii() and text.isdigit() and len(text) <= 9)
            or not 1 <= int(text) <= MAX_ATTEMPTS):
        raise ConfigError(f"{field}: must be a whole number from 1 to {MAX_ATTEMPTS}, "
                          f"got {_shown(raw)}", field=field)
    return int(text)


def check_sender(raw: str) -> str:
    """``LEADRELAY_DIGEST_FROM``: one email address."""
    field = "LEADRELAY_DIGEST_FROM"
    try:
        return check_address(raw, field)
    except BadInput as exc:
        raise ConfigError(str(exc), field=field) from None


def check_smtp_url(raw: str | None) -> str | None:
    """``LEADRELAY_SMTP_URL``: unset, or a URL :class:`SmtpServer` can parse."""
    if raw is not None:
        SmtpServer.parse(raw)
    return raw


def check_public_url(raw: str | None) -> str | None:
    """``LEADRELAY_PUBLIC_URL``: unset, or an http(s) base URL (kept without its last ``/``)."""
    if raw is None:
        return None
    field = "LEADRELAY_PUBLIC_URL"
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
            or parts.query or parts.fragment or parts.username or parts.password
            or any(c.isspace() for c in raw)):
        raise ConfigError(f"{field}: must be the API's base URL, like https://leads.example, "
                          f"got {_shown(raw)}", field=field)
    return raw.rstrip("/")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
