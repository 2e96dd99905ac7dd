"""What an operation answers, read from the WSDL: the fields of its result, and a derived
default for judging it when the result type makes success obvious.

Paths are the ones expectations use into the parsed answer (``result[0].success``,
``return.error.number``), so the fields listed in a refusal can be pasted into a rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zeep import xsd

#: How deep and how many fields are listed (a Salesforce result is a few levels deep).
MAX_DEPTH = 5
MAX_FIELDS = 60


@dataclass(frozen=True)
class AnswerField:
    """One field of an operation's result: its path and its XSD type's name."""

    path: str
    type_name: str
    #: Complex (an object), rather than a value.
    complex: bool = False


def answer_fields(operation: Any) -> list[AnswerField]:
    """The fields of ``operation``'s result, parents before children; [] when it has none."""
    output = getattr(operation, "output", None)
    body = getattr(output, "body", None)
    if body is None:
        return []
    out: list[AnswerField] = []
    _walk(body.type, "", 0, out, set())
    return out


def _walk(xsd_type: Any, prefix: str, depth: int, out: list[AnswerField],
          seen: set[int]) -> None:
    if depth >= MAX_DEPTH or len(out) >= MAX_FIELDS or not isinstance(xsd_type, xsd.ComplexType):
        return
    if id(xsd_type) in seen:  # a recursive type
        return
    seen = seen | {id(xsd_type)}
    for name, element in xsd_type.elements:
        if not name or isinstance(element, xsd.Any):
            continue
        many = element.max_occurs == "unbounded" or (
            isinstance(element.max_occurs, int) and element.max_occurs > 1)
        item = _array_item(element.type)
        path = f"{prefix}.{name}" if prefix else name
        if many or item is not None:
            path += "[0]"
        child = item if item is not None else element.type
        is_complex = isinstance(child, xsd.ComplexType) and bool(child.elements)
        out.append(AnswerField(path, _label(child), is_complex))
        if len(out) >= MAX_FIELDS:
            return
        if is_complex:
            _walk(child, path, depth + 1, out, seen)


def _array_item(xsd_type: Any) -> Any | None:
    if isinstance(xsd_type, xsd.ComplexType) and getattr(xsd_type, "_array_type", None):
        elements = xsd_type.elements
        if elements and isinstance(elements[0][1], xsd.Any):
            return elements[0][1].restrict
    return None


def _label(xsd_type: Any) -> str:
    qname = getattr(xsd_type, "qname", None)
    local = getattr(qname, "localname", None)
    return str(local or getattr(xsd_type, "name", None) or "anyType")


def _leaf(path: str) -> str:
    return path.rsplit(".", 1)[-1].removesuffix("[0]").lower()


def derive(fields: list[AnswerField]) -> dict[str, Any] | None:
    """Default expectations when the result has an obvious verdict in it, else None.

    * a boolean ``success`` (Salesforce ``SaveResult``): it must be true;
    * an ``error`` object with a ``number`` (SugarCRM ``error_value``): it must be 0,
      its ``name`` and ``description`` are the reason;
    * a ``status`` next to an ``error`` (Marketo ``syncStatus``): the status must not be
      ``FAILED``, the error is the reason.

    An ``id`` beside the verdict is the CRM reference; an ``errors`` list gives the reason.
    """
    by_path = {f.path: f for f in fields}
    rules: list[dict[str, Any]] = []
    reason: list[str] = []
    anchor = ""
    for f in fields:
        leaf, parent = _leaf(f.path), f.path.rpartition(".")[0]
        if leaf == "success" and f.type_name == "boolean" and not rules:
            rules.append({"kind": "json_field", "path": f.path, "equals": True})
            anchor = parent
            errors = f"{parent}.errors[0]" if parent else "errors[0]"
            for sub in ("statusCode", "message", "fields[0]"):
                if f"{errors}.{sub}" in by_path:
                    reason.append(f"{errors}.{sub}")
        elif leaf == "number" and _leaf(parent) == "error" and not rules:
            rules.append({"kind": "json_field", "path": f.path, "in": ["0", 0]})
            anchor = parent.rpartition(".")[0]
            reason += [p for p in (f"{parent}.name", f"{parent}.description") if p in by_path]
        elif leaf == "status" and not f.complex and not rules and any(
            _leaf(g.path) == "error" and g.path.rpartition(".")[0] == parent for g in fields
        ):
            rules.append({"kind": "json_field", "path": f.path, "not_equals": "FAILED"})
            anchor = parent
            reason.append(f"{parent}.error" if parent else "error")
    if not rules:
        return None
    out: dict[str, Any] = {
        "combine": "all",
        "rules": [{"kind": "status", "in": ["2xx"]}, {"kind": "soap_fault", "exists": False},
                  *rules],
    }
    reference = _reference(fields, anchor)
    if reference:
        out["reference"] = {"json": reference}
    if reason:
        out["reason"] = reason
    return out


def _reference(fields: list[AnswerField], anchor: str) -> str | None:
    """The id next to the verdict (``result[0].id``, ``return.id``, ``leadId``)."""
    for f in fields:
        parent = f.path.rpartition(".")[0]
        if not f.complex and _leaf(f.path) in ("id", "leadid") and (
            parent == anchor or parent.startswith(anchor)
        ):
            return f.path
    return None


def listing(fields: list[AnswerField], limit: int = 25) -> str:
    """``result[0].id (ID), result[0].success (boolean), …`` for a message."""
    values = [f"{f.path} ({f.type_name})" for f in fields if not f.complex]
    shown = ", ".join(values[:limit])
    more = f", … {len(values) - limit} more" if len(values) > limit else ""
    return (shown + more) or "none: the WSDL declares no result"


def suggestion(fields: list[AnswerField]) -> Mapping[str, Any]:
    """A rule an operator can start from: the first value field of the result."""
    first = next((f for f in fields if not f.complex), None)
    path = first.path if first else "return"
    return {"rules": [{"kind": "json_field", "path": path, "equals": "..."}],
            "reference": {"json": path}}
