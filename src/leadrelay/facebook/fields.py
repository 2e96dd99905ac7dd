"""From a Graph lead's ``field_data`` to a lead's fields.

``field_data`` is a list of ``{"name", "values": [...]}``; values are lists of strings even
for a single answer. A connection's field map says which lead field each name becomes,
over these defaults::

    {"full_name": ["first_name", "last_name"],   # split at the first space
     "email": "email",
     "phone_number": "phone"}

A target is a lead field name, a pair of names (the answer split in two at its first
space), or ``null`` (the answer is dropped). A name the map does not list keeps its own
name (a custom question such as ``which_product_are_you_interested_in?``). A list of one
value becomes that value; several stay a list. The ``facebook_*`` fields are
leadrelay's (the ids of the lead, its form, ad and page) and cannot be mapped to.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from leadrelay.engine.errors import BadInput, ValidationError

#: What ``field_data`` names become when a connection's map does not say otherwise.
DEFAULT_FIELD_MAP: dict[str, Any] = {
    "full_name": ["first_name", "last_name"],
    "email": "email",
    "phone_number": "phone",
}
#: Lead fields leadrelay fills from the notification; no answer may be mapped to them.
RESERVED_PREFIX = "facebook_"
MAX_MAP_ENTRIES = 200
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")


def check_field_map(raw: Any, *, field: str = "field_map") -> dict[str, Any]:
    """A connection's field map, checked: :class:`BadInput` naming the first bad entry."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise BadInput(f"{field}: must be an object of field_data name → lead field",
                       field=field)
    if len(raw) > MAX_MAP_ENTRIES:
        raise BadInput(f"{field}: at most {MAX_MAP_ENTRIES} entries", field=field)
    checked: dict[str, Any] = {}
    for name, target in raw.items():
        where = f"{field}.{name}"
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise BadInput(f"{field}: names must be non-empty strings of at most 200 "
                           "characters", field=field)
        if target is None:
            checked[name] = None
        elif isinstance(target, str):
            checked[name] = _target(target, where)
        elif isinstance(target, list | tuple) and len(target) == 2:
            checked[name] = [_target(t, where) for t in target]
        else:
            raise BadInput(f"{where}: give a lead field, a pair of lead fields (split at the "
                           "first space) or null (drop it)", field=where)
    seen: set[str] = set()
    for target in _targets(checked):
        if target in seen:
            raise BadInput(f"{field}: two answers are mapped to the lead field {target!r}",
                           field=field)
        seen.add(target)
    return checked


def _target(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _FIELD.fullmatch(value):
        raise BadInput(f"{where}: {value!r} is not a lead field: use letters, digits and _, "
                       "not starting with a digit", field=where)
    if value.startswith(RESERVED_PREFIX):
        raise BadInput(f"{where}: {value!r} is not a lead field you can map to: the "
                       f"{RESERVED_PREFIX}* fields hold the Facebook ids", field=where)
    return value


def _targets(mapping: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for target in mapping.values():
        if isinstance(target, str):
            found.append(target)
        elif isinstance(target, list):
            found.extend(target)
    return found


def effective_map(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults with a connection's own entries over them."""
    return {**DEFAULT_FIELD_MAP, **overrides}


def lead_fields(field_data: Any, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The lead fields of a Graph lead's ``field_data`` under a connection's field map.

    :raises ValidationError: ``field_data`` is missing or not a list of name/values.
    """
    if not isinstance(field_data, list):
        raise ValidationError("the Graph answer has no field_data list", field="field_data")
    mapping = effective_map(overrides)
    fields: dict[str, Any] = {}
    for i, item in enumerate(field_data):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise ValidationError(f"field_data[{i}]: not a {{name, values}} object",
                                  field=f"field_data[{i}]")
        name = item["name"]
        values = item.get("values", [])
        value: Any = values
        if isinstance(values, list) and len(values) == 1:
            value = values[0]
        elif isinstance(values, list) and not values:
            continue
        target = mapping.get(name, name)
        if target is None:
            continue
        if isinstance(target, list):
            first, _, rest = str(value).strip().partition(" ")
            fields[target[0]] = first
            fields[target[1]] = rest.strip()
        elif target.startswith(RESERVED_PREFIX):  # a question named like leadrelay's ids
            fields["answer_" + target] = value
        else:
            fields[target] = value
    return fields
