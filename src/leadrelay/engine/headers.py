"""What may go into an HTTP header that an operator configures.

A header name is an RFC 9110 token; a value is Latin-1 text without control
characters other than tab. A line break in either would let a config add headers
of its own to every request (or split the request), and a character HTTP cannot
carry would fail every attempt at send time: both are refused when the
integration is saved, naming the header and never showing a secret value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pydantic

__all__ = ["check_headers", "header_name_problem", "header_value_problem"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_LINE_BREAK = re.compile(r"[\r\n]")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def header_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be a header name, or None when it can."""
    if not isinstance(name, str) or not name:
        return "a header name must be non-empty text"
    if _LINE_BREAK.search(name):
        return "a header name cannot contain a line break (CR or LF)"
    if not _TOKEN.fullmatch(name):
        return ("a header name is letters, digits and !#$%&'*+-.^_`|~ only "
                "(no spaces, colons or other characters)")
    return None


def header_value_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a header value, or None when it can. Never quotes the value."""
    if isinstance(value, pydantic.SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        return "a header value must be text"
    if _LINE_BREAK.search(value):
        return "its value contains a line break (CR or LF), which would inject headers"
    if _CONTROL.search(value):
        return "its value contains a control character (only tab is allowed)"
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return "its value has characters HTTP headers cannot carry (Latin-1 only)"
    return None


def check_headers(headers: Mapping[Any, Any]) -> None:
    """Raise :class:`ValueError` naming the first header whose name or value is invalid.

    For pydantic validators of a connector config: the message reads after the field
    (``config.headers: header 'X-Source': its value contains a line break …``).
    """
    for name, value in headers.items():
        problem = header_name_problem(name) or header_value_problem(value)
        if problem is not None:
            raise ValueError(f"header {_shown(name)}: {problem}")


def _shown(name: Any) -> str:
    text = repr(name)  # escapes line breaks: the message stays one line
    return text if len(text) <= 60 else text[:57] + "..."
