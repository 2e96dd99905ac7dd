"""Fixtures for the ``webservice_soap`` tests: a real SOAP CRM on loopback, the plugins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from soap_crm import WSDL_DIR, SoapCrm, serve

import leadrelay.connectors.webservice_soap as soap_plugin
from leadrelay.connectors.webservice_soap.wsdl import CLIENTS
from leadrelay.engine.plugins import Plugins


@pytest.fixture
def soap_crm() -> Iterator[SoapCrm]:
    """A running SOAP CRM on 127.0.0.1 (a fresh one per test)."""
    crm = SoapCrm()
    server, thread = serve(crm)
    try:
        yield crm
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def plugins(tmp_path: Path) -> Plugins:
    """Plugins with the SOAP connector registered the way an entry point would; local
    WSDLs are read from the fixtures and the test's own directory only (``wsdl_dirs``)."""
    dirs = [str(WSDL_DIR), str(tmp_path)]
    return Plugins({"webservice_soap": {"wsdl_dirs": dirs}}, load_entry_points=False,
                   extra_plugins=[soap_plugin])


@pytest.fixture(autouse=True)
def fresh_clients() -> Iterator[None]:
    """Each test starts with no cached zeep client (a client cached by URL is port-specific)."""
    CLIENTS.clear()
    yield
    CLIENTS.clear()
