"""A SugarCRM v1 SOAP CRM (``soap.php``, rpc/encoded) on loopback, for tests.

It serves the real v1 WSDL (``tests/fixtures/wsdl/sugarcrm/sugar_v1_soap.wsdl``) and answers
``login`` and ``set_entry`` the way that API does: every answer is HTTP 200, and a refusal is
an ``error_value`` inside the result (``number`` 10 "Invalid Login" with id ``-1``, 11
"Invalid Session ID", 40 "Access Denied"), never a SOAP fault unless scripted. The answers are
shaped from the WSDL's ``set_entry_result`` type and SugarCRM's ``SoapErrorDefinitions``.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lxml import etree
from soap_crm import WSDL_DIR, Seen
from werkzeug.wrappers import Request, Response

SUGAR_V1_WSDL = WSDL_DIR / "sugarcrm" / "sugar_v1_soap.wsdl"
USER, PASSWORD = "admin", "v1-sugar-pa55"
PATH = "/crm/soap.php"
ENV = "http://schemas.xmlsoap.org/soap/envelope/"

ERRORS = {
    "0": ("No Error", "No Error"),
    "10": ("Invalid Login", "Login attempt failed please check the username and password"),
    "11": ("Invalid Session ID", "The session ID is invalid"),
    "40": ("Access Denied", "You do not have access"),
}

RESULT = """<?xml version="1.0" encoding="ISO-8859-1"?>
<SOAP-ENV:Envelope SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"
 xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
 xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/" xmlns:tns="http://www.sugarcrm.com/sugarcrm">
<SOAP-ENV:Body><ns1:{operation}Response xmlns:ns1="http://www.sugarcrm.com/sugarcrm">
<return xsi:type="tns:set_entry_result"><id xsi:type="xsd:string">{id}</id>
<error xsi:type="tns:error_value"><number xsi:type="xsd:string">{number}</number>
<name xsi:type="xsd:string">{name}</name>
<description xsi:type="xsd:string">{description}</description></error></return>
</ns1:{operation}Response></SOAP-ENV:Body></SOAP-ENV:Envelope>"""

FAULT = b"""<?xml version="1.0" encoding="ISO-8859-1"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">
<SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>Client</faultcode>
<faultstring>Invalid parameter: name_value_list</faultstring></SOAP-ENV:Fault>
</SOAP-ENV:Body></SOAP-ENV:Envelope>"""


def result(operation: str, record_id: str, number: str) -> bytes:
    """A ``set_entry_result`` answer with ``error.number`` ``number``."""
    name, description = ERRORS[number]
    return RESULT.format(operation=operation, id=record_id, number=number, name=name,
                         description=description).encode("iso-8859-1")


@dataclass
class SugarV1Crm:
    """The CRM's state: sessions handed out, requests seen, scripted error numbers."""

    base: str = ""
    sessions: set[str] = field(default_factory=set)
    seen: list[Seen] = field(default_factory=list)
    #: Error numbers the next set_entry calls answer (HTTP 200), in order.
    set_entry_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    records: int = 0
    #: When set, a login must be signed (a stand-in for APIs like Marketo's): its
    #: ``version`` carries an ISO-8601 timestamp and its ``password`` the hex
    #: HMAC-SHA256, keyed with this, of that timestamp followed by the user name.
    signing_key: str | None = None

    def url(self, path: str) -> str:
        """An absolute URL on this server."""
        return self.base + path

    def calls(self, operation: str) -> list[Seen]:
        """The requests for ``operation``."""
        return [s for s in self.seen if s.operation == operation]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        """Route one request."""
        if request.method == "GET" and request.path == PATH and "wsdl" in request.args:
            raw = SUGAR_V1_WSDL.read_bytes().replace(
                b'location="http://localhost/crm/soap.php"',
                f'location="{self.url(PATH)}"'.encode())
            return Response(raw, 200, content_type="text/xml; charset=ISO-8859-1")
        if request.method != "POST" or request.path != PATH:
            return Response("not found", 404)
        body = request.get_data()
        doc = etree.fromstring(body)
        first = doc.find(f"{{{ENV}}}Body/*")
        operation = etree.QName(first).localname if first is not None else "?"
        with self.lock:
            self.seen.append(Seen("POST", request.path, operation, dict(request.headers), body))
        if operation == "login":
            user = doc.findtext(".//user_auth/user_name")
            password = doc.findtext(".//user_auth/password")
            expected = hashlib.md5(PASSWORD.encode()).hexdigest()
            if self.signing_key is not None:
                stamp = doc.findtext(".//user_auth/version") or ""
                datetime.fromisoformat(stamp.replace("Z", "+00:00"))  # an ISO-8601 time
                expected = hmac.new(self.signing_key.encode(), (stamp + (user or "")).encode(),
                                    "sha256").hexdigest()
            if (user, password) != (USER, expected):
                return _xml(result("login", "-1", "10"))
            with self.lock:
                session = f"v1sess{len(self.sessions) + 1:04d}abcdef"
                self.sessions.add(session)
            return _xml(result("login", session, "0"))
        if operation == "set_entry":
            with self.lock:
                if doc.findtext(".//session") not in self.sessions:
                    return _xml(result("set_entry", "-1", "11"))
                number = self.set_entry_errors.pop(0) if self.set_entry_errors else "0"
                if number == "fault":  # what a PHP error inside the server gives
                    return Response(FAULT, 500, content_type="text/xml; charset=ISO-8859-1")
                if number == "0":
                    self.records += 1
            record = f"4b1d-{self.records:04d}" if number == "0" else "-1"
            return _xml(result("set_entry", record, number))
        return Response("unknown operation", 500)

    def expire_sessions(self) -> None:
        """Every session handed out becomes invalid."""
        with self.lock:
            self.sessions.clear()


def _xml(body: bytes) -> Response:
    return Response(body, 200, content_type="text/xml; charset=ISO-8859-1")
