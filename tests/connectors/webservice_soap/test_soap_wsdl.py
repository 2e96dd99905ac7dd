"""Loading WSDLs: offline for the schemas real WSDLs import, through the integration's session,
one client per WSDL per process."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.adapters
from pytest_httpserver import HTTPServer
from soap_crm import SF_WSDL, SUGAR_PATH, SUGAR_WSDL, WSDL_DIR, SoapCrm, make_lead

from leadrelay.connectors.webservice_soap import SoapConnector
from leadrelay.connectors.webservice_soap.wsdl import (
    CLIENTS,
    LOCAL_SCHEMAS,
    FetchOptions,
    WsdlInvalid,
    WsdlUnreachable,
    build_client,
)
from leadrelay.engine.errors import ConfigError, RejectedError, TransientError
from leadrelay.engine.plugins import Plugins
from leadrelay.engine.transport import Timeouts, Transport

PACKAGE_SCHEMAS = (Path(__file__).parents[3] / "src" / "leadrelay" / "connectors"
                   / "webservice_soap" / "schemas")


class NoNetwork(requests.adapters.BaseAdapter):
    """An adapter that records what was asked and refuses it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def send(self, request: requests.PreparedRequest, *args: Any,
             **kwargs: Any) -> requests.Response:
        self.asked.append(str(request.url))
        raise requests.exceptions.ConnectionError("no network in this test")

    def close(self) -> None:
        pass


def offline_session() -> tuple[requests.Session, NoNetwork]:
    session = requests.Session()
    adapter = NoNetwork()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session, adapter


def test_packaged_schemas_are_the_fixture_copies() -> None:
    for name in LOCAL_SCHEMAS.values():
        assert (PACKAGE_SCHEMAS / name).read_bytes() == (WSDL_DIR / "xsd" / name).read_bytes()


@pytest.mark.parametrize("wsdl", [SF_WSDL, SUGAR_WSDL])
def test_real_wsdls_load_without_network(wsdl: Path) -> None:
    # Given a session that refuses every request
    session, adapter = offline_session()

    # When the WSDL is loaded (Sugar's imports soapenc and wsdl schemas by URL)
    client = build_client(str(wsdl), FetchOptions(session, file_dirs=(WSDL_DIR.resolve(),)))

    # Then it parsed, and nothing was asked of the network
    assert client.wsdl.services
    assert adapter.asked == []


def test_wsdl_by_url_goes_through_the_integrations_session(plugins: Plugins,
                                                          soap_crm: SoapCrm) -> None:
    # Given the engine transport of an integration, with a counting adapter
    transport = Transport(timeouts=Timeouts(connect=2, read=5))
    calls: list[str] = []
    adapter = transport.session.get_adapter("http://")
    original = adapter.send

    def counting(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        calls.append(f"{request.method} {request.path_url}")
        assert kwargs["timeout"] is not None  # every fetch has a timeout
        return original(request, **kwargs)

    adapter.send = counting  # type: ignore[method-assign,assignment]
    user_agent = transport.session.headers["User-Agent"]
    connector = plugins.build("webservice_soap", {
        "preset": "sugarcrm_v4_1", "wsdl": soap_crm.url(SUGAR_PATH + "?wsdl"),
        "username": "admin", "password": "sugar-pa55"})

    # When a lead is delivered
    connector.send(make_lead(), transport.client())

    # Then the WSDL came through that session (its imports from the package), then the calls
    assert calls == [f"GET {SUGAR_PATH}?wsdl", f"POST {SUGAR_PATH}", f"POST {SUGAR_PATH}"]
    # and zeep left the session as the engine built it
    assert transport.session.headers["User-Agent"] == user_agent
    assert "file://" not in transport.session.adapters
    transport.close()


def test_a_remote_wsdl_may_not_import_local_files(plugins: Plugins,
                                                 httpserver: HTTPServer) -> None:
    wsdl = SUGAR_WSDL.read_text("iso-8859-1").replace(
        'schemaLocation="http://schemas.xmlsoap.org/wsdl/"', 'schemaLocation="file:///etc/hosts"')
    httpserver.expect_request("/evil.wsdl").respond_with_data(wsdl, content_type="text/xml")
    connector = plugins.build("webservice_soap", {"wsdl": httpserver.url_for("/evil.wsdl"),
                                                  "operation": "login"})
    with pytest.raises(ConfigError, match="a remote WSDL may not import the local document"):
        connector.check()


def test_a_slow_wsdl_times_out(httpserver: HTTPServer) -> None:
    release = threading.Event()

    def slow(request: Any) -> Any:
        release.wait(5)
        from werkzeug import Response

        return Response("<definitions/>", content_type="text/xml")

    httpserver.expect_request("/slow.wsdl").respond_with_handler(slow)
    started = time.perf_counter()
    with pytest.raises(WsdlUnreachable, match="no answer within the timeout"):
        build_client(httpserver.url_for("/slow.wsdl"),
                     FetchOptions(requests.Session(), connect_timeout=1, read_timeout=0.3))
    assert time.perf_counter() - started < 1.4
    # Let the server finish the abandoned request now, so it is not logged in another test.
    release.set()
    deadline = time.monotonic() + 5
    while not httpserver.log and time.monotonic() < deadline:
        time.sleep(0.01)


def test_wsdl_problems_at_delivery_time_are_delivery_errors(plugins: Plugins, tmp_path: Path,
                                                           unused_port: int) -> None:
    # A WSDL server that is down: transient (it may come back)
    down = plugins.build("webservice_soap", {
        "wsdl": f"http://127.0.0.1:{unused_port}/x.wsdl", "operation": "create"})
    with pytest.raises(TransientError, match="the WSDL could not be loaded"):
        down.send(make_lead(), Transport().client())
    # A WSDL replaced by something else since the integration was saved: rejected
    path = tmp_path / "crm.wsdl"
    path.write_bytes(SF_WSDL.read_bytes())
    changed = plugins.build("webservice_soap", {"wsdl": str(path), "operation": "create"})
    path.write_text("<definitions")
    with pytest.raises(RejectedError, match="the WSDL is not usable"):
        changed.send(make_lead(), Transport().client())


def test_one_client_per_wsdl_and_reloaded_when_the_file_changes(plugins: Plugins,
                                                              tmp_path: Path) -> None:
    # Given an uploaded WSDL used by three integrations
    path = tmp_path / "partner.wsdl"
    path.write_bytes(SF_WSDL.read_bytes())

    def make() -> SoapConnector:
        c = plugins.build("webservice_soap", {"preset": "salesforce_partner", "wsdl": str(path),
                                              "username": "u", "password": "p"})
        assert isinstance(c, SoapConnector)
        return c

    a, b, c = make(), make(), make()
    a.check()
    b.render(make_lead())
    c.check()
    assert CLIENTS.builds == 1
    assert a._prepare(None).client is b._prepare(None).client

    # When the file is replaced, a new integration gets a fresh parse
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    make().check()
    assert CLIENTS.builds == 2


def test_concurrent_first_use_builds_once() -> None:
    session, _ = offline_session()
    results: list[Any] = []
    barrier = threading.Barrier(8)

    def load() -> None:
        barrier.wait()
        results.append(CLIENTS.get(str(SUGAR_WSDL),
                                   FetchOptions(session, file_dirs=(WSDL_DIR.resolve(),))))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 8
    assert len({id(r) for r in results}) == 1
    assert CLIENTS.builds == 1


def test_build_client_reports_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WsdlInvalid, match="no such file"):
        build_client(str(tmp_path / "nope.wsdl"), FetchOptions(None))
