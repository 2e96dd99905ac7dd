"""Templates bound to an operation's zeep types, and rendered into zeep values per lead.

Binding walks a compiled template (:mod:`.templates`) alongside the WSDL's
types once, refusing what does not fit — an unknown element, a list where one
value goes, an object for a string, a constant that is not a valid ``xsd:int``,
a required element left out — with a message naming the operation and the
argument. Rendering then only fills values in: no type lookups per lead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from zeep import xsd
from zeep.xsd.elements.indicators import Choice, Group, OrderIndicator
from zeep.xsd.types.builtins import BuiltinType

from .templates import (
    FILTERS,
    AnyFields,
    Const,
    DataError,
    DictT,
    Each,
    ListT,
    Node,
    Ref,
    Skip,
    TemplateError,
    TemplateFunction,
    Text,
    _valid_xml_name,
)

_XSD_NS = "http://www.w3.org/2001/XMLSchema"


@dataclass(frozen=True)
class BValue:
    """A leaf bound to a simple type (``xsd_type`` None: pass the value through)."""

    node: Const | Ref | Text
    xsd_type: Any = None
    where: str = ""


@dataclass(frozen=True)
class BSkip:
    """An element left out."""


@dataclass(frozen=True)
class BEach:
    """One item per mapped field."""

    template: Bound


@dataclass(frozen=True)
class BList:
    """A bound list; ``array_type`` wraps it when it is a SOAP-encoded array inside another."""

    items: tuple[Bound | BEach, ...]
    array_type: Any = None


@dataclass(frozen=True)
class BAny:
    """Elements for an ``xsd:any`` slot."""

    attr: str
    namespace: str | None
    source: AnyFields | Mapping[str, Node]
    where: str


@dataclass(frozen=True)
class BDict:
    """A bound object."""

    items: Mapping[str, Bound]
    any: BAny | None = None
    #: A ``$type`` subtype: the value is built as that type, sent with ``xsi:type``.
    value_type: Any = None


Bound = BValue | BSkip | BList | BDict


def _max_many(element: Any) -> bool:
    m = getattr(element, "max_occurs", 1)
    return m == "unbounded" or (isinstance(m, int) and m > 1)


def _array_item(xsd_type: Any) -> Any | None:
    """The item type of a SOAP-encoded array type (``soapenc:Array`` restriction)."""
    if isinstance(xsd_type, xsd.ComplexType) and xsd_type._array_type is not None:
        elements = xsd_type.elements
        if elements and isinstance(elements[0][1], xsd.Any):
            return elements[0][1].restrict or xsd.AnyType()
    return None


def _type_label(xsd_type: Any) -> str:
    qname = getattr(xsd_type, "qname", None)
    if qname is not None:
        local = getattr(qname, "localname", None) or str(qname)
        return f"xsd:{local}" if getattr(qname, "namespace", "") == _XSD_NS else local
    return getattr(xsd_type, "name", None) or type(xsd_type).__name__


def _is_complex(xsd_type: Any) -> bool:
    return isinstance(xsd_type, xsd.ComplexType) and not _simple_content(xsd_type)


def _simple_content(xsd_type: Any) -> bool:
    el = getattr(xsd_type, "_element", None)
    return isinstance(el, xsd.Element) and isinstance(el.type, xsd.AnySimpleType)


class Binder:
    """Binds compiled templates to one operation's types, producing errors that name the place.

    :param label: how errors start, e.g. ``"operation create: argument"``.
    """

    def __init__(self, label: str, types: Any = None) -> None:
        self.label = label
        #: The WSDL's types (``client.wsdl.types``), where ``$type`` names are found.
        self.types = types

    def _subtype(self, name: str, base: Any, where: str) -> Any:
        """The ``$type`` named ``name``, checked to extend ``base``."""
        return _subtype_of(self, name, base, where)

    def fail(self, where: str, problem: str) -> TemplateError:
        """A :class:`TemplateError` for ``where``."""
        return TemplateError(f"{self.label} {where}: {problem}")

    def arguments(self, node: DictT, container: Any, *, required: bool = True) -> BDict:
        """Bind the top-level arguments (or headers) ``node`` to ``container`` (a complex type).

        :param required: refuse a template that leaves out a required part (not
            for SOAP headers, which are all optional in practice).
        """
        return self._dict(node, container, "", parent_ns=None, required=required)

    def element(self, node: Node, element: Any, where: str) -> Bound:
        """Bind ``node`` to a zeep element (its occurrence and type)."""
        if isinstance(node, Skip):
            return BSkip()
        if isinstance(node, ListT):
            item_type = _array_item(element.type)
            if item_type is not None:
                return self._list(node, item_type, where, getattr(element, "qname", None))
            if not _max_many(element):
                raise self.fail(where, f"takes one {_type_label(element.type)}, not a list")
            return self._list(node, element.type, where, getattr(element, "qname", None))
        return self.typed(node, element.type, where, getattr(element, "qname", None))

    def _list(self, node: ListT, item_type: Any, where: str, qname: Any,
              array_type: Any = None) -> BList:
        items: list[Bound | BEach] = []
        for i, item in enumerate(node.items):
            if isinstance(item, Each):
                items.append(BEach(self.typed(item.template, item_type, f"{where}.{i}", qname)))
            else:
                items.append(self.typed(item, item_type, f"{where}.{i}", qname))
        return BList(tuple(items), array_type)

    def typed(self, node: Node, xsd_type: Any, where: str, qname: Any = None) -> Bound:
        """Bind ``node`` to a zeep type."""
        if isinstance(node, Skip):
            return BSkip()
        if isinstance(node, Const) and node.value is None:
            return BValue(node, None, where)
        item_type = _array_item(xsd_type)
        if item_type is not None:
            if isinstance(node, ListT):
                return self._list(node, item_type, where, qname, array_type=xsd_type)
            if isinstance(node, Ref):
                return BValue(node, None, where)
            raise self.fail(where, f"takes a list ({_type_label(xsd_type)})")
        if _is_complex(xsd_type):
            if isinstance(node, DictT):
                ns = getattr(qname, "namespace", None)
                if node.type_name is not None:
                    sub = self._subtype(node.type_name, xsd_type, f"{where}.$type")
                    bound = self._dict(node, sub, where, parent_ns=ns)
                    return BDict(bound.items, bound.any, sub)
                return self._dict(node, xsd_type, where, parent_ns=ns)
            if isinstance(node, Ref):
                return BValue(node, None, where)  # a lead field holding an object
            if isinstance(node, ListT):
                raise self.fail(where, f"takes one {_type_label(xsd_type)}, not a list")
            raise self.fail(where, f"takes an object ({_type_label(xsd_type)}), not a single value")
        if isinstance(xsd_type, xsd.AnyType) and not isinstance(xsd_type, xsd.AnySimpleType):
            if isinstance(node, DictT | ListT):
                raise self.fail(where, "is xsd:anyType: give it a single value")
            return BValue(node, None, where)
        if isinstance(node, DictT):
            raise self.fail(where, f"takes a single {_type_label(xsd_type)}, not an object")
        if isinstance(node, ListT):
            raise self.fail(where, f"takes one {_type_label(xsd_type)}, not a list")
        simple = xsd_type if not _simple_content(xsd_type) else xsd_type._element.type
        if isinstance(node, Const):
            _coerce(node.value, simple, self.label + " " + where)
        return BValue(node, simple, where)

    def _dict(self, node: DictT, xsd_type: Any, where: str, parent_ns: str | None,
              required: bool = True) -> BDict:
        if not isinstance(xsd_type, xsd.ComplexType):
            raise self.fail(where or "arguments", f"{_type_label(xsd_type)} takes no named parts")
        elements = {name: el for name, el in xsd_type.elements
                    if name and not isinstance(el, xsd.Any)}
        attributes = {name: attr for name, attr in xsd_type.attributes if name}
        any_el = next(((n, e) for n, e in xsd_type.elements if isinstance(e, xsd.Any)), None)
        bound: dict[str, Bound] = {}
        for key, child in node.items.items():
            path = f"{where}.{key}" if where else key
            if key in elements:
                bound[key] = self.element(child, elements[key], path)
            elif key in attributes:
                bound[key] = self.typed(child, attributes[key].type, path)
            else:
                names = ", ".join(elements) or "none"
                hint = "; put other fields under $any" if any_el else ""
                raise self.fail(path, f"no such element in {_type_label(xsd_type)} "
                                      f"(it has: {names}{hint})")
        missing = [n for n in _required(xsd_type) if n not in node.items] if required else []
        if missing:
            path = f"{where}.{missing[0]}" if where else missing[0]
            raise self.fail(path, "is required and not mapped")
        bany: BAny | None = None
        if node.any is not None:
            if any_el is None:
                raise self.fail(f"{where}.$any" if where else "$any",
                                f"{_type_label(xsd_type)} has no xsd:any slot")
            qname = getattr(xsd_type, "qname", None)
            ns = node.namespace or getattr(qname, "namespace", None) or parent_ns
            bany = BAny(any_el[0], ns, node.any, f"{where}.$any" if where else "$any")
        return BDict(bound, bany)


def _subtype_of(self: Binder, name: str, base: Any, where: str) -> Any:
    """The type called ``name`` in the WSDL, checked to extend ``base``."""
    local = name.rpartition("}")[2].rpartition(":")[2]
    namespace = name[1:name.index("}")] if name.startswith("{") else None
    base_ns = getattr(getattr(base, "qname", None), "namespace", None)
    found = None
    if self.types is not None:
        for ns in [namespace] if namespace else [base_ns, *self.types.namespaces]:
            try:
                found = self.types.get_type(f"{{{ns}}}{local}")
                break
            except Exception:  # zeep raises LookupError and others for an unknown type
                continue
    if found is None:
        raise self.fail(where, f"no type {name!r} in the WSDL")
    if not _extends(found, base):
        raise self.fail(where, f"{_type_label(found)} does not extend {_type_label(base)}, "
                               "the type declared here")
    return found


def _extends(sub: Any, base: Any) -> bool:
    if sub is base:
        return True
    base_value = getattr(base, "_value_class", None)
    for parent in getattr(sub, "_extension_types", None) or ():
        if parent is base_value or _extends(getattr(parent, "_xsd_type", None), base):
            return True
    return False


def _required(xsd_type: Any) -> list[str]:
    """Elements that must be given: minOccurs ≥ 1, not nillable, not inside a choice."""
    out: list[str] = []

    def walk(part: Any) -> None:
        if isinstance(part, xsd.Any):
            return
        if isinstance(part, xsd.Element):
            if part.min_occurs and part.min_occurs >= 1 and not part.nillable and (
                part.default is None
            ):
                out.append(part.attr_name)
            return
        if isinstance(part, Choice | Group):
            return  # alternatives: zeep checks them when rendering
        if isinstance(part, OrderIndicator):
            if getattr(part, "min_occurs", 1) == 0:
                return
            for child in part:
                walk(child)

    if _array_item(xsd_type) is not None:
        return out
    for _name, part in xsd_type.elements_nested:
        walk(part)
    return out


# -- rendering ------------------------------------------------------------------------


@dataclass
class Context:
    """What placeholders resolve against, for one rendering."""

    fields: Mapping[str, Any]
    lead: Mapping[str, Any]
    meta: Mapping[str, Any]
    auth: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, Any] = field(default_factory=dict)
    session: Mapping[str, Any] = field(default_factory=dict)
    #: ``{field.name}`` / ``{field.value}`` inside ``$each_field``.
    each: Mapping[str, Any] = field(default_factory=dict)
    #: Secret-derived values produced while rendering (an md5 of a password), to redact.
    derived_secrets: set[str] = field(default_factory=set)
    #: The functions templates may call (built-in and plugins').
    functions: Mapping[str, TemplateFunction] = field(default_factory=dict)

    def resolve(self, ref: Ref) -> Any:
        """The value of ``ref`` (None when absent), filters applied."""
        if ref.namespace == "fn":
            args = [a if isinstance(a, str) else _as_text(self.resolve(a)) for a in ref.args]
            value: Any = self.functions[ref.name].fn(*args)
        else:
            name = "each" if ref.namespace == "field" else ref.namespace
            source: Mapping[str, Any] = getattr(self, name)
            value = source.get(ref.name)
        for f in ref.filters:
            if value is None:
                break
            value = FILTERS[f](_as_text(value))
        if ref.secret and (ref.filters or ref.args) and isinstance(value, str):
            self.derived_secrets.add(value)
        return value


def render(bound: Bound, ctx: Context) -> Any:
    """The zeep-ready value of ``bound`` for one lead."""
    if isinstance(bound, BValue):
        value = _leaf(bound.node, ctx)
        if bound.xsd_type is None or value is None:
            return value
        return _coerce(value, bound.xsd_type, bound.where, data=True)
    if isinstance(bound, BSkip):
        return xsd.SkipValue
    if isinstance(bound, BList):
        out: list[Any] = []
        for item in bound.items:
            if isinstance(item, BEach):
                for name, value in ctx.fields.items():
                    if value is None or value == "":
                        continue
                    ctx.each = {"name": name, "value": value}
                    out.append(render(item.template, ctx))
                ctx.each = {}
            else:
                out.append(render(item, ctx))
        # zeep wants an array nested in an array as the array type's own value object.
        return bound.array_type._value_class(out) if bound.array_type is not None else out
    result: dict[str, Any] = {key: render(child, ctx) for key, child in bound.items.items()}
    if bound.any is not None:
        result[bound.any.attr] = _any_elements(bound.any, ctx)
    if bound.value_type is not None:
        return bound.value_type(**result)
    return result


def _leaf(node: Const | Ref | Text, ctx: Context) -> Any:
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Ref):
        return ctx.resolve(node)
    return "".join(p if isinstance(p, str) else _as_text(ctx.resolve(p)) for p in node.parts)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _coerce(value: Any, xsd_type: Any, where: str, *, data: bool = False) -> Any:
    """``value`` as the python value zeep wants for a simple type."""
    if isinstance(xsd_type, xsd.String) or not isinstance(xsd_type, BuiltinType):
        return value if isinstance(value, str) else _as_text(value)
    if isinstance(value, str):
        try:
            return xsd_type.pythonvalue(value.strip())
        except (ValueError, TypeError, ArithmeticError) as exc:
            problem = f"{value!r} is not a valid {_type_label(xsd_type)}"
            if data:
                raise DataError(f"{where}: {problem}") from None
            raise TemplateError(f"{where}: {problem}") from exc
    return value


def _any_elements(slot: BAny, ctx: Context) -> list[etree._Element]:
    if isinstance(slot.source, AnyFields):
        pairs = list(ctx.fields.items())
    else:
        pairs = [(name, _render_loose(node, ctx)) for name, node in slot.source.items()]
    out: list[etree._Element] = []
    for name, value in pairs:
        if value is None or value == "":
            continue  # an empty field is not sent: Salesforce would blank the column
        if not _valid_xml_name(name):
            raise DataError(f"{slot.where}: field {name!r} is not a valid XML element name")
        out.extend(_to_elements(slot.namespace, name, value))
    return out


def _render_loose(node: Node, ctx: Context) -> Any:
    """Render a template with no type to guide it (inside ``$any``)."""
    if isinstance(node, Const | Ref | Text):
        return _leaf(node, ctx)
    if isinstance(node, ListT):
        return [_render_loose(i, ctx) for i in node.items if not isinstance(i, Each)]
    if isinstance(node, DictT):
        return {k: _render_loose(v, ctx) for k, v in node.items.items()}
    return None


def _to_elements(ns: str | None, name: str, value: Any) -> list[etree._Element]:
    if isinstance(value, list):
        return [el for item in value for el in _to_elements(ns, name, item)]
    el = etree.Element(etree.QName(ns, name) if ns else name)
    if isinstance(value, Mapping):
        for key, sub in value.items():
            if sub is not None and _valid_xml_name(str(key)):
                el.extend(_to_elements(ns, str(key), sub))
    else:
        el.text = _as_text(value)
    return [el]
