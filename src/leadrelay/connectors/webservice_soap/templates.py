"""Argument templates: how lead fields become a SOAP operation's arguments.

An integration describes an operation's arguments (and SOAP headers) as a JSON
tree shaped like the operation's input. Its leaves are constants or text with
``{placeholders}``:

``{name}`` / ``{fields.name}``
    a lead field after the integration's field mapping;
``{lead.name}``
    a lead field as submitted;
``{session.name}``
    an output of the login step (``{session.session_id}``);
``{auth.username}`` / ``{auth.password}`` / ``{secrets.name}``
    the integration's credentials and other secrets;
``{meta.idempotency_key}`` (also ``lead_id``, ``delivery_id``, ``form_id``, ``source``,
``received_at``, ``attempt``)
    facts about the delivery.

A placeholder may end with filters: ``{auth.password|md5}`` (``md5``, ``sha256``,
``lower``, ``upper``, ``strip``). A string that is exactly one placeholder keeps
the value's type (a number stays a number, a missing field becomes ``null``).

Directives reach the shapes real CRMs use:

``{"$any": "$fields"}`` / ``{"$any": {"Name": "{name}"}}``
    elements for an ``xsd:any`` slot (Salesforce Partner ``sObject`` fields):
    every mapped field, or the ones listed, in the slot's namespace
    (``"$namespace"`` overrides it);
``[{"$each_field": {"name": "{field.name}", "value": "{field.value}"}}]``
    one array item per mapped field (SugarCRM ``name_value_list``);
``"$skip"``
    leave an element out entirely (zeep would otherwise send ``xsi:nil``).

Templates are *compiled* here once (syntax), then *bound* once per WSDL to
the operation's zeep types (:mod:`.binding`), which is where a mapping that
does not fit the operation is refused, naming the operation and the argument.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

#: Namespaces a placeholder may name.
NAMESPACES = frozenset({"fields", "lead", "session", "auth", "secrets", "meta", "field"})
META_KEYS = frozenset(
    {"lead_id", "delivery_id", "idempotency_key", "form_id", "source", "received_at", "attempt"}
)
FILTERS: dict[str, Callable[[str], str]] = {
    "md5": lambda s: hashlib.md5(s.encode()).hexdigest(),  # SugarCRM's login wants md5 hex
    "sha256": lambda s: hashlib.sha256(s.encode()).hexdigest(),
    "lower": str.lower,
    "upper": str.upper,
    "strip": str.strip,
}
#: Placeholder namespaces whose values are secret: what is derived from them is redacted too.
SECRET_NAMESPACES = frozenset({"auth.password", "secrets", "session"})

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][\w.\-]*$")


class TemplateError(ValueError):
    """A template is malformed or does not fit the operation. The message names the place."""


class DataError(ValueError):
    """A lead's data cannot fill the template (a value of the wrong type). Names the place."""


