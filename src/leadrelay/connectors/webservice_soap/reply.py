"""Reading a CRM's SOAP answer: the result as plain data, the fault, or why it is neither.

Nothing here raises on a bad answer. HTML error pages, truncated XML, XML that
is not a SOAP envelope and empty bodies all come back as a :class:`SoapResponse`
whose ``problem`` says what was wrong, for :meth:`judge` to turn into an outcome.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import re
from collections.abc import Mapping
from typing import Any

from lxml import etree
from zeep.helpers import serialize_object

from leadrelay.engine.wire import CrmResponse

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"

_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)

# Strict (no recovery: a truncated answer must not pass for a short one) and
# hardened: an answer cannot make us fetch URLs, expand entities or build huge trees.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          huge_tree=False, remove_comments=True, recover=False)


class _Forbidden(ValueError):
    """The answer carries a DTD."""


def parse_answer(content: bytes) -> etree._Element:
    """Parse an answer body strictly; raises ``etree.XMLSyntaxError`` or ``ValueError``."""
    root = etree.fromstring(content, _PARSER)
    if root is None:
        raise ValueError("no document element")
    if root.getroottree().docinfo.doctype:
        raise _Forbidden("a DTD")
    return root


class SoapResponse(CrmResponse):
    """A :class:`CrmResponse` with what the SOAP connector learnt reading it.

    ``data`` is the operation's result as plain dicts and lists, shaped like the
    response wrapper (Salesforce ``create``: ``{"result": [{"id": …, "success": …}]}``;
    SugarCRM ``set_entry``: ``{"return": {"id": …}}``). ``fault`` holds ``code``
    (as sent, ``sf:INVALID_SESSION_ID``), ``name`` (without prefix), ``message``,
    and ``detail``/``exception_code`` when present.
    """

    def __init__(self, base: CrmResponse, *, step: str, operation: str) -> None:
        super().__init__(
            base.status, base.headers, base.body, encoding=base.encoding,
            data=base.data, fault=base.fault, url=base.url, proxy=base.proxy,
        )
        self.step = step
        self.operation = operation
        #: Why the body is not a usable SOAP answer (None when it is one).
        self.problem: str | None = None
        #: The body looked like XML cut short (a dropped connection, a proxy limit).
        self.truncated = False
        #: The login step had to be repeated for this answer (expired session).
        self.relogged = False

    def __repr__(self) -> str:
        what = "fault" if self.fault else self.problem or "ok"
        return f"SoapResponse({self.operation}, status={self.status}, {what})"


def read_reply(base: CrmResponse, *, operation: Any, step: str, name: str) -> SoapResponse:
    """Parse ``base``, the raw answer to the zeep ``operation`` called ``name``.

    :param step: the step of the delivery it answers (``login``, ``create``).
    """
    reply = SoapResponse(base, step=step, operation=name)
    content = _content(base)
    if not content.strip():
        reply.problem = "an empty body, not a SOAP envelope"
        return reply
    html = _html_page(content, base)
    if html:
        reply.problem = html
        return reply
    try:
        doc = parse_answer(content)
    except _Forbidden:
        reply.problem = "XML with a DTD, refused for safety"
        return reply
    except (etree.XMLSyntaxError, ValueError) as exc:
        reply.problem, reply.truncated = _describe_unparsable(content, base, exc)
        return reply
    env_ns = etree.QName(doc).namespace
    if etree.QName(doc).localname != "Envelope" or env_ns not in (SOAP11_ENV, SOAP12_ENV):
        reply.problem = f"XML that is not a SOAP envelope (root <{etree.QName(doc).localname}>)"
        return reply
    body = doc.find(f"{{{env_ns}}}Body")
    if body is None:
        reply.problem = "a SOAP envelope without a Body"
        return reply
    fault = body.find(f"{{{env_ns}}}Fault")
    if fault is not None:
        reply.fault = _fault(fault, env_ns)
        return reply
    reply.data = _result(operation, body)
    return reply


def _content(base: CrmResponse) -> bytes:
    ctype = base.headers.get("Content-Type", "")
    if ctype.lower().startswith("multipart/related"):
        try:
            from requests_toolbelt.multipart.decoder import MultipartDecoder

            parts = MultipartDecoder(base.body, ctype, base.encoding or "utf-8").parts
            return bytes(parts[0].content)
        except Exception:  # a broken MIME package is just "not SOAP"
            return base.body
    return base.body


def _content_type(base: CrmResponse) -> str:
    return base.headers.get("Content-Type", "").split(";")[0].strip() or "no content type"


def _html_page(content: bytes, base: CrmResponse) -> str | None:
    """Describe an HTML page (a login form, a proxy's or load balancer's error page)."""
    head = content.lstrip(b"\xef\xbb\xbf \t\r\n")[:512].lower()
    if not (head.startswith((b"<!doctype html", b"<html")) or b"<html" in head[:256]):
        return None
    title = _TITLE.search(content[:4096])
    shown = ""
    if title:
        text = " ".join(title.group(1).decode("utf-8", "replace").split())[:80]
        shown = f' "{text}"' if text else ""
    return f"an HTML page{shown} ({_content_type(base)}), not a SOAP envelope"


def _describe_unparsable(content: bytes, base: CrmResponse, exc: Exception) -> tuple[str, bool]:
    head = content.lstrip(b"\xef\xbb\xbf \t\r\n")[:512].lower()
    ctype = _content_type(base)
    if head.startswith(b"<"):
        message = str(exc)
        truncated = any(m in message for m in ("Premature end", "not found", "EndTag",
                                               "Couldn't find end", "expected '>'"))
        if truncated:
            return f"truncated XML ({len(content)} bytes): the answer was cut short", True
        return f"malformed XML ({_short(message)})", False
    return f"a non-XML body ({ctype}), not a SOAP envelope", False


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 120 else text[:117] + "..."


def _fault(node: etree._Element, env_ns: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if env_ns == SOAP11_ENV:
        code = (node.findtext("faultcode") or "").strip()
        message = (node.findtext("faultstring") or "").strip()
        actor = (node.findtext("faultactor") or "").strip()
        detail = node.find("detail")
    else:
        code = (node.findtext(f"{{{env_ns}}}Code/{{{env_ns}}}Value") or "").strip()
        sub = node.find(f"{{{env_ns}}}Code/{{{env_ns}}}Subcode")
        while sub is not None:
            value = (sub.findtext(f"{{{env_ns}}}Value") or "").strip()
            if value:
                code = value  # the most specific subcode names the fault best
            sub = sub.find(f"{{{env_ns}}}Subcode")
        message = (node.findtext(f"{{{env_ns}}}Reason/{{{env_ns}}}Text") or "").strip()
        actor = (node.findtext(f"{{{env_ns}}}Role") or "").strip()
        detail = node.find(f"{{{env_ns}}}Detail")
    out["code"] = code
    out["name"] = code.rpartition(":")[2]
    out["message"] = message
    if actor:
        out["actor"] = actor
    if detail is not None:
        text = " ".join(" ".join(detail.itertext()).split())
        if text:
            out["detail"] = text[:500]
        exception_code = next(
            (el.text.strip() for el in detail.iter()
             if isinstance(el.tag, str) and etree.QName(el).localname == "exceptionCode"
             and el.text and el.text.strip()),
            None,
        )
        if exception_code:
            out["exception_code"] = exception_code
    return out


def _result(operation: Any, body: etree._Element) -> Any:
    output = getattr(operation, "output", None)
    if output is None or output.body is None:
        return None
    try:
        # The body as zeep reads it, without zeep's unwrapping of one-element
        # results, so a path into it has the same shape for every operation.
        value = output._deserialize_body(body)["body"]
        return plain(serialize_object(value, dict))
    except Exception:
        # An answer that does not follow the WSDL is still data to match on.
        children = [c for c in body if isinstance(c.tag, str)]
        if not children:
            return None
        converted = element_to_data(children[0])
        return converted


def element_to_data(el: etree._Element) -> Any:
    """An XML element as plain data: text for leaves, dicts (lists for repeats) otherwise."""
    if el.get(XSI_NIL) in ("true", "1"):
        return None
    children = [c for c in el if isinstance(c.tag, str)]
    if not children:
        return (el.text or "").strip()
    out: dict[str, Any] = {}
    for child in children:
        key = etree.QName(child).localname
        value = element_to_data(child)
        if key in out:
            if not isinstance(out[key], list):
                out[key] = [out[key]]
            out[key].append(value)
        else:
            out[key] = value
    return out


def plain(value: Any) -> Any:
    """``value`` as JSON-ready python: dicts, lists, str, int, float, bool, None."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, etree._Element):
        return {etree.QName(value).localname: element_to_data(value)}
    return str(value)
