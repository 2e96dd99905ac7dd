"""The real SOAP answers in the fixtures, judged: success, a record error at HTTP 200, faults."""

from __future__ import annotations

from typing import Any

import pytest
from soap_crm import SF_WSDL, SUGAR_WSDL, fixture_bytes

from leadrelay.connectors.webservice_soap import SoapConnector, SoapResponse
from leadrelay.connectors.webservice_soap.reply import read_reply
from leadrelay.engine.errors import ConfigError
from leadrelay.engine.expectations import Expectations
from leadrelay.engine.outcome import Outcome, Verdict
from leadrelay.engine.plugins import Plugins
from leadrelay.engine.wire import CrmResponse

XML = {"Content-Type": "text/xml; charset=utf-8"}


@pytest.fixture
def sf(plugins: Plugins) -> SoapConnector:
    connector = plugins.build("webservice_soap", {
        "preset": "salesforce_partner", "wsdl": str(SF_WSDL), "username": "u", "password": "p"})
    assert isinstance(connector, SoapConnector)
    return connector


@pytest.fixture
def sugar(plugins: Plugins) -> SoapConnector:
    connector = plugins.build("webservice_soap", {
        "preset": "sugarcrm_v4_1", "wsdl": str(SUGAR_WSDL), "endpoint": "http://crm.test/soap.php",
        "username": "u", "password": "p"})
    assert isinstance(connector, SoapConnector)
    return connector


def expectations(plugins: Plugins, raw: dict[str, Any] | None = None,
                 connector: SoapConnector | None = None) -> Expectations:
    """What the engine builds: the integration's expectations, else the connector's default."""
    default = (connector or SoapConnector).default_expectations
    return Expectations.parse(raw, plugins.expectation_kinds, default=default)


def judge(connector: SoapConnector, plugins: Plugins, status: int, body: bytes,
          raw: dict[str, Any] | None = None) -> tuple[SoapResponse, Verdict]:
    response = connector.read(CrmResponse(status, XML, body))
    return response, connector.judge(response, expectations(plugins, raw, connector))


def test_salesforce_success_is_accepted_with_the_record_id(sf, plugins) -> None:
    response, verdict = judge(sf, plugins, 200, fixture_bytes("sf_partner_create_success.xml"))
    assert response.data == {"result": [{"errors": [], "id": "001R0000029IyDPIA0",
                                         "success": True}]}
    assert response.fault is None
    assert verdict.outcome is Outcome.ACCEPTED
    assert verdict.crm_reference == "001R0000029IyDPIA0"
    assert [t.rule for t in verdict.trace][-3:] == [
        "status in [2xx]", "soap_fault absent", "json_field result[0].success == true"]


def test_salesforce_record_error_at_200_is_rejected(sf, plugins) -> None:
    # "No fault" is not success: the answer is HTTP 200 with success=false
    response, verdict = judge(sf, plugins, 200,
                              fixture_bytes("sf_partner_create_record_error.xml"))
    assert response.fault is None
    assert response.data["result"][0]["success"] is False
    assert verdict.outcome is Outcome.REJECTED
    assert verdict.decided_by == "json_field result[0].success == true"
    assert verdict.reason == (
        "response mismatch: json_field result[0].success == true saw false (CRM said "
        "FIELD_INTEGRITY_EXCEPTION: The profile name is already in use: Name: Name)")


def test_salesforce_invalid_session_fault_at_500_is_transient(sf, plugins) -> None:
    response, verdict = judge(sf, plugins, 500,
                              fixture_bytes("sf_partner_fault_invalid_session.xml"))
    assert response.fault == {
        "code": "sf:INVALID_SESSION_ID", "name": "INVALID_SESSION_ID",
        "message": "INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: "
                   "Illegal Session",
        "detail": "INVALID_SESSION_ID Invalid Session ID found in SessionHeader: "
                  "Illegal Session",
        "exception_code": "INVALID_SESSION_ID"}
    assert verdict.outcome is Outcome.TRANSIENT
    assert verdict.decided_by == "SOAP fault (session)"
    assert "sf:INVALID_SESSION_ID" in verdict.reason


