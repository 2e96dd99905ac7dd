"""A real SOAP CRM on loopback for the ``webservice_soap`` tests, and their helpers.

:class:`SoapCrm` is a small WSGI app served by werkzeug in a thread on
127.0.0.1. It serves the fixture WSDLs with their ``soap:address`` rewritten to
itself and answers Salesforce Partner and SugarCRM v4_1 calls with the fixture
responses: it checks the login credentials and the session of every create,
counts logins, and can expire its sessions or answer with a scripted reply
(an HTML page, truncated XML) to test what the connector makes of it.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from leadrelay.engine.connector import LeadEnvelope

FIXTURES = Path(__file__).parents[2] / "fixtures"
WSDL_DIR = FIXTURES / "wsdl"
RESPONSES = FIXTURES / "soap-responses"
SF_WSDL = WSDL_DIR / "salesforce" / "partner_v58.wsdl"
SF_WSDL_V18 = WSDL_DIR / "salesforce" / "partner_v18.wsdl"
SUGAR_WSDL = WSDL_DIR / "sugarcrm" / "sugar_v4_1_soap.wsdl"

SF_USER, SF_PASSWORD = "api@acme.example", "s3cret-pass+TOKEN"
SUGAR_USER, SUGAR_PASSWORD = "admin", "sugar-pa55"
SF_LOGIN_PATH = "/services/Soap/u/58.0"
SF_INSTANCE_PATH = "/services/Soap/u/58.0/00Dxx0000001gEF"
SUGAR_PATH = "/service/v4_1/soap.php"

ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SF_NS = "urn:partner.soap.sforce.com"
SUGAR_NS = "http://www.sugarcrm.com/sugarcrm"

LEAD_FIELDS = {"first_name": "Jane", "last_name": "Doe", "email": "jane.doe@example.com",
               "company": "ACME Corp"}


def fixture_bytes(name: str) -> bytes:
    """A fixture SOAP response, as the CRM sent it."""
    return (RESPONSES / name).read_bytes()


# Constructed from the WSDL's LoginResult type (no verbatim login answer in the
# fixtures): what the Partner API's login returns.
SF_LOGIN_RESPONSE = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soapenv:Body><loginResponse><result>
<metadataServerUrl>{base}/services/Soap/m/58.0/00Dxx0000001gEF</metadataServerUrl>
<passwordExpired>false</passwordExpired>
<sandbox>false</sandbox>
<serverUrl>{base}{instance}</serverUrl>
<sessionId>{session}</sessionId>
<userId>005xx000001SvH6AAK</userId>
<userInfo><sessionSecondsValid>{ttl}</sessionSecondsValid></userInfo>
</result></loginResponse></soapenv:Body></soapenv:Envelope>"""

# Constructed from the WSDL's entry_value type, rpc/encoded like the rest of SugarCRM's answers.
SUGAR_LOGIN_RESPONSE = """<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
 xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/" xmlns:tns="http://www.sugarcrm.com/sugarcrm">
<SOAP-ENV:Body><ns1:loginResponse xmlns:ns1="http://www.sugarcrm.com/sugarcrm">
<return xsi:type="tns:entry_value"><id xsi:type="xsd:string">{session}</id>
<module_name xsi:type="xsd:string">Users</module_name>
<name_value_list xsi:type="SOAP-ENC:Array" SOAP-ENC:arrayType="tns:name_value[1]">
<item xsi:type="tns:name_value"><name xsi:type="xsd:string">user_id</name>
<value xsi:type="xsd:string">1</value></item></name_value_list></return>
</ns1:loginResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>"""

# Shaped like SuiteCRM's error 10 ("Invalid Login"), as the fixture's error 11 is.
SUGAR_LOGIN_FAULT = """<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<SOAP-ENV:Body><SOAP-ENV:Fault><faultcode xsi:type="xsd:string">10</faultcode>
<faultstring xsi:type="xsd:string">Invalid Login</faultstring>
<detail xsi:type="xsd:string">Login attempt failed please check the username and password</detail>
</SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>"""

