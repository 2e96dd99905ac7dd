"""Real WSDLs, loaded offline, produce the envelopes the CRMs expect."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from lxml import etree
from soap_crm import SF_WSDL, SUGAR_WSDL, make_lead

from leadrelay.connectors.webservice_soap import SoapConnector
from leadrelay.engine.errors import RejectedError
from leadrelay.engine.plugins import Plugins

ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SF = "urn:partner.soap.sforce.com"
SOBJ = "urn:sobject.partner.soap.sforce.com"
SUGAR = "http://www.sugarcrm.com/sugarcrm"


def build(plugins: Plugins, **config: Any) -> SoapConnector:
    connector = plugins.build("webservice_soap", config)
    assert isinstance(connector, SoapConnector)
    connector.check()
    return connector


def body_of(xml: bytes | str) -> etree._Element:
    doc = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    assert doc.tag == f"{{{ENV}}}Envelope"
    body = doc.find(f"{{{ENV}}}Body")
    assert body is not None
    return body[0]


def test_salesforce_create_envelope(plugins: Plugins) -> None:
    # Given the Salesforce preset on the real Partner WSDL (a local file)
    sf = build(plugins, preset="salesforce_partner", wsdl=str(SF_WSDL), username="u",
               password="p", fields={"LastName": "last_name", "Company": "company",
                                     "Email": "email", "LeadSource": {"const": "Web"},
                                     "NumberOfEmployees": {"const": 250}})

    # When the create step for a lead is rendered
    rendered = sf.render(make_lead())

    # Then it is a document/literal create with one Lead sObject, every mapped
    # field in the sObject namespace (the xsd:any slot), no Id, and a SessionHeader
    assert rendered.method == "POST"
    assert rendered.url == "https://login.salesforce.com/services/Soap/u/58.0"
    assert rendered.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert rendered.headers["SOAPAction"] == '""'
    create = body_of(rendered.body_text())
    assert create.tag == f"{{{SF}}}create"
    (sobject,) = create
    assert sobject.tag == f"{{{SF}}}sObjects"
    assert [(etree.QName(c).namespace, etree.QName(c).localname, c.text) for c in sobject] == [
        (SOBJ, "type", "Lead"),
        (SOBJ, "LastName", "Doe"),
        (SOBJ, "Company", "ACME Corp"),
        (SOBJ, "Email", "jane.doe@example.com"),
        (SOBJ, "LeadSource", "Web"),
        (SOBJ, "NumberOfEmployees", "250"),
    ]
    header = etree.fromstring(rendered.body_text().encode()).find(f"{{{ENV}}}Header")
    assert header is not None
    assert header.findtext(f"{{{SF}}}SessionHeader/{{{SF}}}sessionId") == "{session.session_id}"


def test_salesforce_login_envelope_and_extra_header(plugins: Plugins) -> None:
    # Given a Salesforce integration that also asks for the default assignment rule
    sf = build(plugins, preset="salesforce_partner", wsdl=str(SF_WSDL), username="api@x.test",
               password="pw+token", headers={"AssignmentRuleHeader": {"useDefaultRule": True}})
    prepared = sf._prepare(None)
    assert prepared.login is not None

    # When both steps are rendered
    from leadrelay.connectors.webservice_soap.binding import Context

    ctx = sf._context(make_lead(), None, fields={})
    login = sf._envelope(prepared, prepared.login, ctx, "http://login.test/")
    create = sf.render(make_lead())

    # Then login carries the credentials, and create both headers (typed: a boolean)
    login_body = body_of(login.body_text())
    assert login_body.tag == f"{{{SF}}}login"
    assert [(etree.QName(c).localname, c.text) for c in login_body] == [
        ("username", "api@x.test"), ("password", "pw+token")]
    doc = etree.fromstring(create.body_text().encode())
    assert doc.findtext(f".//{{{SF}}}AssignmentRuleHeader/{{{SF}}}useDefaultRule") == "true"
    assert doc.find(f".//{{{SF}}}SessionHeader") is not None
    assert isinstance(ctx, Context)


def test_sugar_envelopes_rpc_encoded(plugins: Plugins) -> None:
    # Given the SugarCRM preset on its real v4_1 WSDL, which imports the SOAP
    # encoding and WSDL schemas by URL (served from the package, no network)
    sugar = build(plugins, preset="sugarcrm_v4_1", wsdl=str(SUGAR_WSDL),
                  endpoint="https://crm.example.com/service/v4_1/soap.php",
                  username="admin", password="pa55",
                  fields={"last_name": "last_name", "email1": "email",
                          "lead_source": {"const": "Web Site"}})
    prepared = sugar._prepare(None)
    assert prepared.login is not None

    # When the login and set_entry calls are rendered
    login = sugar._envelope(prepared, prepared.login, sugar._context(make_lead(), None, {}),
                            prepared.address or "")
    entry = sugar.render(make_lead())

    # Then login is rpc-style with the md5 of the password and one option
    assert login.url == "https://crm.example.com/service/v4_1/soap.php"
    assert login.headers["SOAPAction"] == '"https://localhost/service/v4_1/soap.php/login"'
    body = body_of(login.body_text())
    assert body.tag == f"{{{SUGAR}}}login"
    assert body.findtext("user_auth/user_name") == "admin"
    assert body.findtext("user_auth/password") == hashlib.md5(b"pa55").hexdigest()
    assert body.findtext("application_name") == "leadrelay"
    assert [(nv.findtext("name"), nv.findtext("value"))
            for nv in body.iterfind("name_value_list/name_value")] == [("notifyonsave", "true")]
    # and set_entry names the module and lists the mapped fields as name/value pairs
    body = body_of(entry.body_text())
    assert body.tag == f"{{{SUGAR}}}set_entry"
    assert body.findtext("session") == "{session.session_id}"
    assert body.findtext("module_name") == "Leads"
    assert [(nv.findtext("name"), nv.findtext("value"))
            for nv in body.iterfind("name_value_list/name_value")] == [
        ("last_name", "Doe"), ("email1", "jane.doe@example.com"), ("lead_source", "Web Site")]


def test_generic_mapping_with_nested_types_arrays_and_constants(plugins: Plugins) -> None:
    # Given a hand-written mapping (no preset) for Sugar's set_entries: an array
    # of arrays, one lead's fields spelled out, a nested user_auth on login
    sugar = build(
        plugins, wsdl=str(SUGAR_WSDL), endpoint="http://crm.test/soap.php",
        operation="set_entries",
        arguments={
            "session": "{secrets.session}",
            "module_name": "Contacts",
            "name_value_lists": [[
                {"name": "last_name", "value": "{lead.last_name}"},
                {"name": "description", "value": "Lead {meta.lead_id} from {lead.company}"},
                {"$each_field": {"name": "x_{field.name}", "value": "{field.value|upper}"}},
            ]],
        },
        fields={"company": "company"},
        secrets={"session": "abc-session"},
    )

    # When rendered
    body = body_of(sugar.render(make_lead()).body_text())

    # Then the nested arrays and the texts are there, in order
    assert body.tag == f"{{{SUGAR}}}set_entries"
    assert body.findtext("session") == "abc-session"
    rows = body.findall("name_value_lists/name_value_list")
    assert len(rows) == 1
    assert [(nv.findtext("name"), nv.findtext("value")) for nv in rows[0]] == [
        ("last_name", "Doe"),
        ("description", "Lead 1 from ACME Corp"),
        ("x_company", "ACME CORP"),
    ]


def test_typed_arguments_are_converted_and_bad_data_rejected(plugins: Plugins) -> None:
    # Given Salesforce's convertLead-free "emptyRecycleBin"-like typed call:
    # describeSObjects takes a list of strings; query options take an int
    sf = build(plugins, wsdl=str(SF_WSDL), endpoint="http://sf.test/", operation="query",
               arguments={"queryString": "SELECT Id FROM Lead WHERE Email = '{email}'"},
               headers={"QueryOptions": {"batchSize": "{lead.size}"}})

    # When a lead carries a number as text, it is sent as an xsd:int
    body = sf.render(make_lead({"email": "a@b.c", "size": " 200 "})).body_text()
    doc = etree.fromstring(body.encode())
    assert doc.findtext(f".//{{{SF}}}QueryOptions/{{{SF}}}batchSize") == "200"
    assert doc.findtext(f".//{{{SF}}}queryString") == "SELECT Id FROM Lead WHERE Email = 'a@b.c'"

    # and a value that is not an int is a rejection naming the argument
    with pytest.raises(RejectedError, match=r"operation query: argument .*QueryOptions.batchSize"
                                            r": 'many' is not a valid xsd:int"):
        sf.render(make_lead({"email": "a@b.c", "size": "many"}))


def test_missing_required_value_is_a_rejection(plugins: Plugins) -> None:
    # Given a mapping whose required argument comes from a lead field
    sf = build(plugins, wsdl=str(SF_WSDL), endpoint="http://sf.test/",
               operation="login", arguments={"username": "{lead.user}", "password": "x"})

    # When the lead lacks the field, the envelope cannot be built: a clear rejection
    with pytest.raises(RejectedError, match="operation login: the lead does not fit the request"):
        sf.render(make_lead({}))


def test_any_slot_field_names_must_be_xml_names(plugins: Plugins) -> None:
    sf = build(plugins, preset="salesforce_partner", wsdl=str(SF_WSDL), username="u",
               password="p")
    with pytest.raises(RejectedError, match="field 'first name' is not a valid XML element name"):
        sf.render(make_lead({"first name": "Jane"}))
