"""Static-IP variants: an integration's traffic through a real forward proxy, on each backend.

Between the engine and a real CRM server on loopback runs proxy.py, started and
stopped by the tests. The proxy's own answers (refused, its 502 page, a 407)
are proxy errors; whatever the CRM answers through it is judged exactly as
without it.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select
from werkzeug import Request, Response

from crm_contracts import failure, success
from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.errors import ConfigError, UnknownConnector
from leadrelay.engine.ledger import Attempt, Integration
from leadrelay.engine.proxies import HealthCheck, Proxy, ProxyPool, StaticIpPools, parse_pools
from leadrelay.engine.report import DeliveryFilter
from leadrelay.engine.transport import RenderedRequest, Transport
from static_ip_support import (
    CannedProxy,
    ForwardProxy,
    engine,
    free_port,
    new_form,
    pool_toml,
    squid_error,
    tinyproxy_error,
)

LEAD = {"first_name": "Jane", "last_name": "Doe", "email": "jane.doe@example.com",
        "company": "ACME Corp"}
FAST_RETRY = {"max_attempts": 3, "delays": ["2m", "5m"], "jitter": 0}
PASSWORD = "pr0xy-s3cret/&:@pw"  # characters that must be escaped in a URL
PASSWORD_ENV = "LEADRELAY_TEST_PROXY_PASSWORD"
VIA = "1.1 proxy.py v"


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture
def proxy_a(tmp_path: Path) -> Iterator[ForwardProxy]:
    """proxy.py requiring a user and password, like a production egress proxy."""
    proxy = ForwardProxy(tmp_path, "egress-a", basic_auth=f"relay:{PASSWORD}").start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def proxy_b(tmp_path: Path) -> Iterator[ForwardProxy]:
    """A second proxy.py, without authentication."""
    proxy = ForwardProxy(tmp_path, "egress-b").start()
    try:
        yield proxy
    finally:
        proxy.stop()


def egress_a(proxy: ForwardProxy) -> dict[str, object]:
    return {"name": "egress-a", "url": proxy.url("relay"), "password_env": PASSWORD_ENV,
            "egress_ips": ["203.0.113.10"]}


def egress_b(proxy: ForwardProxy) -> dict[str, object]:
    return {"name": "egress-b", "url": proxy.url(), "egress_ips": ["203.0.113.11"]}


@pytest.fixture
def make_app(tmp_path: Path, database_url: str, clock: FakeClock,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Build an engine whose plugins.toml declares the given pools; closed at teardown."""
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    apps: list[Leadrelay] = []

    def make(pools: dict[str, list[dict[str, object]]], **kw: str) -> Leadrelay:
        app = engine(tmp_path, database_url, clock, pool_toml(pools, **kw))
        apps.append(app)
        return app

    try:
        yield make
    finally:
        for app in apps:
            app.close()


def add_integration(app: Leadrelay, form_id: int, url: str, **kw: Any) -> int:
    kw.setdefault("name", "CRM")
    kw.setdefault("connector", "http_post")
    kw.setdefault("active", True)
    kw.setdefault("retry", FAST_RETRY)
    config = {"url": url, **kw.pop("config", {})}
    return app.manage.create_integration(form_id, config=config, **kw).id


def crm_requests(httpserver: HTTPServer, path: str) -> list[Request]:
    return [r for r, _ in httpserver.log if r.path == path]


# -- going through the proxy -----------------------------------------------------------


def test_a_static_ip_delivery_goes_through_the_proxy_and_the_attempt_names_it(
    make_app: Any, proxy_a: ForwardProxy, httpserver: HTTPServer
) -> None:
    # Given a form with a static-IP integration and a direct one, to the same CRM
    app = make_app({"default": [egress_a(proxy_a)]})
    form_id = new_form(app)
    httpserver.expect_request("/static").respond_with_response(success("salesforce_web_to_lead"))
    httpserver.expect_request("/direct").respond_with_response(success("salesforce_web_to_lead"))
    static_id = add_integration(app, form_id, httpserver.url_for("/static"), name="Static",
                                static_ip_pool="default")
    add_integration(app, form_id, httpserver.url_for("/direct"), name="Direct")

    # When a lead is delivered
    static_delivery, direct_delivery = app.submit(form_id, LEAD).delivery_ids
    results = app.deliver_due()

    # Then both are accepted; only the static-IP request came through the proxy
    assert [r.outcome.value for r in results] == ["accepted", "accepted"]
    [static_req] = crm_requests(httpserver, "/static")
    [direct_req] = crm_requests(httpserver, "/direct")
    assert static_req.headers.get("Via", "").startswith(VIA)
    assert "Via" not in direct_req.headers
    assert len(proxy_a.requests_logged("/static", expect=1)) == 1
    assert proxy_a.requests_logged("/direct") == []
    # and the proxy's credentials stopped at the proxy
    assert "Proxy-Authorization" not in static_req.headers
    # and the attempt records which proxy carried it, by name
    static_attempt = app.inspect(static_delivery)["attempts"][0]
    assert static_attempt["proxy"] == "egress-a"
    assert static_attempt["exchanges"][0]["proxy"] == "egress-a"
    assert app.inspect(direct_delivery)["attempts"][0]["proxy"] is None
    assert app.manage.get_integration(static_id).static_ip_pool == "default"


