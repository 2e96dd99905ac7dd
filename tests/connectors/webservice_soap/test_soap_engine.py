"""SOAP deliveries through the whole engine: ledger, delivery runner, retries, failed collection.

The connector is found through its real entry point, as in production.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from soap_crm import (
    LEAD_FIELDS,
    SF_PASSWORD,
    SF_USER,
    SUGAR_PASSWORD,
    SUGAR_PATH,
    SUGAR_USER,
    SoapCrm,
)

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.errors import ConfigError
from leadrelay.engine.report import DeliveryFilter

RETRY = {"max_attempts": 3, "delays": ["2m", "5m"], "jitter": 0}
SF_FIELDS = {"LastName": "last_name", "Company": "company", "Email": "email"}


def salesforce_integration(app: Leadrelay, form_id: int, crm: SoapCrm, **kw: Any) -> int:
    config = {"preset": "salesforce_partner", "wsdl": crm.url("/partner.wsdl"),
              "username": SF_USER, "password": SF_PASSWORD, "fields": SF_FIELDS}
    return app.manage.create_integration(
        form_id, name="Salesforce", connector="webservice_soap", config=config, active=True,
        retry=RETRY, **kw).id


def test_salesforce_delivery_is_recorded_and_redacted(app: Leadrelay, form_id: int,
                                                      soap_crm: SoapCrm) -> None:
    # Given a Salesforce integration (checked against its WSDL when saved)
    assert "webservice_soap" in app.plugins.available()
    salesforce_integration(app, form_id, soap_crm)

    # When two leads are submitted and delivered
    first = app.submit(form_id, LEAD_FIELDS).delivery_ids[0]
    second = app.submit(form_id, {**LEAD_FIELDS, "email": "john@example.com"}).delivery_ids[0]
    results = app.deliver_due()

    # Then both are delivered with the record id, after a single login
    assert [r.outcome.value for r in results] == ["accepted", "accepted"]
    assert [r.crm_reference for r in results] == ["001R0000029IyDPIA0"] * 2
    assert soap_crm.logins() == 1
    # and the integration object shows the SOAP exchanges, without password or session id
    obj = app.inspect(first)
    assert obj["delivery"]["crm_reference"] == "001R0000029IyDPIA0"
    [attempt] = obj["attempts"]
    assert [e["step"] for e in attempt["exchanges"]] == ["login", "create"]
    assert "<ns0:LastName" in attempt["exchanges"][1]["request"]["body"]
    assert "<success>true</success>" in attempt["exchanges"][1]["response"]["body"]
    shown = json.dumps([obj, app.inspect(second)])
    assert SF_PASSWORD not in shown
    for session in soap_crm.sessions:
        assert session not in shown


def test_salesforce_record_error_is_retried_then_collected(
    app: Leadrelay, form_id: int, soap_crm: SoapCrm, clock: FakeClock
) -> None:
    # Given a Salesforce org that refuses the record (HTTP 200, success=false)
    soap_crm.sf_create = "sf_partner_create_record_error.xml"
    salesforce_integration(app, form_id, soap_crm)
    delivery_id = app.submit(form_id, LEAD_FIELDS).delivery_ids[0]

    # When every attempt comes due
    outcomes = []
    for minutes in (0, 2, 5):
        clock.advance(minutes=minutes)
        outcomes += [r.outcome.value for r in app.deliver_due()]

    # Then each was rejected, and the lead is in the failed collection with Salesforce's reason
    assert outcomes == ["rejected"] * 3
    failed = app.deliveries(DeliveryFilter(state="not_integrated"))
    assert [d["id"] for d in failed] == [delivery_id]
    assert "FIELD_INTEGRITY_EXCEPTION" in failed[0]["last_reason"]
    assert soap_crm.logins() == 1  # the session outlived the retries


def test_sugar_expired_session_inside_the_engine(app: Leadrelay, form_id: int,
                                                 soap_crm: SoapCrm) -> None:
    app.manage.create_integration(
        form_id, name="Sugar", connector="webservice_soap", active=True, retry=RETRY,
        config={"preset": "sugarcrm_v4_1", "wsdl": soap_crm.url(SUGAR_PATH + "?wsdl"),
                "username": SUGAR_USER, "password": SUGAR_PASSWORD,
                "fields": {"last_name": "last_name", "email1": "email"}})
    app.submit(form_id, LEAD_FIELDS)
    assert [r.outcome.value for r in app.deliver_due()] == ["accepted"]

    soap_crm.expire_sessions()
    app.submit(form_id, LEAD_FIELDS)
    [result] = app.deliver_due()

    assert result.outcome.value == "accepted"
    assert result.crm_reference == "6b3c1d9e-52a7-4f0e-9d5e-0123456789ab"
    assert soap_crm.logins() == 2


def test_a_bad_mapping_is_refused_when_saved(app: Leadrelay, form_id: int,
                                             soap_crm: SoapCrm) -> None:
    with pytest.raises(ConfigError, match=r"operation create: argument sObjects\.0\.Colour: "
                                          r"no such element in sObject"):
        app.manage.create_integration(
            form_id, name="SF", connector="webservice_soap",
            config={"preset": "salesforce_partner", "wsdl": soap_crm.url("/partner.wsdl"),
                    "username": SF_USER, "password": SF_PASSWORD,
                    "arguments": {"sObjects": [{"type": "Lead", "Colour": "red"}]}})
    assert app.manage.integrations(form_id) == []


def test_the_preset_works_on_the_older_partner_v18_wsdl(
        app: Leadrelay, form_id: int, soap_crm: SoapCrm) -> None:
    # Given the Salesforce preset on the Partner API v18.0 WSDL (older than v58)
    config = {"preset": "salesforce_partner", "wsdl": soap_crm.url("/partner18.wsdl"),
              "username": SF_USER, "password": SF_PASSWORD, "fields": SF_FIELDS}
    app.manage.create_integration(form_id, name="SF v18", connector="webservice_soap",
                                  config=config, active=True, retry=RETRY)

    # When a lead is accepted, then one is refused at HTTP 200
    first = app.submit(form_id, LEAD_FIELDS).delivery_ids[0]
    app.deliver_due()
    soap_crm.sf_create = "sf_partner_create_record_error.xml"
    second = app.submit(form_id, LEAD_FIELDS).delivery_ids[0]
    app.deliver_due()

    # Then the first is delivered with its id, the second rejected in Salesforce's words
    assert app.inspect(first)["delivery"]["crm_reference"] == "001R0000029IyDPIA0"
    create = soap_crm.calls("create")[0].xml()
    record = create.find(".//{urn:partner.soap.sforce.com}sObjects")
    assert record.findtext("{urn:sobject.partner.soap.sforce.com}type") == "Lead"
    assert record.findtext("{urn:sobject.partner.soap.sforce.com}LastName") == "Doe"
    attempt = app.inspect(second)["attempts"][0]
    assert attempt["outcome"] == "rejected"
    assert "(CRM said FIELD_INTEGRITY_EXCEPTION: The profile name is already in use" in (
        attempt["reason"])
