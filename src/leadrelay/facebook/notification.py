"""A Lead Ads change notification: its shape, checked, as the changes it carries.

``{"object": "page", "entry": [{"id": PAGE, "time": …, "changes": [{"field": "leadgen",
"value": {"leadgen_id", "page_id", "form_id", "ad_id", "adgroup_id", "created_time"}}]}]}``.
One POST may carry several entries and several changes each: every one counts. Changes
of another field (a page subscribed to more than ``leadgen``) are skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from leadrelay.engine.errors import BadInput

#: The most changes one notification may carry (Facebook batches up to a few dozen).
MAX_CHANGES = 1000
_ID = re.compile(r"\d{1,32}")


class NotJson(BadInput):
    """The webhook body is not JSON."""


@dataclass(frozen=True)
class LeadChange:
    """One ``leadgen`` change: a lead whose answers are to be read from the Graph API."""

    page_id: str
    leadgen_id: str
    form_id: str | None
    ad_id: str | None
    adgroup_id: str | None
    created_time: int | None


@dataclass(frozen=True)
class Notification:
    """The changes of one POST: ``leads``, how many other changes were skipped, and the
    page of each entry (in order)."""

    leads: tuple[LeadChange, ...]
    skipped: int
    pages: tuple[str, ...] = ()


def parse(body: bytes) -> Notification:
    """The notification in ``body``; :class:`BadInput` naming the first thing wrong."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise NotJson("body: not valid JSON", field="body") from None
    if not isinstance(data, Mapping):
        raise BadInput("body: a notification is a JSON object", field="body")
    if data.get("object") != "page":
        raise BadInput(f"object: expected 'page', got {_shown(data.get('object'))}",
                       field="object")
    entries = data.get("entry")
    if not isinstance(entries, list):
        raise BadInput("entry: must be a list", field="entry")
    leads: list[LeadChange] = []
    pages: list[str] = []
    skipped = 0
    for i, entry in enumerate(entries):
        where = f"entry[{i}]"
        if not isinstance(entry, Mapping):
            raise BadInput(f"{where}: must be an object", field=where)
        page_id = _id(entry.get("id"), f"{where}.id")
        pages.append(page_id)
        changes = entry.get("changes", [])
        if not isinstance(changes, list):
            raise BadInput(f"{where}.changes: must be a list", field=f"{where}.changes")
        for j, change in enumerate(changes):
            at = f"{where}.changes[{j}]"
            if not isinstance(change, Mapping):
                raise BadInput(f"{at}: must be an object", field=at)
            if change.get("field") != "leadgen":
                skipped += 1
                continue
            leads.append(_lead(change.get("value"), page_id, f"{at}.value"))
            if len(leads) > MAX_CHANGES:
                raise BadInput(f"entry: at most {MAX_CHANGES} leads in one notification",
                               field="entry")
    return Notification(tuple(leads), skipped, tuple(pages))


def _lead(value: Any, page_id: str, where: str) -> LeadChange:
    if not isinstance(value, Mapping):
        raise BadInput(f"{where}: must be an object", field=where)
    if "page_id" in value and _id(value["page_id"], f"{where}.page_id") != page_id:
        raise BadInput(f"{where}.page_id: is not the entry's page {page_id}",
                       field=f"{where}.page_id")
    created = value.get("created_time")
    if created is not None and (
        isinstance(created, bool) or not isinstance(created, int) or not 0 <= created < 2**40
    ):
        raise BadInput(f"{where}.created_time: must be Unix seconds",
                       field=f"{where}.created_time")
    return LeadChange(
        page_id=page_id,
        leadgen_id=_id(value.get("leadgen_id"), f"{where}.leadgen_id"),
        form_id=_optional_id(value.get("form_id"), f"{where}.form_id"),
        ad_id=_optional_id(value.get("ad_id"), f"{where}.ad_id"),
        adgroup_id=_optional_id(value.get("adgroup_id"), f"{where}.adgroup_id"),
        created_time=created,
    )


def _id(value: Any, where: str) -> str:
    """A Facebook id: digits, given as a string or a number."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise BadInput(f"{where}: expected a Facebook id (digits), got {_shown(value)}",
                       field=where)
    return value


def _optional_id(value: Any, where: str) -> str | None:
    return None if value is None else _id(value, where)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
