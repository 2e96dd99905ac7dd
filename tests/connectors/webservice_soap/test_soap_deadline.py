"""A SOAP delivery's login and create are one attempt: they share its deadline
(connect + read timeouts), so two answers each within the read timeout still end the
attempt at its deadline, as a timeout."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from soap_crm import SF_INSTANCE_PATH, SF_LOGIN_PATH, SF_PASSWORD, SF_USER, make_lead, serve
from soap_crm import SoapCrm as _SoapCrm
from werkzeug.wrappers import Request, Response

from leadrelay.connectors.webservice_soap import SoapConnector
from leadrelay.engine.errors import TransientError
from leadrelay.engine.plugins import Plugins
from leadrelay.engine.runtime import timeouts_from
from leadrelay.engine.transport import Transport

FIELDS = {"FirstName": "first_name", "LastName": "last_name", "Email": "email",
          "Company": "company"}
#: How late the attempt may end on this shared machine (measured: a few ms).
SLACK = 0.5


@dataclass
class SlowSoapCrm(_SoapCrm):
    """The SOAP CRM, answering each path after a delay."""

    delays: dict[str, float] = field(default_factory=dict)

    def dispatch(self, request: Request) -> Response:
        time.sleep(self.delays.get(request.path, 0.0))  # bounded: a fraction of a second
        return super().dispatch(request)


@dataclass
class Attempt:
    """What one delivery attempt did."""

    elapsed: float
    deadline: float
    result: object  # the response, or the TransientError raised
    steps: list[str]
    errors: list[str | None]


def deliver(plugins: Plugins, delays: dict[str, float]) -> Attempt:
    """One attempt against a SOAP CRM with these delays, with connect 0.2 s, read 0.8 s."""
    crm = SlowSoapCrm(delays=delays)
    server, thread = serve(crm)
    config = {"preset": "salesforce_partner", "wsdl": crm.url("/partner.wsdl"),
              "username": SF_USER, "password": SF_PASSWORD, "fields": FIELDS,
              "connect_timeout": 0.2, "read_timeout": 0.8}
    connector = plugins.build("webservice_soap", config)
    assert isinstance(connector, SoapConnector)
    # The transport as the engine builds it: deadline 0.2 + 0.8 = 1 s.
    transport = Transport(timeouts=timeouts_from({}, connector.config))
    try:
        connector.check(transport.client())  # the WSDL, loaded before the attempt
        http = transport.client()
        started = time.monotonic()
        try:
            result: object = connector.send(make_lead(), http)
        except TransientError as exc:
            result = exc
        return Attempt(time.monotonic() - started, transport.deadline_seconds, result,
                       [e.step for e in http.exchanges], [e.error for e in http.exchanges])
    finally:
        transport.close()
        connector.close()
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_login_and_create_each_within_the_read_timeout_still_end_at_the_deadline(
    plugins: Plugins,
) -> None:
    # Given a login and a create each answered in 0.6 s (read timeout 0.8 s)
    attempt = deliver(plugins, {SF_LOGIN_PATH: 0.6, SF_INSTANCE_PATH: 0.6})

    # Then the create is cut off when the attempt's 1 s are up
    late = "timed out: no whole answer within the attempt's deadline (1s)"
    assert attempt.deadline == pytest.approx(1.0)
    assert 1.0 <= attempt.elapsed < 1.0 + SLACK
    assert isinstance(attempt.result, TransientError) and str(attempt.result) == late
    assert attempt.steps == ["login", "create"]
    assert attempt.errors == [None, late]


def test_login_and_create_within_the_deadline_deliver(plugins: Plugins) -> None:
    attempt = deliver(plugins, {SF_LOGIN_PATH: 0.3, SF_INSTANCE_PATH: 0.3})

    assert getattr(attempt.result, "status", None) == 200
    assert attempt.steps == ["login", "create"] and attempt.errors == [None, None]
    assert attempt.elapsed < 1.0