def _gzip_json(request: Request) -> Response:
    body = gzip.compress(json.dumps({"success": True, "data": {"id": 42}}).encode())
    return Response(body, headers={"Content-Type": "application/json",
                                   "Content-Encoding": "gzip"})


def _chunked(request: Request) -> Response:
    # A generator body has no Content-Length: the CRM streams it chunked.
    return Response((part for part in [b"<result>", b"<status>OK</status>", b"</result>"]),
                    content_type="text/xml")


def _latin1(request: Request) -> Response:
    return Response("Demande reçue, numéro 1234".encode("iso-8859-1"),
                    content_type="text/plain; charset=iso-8859-1")


def _latin1_refused(request: Request) -> Response:
    return Response("Demande refusée: e-mail invalide".encode("iso-8859-1"),
                    content_type="text/plain; charset=iso-8859-1")


def _crm_502(request: Request) -> Response:
    # The CRM's own gateway error (its nginx in front of a dead app server).
    return Response("<html><head><title>502 Bad Gateway</title></head><body><center>"
                    "<h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
                    status=502, content_type="text/html", headers={"Server": "nginx"})


SCENARIOS = {
    "accepted": (lambda r: success("salesforce_web_to_lead"), None, "accepted"),
    "rejected by a body rule in a 200": (
        lambda r: failure("odoo_jsonrpc_create_crm_lead"),
        {"rules": [{"kind": "status", "in": [200]},
                   {"kind": "json_field", "path": "error", "exists": False}]},
        "rejected"),
    "rejected by a 400": (lambda r: failure("hubspot_forms_v3_submit"), None, "rejected"),
    "throttled by a 429": (
        lambda r: Response("slow down", status=429, headers={"Retry-After": "900"}),
        None, "throttled"),
    "transient 503 from the CRM": (
        lambda r: Response("maintenance", status=503, headers={"Retry-After": "600"}),
        None, "transient"),
    "the CRM's own 502, relayed": (_crm_502, None, "transient"),
    "gzip-compressed JSON": (
        _gzip_json,
        {"rules": [{"kind": "json_field", "path": "success", "equals": True}],
         "reference": {"json": "data.id"}},
        "accepted"),
    "chunked XML": (
        _chunked, {"rules": [{"kind": "xml_element", "xpath": "/result/status",
                              "equals": "OK"}]}, "accepted"),
    "latin-1 body accepted by a rule": (
        _latin1, {"rules": [{"kind": "body_contains", "value": "reçue"}]}, "accepted"),
    "latin-1 body refused by a rule": (
        _latin1_refused, {"rules": [{"kind": "body_not_contains", "value": "refusée"}]},
        "rejected"),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_same_answer_gets_the_same_verdict_with_and_without_the_proxy(
    make_app: Any, proxy_a: ForwardProxy, httpserver: HTTPServer, clock: FakeClock,
    scenario: str,
) -> None:
    handler, expectations, expected = SCENARIOS[scenario]
    # Given the CRM answering the same way on two paths, one reached through the proxy
    app = make_app({"default": [egress_a(proxy_a)]})
    form_id = new_form(app)
    for path in ("/direct", "/static"):
        httpserver.expect_request(path).respond_with_handler(handler)
    extra = {"expectations": expectations} if expectations else {}
    add_integration(app, form_id, httpserver.url_for("/direct"), name="Direct", **extra)
    add_integration(app, form_id, httpserver.url_for("/static"), name="Static",
                    static_ip_pool="default", **extra)

    # When one lead is delivered to both
    direct_id, static_id = app.submit(form_id, LEAD).delivery_ids
    app.deliver_due()

    # Then the proxied request really went through the proxy
    [proxied] = crm_requests(httpserver, "/static")
    assert proxied.headers.get("Via", "").startswith(VIA)
    # and both attempts got the same verdict: outcome, reason, deciding rule, trace, next try
    direct, static = (app.inspect(d) for d in (direct_id, static_id))
    seen = [(obj["attempts"][0]["outcome"], obj["attempts"][0]["reason"],
             obj["attempts"][0]["decided_by"], obj["attempts"][0]["trace"],
             obj["delivery"]["next_due_at"], obj["delivery"]["crm_reference"])
            for obj in (direct, static)]
    assert seen[0] == seen[1]
    assert seen[0][0] == expected
    assert static["attempts"][0]["proxy"] == "egress-a"


# -- the proxy failing ---------------------------------------------------------------


def test_a_stopped_proxy_is_a_proxy_error_then_the_delivery_recovers_when_it_is_back(
    make_app: Any, proxy_a: ForwardProxy, httpserver: HTTPServer, clock: FakeClock
) -> None:
    # Given a static-IP integration whose only proxy is stopped
    app = make_app({"default": [egress_a(proxy_a)]})
    form_id = new_form(app)
    httpserver.expect_request("/crm").respond_with_response(success("salesforce_web_to_lead"))
    add_integration(app, form_id, httpserver.url_for("/crm"), static_ip_pool="default")
    proxy_a.stop()
    delivery_id = app.submit(form_id, LEAD).delivery_ids[0]

    # When it is delivered
    [first] = app.deliver_due()

    # Then it is a proxy error, not the CRM's fault, and it is retried like a transient failure
    assert first.outcome.value == "proxy_error"
    assert first.state.value == "pending"
    assert (first.next_due_at - clock.now()).total_seconds() == pytest.approx(120)
    assert "proxy egress-a" in first.reason and "connection refused" in first.reason
    attempt = app.inspect(delivery_id)["attempts"][0]
    assert attempt["decided_by"] == "proxy egress-a"
    assert attempt["proxy"] == "egress-a"
    assert attempt["exchanges"][0]["response"] is None
    assert httpserver.log == []

    # When the proxy is back and the retry comes due
    proxy_a.start()
    clock.advance(minutes=2)
    [second] = app.deliver_due()

    # Then the lead is delivered through it
    assert second.outcome.value == "accepted"
    assert [a["outcome"] for a in app.inspect(delivery_id)["attempts"]] == [
        "proxy_error", "accepted"]
    [req] = crm_requests(httpserver, "/crm")
    assert req.headers["Via"].startswith(VIA)


def test_the_proxys_own_502_is_a_proxy_error_never_the_crms_rejection(
    make_app: Any, proxy_a: ForwardProxy, clock: FakeClock
) -> None:
    # Given a CRM that is down, reached directly and through the proxy
    app = make_app({"default": [egress_a(proxy_a)]})
    form_id = new_form(app)
    dead_crm = f"http://127.0.0.1:{free_port()}/lead"
    add_integration(app, form_id, dead_crm, name="Direct")
    add_integration(app, form_id, dead_crm, name="Static", static_ip_pool="default")

    # When a lead is delivered to both
    direct_id, static_id = app.submit(form_id, LEAD).delivery_ids
    app.deliver_due()

    # Then directly it is a transient failure; through the proxy, proxy.py's own 502
    # "Bad Gateway" page is a proxy error — not a rejection, not the CRM's 502
    direct, static = (app.inspect(d)["attempts"][0] for d in (direct_id, static_id))
    assert direct["outcome"] == "transient"
    assert static["outcome"] == "proxy_error"
    assert "proxy egress-a answered 502 itself" in static["reason"]
    assert static["exchanges"][0]["response"]["status"] == 502
    assert app.inspect(static_id)["delivery"]["state"] == "pending"


def test_wrong_proxy_credentials_are_a_proxy_error(
    make_app: Any, proxy_a: ForwardProxy, httpserver: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEADRELAY_TEST_WRONG_PASSWORD", "not-the-password")
    app = make_app({"default": [{**egress_a(proxy_a),
                                 "password_env": "LEADRELAY_TEST_WRONG_PASSWORD"}]})
    form_id = new_form(app)
    add_integration(app, form_id, httpserver.url_for("/crm"), static_ip_pool="default")

    [result] = _deliver(app, form_id)

    assert result.outcome.value == "proxy_error"
    assert "proxy egress-a refused our credentials (HTTP 407)" in result.reason
    assert httpserver.log == []


def _deliver(app: Leadrelay, form_id: int) -> list[Any]:
    app.submit(form_id, LEAD)
    return app.deliver_due()


def test_when_one_proxy_is_down_the_next_carries_the_lead_until_a_health_check(
    make_app: Any, proxy_a: ForwardProxy, proxy_b: ForwardProxy, httpserver: HTTPServer,
    clock: FakeClock,
) -> None:
    # Given a pool of two proxies, the first one stopped
    app = make_app({"default": [egress_a(proxy_a), egress_b(proxy_b)]},
                   health_check='interval = "30s", timeout = "1s"')
    form_id = new_form(app)
    httpserver.expect_request("/crm").respond_with_response(success("salesforce_web_to_lead"))
    add_integration(app, form_id, httpserver.url_for("/crm"), static_ip_pool="default")
    proxy_a.stop()

    # When a lead is delivered
    [first] = _deliver(app, form_id)

    # Then the second proxy carried it, in the same attempt, once
    assert first.outcome.value == "accepted"
    attempt = app.inspect(first.delivery_id)["attempts"][0]
    assert attempt["proxy"] == "egress-b"
    assert [e["proxy"] for e in attempt["exchanges"]] == ["egress-a", "egress-b"]
    assert "connection refused" in attempt["exchanges"][0]["error"]
    assert attempt["exchanges"][1]["response"]["status"] == 200
    assert len(httpserver.log) == 1 and len(proxy_b.requests_logged("/crm", expect=1)) == 1

    # When the first proxy is back, it stays last until its health check is due
    proxy_a.start()
    [second] = _deliver(app, form_id)
    assert app.inspect(second.delivery_id)["attempts"][0]["proxy"] == "egress-b"
    assert proxy_a.requests_logged("/crm") == []

    # When the health check comes due, it passes and the first proxy leads again
    clock.advance(seconds=30)
    [third] = _deliver(app, form_id)
    attempt = app.inspect(third.delivery_id)["attempts"][0]
    assert attempt["proxy"] == "egress-a"
    assert [e["proxy"] for e in attempt["exchanges"]] == ["egress-a"]
    assert len(proxy_a.requests_logged("/crm", expect=1)) == 1


def test_every_proxy_of_the_pool_down_is_one_proxy_error_naming_each(
    make_app: Any, proxy_a: ForwardProxy, proxy_b: ForwardProxy, httpserver: HTTPServer
) -> None:
    app = make_app({"default": [egress_a(proxy_a), egress_b(proxy_b)]})
    form_id = new_form(app)
    add_integration(app, form_id, httpserver.url_for("/crm"), static_ip_pool="default")
    proxy_a.stop()
    proxy_b.stop()

    [result] = _deliver(app, form_id)

    assert result.outcome.value == "proxy_error"
    assert "proxy egress-a" in result.reason and "proxy egress-b" in result.reason
    attempt = app.inspect(result.delivery_id)["attempts"][0]
    assert [e["proxy"] for e in attempt["exchanges"]] == ["egress-a", "egress-b"]
    assert httpserver.log == []


@pytest.mark.parametrize(
    ("page", "software"),
    [(squid_error(), "squid 503"), (tinyproxy_error(), "tinyproxy 502")],
)
def test_another_proxys_error_page_is_a_proxy_error_and_the_next_proxy_is_tried(
    make_app: Any, proxy_b: ForwardProxy, httpserver: HTTPServer, page: bytes, software: str
) -> None:
    # Given a pool whose first proxy answers with its own "cannot connect" page
    httpserver.expect_request("/crm").respond_with_response(success("salesforce_web_to_lead"))
    with CannedProxy(page) as broken:
        app = make_app({"default": [
            {"name": "broken", "url": broken.url(), "egress_ips": ["203.0.113.9"]},
            egress_b(proxy_b)]})
        form_id = new_form(app)
        add_integration(app, form_id, httpserver.url_for("/crm"), static_ip_pool="default")

        # When a lead is delivered
        [result] = _deliver(app, form_id)

    # Then the page is recognised as the proxy's, and the next proxy delivers the lead
    assert result.outcome.value == "accepted", software
    attempt = app.inspect(result.delivery_id)["attempts"][0]
    assert attempt["proxy"] == "egress-b"
    assert "proxy broken answered" in attempt["exchanges"][0]["error"]
    assert len(broken.seen) == 1 and len(httpserver.log) == 1


def test_a_proxys_gateway_timeout_is_a_proxy_error_and_not_resent_elsewhere(
    make_app: Any, proxy_b: ForwardProxy, httpserver: HTTPServer
) -> None:
    # Given a first proxy that timed out waiting for the CRM: the CRM may have the lead
    page = squid_error(504, "Gateway Timeout", "ERR_READ_TIMEOUT 0")
    with CannedProxy(page) as slow:
        app = make_app({"default": [
            {"name": "slow", "url": slow.url(), "egress_ips": ["203.0.113.9"]},
            egress_b(proxy_b)]})
        form_id = new_form(app)
        add_integration(app, form_id, httpserver.url_for("/crm"), static_ip_pool="default")
        [result] = _deliver(app, form_id)

    # Then it is a proxy error, retried later — never sent again through the next proxy now
    assert result.outcome.value == "proxy_error"
    assert "proxy slow answered 504 itself" in result.reason
    assert result.state.value == "pending"
    assert proxy_b.requests_logged("/crm") == [] and httpserver.log == []


def test_what_a_library_fetches_on_the_session_goes_through_the_proxy_too(
    proxy_a: ForwardProxy, proxy_b: ForwardProxy, httpserver: HTTPServer, clock: FakeClock
) -> None:
    # Given a static-IP transport, as zeep is lent it to fetch a WSDL, the first proxy down
    httpserver.expect_request("/service.wsdl").respond_with_data("<definitions/>")
    pool = StaticIpPools.from_config(
        {"default": {"proxies": [egress_a(proxy_a), egress_b(proxy_b)]}},
        clock=clock, env={PASSWORD_ENV: PASSWORD},
    ).route("default")
    transport = Transport(proxy_route=pool)
    proxy_a.stop()
    try:
        # When the library GETs on the session directly
        response = transport.session.get(httpserver.url_for("/service.wsdl"), timeout=5)
    finally:
        transport.close()

    # Then the document came through the pool's next proxy, never directly
    assert response.status_code == 200
    [req] = crm_requests(httpserver, "/service.wsdl")
    assert req.headers["Via"].startswith(VIA)
    assert len(proxy_b.requests_logged("/service.wsdl", expect=1)) == 1
    assert pool.is_down("egress-a")


# -- secrets -------------------------------------------------------------------------


def test_proxy_credentials_are_never_shown_stored_or_logged(
    make_app: Any, proxy_a: ForwardProxy, httpserver: HTTPServer, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    # Given a static-IP integration through a proxy that needs a password, and one attempt
    # that fails at the proxy
    app = make_app({"default": [egress_a(proxy_a)]})
    form_id = new_form(app)
    httpserver.expect_request("/crm").respond_with_response(success("salesforce_web_to_lead"))
    add_integration(app, form_id, httpserver.url_for("/crm"), static_ip_pool="default")
    [ok] = _deliver(app, form_id)
    proxy_a.stop()
    [failed] = _deliver(app, form_id)
    assert (ok.outcome.value, failed.outcome.value) == ("accepted", "proxy_error")

    # Then the password is in nothing the engine shows, stores or logs
    with app.ledger.session() as s:
        stored = json.dumps([[a.exchanges, a.reason, a.proxy, a.trace]
                             for a in s.scalars(select(Attempt))])
    shown = [
        stored,
        json.dumps([app.inspect(r.delivery_id) for r in (ok, failed)]),
        json.dumps(app.deliveries(DeliveryFilter())),
        caplog.text,
        repr(app.routes), repr(app.routes.route("default").proxies),  # type: ignore[attr-defined]
        _static_ips(tmp_path, monkeypatch, "--json"),
        _static_ips(tmp_path, monkeypatch),
    ]
    for text in shown:
        assert PASSWORD not in text and "pr0xy-s3cret" not in text
    # and the CRM never received it
    assert all("Proxy-Authorization" not in r.headers for r, _ in httpserver.log)


# -- the static-ips command -----------------------------------------------------------


def _static_ips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str,
                code: int = 0) -> str:
    from leadrelay.cli.static_ips import static_ips

    monkeypatch.setenv("LEADRELAY_PLUGINS_FILE", str(tmp_path / "plugins.toml"))
    monkeypatch.setenv("LEADRELAY_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(static_ips, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_static_ips_prints_the_addresses_to_allow_list_per_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxy_b: ForwardProxy
) -> None:
    # Given two pools; egress-b is running, egress-a (declared with a user) is not
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    stopped = f"http://relay@127.0.0.1:{free_port()}"
    (tmp_path / "plugins.toml").write_text(pool_toml({
        "default": [{"name": "egress-a", "url": stopped, "password_env": PASSWORD_ENV,
                     "egress_ips": ["203.0.113.10", "2001:db8::10"]},
                    egress_b(proxy_b)],
        "eu": [{"name": "eu-1", "url": "http://10.1.0.5:3128",
                "egress_ips": ["198.51.100.0/29"]}],
    }))

    # Then the table lists each address with its pool and proxy, and nothing about URLs
    text = _static_ips(tmp_path, monkeypatch)
    for expected in ("pool default", "pool eu", "203.0.113.10", "2001:db8::10",
                     "203.0.113.11", "198.51.100.0/29", "egress-a", "eu-1"):
        assert expected in text
    assert "127.0.0.1" not in text and "relay" not in text and "10.1.0.5" not in text

    data = json.loads(_static_ips(tmp_path, monkeypatch, "--json"))
    assert data == {"pools": [
        {"pool": "default", "egress_ips": ["203.0.113.10", "2001:db8::10", "203.0.113.11"],
         "proxies": [{"name": "egress-a", "egress_ips": ["203.0.113.10", "2001:db8::10"]},
                     {"name": "egress-b", "egress_ips": ["203.0.113.11"]}]},
        {"pool": "eu", "egress_ips": ["198.51.100.0/29"],
         "proxies": [{"name": "eu-1", "egress_ips": ["198.51.100.0/29"]}]},
    ]}

    # and --check probes each proxy now
    checked = json.loads(_static_ips(tmp_path, monkeypatch, "--json", "--check",
                                     "--pool", "default"))
    [pool] = checked["pools"]
    assert [(p["name"], p["up"]) for p in pool["proxies"]] == [
        ("egress-a", False), ("egress-b", True)]
    assert "refused" in pool["proxies"][0]["problem"].lower()

    # and an unknown pool is a usage error
    out = _static_ips(tmp_path, monkeypatch, "--pool", "us", code=2)
    assert "no pool named 'us'" in out


def test_static_ips_without_pools_says_how_to_declare_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "plugins.toml").write_text("[connectors.http_post]\nenabled = true\n")
    assert "declare [proxies.<pool>]" in _static_ips(tmp_path, monkeypatch)


# -- bad input -----------------------------------------------------------------------


BAD_POOLS = [
    ({"default": [{"name": "a", "url": "http//127.0.0.1:3128", "egress_ips": ["203.0.113.1"]}]},
     "proxies.default.proxies[0].url", "not a proxy URL"),
    ({"default": [{"name": "a", "url": "http://127.0.0.1:99999", "egress_ips": ["203.0.113.1"]}]},
     "proxies.default.proxies[0].url", "bad port"),
    ({"default": [{"name": "a", "url": "socks5://127.0.0.1:1080", "egress_ips": ["203.0.113.1"]}]},
     "proxies.default.proxies[0].url", "not a proxy URL"),
    ({"default": [{"name": "a", "url": "http://relay:hunter2@127.0.0.1:3128",
                   "egress_ips": ["203.0.113.1"]}]},
     "proxies.default.proxies[0].url", "must not carry a password"),
    ({"default": [{"name": "a", "url": "http://127.0.0.1:3128", "egress_ips": ["203.0.113"]}]},
     "proxies.default.proxies[0].egress_ips", "not an IP address"),
    ({"default": [{"name": "a", "url": "http://127.0.0.1:3128", "egress_ips": []}]},
     "proxies.default.proxies[0].egress_ips", "must not be empty"),
    ({"default": [{"name": "a", "url": "http://127.0.0.1:3128", "egress_ips": ["203.0.113.1"],
                   "password": "x"}]},
     "proxies.default.proxies[0].password", "unknown key"),
    ({"default": [{"name": "a", "url": "http://127.0.0.1:3128",
                   "password_env": "LEADRELAY_TEST_PROXY_PASSWORD",
                   "egress_ips": ["203.0.113.1"]}]},
     "proxies.default.proxies[0].password_env", "needs a user name"),
    ({"default": [{"name": "a", "url": "http://relay@127.0.0.1:3128",
                   "password_env": "LEADRELAY_TEST_UNSET_PASSWORD",
                   "egress_ips": ["203.0.113.1"]}]},
     "proxies.default.proxies[0].password_env", "LEADRELAY_TEST_UNSET_PASSWORD is not set"),
    ({"default": [{"name": "a", "url": "http://127.0.0.1:3128", "egress_ips": ["203.0.113.1"]},
                  {"name": "a", "url": "http://127.0.0.1:3129", "egress_ips": ["203.0.113.2"]}]},
     "proxies.default.proxies", "two proxies are named 'a'"),
]


@pytest.mark.parametrize(("pools", "field", "message"), BAD_POOLS,
                         ids=[b[1].rsplit(".", 1)[-1] + ": " + b[2] for b in BAD_POOLS])
def test_a_bad_pool_stops_the_engine_at_start_with_the_field_named(
    tmp_path: Path, database_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
    pools: dict[str, list[dict[str, object]]], field: str, message: str,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.delenv("LEADRELAY_TEST_UNSET_PASSWORD", raising=False)

    with pytest.raises(ConfigError, match=message) as caught:
        engine(tmp_path, database_url, clock, pool_toml(pools))

    assert caught.value.field == field
    assert str(caught.value).startswith(f"plugins.toml: {field}: ")
    assert "hunter2" not in str(caught.value)
    # nothing was created: the ledger is opened after the pools are read
    assert not (tmp_path / "ledger.db").exists()


@pytest.mark.parametrize(
    ("toml", "message"),
    [("[proxies.default]\nproxies = []\n", "a pool needs at least one proxy"),
     ("[proxies.default]\nhealth_check = {interval = \"30s\"}\n",
      "a pool needs at least one proxy"),
     ("[proxies.default]\nproxies = [{name = \"a\", url = \"http://127.0.0.1:3128\", "
      "egress_ips = [\"203.0.113.1\"]}]\nhealth_check = {interval = \"soon\"}\n",
      r"proxies.default.health_check.interval: expected a duration")],
)
def test_a_pool_without_proxies_or_with_a_bad_health_check_is_refused(
    tmp_path: Path, database_url: str, clock: FakeClock, toml: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        engine(tmp_path, database_url, clock, toml)


@pytest.mark.parametrize(
    "kw",
    [{"static_ip_pool": "default"}, {"connector": "http_post_static_ip"}],
    ids=["static_ip_pool", "http_post_static_ip"],
)
def test_a_static_ip_variant_without_a_configured_pool_is_refused_and_nothing_saved(
    app: Leadrelay, form_id: int, kw: dict[str, str]
) -> None:
    # Given an engine whose plugins.toml declares no pool
    # When an integration asks for the static-IP variant
    with pytest.raises(ConfigError, match="no static-IP pool is configured") as caught:
        add_integration(app, form_id, "http://127.0.0.1:9/crm", **kw)

    # Then the error names the field, and nothing was written
    assert caught.value.field == "static_ip_pool"
    assert "[proxies.default]" in str(caught.value)
    with app.ledger.session() as s:
        assert s.scalar(select(func.count()).select_from(Integration)) == 0


def test_an_unknown_pool_is_refused_on_create_and_update(
    make_app: Any, proxy_a: ForwardProxy
) -> None:
    app = make_app({"default": [egress_a(proxy_a)]})
    form_id = new_form(app)
    with pytest.raises(ConfigError, match=r"pool 'eu' is not configured .*known: default"):
        add_integration(app, form_id, "http://127.0.0.1:9/crm", static_ip_pool="eu")
    integration_id = add_integration(app, form_id, "http://127.0.0.1:9/crm")

    with pytest.raises(ConfigError, match="pool 'eu' is not configured"):
        app.manage.update_integration(integration_id, static_ip_pool="eu")

    unchanged = app.manage.get_integration(integration_id)
    assert (unchanged.static_ip_pool, unchanged.revision) == (None, 1)


def test_connector_static_ip_names_the_same_connector_through_the_default_pool(
    make_app: Any, proxy_a: ForwardProxy, proxy_b: ForwardProxy, httpserver: HTTPServer
) -> None:
    app = make_app({"default": [egress_a(proxy_a)], "eu": [egress_b(proxy_b)]})
    form_id = new_form(app)
    httpserver.expect_request("/crm").respond_with_response(success("salesforce_web_to_lead"))

    # When integrations name the static-IP variant of http_post
    default_id = add_integration(app, form_id, httpserver.url_for("/crm"), name="Default",
                                 connector="http_post_static_ip")
    eu_id = add_integration(app, form_id, httpserver.url_for("/crm"), name="EU",
                            connector="http_post_static_ip", static_ip_pool="eu")

    # Then they are http_post through the default pool, or the pool they name
    default, eu = (app.manage.get_integration(i) for i in (default_id, eu_id))
    assert (default.connector, default.static_ip_pool) == ("http_post", "default")
    assert (eu.connector, eu.static_ip_pool) == ("http_post", "eu")
    results = _deliver(app, form_id)
    assert sorted(app.inspect(r.delivery_id)["attempts"][0]["proxy"] for r in results) == [
        "egress-a", "egress-b"]
    assert all(r.headers["Via"].startswith(VIA) for r, _ in httpserver.log)
    # and a variant of a connector that does not exist is an unknown connector
    with pytest.raises(UnknownConnector, match="nope_static_ip"):
        add_integration(app, form_id, httpserver.url_for("/crm"), connector="nope_static_ip")


# -- the pool's failover order, with injected time -------------------------------------


def test_a_proxy_marked_down_is_tried_last_until_its_health_check_passes() -> None:
    clock = FakeClock()
    health = {"a": "connection refused", "b": None, "c": None}
    probes: list[str] = []

    def probe(proxy: Proxy, check: HealthCheck) -> str | None:
        probes.append(proxy.name)
        return health[proxy.name]

    pool = ProxyPool("default", [Proxy(n, f"http://10.0.0.1:{i}", "10.0.0.1", i, ("192.0.2.1",))
                                 for i, n in enumerate("abc", start=3128)],
                     HealthCheck(interval=30, timeout=1), clock=clock, probe=probe)
    names = lambda: [n for n, _ in pool.candidates()]  # noqa: E731

    assert names() == ["a", "b", "c"]
    pool.mark_down("a")
    assert names() == ["b", "c", "a"]
    clock.advance(seconds=29)
    assert names() == ["b", "c", "a"] and probes == []
    # the check comes due and fails: still last, next check in another 30s
    clock.advance(seconds=1)
    assert names() == ["b", "c", "a"] and probes == ["a"]
    clock.advance(seconds=29)
    assert names() == ["b", "c", "a"] and probes == ["a"]
    # the next one passes
    health["a"] = None
    clock.advance(seconds=1)
    assert names() == ["a", "b", "c"] and probes == ["a", "a"]
    # a success through a proxy marked down brings it back without waiting
    pool.mark_down("b")
    pool.mark_up("b")
    assert names() == ["a", "b", "c"]


def test_routes_name_the_pool_and_refuse_others() -> None:
    routes = StaticIpPools.from_config(
        {"default": {"proxies": [{"name": "a", "url": "http://10.0.0.1:3128",
                                  "egress_ips": ["192.0.2.1"]}]}}, clock=FakeClock())
    assert routes.route("default").egress_ips == ["192.0.2.1"]
    with pytest.raises(ConfigError, match="must be the name of a static-IP pool"):
        routes.route("")
    assert parse_pools({}) == {}


def test_a_health_check_takes_durations_and_an_optional_url() -> None:
    [pool] = parse_pools({"p": {"proxies": [{"name": "a", "url": "http://10.0.0.1:3128",
                                            "egress_ips": ["192.0.2.1"]}],
                               "health_check": {"interval": "2m", "timeout": "500ms",
                                                "url": "http://example.test/ok"}}}).values()
    assert pool.health_check == HealthCheck(interval=120, timeout=0.5,
                                            url="http://example.test/ok")


def test_a_health_check_url_is_fetched_through_the_proxy(
    proxy_b: ForwardProxy, httpserver: HTTPServer
) -> None:
    from leadrelay.engine.proxies import probe

    httpserver.expect_request("/healthz").respond_with_data("ok")
    proxy = Proxy("egress-b", proxy_b.url(), "127.0.0.1", proxy_b.port, ("203.0.113.11",))

    assert probe(proxy, HealthCheck(url=httpserver.url_for("/healthz"), timeout=5)) is None
    [req] = crm_requests(httpserver, "/healthz")
    assert req.headers["Via"].startswith(VIA)
    proxy_b.stop()
    assert probe(proxy, HealthCheck(url=httpserver.url_for("/healthz"), timeout=1)) is not None
    assert probe(proxy, HealthCheck(timeout=1)) is not None


def test_a_rendered_request_through_a_transport_without_route_never_uses_a_proxy(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/x").respond_with_data("ok")
    transport = Transport()
    try:
        response = transport.client().send(RenderedRequest("GET", httpserver.url_for("/x")))
    finally:
        transport.close()
    assert response.status == 200 and response.proxy is None
    assert "Via" not in httpserver.log[0][0].headers


def test_connections_to_the_proxy_send_without_waiting_for_acks(
    proxy_b: ForwardProxy, httpserver: HTTPServer, clock: FakeClock
) -> None:
    # urllib3 re-enables Nagle's algorithm on proxy connections and writes a POST's head
    # and body separately: each POST then stalls ~40 ms on the proxy's delayed ACK.
    import socket

    httpserver.expect_request("/crm").respond_with_data("ok")
    pool = StaticIpPools.from_config({"default": {"proxies": [egress_b(proxy_b)]}},
                                     clock=clock).route("default")
    transport = Transport(proxy_route=pool)
    try:
        response = transport.client().send(
            RenderedRequest("POST", httpserver.url_for("/crm"), {}, b"first_name=Jane"))
        adapter = transport.session.get_adapter(httpserver.url_for("/crm"))
        manager = adapter.proxy_manager_for(proxy_b.url())  # type: ignore[attr-defined]
        # a new connection to the proxy, made the way the request's was
        connection = manager.connection_from_url(httpserver.url_for("/crm"))._new_conn()
        connection.connect()
        nodelay = connection.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        connection.close()
    finally:
        transport.close()
    assert response.status == 200 and response.proxy == "egress-b"
    assert nodelay != 0


def test_every_pool_setting_is_documented() -> None:
    from leadrelay.engine.proxies import PoolConfig, ProxyConfig

    doc = (Path(__file__).parents[2] / "docs" / "static-ip.md").read_text()
    for model in (PoolConfig, ProxyConfig, HealthCheck):
        for name in model.model_fields:
            assert f"`{name}`" in doc, f"{model.__name__}.{name} is not in docs/static-ip.md"