def test_sugar_set_entry_success_and_invalid_session(sugar, plugins) -> None:
    response, verdict = judge(sugar, plugins, 200,
                              fixture_bytes("sugar_v4_1_set_entry_success_CONSTRUCTED.xml"))
    assert response.data == {"return": {"id": "6b3c1d9e-52a7-4f0e-9d5e-0123456789ab"}}
    assert verdict.outcome is Outcome.ACCEPTED
    assert verdict.crm_reference == "6b3c1d9e-52a7-4f0e-9d5e-0123456789ab"

    response, verdict = judge(sugar, plugins, 500,
                              fixture_bytes("sugar_v4_1_fault_invalid_session_CONSTRUCTED.xml"))
    assert response.fault is not None
    assert response.fault["code"] == "11"
    assert verdict.outcome is Outcome.TRANSIENT
    assert verdict.reason == "CRM refused the session: SOAP fault 11: Invalid Session ID"


def fault(code: str, message: str = "went wrong") -> bytes:
    return (f'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>'
            f"<faultcode>{code}</faultcode><faultstring>{message}</faultstring>"
            f"</s:Fault></s:Body></s:Envelope>").encode()


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        ("soap:Server", Outcome.TRANSIENT),
        ("Server.Busy", Outcome.TRANSIENT),
        ("soap:Client", Outcome.REJECTED),
        ("sf:INVALID_FIELD", Outcome.REJECTED),
        ("sf:REQUEST_LIMIT_EXCEEDED", Outcome.THROTTLED),
        ("sf:SERVER_UNAVAILABLE", Outcome.TRANSIENT),
    ],
)
def test_faults_map_to_outcomes(sf, plugins, code, outcome) -> None:
    _, verdict = judge(sf, plugins, 500, fault(code))
    assert verdict.outcome is outcome
    assert code in verdict.reason


def test_soap_12_fault_uses_its_most_specific_subcode(sf, plugins) -> None:
    body = (b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body><e:Fault>'
            b"<e:Code><e:Value>e:Receiver</e:Value></e:Code>"
            b'<e:Reason><e:Text xml:lang="en">Database down</e:Text></e:Reason>'
            b"</e:Fault></e:Body></e:Envelope>")
    response, verdict = judge(sf, plugins, 500, body)
    assert response.fault == {"code": "e:Receiver", "name": "Receiver",
                              "message": "Database down"}
    assert verdict.outcome is Outcome.TRANSIENT


def test_integration_fault_lists_extend_the_preset(plugins) -> None:
    # Given an integration that treats DUPLICATE_VALUE as transient and a Server fault as final
    sf = plugins.build("webservice_soap", {
        "preset": "salesforce_partner", "wsdl": str(SF_WSDL), "username": "u", "password": "p",
        "faults": {"transient": ["duplicate_value"], "rejected": ["soap:Server"]}})
    assert isinstance(sf, SoapConnector)
    assert judge(sf, plugins, 500, fault("sf:DUPLICATE_VALUE"))[1].outcome is Outcome.TRANSIENT
    assert judge(sf, plugins, 500, fault("soap:Server"))[1].outcome is Outcome.REJECTED
    # and the preset's codes still hold
    assert judge(sf, plugins, 500, fault("sf:INVALID_SESSION_ID"))[1].outcome is (
        Outcome.TRANSIENT)


def test_a_soap_fault_rule_can_accept_a_fault(sf, plugins) -> None:
    # Given expectations that count "already there" as delivered
    raw = {"combine": "any", "rules": [
        {"kind": "json_field", "path": "result[0].success", "equals": True},
        {"kind": "soap_fault", "code": "DUPLICATE_VALUE"}]}

    # Then that fault is accepted, and any other fault still rejected
    _, verdict = judge(sf, plugins, 500, fault("sf:DUPLICATE_VALUE", "duplicate value found"),
                       raw)
    assert verdict.outcome is Outcome.ACCEPTED
    assert verdict.decided_by == "soap_fault code=DUPLICATE_VALUE"
    _, verdict = judge(sf, plugins, 500, fault("sf:INVALID_FIELD"), raw)
    assert verdict.outcome is Outcome.REJECTED


def test_without_a_soap_fault_rule_a_fault_is_rejected_whatever_the_rules(sf, plugins) -> None:
    # Given lax expectations that a fault body would pass
    raw = {"rules": [{"kind": "body_not_contains", "value": "error"}]}
    _, verdict = judge(sf, plugins, 500, fault("sf:INVALID_FIELD", "No such column"), raw)
    assert verdict.outcome is Outcome.REJECTED
    assert verdict.reason == "CRM refused the lead: SOAP fault sf:INVALID_FIELD: No such column"


