"""Typed calls against the real Salesforce Enterprise WSDL (v18.0), through the whole engine.

Enterprise WSDLs type ``create``'s argument as ``ens:sObject`` and expect each record as
its concrete subtype (``xsi:type="ens:Lead"``). Configured by hand (no preset): login,
then ``create`` with ``$type``. The loopback CRM answers what the WSDL's types allow:
``LoginResult``, ``SaveResult`` (success, or ``success=false`` with ``errors`` at HTTP 200),
and faults shaped like the shared fixtures' Partner ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from lxml import etree
from soap_crm import LEAD_FIELDS, WSDL_DIR, serve
from werkzeug.wrappers import Request, Response

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.errors import ConfigError

WSDL = WSDL_DIR / "salesforce" / "enterprise_v18.wsdl"
ENV = "http://schemas.xmlsoap.org/soap/envelope/"
ENS = "urn:enterprise.soap.sforce.com"
SOBJ = "urn:sobject.enterprise.soap.sforce.com"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
USER, PASSWORD = "api@acme.example", "ent-pa55+TOKEN"
LOGIN_PATH, INSTANCE_PATH = "/services/Soap/c/18.0", "/services/Soap/c/18.0/00Dxx0000001gEF"
RETRY = {"max_attempts": 3, "delays": ["2m", "5m"], "jitter": 0}


def envelope(body: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{ENV}" '
            f'xmlns="{ENS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>").encode()


def fault(code: str, message: str) -> bytes:
    return (f'<soapenv:Envelope xmlns:soapenv="{ENV}" '
            'xmlns:sf="urn:fault.enterprise.soap.sforce.com">'
            f"<soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode>"
            f"<faultstring>{code}: {message}</faultstring></soapenv:Fault></soapenv:Body>"
            "</soapenv:Envelope>").encode()


SAVED = ("<createResponse><result><id>00Q5g00000AbCdEAAZ</id><success>true</success></result>"
         "</createResponse>")
REFUSED = ("<createResponse><result><errors><fields>Email</fields><message>invalid email address: "
           "jane@</message><statusCode>INVALID_EMAIL_ADDRESS</statusCode></errors>"
           '<id xsi:nil="true"/><success>false</success></result></createResponse>')


@dataclass
class EnterpriseCrm:
    base: str = ""
    sessions: set[str] = field(default_factory=set)
    creates: list[etree._Element] = field(default_factory=list)
    #: Answers to the next creates with a valid session: (status, body).
    scripted: list[tuple[int, bytes]] = field(default_factory=list)
    logins: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base + path

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.dispatch(Request(environ))(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        if request.method == "GET" and request.path == "/enterprise.wsdl":
            text = WSDL.read_text("utf-8").replace(
                "https://www.salesforce.com/services/Soap/c/18.0", self.url(LOGIN_PATH))
            return Response(text, 200, content_type="text/xml; charset=utf-8")
        doc = etree.fromstring(request.get_data())
        if request.path == LOGIN_PATH:
            with self.lock:
                self.logins += 1
            if (doc.findtext(f".//{{{ENS}}}username"), doc.findtext(f".//{{{ENS}}}password")) != (
                    USER, PASSWORD):
                return _xml(fault("INVALID_LOGIN", "Invalid username, password, security "
                                                   "token; or user locked out."), 500)
            with self.lock:
                session = f"00Dxx!ENT{len(self.sessions) + 1:04d}SESSIONVALUE"
                self.sessions.add(session)
            return _xml(envelope(
                f"<loginResponse><result><passwordExpired>false</passwordExpired>"
                f"<sandbox>false</sandbox><serverUrl>{self.url(INSTANCE_PATH)}</serverUrl>"
                f"<sessionId>{session}</sessionId><userId>005xx000001SvH6AAK</userId>"
                "</result></loginResponse>"), 200)
        if request.path == INSTANCE_PATH:
            session = doc.findtext(f"{{{ENV}}}Header/{{{ENS}}}SessionHeader/{{{ENS}}}sessionId")
            with self.lock:
                self.creates.append(doc)
                if session not in self.sessions:
                    return _xml(fault("INVALID_SESSION_ID", "Invalid Session ID found in "
                                                            "SessionHeader"), 500)
                status, body = self.scripted.pop(0) if self.scripted else (200, envelope(SAVED))
            return _xml(body, status)
        return Response("not found", 404)


def _xml(body: bytes, status: int) -> Response:
    return Response(body, status, content_type="text/xml; charset=utf-8")


@pytest.fixture
def crm() -> Iterator[EnterpriseCrm]:
    app = EnterpriseCrm()
    server, thread = serve(app)  # type: ignore[arg-type]
    try:
        yield app
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def config(crm: EnterpriseCrm, record: dict[str, Any] | None = None) -> dict[str, Any]:
    record = record or {"$type": "Lead", "Id": "$skip", "LastName": "{last_name}",
                        "FirstName": "{first_name}", "Company": "{company}", "Email": "{email}"}
    return {
        "wsdl": crm.url("/enterprise.wsdl"),
        "operation": "create",
        "username": USER, "password": PASSWORD,
        "login": {"operation": "login",
                  "arguments": {"username": "{auth.username}", "password": "{auth.password}"},
                  "outputs": {"session_id": "result.sessionId", "endpoint": "result.serverUrl"}},
        "arguments": {"sObjects": [record]},
        "headers": {"SessionHeader": {"sessionId": "{session.session_id}"}},
        "faults": {"session": ["INVALID_SESSION_ID"]},
    }


def integrate(app: Leadrelay, form_id: int, crm: EnterpriseCrm, **kw: Any) -> int:
    cfg = kw.pop("config", None) or config(crm)
    return app.manage.create_integration(form_id, name="SF Enterprise",
                                         connector="webservice_soap", config=cfg, active=True,
                                         retry=RETRY, **kw).id


def deliver(app: Leadrelay, form_id: int) -> dict[str, Any]:
    delivery_id = app.submit(form_id, LEAD_FIELDS).delivery_ids[0]
    app.deliver_due()
    return app.inspect(delivery_id)


def test_a_typed_create_is_sent_as_the_subtype_and_delivered(
        app: Leadrelay, form_id: int, crm: EnterpriseCrm) -> None:
    integrate(app, form_id, crm)

    obj = deliver(app, form_id)

    assert obj["delivery"]["state"] == "delivered"
    assert obj["delivery"]["crm_reference"] == "00Q5g00000AbCdEAAZ"
    [doc] = crm.creates
    [record] = doc.findall(f".//{{{ENS}}}create/{{{ENS}}}sObjects")
    prefix, _, local = record.get(XSI_TYPE).partition(":")
    assert (record.nsmap[prefix], local) == (SOBJ, "Lead")
    assert {etree.QName(c).localname: c.text for c in record} == {
        "FirstName": "Jane", "LastName": "Doe", "Company": "ACME Corp",
        "Email": "jane.doe@example.com"}
    assert all(etree.QName(c).namespace == SOBJ for c in record)


def test_a_refusal_at_http_200_is_rejected_with_salesforce_words(
        app: Leadrelay, form_id: int, crm: EnterpriseCrm) -> None:
    crm.scripted = [(200, envelope(REFUSED))]
    integrate(app, form_id, crm)

    attempt = deliver(app, form_id)["attempts"][0]

    assert attempt["outcome"] == "rejected"
    assert attempt["reason"] == (
        "response mismatch: json_field result[0].success == true saw false (CRM said "
        "INVALID_EMAIL_ADDRESS: invalid email address: jane@: Email)")


def test_a_fault_is_rejected_and_an_invalid_session_logs_in_again(
        app: Leadrelay, form_id: int, crm: EnterpriseCrm) -> None:
    crm.scripted = [(500, fault("INVALID_FIELD", "No such column 'Foo__c' on entity 'Lead'"))]
    integrate(app, form_id, crm)
    refused = deliver(app, form_id)["attempts"][0]
    assert (refused["outcome"], refused["reason"]) == (
        "rejected", "CRM refused the lead: SOAP fault sf:INVALID_FIELD: INVALID_FIELD: No such "
                    "column 'Foo__c' on entity 'Lead'")

    crm.sessions.clear()
    obj = deliver(app, form_id)
    assert obj["delivery"]["state"] == "delivered"
    assert [e["step"] for e in obj["attempts"][0]["exchanges"]] == ["create", "login", "create"]


def test_a_subtype_that_does_not_extend_the_declared_type_is_refused(
        app: Leadrelay, form_id: int, crm: EnterpriseCrm) -> None:
    with pytest.raises(ConfigError) as err:
        integrate(app, form_id, crm, config=config(crm, {"$type": "SaveResult", "id": "x"}))
    assert str(err.value) == ("config.arguments: operation create: argument sObjects.0.$type: "
                              "SaveResult does not extend sObject, the type declared here")

    with pytest.raises(ConfigError, match=r"\$type: no type 'ens:Leed' in the WSDL"):
        integrate(app, form_id, crm, config=config(crm, {"$type": "ens:Leed"}))

    with pytest.raises(ConfigError, match=r"sObjects\.0\.Emial: no such element in Lead"):
        integrate(app, form_id, crm, config=config(crm, {"$type": "Lead", "Emial": "{email}"}))
    assert app.manage.integrations(form_id) == []


def test_the_derived_default_is_shown(app: Leadrelay, form_id: int, crm: EnterpriseCrm) -> None:
    from leadrelay.engine.report import describe_integration

    shown = describe_integration(app.manage.get_integration(integrate(app, form_id, crm)))

    assert shown["expectations"]["rules"][-1] == {
        "kind": "json_field", "path": "result[0].success", "equals": True}
    assert shown["expectations"]["reference"] == {"json": "result[0].id"}