SF_LOGIN_FAULT = """<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body><soapenv:Fault>
<faultcode>sf:INVALID_LOGIN</faultcode>
<faultstring>INVALID_LOGIN: Invalid username, password, security token; or user locked out.
</faultstring>
</soapenv:Fault></soapenv:Body></soapenv:Envelope>"""


@dataclass
class Seen:
    """One request the CRM received."""

    method: str
    path: str
    operation: str
    headers: dict[str, str]
    body: bytes

    def xml(self) -> etree._Element:
        """The request body parsed."""
        return etree.fromstring(self.body)


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class SoapCrm:
    """The CRM's state: valid sessions, what it saw, what it will answer next."""

    base: str = ""
    sessions: set[str] = field(default_factory=set)
    seen: list[Seen] = field(default_factory=list)
    #: Replies to give to the next create calls instead of the normal flow, in order.
    scripted: list[Reply] = field(default_factory=list)
    #: What a Salesforce create with a valid session answers.
    sf_create: str = "sf_partner_create_success.xml"
    sf_ttl: int = 7200
    lock: threading.Lock = field(default_factory=threading.Lock)
    _counter: int = 0

    # -- test helpers ----------------------------------------------------------------

    def logins(self) -> int:
        """How many login calls the CRM answered."""
        return sum(1 for s in self.seen if s.operation == "login")

    def calls(self, operation: str) -> list[Seen]:
        """The requests for ``operation``."""
        return [s for s in self.seen if s.operation == operation]

    def expire_sessions(self) -> None:
        """Every session the CRM gave out becomes invalid."""
        with self.lock:
            self.sessions.clear()

    def url(self, path: str) -> str:
        """An absolute URL on this server."""
        return self.base + path

    # -- WSGI ------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        """Route one request."""
        if request.method == "GET":
            with self.lock:
                self.seen.append(Seen("GET", request.full_path.rstrip("?"), "wsdl",
                                      dict(request.headers), b""))
            return self._wsdl(request)
        body = request.get_data()
        operation = _operation(body)
        with self.lock:
            self.seen.append(Seen(request.method, request.path, operation,
                                  dict(request.headers), body))
        if request.path == SF_LOGIN_PATH:
            return self._sf_login(body)
        if request.path == SF_INSTANCE_PATH:
            return self._sf_create(body, operation)
        if request.path == SUGAR_PATH:
            return self._sugar(body, operation)
        return Response("not found", 404)

    def _wsdl(self, request: Request) -> Response:
        if request.path == "/partner18.wsdl":  # the older Partner API, same flow
            text = SF_WSDL_V18.read_text("utf-8").replace(
                "https://www.salesforce.com/services/Soap/u/18.0", self.url(SF_LOGIN_PATH))
            return Response(text, 200, content_type="text/xml; charset=utf-8")
        if request.path == "/partner.wsdl":
            text = SF_WSDL.read_text("utf-8").replace(
                "https://login.salesforce.com/services/Soap/u/58.0", self.url(SF_LOGIN_PATH))
            return Response(text, 200, content_type="text/xml; charset=utf-8")
        if request.path == SUGAR_PATH and "wsdl" in request.args:
            raw = SUGAR_WSDL.read_bytes().replace(
                b"https://localhost/service/v4_1/soap.php\"/>",
                self.url(SUGAR_PATH).encode() + b"\"/>")
            return Response(raw, 200, content_type="text/xml; charset=ISO-8859-1")
        if request.path == "/broken.wsdl":
            return Response("<definitions><oops></definitions>", 200, content_type="text/xml")
        return Response("not found", 404)

    def _new_session(self, prefix: str) -> str:
        with self.lock:
            self._counter += 1
            session = f"{prefix}!AQ0AQHm-{self._counter:04d}-SESSION"
            self.sessions.add(session)
            return session

    def _next_scripted(self) -> Response | None:
        with self.lock:
            if not self.scripted:
                return None
            status, headers, body = self.scripted.pop(0)
        return Response(body, status, headers=headers)

    def _sf_login(self, body: bytes) -> Response:
        doc = etree.fromstring(body)
        user = doc.findtext(f".//{{{SF_NS}}}username")
        password = doc.findtext(f".//{{{SF_NS}}}password")
        if (user, password) != (SF_USER, SF_PASSWORD):
            return _xml(SF_LOGIN_FAULT, 500)
        session = self._new_session("00Dxx0000001gEF")
        return _xml(SF_LOGIN_RESPONSE.format(base=self.base, instance=SF_INSTANCE_PATH,
                                             session=session, ttl=self.sf_ttl), 200)

    def _sf_create(self, body: bytes, operation: str) -> Response:
        doc = etree.fromstring(body)
        session = doc.findtext(f"{{{ENV}}}Header/{{{SF_NS}}}SessionHeader/{{{SF_NS}}}sessionId")
        if session not in self.sessions:
            return _xml(fixture_bytes("sf_partner_fault_invalid_session.xml"), 500)
        scripted = self._next_scripted()
        if scripted is not None:
            return scripted
        return _xml(fixture_bytes(self.sf_create), 200)

    def _sugar(self, body: bytes, operation: str) -> Response:
        doc = etree.fromstring(body)
        if operation == "login":
            user = doc.findtext(".//user_auth/user_name")
            password = doc.findtext(".//user_auth/password")
            expected = hashlib.md5(SUGAR_PASSWORD.encode()).hexdigest()
            if (user, password) != (SUGAR_USER, expected):
                return _xml(SUGAR_LOGIN_FAULT, 500)
            return _xml(SUGAR_LOGIN_RESPONSE.format(session=self._new_session("sugar")), 200)
        if operation == "set_entry":
            if doc.findtext(".//session") not in self.sessions:
                return _xml(fixture_bytes("sugar_v4_1_fault_invalid_session_CONSTRUCTED.xml"), 500)
            scripted = self._next_scripted()
            if scripted is not None:
                return scripted
            return _xml(fixture_bytes("sugar_v4_1_set_entry_success_CONSTRUCTED.xml"), 200)
        return Response("unknown operation", 500)


