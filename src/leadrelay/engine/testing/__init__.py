"""Testing a connector: the contract suite, the fake CRM and the pytest plugin.

A connector package adopts the contract in one short test file (see
:mod:`.contract` and ``docs/connectors.md``)::

    from leadrelay.engine.testing import ConnectorContract, FakeCrm, Reply

    pytest_plugins = ["leadrelay.engine.testing.plugin"]

This package needs pytest (``pip install leadrelay[testing]``); the engine
itself never imports it.
"""

import pytest

# Plain ``assert`` in the contract reports the compared values, as in a test module.
pytest.register_assert_rewrite("leadrelay.engine.testing.base",
                               "leadrelay.engine.testing.checks_setup",
                               "leadrelay.engine.testing.checks_delivery",
                               "leadrelay.engine.testing.harness")

from .contract import ConnectorContract  # noqa: E402
from .fake_crm import FakeCrm, RecordedRequest, Reply, http_date  # noqa: E402
from .harness import ContractEngine, Delivered, assert_no_secret, envelope_for  # noqa: E402
from .requirements import Requirements, requires  # noqa: E402

__all__ = [
    "ConnectorContract",
    "ContractEngine",
    "Delivered",
    "FakeCrm",
    "RecordedRequest",
    "Reply",
    "Requirements",
    "assert_no_secret",
    "envelope_for",
    "http_date",
    "requires",
]
