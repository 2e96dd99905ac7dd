"""The connector contract: what every leadrelay connector must do, as pytest checks.

A connector package adopts the whole suite in one short test file::

    from typing import Any

    import pytest

    from leadrelay.engine.testing import ConnectorContract, FakeCrm, Reply

    pytest_plugins = ["leadrelay.engine.testing.plugin"]


    class TestAcmeContract(ConnectorContract):
        connector_name = "acme"
        sample_lead = {"email": "jane.doe@example.com", "first_name": "Jane"}
        success_reply = Reply(201, {"id": "lead-1"})
        rejection_reply = Reply(422, {"error": "email is invalid"})

        @pytest.fixture
        def connector_config(self, fake_crm: FakeCrm) -> dict[str, Any]:
            return {"url": fake_crm.url_for("/leads"), "api_key": "acme-test-key-0001"}

Every check goes through the real engine: the connector is found through its
``leadrelay.connectors`` entry point, integrations are created, validated and
sealed by the engine's management API, leads are delivered by the engine's
runner (runtime cache, transport, judging, retry policy, ledger), and what
the checks read is the integration object the API and CLI show. The CRM is a
real HTTP server on loopback (:class:`~.fake_crm.FakeCrm`).

The checks follow fsspec's abstract test classes: the base class declares what
it needs (the class attributes above and the ``connector_config`` fixture),
the adopting subclass provides it. Capability flags
(:class:`~.requirements.Requirements`) let a connector opt out of what it
cannot do; those checks are reported as skipped, with the reason.
"""

from __future__ import annotations

from .checks_delivery import DeliveryChecks
from .checks_setup import SetupChecks

__all__ = ["ConnectorContract"]


class ConnectorContract(SetupChecks, DeliveryChecks):
    """The contract suite. Subclass it as ``Test<Something>`` to adopt it.

    Provide :attr:`connector_name`, :attr:`sample_lead`, :attr:`success_reply`,
    :attr:`rejection_reply` and the :meth:`connector_config` fixture; override
    :meth:`answer_success` / :meth:`answer_rejection` when one scripted reply is
    not enough (a login step, a WSDL to serve). Declare what the connector cannot
    do with :attr:`requirements`.
    """
