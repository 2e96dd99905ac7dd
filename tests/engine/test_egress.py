"""The SSRF guard (engine/egress.py): refused ranges in every spelling, decided on the
address actually connected to, at configuration time and at send time.

Names resolve through an injected resolver; nothing here sends a packet off loopback:
where a broken guard would connect, the address it would reach is a loopback one
(127.0.0.2) the policy refuses, or the connection is refused before it is opened.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Response

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.egress import EgressPolicy
from leadrelay.engine.errors import ConfigError, ProxyFailure, RefusedTarget
from leadrelay.engine.outcome import Outcome
from leadrelay.engine.secrets import SecretBox
from leadrelay.engine.settings import Settings
from leadrelay.engine.transport import Transport
from leadrelay.engine.wire import RenderedRequest
from static_ip_support import OneProxy

DEFAULT = EgressPolicy()
LOOPBACK_ONLY = EgressPolicy(["127.0.0.1"])


class Resolver:
    """A resolver of fixed answers per name, counting its calls; answers may change
    after the first call (a DNS rebinding attacker)."""

    def __init__(self, answers: dict[str, list[str]],
                 later: dict[str, list[str]] | None = None) -> None:
        self.answers, self.later = answers, later or {}
        self.calls: list[str] = []

    def __call__(self, host: str) -> list[str]:
        first = host not in self.calls
        self.calls.append(host)
        if not first and host in self.later:
            return self.later[host]
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


@pytest.mark.parametrize(("host", "why"), [
    ("10.0.0.1", "a private address"),
    ("172.16.5.4", "a private address"),
    ("192.168.1.1", "a private address"),
    ("169.254.169.254", "a cloud metadata address"),
    ("169.254.1.1", "a link-local address"),
    ("100.64.0.1", "a shared (CGNAT) address"),
    ("100.100.100.200", "a cloud metadata address"),
    ("127.0.0.1", "a loopback address"),
    ("127.1", "a loopback address"),
    ("0x7f000001", "a loopback address"),
    ("2130706433", "a loopback address"),
    ("0177.0.0.1", "a loopback address"),
    ("0.0.0.0", "an unspecified address"),
    ("224.0.0.1", "a multicast address"),
    ("[::1]", "a loopback address"),
    ("::", "an unspecified address"),
    ("[fd00::1]", "a private address"),
    ("fd00:ec2::254", "a cloud metadata address"),
    ("fe80::1%eth0", "a link-local address"),
    ("ff02::1", "a multicast address"),
    ("::ffff:127.0.0.1", "an IPv4-mapped IPv6 address"),
    ("::ffff:7f00:1", "an IPv4-mapped IPv6 address"),
    ("64:ff9b::a00:1", "a private address inside an IPv6 address"),
    ("2002:a9fe:a9fe::", "a cloud metadata address inside an IPv6 address"),
    ("metadata.google.internal", "a cloud metadata service"),
    ("Metadata.Google.Internal.", "a cloud metadata service"),
])
def test_every_spelling_of_a_refused_range_is_refused(host: str, why: str) -> None:
    with pytest.raises(RefusedTarget) as refused:
        DEFAULT.addresses(host)
    assert why in str(refused.value)


@pytest.mark.parametrize("host", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111",
                                  "[2a00:1450:4001:80b::200e]"])
def test_public_addresses_pass(host: str) -> None:
    assert DEFAULT.addresses(host) == [host.strip("[]")]


def test_a_name_is_decided_on_what_it_resolves_to() -> None:
    resolver = Resolver({"evil.test": ["127.0.0.1"], "mixed.test": ["10.0.0.1", "93.184.216.34"],
                         "crm.test": ["93.184.216.34"]})
    policy = EgressPolicy(resolver=resolver)
    with pytest.raises(RefusedTarget, match=r"evil\.test resolves only to addresses this "
                                            "deployment does not connect to"):
        policy.addresses("evil.test")
    # A name with a refused address among others is connected to by its allowed ones only.
    assert policy.addresses("mixed.test") == ["93.184.216.34"]
    assert policy.addresses("crm.test") == ["93.184.216.34"]


def test_the_allow_list_lets_exactly_its_ranges_through() -> None:
    policy = EgressPolicy.parse(" 127.0.0.1, 10.20.0.0/16 ")
    assert policy.addresses("127.0.0.1") == ["127.0.0.1"]
    assert policy.addresses("10.20.3.4") == ["10.20.3.4"]
    for refused in ("127.0.0.2", "10.21.0.1", "[::1]"):
        with pytest.raises(RefusedTarget):
            policy.addresses(refused)


@pytest.mark.parametrize("entry", ["localhost", "10.0.0.1/8", "300.1.1.1", "10.0.0.0/33"])
def test_a_bad_allow_list_names_its_entry(entry: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"LEADRELAY_EGRESS_ALLOW: '{entry}' is not"):
        Settings.from_env({"LEADRELAY_HOME": str(tmp_path), "LEADRELAY_EGRESS_ALLOW": entry})


def test_the_message_of_a_refused_port_does_not_say_whether_it_is_open() -> None:
    # Given one loopback port that listens and one that does not
    with socket.socket() as listening:
        listening.bind(("127.0.0.2", 0))
        listening.listen()
        open_port = listening.getsockname()[1]
        messages = []
        for port in (open_port, open_port + 1):
            transport = Transport(egress=LOOPBACK_ONLY)
            try:
                with pytest.raises(RefusedTarget) as refused:
                    transport.client().send(RenderedRequest(
                        "POST", f"http://127.0.0.2:{port}/", {}, b"x"))
            finally:
                transport.close()
            messages.append(str(refused.value))
        # Then both are refused with the very same words, and nothing connected
        listening.setblocking(False)
        with pytest.raises(BlockingIOError):
            listening.accept()
    assert messages[0] == messages[1]
    assert "127.0.0.2 is a loopback address" in messages[0]


# -- the connection uses the address that was checked ------------------------------------


class _KeepAliveCrm(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps the connection open between requests
    seen: list[tuple[str, str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append((self.path, self.headers["Host"]))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def keepalive_crm() -> Iterator[tuple[int, list[tuple[str, str]]]]:
    """A CRM on 127.0.0.1 that keeps connections alive; its port and what it saw."""
    seen: list[tuple[str, str]] = []
    handler = type("Crm", (_KeepAliveCrm,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def test_the_connection_goes_to_the_checked_address_once_per_connection(
    keepalive_crm: tuple[int, list[tuple[str, str]]],
) -> None:
    # Given a name that resolves to the (allowed) CRM first, and to a refused address after
    port, seen = keepalive_crm
    resolver = Resolver({"crm.invalid": ["127.0.0.1"]}, later={"crm.invalid": ["127.0.0.2"]})
    transport = Transport(egress=EgressPolicy(["127.0.0.1"], resolver=resolver))
    url = f"http://crm.invalid:{port}/leads"
    try:
        # When three leads are sent on the kept-alive connection
        for _ in range(3):
            response = transport.client().send(RenderedRequest("POST", url, {}, b"a=1"))
            assert response.status == 200
    finally:
        transport.close()
    # Then all reached the CRM (which the system resolver cannot find: the checked
    # address was the one connected to), and the name was resolved once, for the connection
    assert seen == [("/leads", f"crm.invalid:{port}")] * 3
    assert resolver.calls == ["crm.invalid"]


def test_a_rebound_name_is_refused_on_the_next_connection(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/leads").respond_with_data("ok")
    resolver = Resolver({"crm.invalid": ["127.0.0.1"]}, later={"crm.invalid": ["127.0.0.2"]})
    policy = EgressPolicy(["127.0.0.1"], resolver=resolver)
    url = f"http://crm.invalid:{httpserver.port}/leads"
    first, second = Transport(egress=policy), Transport(egress=policy)
    try:
        assert first.client().send(RenderedRequest("POST", url, {}, b"")).status == 200
        with pytest.raises(RefusedTarget):
            second.client().send(RenderedRequest("POST", url, {}, b""))
    finally:
        first.close()
        second.close()
    assert len(httpserver.log) == 1


# -- configuration time and send time in the engine --------------------------------------


@pytest.fixture
def guarded(tmp_path: Path, database_url: str, clock: FakeClock) -> Iterator[Leadrelay]:
    """An engine allowing 127.0.0.1 only, names resolved by a resolver the test fills."""
    resolver = Resolver({"crm.invalid": ["127.0.0.1"], "localhost": ["127.0.0.1"]})
    settings = Settings(home=tmp_path, database_url=database_url, broker_url=None,
                        secret_key=SecretBox.generate_key(), plugins_file=None)
    app = Leadrelay(settings, clock=clock,
                    egress=EgressPolicy(["127.0.0.1"], resolver=resolver))
    app.test_resolver = resolver  # type: ignore[attr-defined]
    try:
        yield app
    finally:
        app.close()


def _form(app: Leadrelay) -> int:
    account = app.manage.create_account("Acme", "owner@acme.test", plan="growth")
    return app.manage.create_form(account.id, "Contact").id


@pytest.mark.parametrize(("url", "message"), [
    ("http://10.0.0.1/leads", "config.url: refused target: 10.0.0.1 is a private address"),
    ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
    ("http://[::1]:8080/", "config.url: refused target: ::1 is a loopback address"),
    ("http://0x7f000002/", "a loopback address"),
    ("http://2130706434/", "a loopback address"),
    ("http://[fd00::1]/", "a private address"),
    ("http://metadata.google.internal/computeMetadata/v1/", "a cloud metadata"),
    ("http://127.0.0.2:6379/", "a loopback address"),
    ("http://user:pw@crm.invalid/leads", "config.url: a URL must not carry credentials"),
    ("http://token@crm.invalid/leads", "config.url: a URL must not carry credentials"),
    ("http://rebind.invalid/", "rebind.invalid resolves only to addresses"),
])
def test_a_refused_url_is_refused_on_create_and_update(
    guarded: Leadrelay, url: str, message: str,
) -> None:
    guarded.test_resolver.answers["rebind.invalid"] = ["10.1.2.3"]  # type: ignore[attr-defined]
    form_id = _form(guarded)
    with pytest.raises(ConfigError) as refused:
        guarded.manage.create_integration(form_id, name="CRM", connector="http_post",
                                          config={"url": url})
    assert message in str(refused.value)
    assert "pw" not in str(refused.value)
    assert guarded.manage.integrations(form_id) == []

    ok = guarded.manage.create_integration(form_id, name="CRM", connector="http_post",
                                           config={"url": "http://crm.invalid/leads"})
    with pytest.raises(ConfigError):
        guarded.manage.update_integration(ok.id, config={"url": url})
    assert guarded.manage.box.unseal(  # type: ignore[attr-defined]
        guarded.manage.get_integration(ok.id).config)["url"] == "http://crm.invalid/leads"


def test_a_name_that_turns_refused_after_configuration_is_refused_at_send_not_retried(
    guarded: Leadrelay, httpserver: HTTPServer,
) -> None:
    # Given an integration whose name resolved to the allowed CRM when it was configured
    httpserver.expect_request("/leads").respond_with_data("ok")
    form_id = _form(guarded)
    guarded.manage.create_integration(
        form_id, name="CRM", connector="http_post", active=True,
        config={"url": f"http://crm.invalid:{httpserver.port}/leads"},
        retry={"max_attempts": 5, "delays": ["1m"], "jitter": 0})
    # When the name now resolves to a refused address and a lead comes
    guarded.test_resolver.answers["crm.invalid"] = ["127.0.0.2"]  # type: ignore[attr-defined]
    delivery_id = guarded.submit(form_id, {"email": "a@b.test"}).delivery_ids[0]
    [result] = guarded.deliver_due()

    # Then the attempt is refused_target, not retried, and nothing reached any CRM
    assert result.outcome is Outcome.REFUSED_TARGET
    assert result.state.value == "not_integrated"
    assert result.next_due_at is None
    assert httpserver.log == []
    shown = guarded.inspect(delivery_id)
    attempt = shown["attempts"][0]
    assert attempt["outcome"] == "refused_target"
    assert "crm.invalid resolves only to addresses" in attempt["reason"]


def test_a_delivery_answered_with_a_redirect_is_not_followed(
    guarded: Leadrelay, httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/leads").respond_with_response(
        Response("", status=302, headers={"Location": "http://127.0.0.2/internal"}))
    form_id = _form(guarded)
    guarded.manage.create_integration(form_id, name="CRM", connector="http_post", active=True,
                                      config={"url": httpserver.url_for("/leads")})
    guarded.submit(form_id, {"email": "a@b.test"})
    [result] = guarded.deliver_due()
    assert result.outcome is Outcome.REJECTED  # the 302 is the CRM's answer, judged as such
    assert [r.path for r, _ in httpserver.log] == ["/leads"]


# -- through a forward proxy -----------------------------------------------------------


class _RecordingProxy(socketserver.ThreadingTCPServer):
    """Reads one request head, records its first line, answers 403."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.connections = 0
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = self.request.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                outer.lines.append(data.split(b"\r\n", 1)[0].decode())
                self.request.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                                     b"Connection: close\r\n\r\n")

        super().__init__(("127.0.0.1", 0), Handler)

    def __enter__(self) -> _RecordingProxy:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def test_an_https_tunnel_asks_the_proxy_for_the_checked_address() -> None:
    resolver = Resolver({"crm.invalid": ["127.0.0.1"]})
    with _RecordingProxy() as proxy:
        transport = Transport(proxy_route=OneProxy(proxy.url()),
                              egress=EgressPolicy(["127.0.0.1"], resolver=resolver))
        try:
            with pytest.raises(ProxyFailure):
                transport.client().send(RenderedRequest(
                    "POST", "https://crm.invalid:8443/leads", {}, b""))
        finally:
            transport.close()
    # The proxy (the operator's, on a private or loopback address) was asked to tunnel
    # to the address the policy checked, not to a name it would resolve again.
    assert proxy.lines == ["CONNECT 127.0.0.1:8443 HTTP/1.0"]


