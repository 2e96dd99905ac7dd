"""What a lead is: the one definition every source and every ledger backend shares.

A lead's payload is a JSON object that any CRM, and both ledger backends, can take
as it is:

- every string (field names included) is valid Unicode without NUL: no lone
  surrogate, which SQLite would store and no CRM request could ever encode, and no
  ``\\u0000``, which PostgreSQL refuses;
- every number is finite and within JSON's safe range (±2^53-1, what JavaScript
  and most CRMs read exactly, and what reads back from either backend unchanged);
- field names are strings, the top level has at most :data:`MAX_FIELDS` of them,
  nesting is at most :data:`MAX_DEPTH` deep and the encoded payload at most
  :data:`MAX_PAYLOAD_BYTES`.

Anything else is refused with a :class:`~leadrelay.engine.errors.ValidationError`
naming the field (``payload.address.city: contains a NUL character``) before
anything is written, so no backend ever sees a value it would refuse or mangle.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from itertools import chain
from typing import Any, cast

from .errors import ValidationError

__all__ = [
    "MAX_DEPTH",
    "MAX_FIELDS",
    "MAX_PAYLOAD_BYTES",
    "MAX_SAFE_INTEGER",
    "validate_payload",
]

#: The largest lead payload accepted, as encoded JSON.
MAX_PAYLOAD_BYTES = 256 * 1024
#: The most fields at the top level of a lead.
MAX_FIELDS = 500
#: The deepest nesting of objects and lists (the lead itself is level 1).
MAX_DEPTH = 16
#: JSON's safe integers (JavaScript's ``Number.MAX_SAFE_INTEGER``): larger ones lose digits
#: in most CRMs, and a float beyond it reads back from PostgreSQL as an integer.
MAX_SAFE_INTEGER = 2**53 - 1

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def validate_payload(payload: Any, *, field: str = "payload") -> dict[str, Any]:
    """The payload as a JSON object fit for every backend and CRM (see the module docstring).

    :param field: the name of the payload in messages (``leads[3].payload`` in a batch).
    :returns: the payload as a new dict; tuples given come back as lists, as they will
        read back from the ledger.
    :raises ValidationError: naming the first offending field and what is wrong with it.
    """
    if type(payload) is dict and _flat_strings_fit(payload):
        return dict(payload)
    if not isinstance(payload, Mapping):
        kind = type(payload).__name__ if payload is not None else "null"
        raise ValidationError(f"{field}: a lead must be a JSON object, got {kind}", field=field)
    if len(payload) > MAX_FIELDS:
        raise ValidationError(
            f"{field}: at most {MAX_FIELDS} fields, got {len(payload)}", field=field
        )
    for key in payload:
        if isinstance(key, str) and not key.strip():
            raise ValidationError(f"{field}: field names must be non-empty strings", field=field)
    reshaped = _check(payload, field)
    encoded = _COMPACT(payload if type(payload) is dict else dict(payload))
    size = len(encoded.encode())
    if size > MAX_PAYLOAD_BYTES:
        raise ValidationError(
            f"{field}: {size} bytes is over the {MAX_PAYLOAD_BYTES // 1024} KB limit",
            field=field,
        )
    # Tuples and other mappings take the shape they will read back with.
    return cast(dict[str, Any], json.loads(encoded)) if reshaped else dict(payload)


def _flat_strings_fit(payload: dict[Any, Any]) -> bool:
    """Whether ``payload`` is a flat object of strings that :func:`validate_payload` would
    accept as it is: the shape of every form post and every CSV row, checked here with a
    few calls in C instead of a loop in Python over its fields.

    False says nothing about validity (a number, a nested object, a bad character, a
    payload near the size limit): the full check then runs and names what is wrong.
    """
    if len(payload) > MAX_FIELDS:
        return False
    try:
        # Raises TypeError on the first key or value that is not a string.
        text = "".join(chain(payload, payload.values()))
    except TypeError:
        return False
    if _UNSTORABLE.search(text) is not None:
        return False
    for key in payload:
        if not key.strip():
            return False
    # Encoded with ensure_ascii, a character takes at most 12 bytes (an astral one as a
    # surrogate pair of \uXXXX escapes); each field adds 2 pairs of quotes, a colon and a
    # comma, the object its braces. Under the limit by that bound, no need to encode it.
    if 2 + 6 * len(payload) + 12 * len(text) <= MAX_PAYLOAD_BYTES:
        return True
    return len(_COMPACT(payload).encode()) <= MAX_PAYLOAD_BYTES


def _check(payload: Mapping[Any, Any], field: str) -> bool:
    """Check every value of ``payload``; whether it holds tuples or mappings other than
    dicts, which JSON turns into lists and objects.

    Nested containers wait in a list instead of a recursive call: a lead nested a hundred
    thousand deep is refused, never a ``RecursionError``. A path is only spelled out for
    a container or an error, as intake runs this on every lead.
    """
    reshaped = False
    todo: list[tuple[Any, str, int]] = [(payload, field, 1)]
    while todo:
        container, path, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise ValidationError(f"{path}: nested deeper than {MAX_DEPTH} levels", field=path)
        items: Any
        named = isinstance(container, Mapping)
        if named:
            reshaped = reshaped or type(container) is not dict
            items = container.items()
        else:
            reshaped = reshaped or type(container) is not list
            items = enumerate(container)
        for key, value in items:
            if named:
                _check_name(key, path)
            if isinstance(value, str):
                bad = _UNSTORABLE.search(value)
                if bad is not None:
                    raise _invalid(path, key, _problem(bad.group()))
            elif value is None or isinstance(value, bool):
                continue
            elif isinstance(value, int):
                if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                    raise _invalid(path, key, _integer_problem(value))
            elif isinstance(value, float):
                problem = _float_problem(value)
                if problem:
                    raise _invalid(path, key, problem)
            elif isinstance(value, Mapping | list | tuple):
                todo.append((value, _join(path, key), depth + 1))
            else:
                raise _invalid(path, key, f"{type(value).__name__} is not a JSON value")
    return reshaped


def _check_name(key: Any, path: str) -> None:
    if not isinstance(key, str):
        raise ValidationError(
            f"{path}: field names must be strings, got {type(key).__name__}", field=path
        )
    bad = _UNSTORABLE.search(key)
    if bad is not None:
        raise _invalid(path, key, f"the field name {_problem(bad.group())}")


def _invalid(path: str, key: str | int, problem: str) -> ValidationError:
    where = _join(path, key)
    return ValidationError(f"{where}: {problem}", field=where)


def _problem(char: str) -> str:
    if char == "\x00":
        return "contains a NUL character"
    return f"contains a lone surrogate (U+{ord(char):04X}): not valid Unicode"


def _integer_problem(number: int) -> str:
    # Never str() a huge one: 5,000 digits is over Python's conversion limit.
    size = abs(number)
    digits = math.floor(size.bit_length() * math.log10(2)) + 1  # or one more than it has
    if size < 10 ** (digits - 1):
        digits -= 1
    return (f"a number of {digits} digits is outside JSON's safe range "
            f"(±{MAX_SAFE_INTEGER}); send it as a string")


def _float_problem(number: float) -> str:
    if number != number:
        return "NaN is not a JSON number"
    if math.isinf(number):
        return f"{'-' if number < 0 else ''}Infinity is not a JSON number"
    if abs(number) > MAX_SAFE_INTEGER:
        return f"{number:g} is outside JSON's safe range (±{MAX_SAFE_INTEGER}); send it as a string"
    return ""


def _mapping_as_dict(value: Any) -> dict[Any, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not a JSON value")  # _check refused it first


#: What a payload's size is measured on: compact JSON (``json.dumps`` with these
#: arguments builds an encoder at each call; this one is built once).
_COMPACT = json.JSONEncoder(separators=(",", ":"), default=_mapping_as_dict).encode


def _join(path: str, key: str | int) -> str:
    """``payload.city``, ``payload.tags[2]``, or ``payload["odd key"]`` when the key is not
    a plain name."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _NAME.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)}]"
