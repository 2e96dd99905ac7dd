"""The leadrelay pytest plugin: the ``fake_crm`` fixture, for connector packages' tests.

Load it the way ``pytester`` is loaded, in a test module or the top-level
``conftest.py``::

    pytest_plugins = ["leadrelay.engine.testing.plugin"]
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fake_crm import FakeCrm

__all__ = ["fake_crm"]


@pytest.fixture
def fake_crm() -> Iterator[FakeCrm]:
    """A real HTTP server on loopback playing the CRM; script it, then read its requests.

    Stopped (hung answers released, connections closed) when the test ends.
    """
    crm = FakeCrm()
    try:
        yield crm
    finally:
        crm.close()