def test_integration_expectations_replace_the_operation_default(sf, plugins) -> None:
    # Given expectations of the integration's own, on XML elements of the raw body
    raw = {"rules": [{"kind": "xml_element", "xpath": "//sf:success",
                      "namespaces": {"sf": "urn:partner.soap.sforce.com"}, "equals": "true"}],
           "reference": {"xpath": "//sf:id", "namespaces": {"sf": "urn:partner.soap.sforce.com"}}}
    _, verdict = judge(sf, plugins, 200, fixture_bytes("sf_partner_create_success.xml"), raw)
    assert verdict.outcome is Outcome.ACCEPTED
    assert verdict.crm_reference == "001R0000029IyDPIA0"
    assert verdict.decided_by.startswith("xml_element //sf:success")
    _, verdict = judge(sf, plugins, 200, fixture_bytes("sf_partner_create_record_error.xml"), raw)
    assert verdict.outcome is Outcome.REJECTED


def test_generic_operation_defaults_to_no_fault_and_2xx(plugins) -> None:
    # Given a hand-written integration for an operation no preset knows
    conn = plugins.build("webservice_soap", {
        "wsdl": str(SF_WSDL), "endpoint": "http://sf.test/", "operation": "getServerTimestamp"})
    assert isinstance(conn, SoapConnector)
    body = (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
            b'<getServerTimestampResponse xmlns="urn:partner.soap.sforce.com"><result>'
            b"<timestamp>2024-05-01T12:00:00.000Z</timestamp></result>"
            b"</getServerTimestampResponse></s:Body></s:Envelope>")
    response, verdict = judge(conn, plugins, 200, body)
    assert response.data == {"result": {"timestamp": "2024-05-01T12:00:00+00:00"}}
    assert verdict.outcome is Outcome.ACCEPTED
    assert verdict.crm_reference is None


def test_an_answer_off_the_wsdl_is_still_data(sf, plugins) -> None:
    # An answer that does not follow the WSDL's types is read generically
    body = (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
            b"<weird><result><id>X1</id><success>true</success></result></weird>"
            b"</s:Body></s:Envelope>")
    response = sf.read(CrmResponse(200, XML, body))
    assert response.problem is None
    assert response.data is not None


def test_a_dtd_is_refused(sf, plugins) -> None:
    body = (b'<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY lol "lol">]>'
            b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/>'
            b"</s:Envelope>")
    response, verdict = judge(sf, plugins, 200, body)
    assert response.problem == "XML with a DTD, refused for safety"
    assert verdict.outcome is Outcome.REJECTED


def test_soap_fault_rule_is_registered_and_validated(plugins) -> None:
    # The connector adds the soap_fault kind through the broadcast hook
    assert "soap_fault" in plugins.expectation_kinds
    with pytest.raises(ConfigError, match=r"expectations\.rules\[0\]: 'exists: false' cannot go"):
        expectations(plugins, {"rules": [{"kind": "soap_fault", "exists": False,
                                          "code": "X"}]})
    with pytest.raises(ConfigError, match=r"expectations\.rules\[0\]\.colour: unknown key"):
        expectations(plugins, {"rules": [{"kind": "soap_fault", "colour": "red"}]})


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "retry_after"),
    [
        (503, b"Service Unavailable", {"Retry-After": "300"}, "TransientError", 300.0),
        (429, b"", {"Retry-After": "60"}, "ThrottledError", 60.0),
        (200, b"<html><title>Sign in</title></html>", {}, "RejectedError", None),
        (500, fault("sf:INVALID_LOGIN", "Invalid username"), {}, "RejectedError", None),
        (500, fault("soap:Server", "busy"), {"Retry-After": "30"}, "TransientError", 30.0),
        (404, b"<s:Envelope xmlns:s='http://schemas.xmlsoap.org/soap/envelope/'><s:Body/>"
              b"</s:Envelope>", {}, "RejectedError", None),
    ],
)
def test_login_answers_that_cannot_be_used(sf, status, body, headers, error, retry_after) -> None:
    from leadrelay.connectors.webservice_soap.verdicts import login_error

    prepared = sf._prepare(None)
    reply = read_reply(CrmResponse(status, {**XML, **headers}, body),
                       operation=prepared.login.operation, step="login", name="login")
    found = login_error(reply, sf.plan.faults)
    assert type(found).__name__ == error
    assert getattr(found, "retry_after", None) == retry_after
    assert str(found).startswith("login")
