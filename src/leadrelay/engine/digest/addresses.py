"""Email addresses: what an account owner may give as theirs, checked once for everyone.

A digest goes to the address an owner signed up with, so the address is checked where it
enters (account created or changed, ``LEADRELAY_DIGEST_FROM``): one plain ASCII address,
``local@domain.tld``, nothing a mail header could read as two recipients or a comment.
"""

from __future__ import annotations

import re
from email.errors import HeaderParseError, MessageError
from email.headerregistry import Address

from ..errors import BadInput

#: The longest address SMTP carries (RFC 5321: 64 + 1 + 255).
MAX_ADDRESS = 320
_SHAPE = re.compile(r"^[!-~]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")


def check_address(value: object, field: str) -> str:
    """``value`` if it is one email address; :class:`BadInput` naming ``field`` if not."""
    if not isinstance(value, str) or len(value) > MAX_ADDRESS or not _SHAPE.match(value):
        raise BadInput(f"{field}: {_shown(value)} is not an email address", field=field)
    try:
        parsed = Address(addr_spec=value)
    except (ValueError, IndexError, HeaderParseError, MessageError):
        parsed = None
    # The parser drops comments and resolves quoting: what it read back must be what
    # was given, or a mail header would carry something else than what was checked.
    if parsed is None or parsed.addr_spec != value or value.count("@") != 1:
        raise BadInput(f"{field}: {_shown(value)} is not an email address", field=field)
    return value


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