def _operation(body: bytes) -> str:
    try:
        doc = etree.fromstring(body)
    except etree.XMLSyntaxError:
        return "?"
    first = doc.find(f"{{{ENV}}}Body/*")
    return etree.QName(first).localname if first is not None else "?"


def _xml(body: str | bytes, status: int) -> Response:
    return Response(body, status, content_type="text/xml; charset=utf-8")


class _Handler(WSGIRequestHandler):
    # Without it every keep-alive request stalls ~40 ms on delayed ACKs.
    disable_nagle_algorithm = True

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def make_lead(fields: dict[str, Any] | None = None, delivery_id: int = 1) -> LeadEnvelope:
    """A lead as the engine hands it to a connector."""
    return LeadEnvelope(
        fields=dict(LEAD_FIELDS if fields is None else fields), lead_id=delivery_id,
        delivery_id=delivery_id, idempotency_key=f"key-{delivery_id}", form_id=1,
        source="form", received_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    )


def strip_ws(xml: bytes | str) -> str:
    """Whitespace between tags removed, for comparing envelopes."""
    text = xml.decode() if isinstance(xml, bytes) else xml
    return re.sub(r">\s+<", "><", text).strip()


def serve(crm: SoapCrm) -> tuple[BaseWSGIServer, threading.Thread]:
    """Start ``crm`` on a free loopback port; sets ``crm.base``."""
    server: BaseWSGIServer = make_server("127.0.0.1", 0, crm, threaded=True,
                                         request_handler=_Handler)
    crm.base = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    return server, thread
