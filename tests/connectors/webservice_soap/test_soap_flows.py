"""Salesforce Partner and SugarCRM v4_1 end to end against a real SOAP server on loopback.

Each delivery goes through the engine's transport (``Transport().client()``),
``connector.send`` and ``connector.judge``, as the delivery runner calls them.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from soap_crm import (
    SF_INSTANCE_PATH,
    SF_LOGIN_PATH,
    SF_NS,
    SF_PASSWORD,
    SF_USER,
    SUGAR_PASSWORD,
    SUGAR_PATH,
    SUGAR_USER,
    SoapCrm,
    make_lead,
)

from leadrelay.connectors.webservice_soap import SoapConnector
from leadrelay.connectors.webservice_soap.wsdl import CLIENTS
from leadrelay.engine.errors import RejectedError
from leadrelay.engine.expectations import Expectations
from leadrelay.engine.outcome import Outcome, Verdict
from leadrelay.engine.plugins import Plugins
from leadrelay.engine.secrets import MASK, Redactor, secret_values
from leadrelay.engine.transport import HttpClient, Transport

SF_FIELDS = {"FirstName": "first_name", "LastName": "last_name", "Email": "email",
             "Company": "company", "LeadSource": {"const": "Web"}}
SUGAR_FIELDS = {"first_name": "first_name", "last_name": "last_name", "email1": "email",
                "account_name": "company"}


def salesforce(plugins: Plugins, crm: SoapCrm, **extra: Any) -> SoapConnector:
    config = {"preset": "salesforce_partner", "wsdl": crm.url("/partner.wsdl"),
              "username": SF_USER, "password": SF_PASSWORD, "fields": SF_FIELDS, **extra}
    connector = plugins.build("webservice_soap", config)
    assert isinstance(connector, SoapConnector)
    return connector


def sugar(plugins: Plugins, crm: SoapCrm, **extra: Any) -> SoapConnector:
    config = {"preset": "sugarcrm_v4_1", "wsdl": crm.url(SUGAR_PATH + "?wsdl"),
              "username": SUGAR_USER, "password": SUGAR_PASSWORD, "fields": SUGAR_FIELDS, **extra}
    connector = plugins.build("webservice_soap", config)
    assert isinstance(connector, SoapConnector)
    return connector


class Harness:
    """Delivers leads the way the engine's runner does: one HttpClient per attempt."""

    def __init__(self, connector: SoapConnector, plugins: Plugins) -> None:
        self.connector = connector
        self.transport = Transport()
        self.redactor = Redactor(secret_values(connector.config))
        self.expectations = Expectations.parse(None, plugins.expectation_kinds,
                                               default=connector.default_expectations)
        self.clients: list[HttpClient] = []

    def deliver(self, delivery_id: int = 1, fields: dict[str, Any] | None = None) -> Verdict:
        http = self.transport.client(self.redactor)
        self.clients.append(http)
        response = self.connector.send(make_lead(fields, delivery_id), http)
        return self.connector.judge(response, self.expectations)

    def recorded(self) -> str:
        """Every recorded exchange of every attempt, as one text."""
        return repr([e.as_dict() for c in self.clients for e in c.exchanges])

    def close(self) -> None:
        self.connector.close()
        self.transport.close()


@pytest.fixture
def harness_of(plugins: Plugins) -> Iterator[Callable[[SoapConnector], Harness]]:
    made: list[Harness] = []

    def make(connector: SoapConnector) -> Harness:
        made.append(Harness(connector, plugins))
        return made[-1]

    yield make
    for h in made:
        h.close()


# -- Salesforce Partner -----------------------------------------------------------------


def test_salesforce_login_then_create_on_the_server_url(plugins, soap_crm, harness_of) -> None:
    # Given a Salesforce integration whose WSDL is served by the CRM
    h = harness_of(salesforce(plugins, soap_crm))

    # When one lead is delivered
    verdict = h.deliver()

    # Then it logged in at the WSDL's address, created on the returned serverUrl,
    assert [(s.path, s.operation) for s in soap_crm.seen if s.method == "POST"] == [
        (SF_LOGIN_PATH, "login"), (SF_INSTANCE_PATH, "create")]
    create = soap_crm.calls("create")[0].xml()
    session = create.findtext(f".//{{{SF_NS}}}SessionHeader/{{{SF_NS}}}sessionId")
    assert session in soap_crm.sessions
    # and the record id is the delivery's CRM reference
    assert verdict.outcome is Outcome.ACCEPTED
    assert verdict.crm_reference == "001R0000029IyDPIA0"
    exchanges = h.clients[0].exchanges
    assert [e.step for e in exchanges] == ["login", "create"]
    assert [e.status for e in exchanges] == [200, 200]