# -- compiled templates (syntax only) --------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A placeholder: ``namespace.name`` with filters."""

    namespace: str
    name: str
    filters: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The placeholder as written."""
        filters = "".join(f"|{f}" for f in self.filters)
        return f"{{{self.namespace}.{self.name}{filters}}}"

    @property
    def secret(self) -> bool:
        """True when the value comes from a secret (so derived values are redacted too)."""
        return self.namespace in SECRET_NAMESPACES or f"{self.namespace}.{self.name}" in (
            SECRET_NAMESPACES
        )


@dataclass(frozen=True)
class Const:
    """A constant leaf."""

    value: Any


@dataclass(frozen=True)
class Text:
    """Text with placeholders inside; always renders a string."""

    parts: tuple[str | Ref, ...]


@dataclass(frozen=True)
class Skip:
    """``"$skip"``: the element is left out."""


@dataclass(frozen=True)
class AnyFields:
    """``"$any": "$fields"``: every mapped field as an element."""


@dataclass(frozen=True)
class Each:
    """``{"$each_field": template}`` inside a list: one item per mapped field."""

    template: Node


@dataclass(frozen=True)
class ListT:
    """A list of templates."""

    items: tuple[Node | Each, ...]


@dataclass(frozen=True)
class DictT:
    """An object: element names to templates, plus an optional ``$any`` slot."""

    items: Mapping[str, Node]
    any: AnyFields | Mapping[str, Node] | None = None
    namespace: str | None = None


Node = Const | Ref | Text | Skip | ListT | DictT


def compile_template(raw: Any, where: str) -> Node:
    """Compile a raw JSON template; :class:`TemplateError` names the bad place."""
    if isinstance(raw, str):
        return _compile_text(raw, where)
    if raw is None or isinstance(raw, bool | int | float):
        return Const(raw)
    if isinstance(raw, list):
        items: list[Node | Each] = []
        for i, item in enumerate(raw):
            if isinstance(item, Mapping) and "$each_field" in item:
                if len(item) != 1:
                    raise TemplateError(f"{where}.{i}: $each_field must be alone in its object")
                items.append(Each(compile_template(item["$each_field"], f"{where}.{i}")))
            else:
                items.append(compile_template(item, f"{where}.{i}"))
        return ListT(tuple(items))
    if isinstance(raw, Mapping):
        plain: dict[str, Node] = {}
        any_slot: AnyFields | dict[str, Node] | None = None
        namespace: str | None = None
        for key, value in raw.items():
            if not isinstance(key, str) or not key:
                raise TemplateError(f"{where}: keys must be element names")
            if key == "$any":
                any_slot = _compile_any(value, f"{where}.$any")
            elif key == "$namespace":
                if not isinstance(value, str) or not value:
                    raise TemplateError(f"{where}.$namespace: must be a namespace URI")
                namespace = value
            elif key == "$each_field":
                raise TemplateError(f"{where}: $each_field is only allowed as a list item")
            elif key.startswith("$"):
                raise TemplateError(f"{where}: unknown directive {key!r}")
            else:
                plain[key] = compile_template(value, f"{where}.{key}")
        return DictT(plain, any_slot, namespace)
    raise TemplateError(f"{where}: unsupported value {type(raw).__name__}")


def _compile_any(raw: Any, where: str) -> AnyFields | dict[str, Node]:
    if raw == "$fields":
        return AnyFields()
    if not isinstance(raw, Mapping):
        raise TemplateError(f'{where}: must be "$fields" or an object of element names')
    out: dict[str, Node] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _valid_xml_name(key):
            raise TemplateError(f"{where}: {key!r} is not a valid XML element name")
        out[key] = compile_template(value, f"{where}.{key}")
    return out


def _compile_text(raw: str, where: str) -> Node:
    if raw == "$skip":
        return Skip()
    if raw == "$fields":
        raise TemplateError(f'{where}: "$fields" is only allowed as the value of "$any"')
    parts: list[str | Ref] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(raw):
        if match.start() > pos:
            parts.append(raw[pos:match.start()])
        token = match.group(0)
        if token in ("{{", "}}"):
            parts.append(token[0])
        else:
            parts.append(_parse_ref(match.group(1), where))
        pos = match.end()
    if pos < len(raw):
        parts.append(raw[pos:])
    stray = [p for p in parts
             if isinstance(p, str) and p not in ("{", "}") and ("{" in p or "}" in p)]
    if stray:
        raise TemplateError(
            f"{where}: unbalanced braces in {raw!r} (write {{{{ or }}}} for a brace)")
    if len(parts) == 1 and isinstance(parts[0], Ref):
        return parts[0]
    if all(isinstance(p, str) for p in parts):
        return Const("".join(p for p in parts if isinstance(p, str)))
    return Text(tuple(parts))


def _parse_ref(body: str, where: str) -> Ref:
    head, *filters = [p.strip() for p in body.split("|")]
    if not head or not _NAME.match(head):
        raise TemplateError(f"{where}: bad placeholder {{{body}}}")
    namespace, _, name = head.partition(".")
    if not name:
        namespace, name = "fields", head
    elif namespace not in NAMESPACES:
        # A dotted lead field name ("address.city") is a mapped field.
        namespace, name = "fields", head
    for f in filters:
        if f not in FILTERS:
            known = ", ".join(sorted(FILTERS))
            raise TemplateError(f"{where}: unknown filter {f!r} in {{{body}}} (known: {known})")
    if namespace == "meta" and name not in META_KEYS:
        known = ", ".join(sorted(META_KEYS))
        raise TemplateError(f"{where}: unknown {{meta.{name}}} (known: {known})")
    if namespace == "auth" and name not in ("username", "password"):
        raise TemplateError(f"{where}: unknown {{auth.{name}}} (known: username, password)")
    if namespace == "field" and name not in ("name", "value"):
        raise TemplateError(f"{where}: unknown {{field.{name}}} (known: name, value)")
    return Ref(namespace, name, tuple(filters))


def refs(node: Node | Each | AnyFields | Mapping[str, Node] | None) -> list[tuple[Ref, bool]]:
    """Every placeholder in ``node``, with whether it sits inside ``$each_field``."""
    out: list[tuple[Ref, bool]] = []

    def walk(n: Any, inside: bool) -> None:
        if isinstance(n, Ref):
            out.append((n, inside))
        elif isinstance(n, Text):
            out.extend((p, inside) for p in n.parts if isinstance(p, Ref))
        elif isinstance(n, ListT):
            for item in n.items:
                walk(item, inside)
        elif isinstance(n, Each):
            walk(n.template, True)
        elif isinstance(n, DictT):
            for v in n.items.values():
                walk(v, inside)
            walk(n.any, inside)
        elif isinstance(n, Mapping):
            for v in n.values():
                walk(v, inside)

    walk(node, False)
    return out


def _valid_xml_name(name: str) -> bool:
    try:
        etree.QName(None, name)
    except ValueError:
        return False
    return True
