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
    facts about the delivery;
``{meta.now}`` / ``{meta.nonce}``
    made when the request is rendered, once per request (every use in one envelope sees
    the same value): the ISO-8601 UTC time, and 32 random hex digits.

A placeholder may end with filters: ``{auth.password|md5}`` (``md5``, ``sha256``,
``lower``, ``upper``, ``strip``). A string that is exactly one placeholder keeps
the value's type (a number stays a number, a missing field becomes ``null``).

A placeholder may call a function with arguments — placeholders without braces, or
quoted text — for signed requests (Marketo: ``{hmac_sha1(secrets.key, meta.now,
auth.username)}``): ``hmac_sha1(key, text…)`` and ``hmac_sha256`` (hex of the HMAC of
the arguments after the key, joined), ``md5(text…)``, ``sha1``, ``sha256`` (hex) and
``base64``. A value computed from a secret is itself redacted everywhere. Plugins add
functions through the ``register_template_functions`` hook.

Directives reach the shapes real CRMs use:

``{"$any": "$fields"}`` / ``{"$any": {"Name": "{name}"}}``
    elements for an ``xsd:any`` slot (Salesforce Partner ``sObject`` fields):
    every mapped field, or the ones listed, in the slot's namespace
    (``"$namespace"`` overrides it);
``[{"$each_field": {"name": "{field.name}", "value": "{field.value}"}}]``
    one array item per mapped field (SugarCRM ``name_value_list``);
``"$skip"``
    leave an element out entirely (zeep would otherwise send ``xsi:nil``);
``{"$type": "Lead", ...}``
    the concrete type of an element whose declared type is abstract or a base type
    (Salesforce Enterprise ``create(sObjects=[Lead(...)])``, sent with
    ``xsi:type="ens:Lead"``): the object's other keys are the subtype's fields. The
    name is the type's local name (``ens:Lead`` and ``{namespace}Lead`` work too); it
    must extend the declared type, checked against the WSDL when the integration is saved.

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

from leadrelay.engine.template_functions import BUILTIN_FUNCTIONS as BUILTIN_FUNCTIONS
from leadrelay.engine.template_functions import TemplateFunction as TemplateFunction

