"""Paths into a parsed CRM answer: ``data[0].details.id``, JSONPath-like.

:func:`parse_path` turns the text into keys and indexes once, at configuration
time; :func:`resolve_path` follows them into a document and says why not when
it cannot. Also here: the small helpers that show values in trace messages,
shared by :mod:`~leadrelay.engine.rules` and :mod:`~leadrelay.engine.expectations`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .wire import CrmResponse

_PATH_TOKEN = re.compile(
    r"""\.?(?P<key>[^.\[\]'"\s]+)
      | \[\s*(?P<index>-?\d+)\s*\]
      | \[\s*"(?P<dq>(?:[^"\\]|\\.)*)"\s*\]
      | \[\s*'(?P<sq>(?:[^'\\]|\\.)*)'\s*\]""",
    re.VERBOSE,
)


def parse_path(text: str) -> tuple[str | int, ...]:
    """Parse a JSONPath-like path (``$.data[0]["odd key"].id``) into keys and indexes.

    A leading ``$`` or ``$.`` is optional; ``$`` alone is the whole document.

    :raises ValueError: naming the position of the first thing that is not a path.
    """
    s = text.strip()
    if not s:
        raise ValueError("invalid path: empty")
    pos = 1 if s == "$" or s.startswith(("$.", "$[")) else 0
    if s[pos:pos + 1] == "." and pos == 0:
        raise ValueError("invalid path: unexpected '.' at position 0")
    parts: list[str | int] = []
    while pos < len(s):
        m = _PATH_TOKEN.match(s, pos)
        # A bare key is only allowed first or after a dot: "a b" or "a]" are typos.
        if m is None or (m["key"] and parts and s[pos] != "."):
            if s[pos] == "." and pos > 0:
                raise ValueError(f"invalid path: expected a key after '.' at position {pos}")
            raise ValueError(f"invalid path: unexpected {s[pos]!r} at position {pos}")
        if m["key"] is not None:
            parts.append(m["key"])
        elif m["index"] is not None:
            parts.append(int(m["index"]))
        else:
            parts.append(re.sub(r"\\(.)", r"\1", m["dq"] if m["dq"] is not None else m["sq"]))
        pos = m.end()
    return tuple(parts)


def resolve_path(doc: Any, path: Sequence[str | int]) -> tuple[bool, Any, str]:
    """Follow ``path`` into ``doc``: ``(found, value, why-not)``; never raises."""
    value = doc
    for depth, part in enumerate(path):
        here = _path_text(path[:depth])
        if isinstance(part, int):
            if not isinstance(value, list):
                return False, None, f"saw {here} is {_json_type(value)}, not a list"
            if not -len(value) <= part < len(value):
                return False, None, f"saw no item [{part}] in {here} ({len(value)} items)"
            value = value[part]
        else:
            if not isinstance(value, Mapping):
                return False, None, f"saw {here} is {_json_type(value)}, not an object"
            if part not in value:
                return False, None, f"saw no key {_show(part)} in {here}"
            value = value[part]
    return True, value, ""


def _path_text(path: Sequence[str | int]) -> str:
    out = "$"
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}" if re.fullmatch(r"\w+", p) else (
            f"[{json.dumps(p)}]")
    return out


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")


def _json_document(response: CrmResponse) -> tuple[Any, str]:
    """What paths address: the connector's parsed ``data``, else the JSON body."""
    if response.data is not None:
        return response.data, ""
    if not response.body.strip():
        return None, "saw an empty body, not JSON"
    try:
        return response.json, ""
    except (ValueError, RecursionError):
        return None, f"saw a body that is not JSON: {_show(response.text)}"


# -- showing values in messages ---------------------------------------------------------


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _show(value: Any, limit: int = 60) -> str:
    """A value as compact JSON text, cut to ``limit`` characters."""
    return _clip(_json_text(value), limit)


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
