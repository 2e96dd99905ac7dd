"""The built-in ``webservice_soap`` connector passes the connector contract, adopted as a
third party would: Salesforce's Partner API (login, then create) on a fake CRM.

The WSDL and the create answers are the project's fixtures (tests/fixtures/wsdl,
tests/fixtures/soap-responses, verbatim from CumulusCI); the login answer is
constructed from the WSDL's ``LoginResult`` type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from leadrelay.engine.testing import ConnectorContract, FakeCrm, Reply, Requirements

pytest_plugins = ["leadrelay.engine.testing.plugin"]

FIXTURES = Path(__file__).parents[1] / "fixtures"
XML = {"Content-Type": "text/xml; charset=utf-8"}
LOGIN_PATH = "/services/Soap/u/58.0"
INSTANCE_PATH = "/services/Soap/u/58.0/00Dxx0000001gEF"
LOGIN_ANSWER = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns="urn:partner.soap.sforce.com">
<soapenv:Body><loginResponse><result>
<passwordExpired>false</passwordExpired><sandbox>false</sandbox>
<serverUrl>{base}{instance}</serverUrl>
<sessionId>00Dxx0000001gEF!AQ4AQFpcontract.session.7Hn2</sessionId>
<userId>005xx000001SvH6AAK</userId>
<userInfo><sessionSecondsValid>7200</sessionSecondsValid></userInfo>
</result></loginResponse></soapenv:Body></soapenv:Envelope>"""


def soap_answer(name: str) -> Reply:
    """A fixture SOAP answer, HTTP 200 as Salesforce sends even a refused record."""
    return Reply(200, (FIXTURES / "soap-responses" / name).read_bytes(), XML)


class TestWebserviceSoapContract(ConnectorContract):
    connector_name = "webservice_soap"
    sample_lead = {"first_name": "Jane", "last_name": "Doe", "company": "ACME Corp",
                   "email": "jane.doe@example.com"}
    success_reply = soap_answer("sf_partner_create_success.xml")
    rejection_reply = soap_answer("sf_partner_create_record_error.xml")
    # The create call carries the session of a login made at send time, which
    # render() cannot know: what is sent differs from the render by design.
    requirements = Requirements(deterministic_render=False)

    @pytest.fixture
    def connector_config(self, fake_crm: FakeCrm) -> dict[str, Any]:
        wsdl = (FIXTURES / "wsdl" / "salesforce" / "partner_v58.wsdl").read_bytes()
        fake_crm.reply(Reply(200, wsdl, XML), method="GET", path="/partner.wsdl")
        return {"preset": "salesforce_partner", "wsdl": fake_crm.url_for("/partner.wsdl"),
                "endpoint": fake_crm.url_for(LOGIN_PATH),
                "username": "api@acme.example", "password": "s3cret-pass+TOKEN",
                "fields": {"LastName": "last_name", "Company": "company", "Email": "email"}}

    def answer_success(self, crm: FakeCrm) -> None:
        self._login(crm)
        crm.reply(self.success_reply, method="POST", path=INSTANCE_PATH)

    def answer_rejection(self, crm: FakeCrm) -> None:
        self._login(crm)
        crm.reply(self.rejection_reply, method="POST", path=INSTANCE_PATH)

    @staticmethod
    def _login(crm: FakeCrm) -> None:
        answer = LOGIN_ANSWER.format(base=crm.url, instance=INSTANCE_PATH)
        crm.reply(Reply(200, answer, XML), method="POST", path=LOGIN_PATH)