@pytest.mark.parametrize("url", ["https://refused.invalid/leads", "http://refused.invalid/leads",
                                 "http://127.0.0.2/leads", "https://[::1]/leads"])
def test_a_refused_target_is_never_handed_to_the_proxy(url: str) -> None:
    resolver = Resolver({"refused.invalid": ["127.0.0.2"]})
    with _RecordingProxy() as proxy:
        transport = Transport(proxy_route=OneProxy(proxy.url()),
                              egress=EgressPolicy(["127.0.0.1"], resolver=resolver))
        try:
            with pytest.raises(RefusedTarget):
                transport.client().send(RenderedRequest("POST", url, {}, b""))
        finally:
            transport.close()
    assert proxy.lines == [] and proxy.connections == 0


def test_a_health_check_url_the_policy_refuses_is_refused_in_plugins_toml() -> None:
    from leadrelay.engine.proxies import StaticIpPools

    table = {"default": {"proxies": [{"name": "a", "url": "http://127.0.0.1:3128",
                                      "egress_ips": ["203.0.113.10"]}],
                         "health_check": {"url": "http://169.254.169.254/"}}}
    with pytest.raises(ConfigError, match=r"proxies\.default\.health_check\.url: refused"):
        StaticIpPools.from_config(table, egress=LOOPBACK_ONLY)