def test_salesforce_session_is_reused_across_deliveries(plugins, soap_crm, harness_of) -> None:
    # Given a Salesforce integration
    h = harness_of(salesforce(plugins, soap_crm))

    # When two leads are delivered one after the other
    first, second = h.deliver(1), h.deliver(2)

    # Then the CRM saw one login and two creates, with the same session
    assert first.outcome is second.outcome is Outcome.ACCEPTED
    assert soap_crm.logins() == 1
    creates = soap_crm.calls("create")
    assert len(creates) == 2
    sessions = {c.xml().findtext(f".//{{{SF_NS}}}sessionId") for c in creates}
    assert len(sessions) == 1
    # and the second attempt recorded only its create
    assert [e.step for e in h.clients[1].exchanges] == ["create"]


def test_salesforce_expired_session_logs_in_again_once(plugins, soap_crm, harness_of) -> None:
    # Given a delivered lead, after which the CRM expires every session
    h = harness_of(salesforce(plugins, soap_crm))
    assert h.deliver(1).outcome is Outcome.ACCEPTED
    soap_crm.expire_sessions()

    # When the next lead is delivered
    verdict = h.deliver(2)

    # Then the create was refused (INVALID_SESSION_ID, HTTP 500), the connector
    # logged in again once and the retried create succeeded
    assert verdict.outcome is Outcome.ACCEPTED
    assert soap_crm.logins() == 2
    assert [e.step for e in h.clients[1].exchanges] == ["create", "login", "create"]
    assert [e.status for e in h.clients[1].exchanges] == [500, 200, 200]


def test_salesforce_session_refused_after_relogin_is_transient(plugins, soap_crm,
                                                               harness_of) -> None:
    # Given a CRM that refuses every session, even a fresh one
    h = harness_of(salesforce(plugins, soap_crm))
    assert h.deliver(1).outcome is Outcome.ACCEPTED
    soap_crm.sessions.clear()
    original = soap_crm._new_session

    def useless_session(prefix: str) -> str:
        session = original(prefix)
        soap_crm.sessions.discard(session)
        return session

    soap_crm._new_session = useless_session

    # When a lead is delivered
    verdict = h.deliver(2)

    # Then it re-logged in exactly once, and the attempt is transient (retried later)
    assert soap_crm.logins() == 2
    assert verdict.outcome is Outcome.TRANSIENT
    assert "INVALID_SESSION_ID" in verdict.reason
    assert "after logging in again" in verdict.reason


def test_salesforce_session_expires_with_its_ttl(plugins, soap_crm, harness_of,
                                                 monkeypatch) -> None:
    # Given a CRM whose sessions are valid 2 minutes (sessionSecondsValid=120)
    import leadrelay.connectors.webservice_soap.connector as mod

    soap_crm.sf_ttl = 120
    h = harness_of(salesforce(plugins, soap_crm))
    now = [1000.0]
    monkeypatch.setattr(mod, "session_clock", lambda: now[0])
    h.deliver(1)

    # When the next delivery comes 2 minutes later
    now[0] += 120
    h.deliver(2)

    # Then it logged in again before creating, without a refused create first
    assert soap_crm.logins() == 2
    assert [e.step for e in h.clients[1].exchanges] == ["login", "create"]


def test_salesforce_record_error_at_http_200_is_rejected(plugins, soap_crm, harness_of) -> None:
    # Given a CRM that answers create with success=false (HTTP 200, no fault)
    soap_crm.sf_create = "sf_partner_create_record_error.xml"
    h = harness_of(salesforce(plugins, soap_crm))

    # When a lead is delivered
    verdict = h.deliver()

    # Then the default expectations for create catch it, with Salesforce's words
    assert verdict.outcome is Outcome.REJECTED
    assert verdict.decided_by == "json_field result[0].success == true"
    assert "FIELD_INTEGRITY_EXCEPTION" in verdict.reason
    assert "The profile name is already in use" in verdict.reason
    assert verdict.crm_reference is None


