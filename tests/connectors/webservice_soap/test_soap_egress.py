"""The SOAP connector's fetches under the egress policy: every redirect hop of a WSDL
fetch is checked, and local WSDLs come from the allowed directories only."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from soap_crm import SF_WSDL, SoapCrm
from werkzeug.wrappers import Response

import leadrelay.connectors.webservice_soap as soap_plugin
from leadrelay.engine.egress import EgressPolicy
from leadrelay.engine.errors import ConfigError
from leadrelay.engine.plugins import Plugins
from leadrelay.engine.transport import Transport

LOOPBACK_ONLY = EgressPolicy(["127.0.0.1"])


def check(plugins: Plugins, config: dict[str, object]) -> None:
    connector = plugins.build("webservice_soap", config)
    transport = Transport(egress=LOOPBACK_ONLY)
    try:
        connector.check(transport.client())
    finally:
        connector.close()
        transport.close()


def test_every_redirect_hop_of_a_wsdl_fetch_is_checked(
    plugins: Plugins, soap_crm: SoapCrm, httpserver: HTTPServer,
) -> None:
    # Given a WSDL URL that redirects to a refused address (loopback, but not 127.0.0.1)
    refused = soap_crm.url("/partner.wsdl").replace("127.0.0.1", "127.0.0.2")
    httpserver.expect_request("/away.wsdl").respond_with_response(
        Response("", 302, headers={"Location": refused}))
    httpserver.expect_request("/moved.wsdl").respond_with_response(
        Response("", 301, headers={"Location": soap_crm.url("/partner.wsdl")}))
    base = {"preset": "salesforce_partner", "username": "u", "password": "p"}

    # Then the hop is refused before it connects, and the message says so
    with pytest.raises(ConfigError) as error:
        check(plugins, {**base, "wsdl": httpserver.url_for("/away.wsdl")})
    assert "refused target: 127.0.0.2 is a loopback address" in str(error.value)
    assert not [s for s in soap_crm.seen if s.method == "GET"]

    # And a redirect to an allowed address is followed
    check(plugins, {**base, "wsdl": httpserver.url_for("/moved.wsdl")})
    assert [s.path for s in soap_crm.seen if s.method == "GET"] == ["/partner.wsdl"]


def test_a_local_wsdl_needs_an_allowed_directory(plugins: Plugins, tmp_path: Path) -> None:
    config = {"wsdl": "/etc/passwd", "operation": "create", "endpoint": "http://127.0.0.1/"}
    # Without wsdl_dirs, no local path at all
    bare = Plugins(load_entry_points=False, extra_plugins=[soap_plugin])
    for where in (bare, plugins):
        with pytest.raises(ConfigError, match="config.wsdl: a local WSDL must be in one of the "
                                              r"directories plugins.toml allows \(wsdl_dirs\)"):
            check(where, config)
    with pytest.raises(ConfigError, match="a local WSDL must be in"):
        check(bare, {**config, "wsdl": str(SF_WSDL)})


def test_a_local_wsdl_cannot_import_a_file_outside_the_allowed_directories(
    plugins: Plugins, tmp_path: Path,
) -> None:
    # Given an allowed WSDL importing a schema from outside the allowed directories
    outside = tmp_path.parent / f"{tmp_path.name}-outside.xsd"
    outside.write_text('<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
                       'targetNamespace="urn:x"/>')
    text = SF_WSDL.read_text("utf-8").replace(
        "<types>", f'<types><xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
                   f'<xsd:import namespace="urn:x" schemaLocation="{outside}"/></xsd:schema>', 1)
    wsdl = tmp_path / "partner.wsdl"
    wsdl.write_text(text)

    with pytest.raises(ConfigError, match=r"outside the directories plugins\.toml allows"):
        check(plugins, {"preset": "salesforce_partner", "wsdl": str(wsdl), "username": "u",
                        "password": "p"})