#: Namespaces a placeholder may name.
NAMESPACES = frozenset({"fields", "lead", "session", "auth", "secrets", "meta", "field"})
META_KEYS = frozenset(
    {"lead_id", "delivery_id", "idempotency_key", "form_id", "source", "received_at", "attempt",
     "now", "nonce"}
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
    #: A function call's arguments (namespace ``fn``): placeholders or literal text.
    args: tuple[Ref | str, ...] = ()

    @property
    def text(self) -> str:
        """The placeholder as written."""
        filters = "".join(f"|{f}" for f in self.filters)
        if self.namespace == "fn":
            shown = ", ".join(a.text[1:-1] if isinstance(a, Ref) else repr(a) for a in self.args)
            return f"{{{self.name}({shown}){filters}}}"
        return f"{{{self.namespace}.{self.name}{filters}}}"

    @property
    def secret(self) -> bool:
        """True when the value comes from a secret (so derived values are redacted too)."""
        if self.namespace == "fn":
            return any(isinstance(a, Ref) and a.secret for a in self.args)
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
    #: ``$type``: the concrete subtype to send.
    type_name: str | None = None


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
        type_name: str | None = None
        for key, value in raw.items():
            if not isinstance(key, str) or not key:
                raise TemplateError(f"{where}: keys must be element names")
            if key == "$any":
                any_slot = _compile_any(value, f"{where}.$any")
            elif key == "$namespace":
                if not isinstance(value, str) or not value:
                    raise TemplateError(f"{where}.$namespace: must be a namespace URI")
                namespace = value
            elif key == "$type":
                if not isinstance(value, str) or not value.strip():
                    raise TemplateError(f"{where}.$type: must be a type name like 'Lead'")
                type_name = value.strip()
            elif key == "$each_field":
                raise TemplateError(f"{where}: $each_field is only allowed as a list item")
            elif key.startswith("$"):
                raise TemplateError(f"{where}: unknown directive {key!r}")
            else:
                plain[key] = compile_template(value, f"{where}.{key}")
        return DictT(plain, any_slot, namespace, type_name)
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
    call = _CALL.match(head)
    if call is not None:
        args = tuple(_parse_arg(a, body, where) for a in _split_args(call.group(2), body, where))
        _check_filters(filters, body, where)
        return Ref("fn", call.group(1), tuple(filters), args)
    if not head or not _NAME.match(head):
        raise TemplateError(f"{where}: bad placeholder {{{body}}}")
    namespace, _, name = head.partition(".")
    if not name:
        namespace, name = "fields", head
    elif namespace not in NAMESPACES:
        # A dotted lead field name ("address.city") is a mapped field.
        namespace, name = "fields", head
    _check_filters(filters, body, where)
    if namespace == "meta" and name not in META_KEYS:
        known = ", ".join(sorted(META_KEYS))
        raise TemplateError(f"{where}: unknown {{meta.{name}}} (known: {known})")
    if namespace == "auth" and name not in ("username", "password"):
        raise TemplateError(f"{where}: unknown {{auth.{name}}} (known: username, password)")
    if namespace == "field" and name not in ("name", "value"):
        raise TemplateError(f"{where}: unknown {{field.{name}}} (known: name, value)")
    return Ref(namespace, name, tuple(filters))


_CALL = re.compile(r"^([A-Za-z_]\w*)\s*\((.*)\)$", re.S)
_QUOTED = re.compile(r"""^(?:'([^']*)'|"([^"]*)")$""")


def _check_filters(filters: list[str], body: str, where: str) -> None:
    for f in filters:
        if f not in FILTERS:
            known = ", ".join(sorted(FILTERS))
            raise TemplateError(f"{where}: unknown filter {f!r} in {{{body}}} (known: {known})")


def _split_args(text: str, body: str, where: str) -> list[str]:
    """Arguments split at commas outside quotes."""
    if not text.strip():
        return []
    out, current, quote = [], "", ""
    for ch in text:
        if quote:
            current += ch
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote, current = ch, current + ch
        elif ch == ",":
            out.append(current.strip())
            current = ""
        else:
            current += ch
    if quote:
        raise TemplateError(f"{where}: unclosed quote in {{{body}}}")
    out.append(current.strip())
    if any(not a for a in out):
        raise TemplateError(f"{where}: empty argument in {{{body}}}")
    return out


def _parse_arg(text: str, body: str, where: str) -> Ref | str:
    quoted = _QUOTED.match(text)
    if quoted is not None:
        return quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
    if _CALL.match(text):
        raise TemplateError(f"{where}: functions do not nest, in {{{body}}}")
    ref = _parse_ref(text, where)
    if ref.filters:
        raise TemplateError(f"{where}: an argument takes no filters, in {{{body}}}")
    return ref


def check_call(ref: Ref, functions: Mapping[str, TemplateFunction]) -> str | None:
    """Why the function call ``ref`` cannot run (unknown, wrong arguments); None when it can."""
    fn = functions.get(ref.name)
    if fn is None:
        return f"unknown function {ref.name!r} (known: {', '.join(sorted(functions))})"
    n = len(ref.args)
    if n < fn.min_args or (fn.max_args is not None and n > fn.max_args):
        return f"{ref.name} takes {fn.usage()[len(ref.name) + 1:-1]}, not {n}"
    return None


def refs(node: Node | Each | AnyFields | Mapping[str, Node] | None) -> list[tuple[Ref, bool]]:
    """Every placeholder in ``node``, with whether it sits inside ``$each_field``."""
    out: list[tuple[Ref, bool]] = []

    def walk(n: Any, inside: bool) -> None:
        if isinstance(n, Ref):
            out.append((n, inside))
            out.extend((a, inside) for a in n.args if isinstance(a, Ref))
        elif isinstance(n, Text):
            for p in n.parts:
                walk(p, inside)
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