def test_salesforce_secrets_are_redacted_in_every_recorded_exchange(plugins, soap_crm,
                                                                   harness_of) -> None:
    # Given two deliveries (the second reuses the session)
    h = harness_of(salesforce(plugins, soap_crm))
    h.deliver(1)
    h.deliver(2)

    # Then neither the password nor the session id appear in what was recorded
    session = next(iter(soap_crm.sessions))
    text = h.recorded()
    assert SF_PASSWORD not in text
    assert session not in text
    assert MASK in text
    # but the CRM did receive them
    assert SF_PASSWORD.encode() in soap_crm.calls("login")[0].body
    assert session.encode() in soap_crm.calls("create")[1].body


def test_salesforce_wrong_password_is_a_rejection(plugins, soap_crm, harness_of) -> None:
    # Given a wrong password
    connector = salesforce(plugins, soap_crm, password="wrong")
    h = harness_of(connector)

    # When a lead is sent, the login fault is a rejection naming the fault
    with pytest.raises(RejectedError, match="login failed: SOAP fault sf:INVALID_LOGIN"):
        connector.send(make_lead(), h.transport.client(h.redactor))
    assert soap_crm.calls("create") == []


def test_concurrent_deliveries_share_one_login_and_one_client(plugins, soap_crm,
                                                              harness_of) -> None:
    # Given a fresh integration and six deliveries starting at once
    h = harness_of(salesforce(plugins, soap_crm))
    verdicts: list[Verdict] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def worker(i: int) -> None:
        try:
            start.wait()
            verdicts.append(h.deliver(i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    # Then all were delivered with one WSDL parse and one login
    assert errors == []
    assert [v.outcome for v in verdicts] == [Outcome.ACCEPTED] * 6
    assert CLIENTS.builds == 1
    assert soap_crm.logins() == 1
    assert len([s for s in soap_crm.seen if s.method == "POST"]) == 7


def test_two_integrations_on_one_wsdl_share_the_client(plugins, soap_crm, harness_of) -> None:
    # Given two Salesforce integrations naming the same WSDL
    a = harness_of(salesforce(plugins, soap_crm))
    b = harness_of(salesforce(plugins, soap_crm, record_type="Contact",
                              fields={"LastName": "last_name"}))

    # When each delivers a lead
    a.deliver(1)
    b.deliver(2)

    # Then the WSDL was fetched and parsed once, and each has its own session
    assert CLIENTS.builds == 1
    assert soap_crm.logins() == 2
    assert [s.path for s in soap_crm.seen if s.method == "GET"] == ["/partner.wsdl"]
    contact = soap_crm.calls("create")[1].xml()
    assert contact.findtext(".//{urn:sobject.partner.soap.sforce.com}type") == "Contact"


# -- SugarCRM v4_1 ----------------------------------------------------------------------


def test_sugar_login_with_md5_then_set_entry(plugins, soap_crm, harness_of) -> None:
    # Given a SugarCRM integration pointed at soap.php?wsdl (endpoint derived from it)
    h = harness_of(sugar(plugins, soap_crm))

    # When a lead is delivered
    verdict = h.deliver()

    # Then the CRM saw login (md5 password) then set_entry("Leads", name_value_list)
    assert [s.operation for s in soap_crm.seen if s.method == "POST"] == ["login", "set_entry"]
    login = soap_crm.calls("login")[0].xml()
    assert login.findtext(".//user_auth/password") == hashlib.md5(
        SUGAR_PASSWORD.encode()).hexdigest()
    entry = soap_crm.calls("set_entry")[0].xml()
    assert entry.findtext(".//module_name") == "Leads"
    assert entry.findtext(".//session") in soap_crm.sessions
    pairs = {nv.findtext("name"): nv.findtext("value")
             for nv in entry.iterfind(".//name_value_list/name_value")}
    assert pairs == {"first_name": "Jane", "last_name": "Doe",
                     "email1": "jane.doe@example.com", "account_name": "ACME Corp"}
    # and the new record's id is the CRM reference
    assert verdict.outcome is Outcome.ACCEPTED
    assert verdict.crm_reference == "6b3c1d9e-52a7-4f0e-9d5e-0123456789ab"


def test_sugar_session_reuse_and_relogin(plugins, soap_crm, harness_of) -> None:
    # Given a SugarCRM integration that delivered two leads
    h = harness_of(sugar(plugins, soap_crm))
    assert h.deliver(1).outcome is Outcome.ACCEPTED
    assert h.deliver(2).outcome is Outcome.ACCEPTED
    assert soap_crm.logins() == 1

    # When the CRM forgets its sessions and a third lead comes
    soap_crm.expire_sessions()
    verdict = h.deliver(3)

    # Then the invalid-session fault (error 11) made it log in once more, and it got through
    assert verdict.outcome is Outcome.ACCEPTED
    assert soap_crm.logins() == 2
    assert [e.step for e in h.clients[2].exchanges] == ["set_entry", "login", "set_entry"]


def test_sugar_md5_password_and_session_are_redacted(plugins, soap_crm, harness_of) -> None:
    # Given a delivered lead
    h = harness_of(sugar(plugins, soap_crm))
    h.deliver()

    # Then neither the md5 of the password nor the session id were recorded
    text = h.recorded()
    assert hashlib.md5(SUGAR_PASSWORD.encode()).hexdigest() not in text
    assert next(iter(soap_crm.sessions)) not in text


def test_sugar_wrong_password_is_a_rejection(plugins, soap_crm, harness_of) -> None:
    connector = sugar(plugins, soap_crm, password="nope")
    h = harness_of(connector)
    with pytest.raises(RejectedError, match="login failed: SOAP fault 10: Invalid Login"):
        connector.send(make_lead(), h.transport.client(h.redactor))


# -- odd answers over the wire ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "content_type", "body", "outcome", "words"),
    [
        (503, "text/html", b"<html><head><title>503 Service Unavailable</title></head>"
                          b"<body>down for maintenance</body></html>",
         Outcome.TRANSIENT, 'an HTML page "503 Service Unavailable"'),
        (200, "text/html", b"<!DOCTYPE html><html><title>Log in</title></html>",
         Outcome.REJECTED, 'an HTML page "Log in"'),
        (200, "text/xml", b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
                          b'envelope/"><soapenv:Body><createResponse><res',
         Outcome.TRANSIENT, "truncated XML"),
        (200, "application/json", b'{"ok": true}', Outcome.REJECTED, "a non-XML body"),
        (200, "text/xml", b"<error>nope</error>", Outcome.REJECTED,
         "XML that is not a SOAP envelope (root <error>)"),
        (200, "text/xml", b"", Outcome.REJECTED, "an empty body"),
        (429, "text/plain", b"slow down", Outcome.THROTTLED, "a non-XML body"),
    ],
)
def test_answers_that_are_not_soap_become_clear_verdicts(
    plugins, soap_crm, harness_of, status, content_type, body, outcome, words
) -> None:
    # Given a CRM whose create answers something that is not a SOAP envelope
    h = harness_of(salesforce(plugins, soap_crm))
    soap_crm.scripted.append((status, {"Content-Type": content_type}, body))

    # When a lead is delivered, nothing raises and the verdict says what came back
    verdict = h.deliver()
    assert verdict.outcome is outcome
    assert words in verdict.reason
    assert f"HTTP {status}" in verdict.reason


def test_dry_run_render_never_shows_the_live_session(plugins, soap_crm, harness_of) -> None:
    # Given a connector holding a live session
    h = harness_of(salesforce(plugins, soap_crm))
    h.deliver()
    session = next(iter(soap_crm.sessions))

    # When the create step is rendered for a dry run (replay preview)
    rendered = h.connector.render(make_lead())

    # Then it goes to the session's server URL, with a placeholder for the session id
    assert rendered.url == soap_crm.url(SF_INSTANCE_PATH)
    assert session not in rendered.body_text()
    assert "{session.session_id}" in rendered.body_text()
