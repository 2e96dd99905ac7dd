"""SOAP-encoded markup for rpc/encoded calls: ``xsi:type`` and ``SOAP-ENC:arrayType``.

zeep serializes an rpc/encoded operation (SugarCRM, other nusoap servers) as if it were
literal: no ``xsi:type`` on the parts, no ``SOAP-ENC:arrayType`` on arrays. Older nusoap
servers need them to read the call. :func:`annotate` walks the envelope zeep built
alongside the operation's input types and adds them, once per request (no WSDL access).
"""

from __future__ import annotations

from typing import Any

from lxml import etree
from zeep import xsd

XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"
SOAP_ENC = "http://schemas.xmlsoap.org/soap/encoding/"
_TYPE = f"{{{XSI}}}type"
_ARRAY_TYPE = f"{{{SOAP_ENC}}}arrayType"


def annotate(envelope: etree._Element, operation: Any) -> None:
    """Add encoded-style type markup to the call element of ``envelope``, in place."""
    body = next((c for c in envelope if isinstance(c.tag, str)
                 and etree.QName(c).localname == "Body"), None)
    call = None if body is None else next((c for c in body if isinstance(c.tag, str)), None)
    message = getattr(getattr(operation, "input", None), "body", None)
    if call is None or message is None:
        return
    prefixes: dict[str, str] = {"xsi": XSI, "xsd": XSD, "SOAP-ENC": SOAP_ENC}
    _children(call, message.type, prefixes)
    # Declare every prefix the attribute values use, on the envelope.
    etree.cleanup_namespaces(envelope, top_nsmap=prefixes, keep_ns_prefixes=list(prefixes))


def _children(el: etree._Element, xsd_type: Any, prefixes: dict[str, str]) -> None:
    if not isinstance(xsd_type, xsd.ComplexType):
        return
    elements = {name: e for name, e in xsd_type.elements if name and not isinstance(e, xsd.Any)}
    for child in el:
        if not isinstance(child.tag, str):
            continue
        element = elements.get(etree.QName(child).localname)
        if element is not None:
            _mark(child, element.type, prefixes)


def _mark(el: etree._Element, xsd_type: Any, prefixes: dict[str, str]) -> None:
    if el.get(_TYPE) is not None:
        return  # zeep typed it already (a subtype chosen with $type)
    item = _array_item(xsd_type)
    if item is not None:
        members = [c for c in el if isinstance(c.tag, str)]
        el.set(_TYPE, "SOAP-ENC:Array")
        el.set(_ARRAY_TYPE, f"{_name(item, prefixes)}[{len(members)}]")
        for member in members:
            _mark(member, item, prefixes)
        return
    el.set(_TYPE, _name(xsd_type, prefixes))
    _children(el, xsd_type, prefixes)


def _array_item(xsd_type: Any) -> Any | None:
    if isinstance(xsd_type, xsd.ComplexType) and getattr(xsd_type, "_array_type", None):
        elements = xsd_type.elements
        if elements and isinstance(elements[0][1], xsd.Any):
            return elements[0][1].restrict or xsd.AnyType()
    return None


def _name(xsd_type: Any, prefixes: dict[str, str]) -> str:
    """``xsd:string``, ``tns:name_value``: the type's qualified name with a declared prefix."""
    qname = getattr(xsd_type, "qname", None)
    namespace = getattr(qname, "namespace", None)
    local = getattr(qname, "localname", None)
    if not local:
        return "xsd:anyType"
    if namespace == XSD:
        return f"xsd:{local}"
    if not namespace:
        return local
    prefix = next((p for p, ns in prefixes.items() if ns == namespace), None)
    if prefix is None:
        prefix = "tns" if "tns" not in prefixes else f"ns{len(prefixes)}"
        prefixes[prefix] = namespace
    return f"{prefix}:{local}"
