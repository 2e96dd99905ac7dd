"""A request through no proxy skips ``requests.Session.request`` and goes straight to
the session adapter's urllib3 pool: it must reach the CRM and come back exactly as
through ``requests`` — same wire, same answer, same errors — on a real loopback server.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.adapters
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from leadrelay.engine.errors import ProxyFailure, TransientError
from leadrelay.engine.secrets import Redactor
from leadrelay.engine.transport import HttpClient, RenderedRequest, Timeouts, Transport
from static_ip_support import OneProxy

SECRET = "s3cr3t-T0ken"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
BODY = b"first_name=Jane&email=jane.doe%40example.com"


@pytest.fixture
def transport() -> Iterator[Transport]:
    transport = Transport(timeouts=Timeouts(connect=2, read=2))
    try:
        yield transport
    finally:
        transport.close()


@pytest.fixture
def session_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every ``requests.Session.request`` call, still sent: a direct send records none."""
    calls: list[dict[str, Any]] = []
    real = requests.Session.request

    def spy(self: requests.Session, method: str, url: str, **kwargs: Any) -> Any:
        calls.append({"method": method, "url": url, **kwargs})
        return real(self, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)
    return calls


def client(transport: Transport) -> HttpClient:
    return transport.client(Redactor().extend([SECRET]))


def post(url: str, headers: dict[str, str] | None = None,
         body: bytes | str | None = BODY) -> RenderedRequest:
    return RenderedRequest("POST", url, {**FORM, **(headers or {})}, body)


# -- what reaches the CRM -----------------------------------------------------------------


def test_query_string_reaches_the_crm_and_the_secret_is_redacted(
    transport: Transport, httpserver: HTTPServer, session_calls: list[dict[str, Any]]
) -> None:
    httpserver.expect_request(
        "/leads", method="POST", query_string={"api_token": SECRET, "list": "a b"}, data=BODY
    ).respond_with_json({"id": 7})
    http = client(transport)

    response = http.send(post(httpserver.url_for(f"/leads?api_token={SECRET}&list=a%20b")))

    assert response.status == 200
    assert response.json == {"id": 7}
    assert response.encoding == "utf-8"  # application/json, as requests sets it
    exchange = http.exchanges[0]
    assert SECRET not in exchange.url and "api_token=" in exchange.url
    assert exchange.status == 200 and exchange.error is None
    assert session_calls == []


def test_the_default_headers_of_the_session_are_sent_as_before(
    transport: Transport, httpserver: HTTPServer, session_calls: list[dict[str, Any]]
) -> None:
    seen: list[Request] = []

    def answer(request: Request) -> Response:
        seen.append(request)
        return Response("ok")

    httpserver.expect_request("/leads").respond_with_handler(answer)
    http = client(transport)

    http.send(post(httpserver.url_for("/leads")))
    http.send(post(httpserver.url_for("/leads"), {"User-Agent": "Acme/1", "accept": "text/xml"}))
    transport.session.headers["User-Agent"] = "Zeep/4.3.3"  # zeep sets this on the session
    http.send(RenderedRequest("POST", httpserver.url_for("/leads")))

    defaults = requests.utils.default_headers()
    first, overridden, after_zeep = (request.headers for request in seen)
    assert first["User-Agent"] == defaults["User-Agent"]
    assert first["Accept-Encoding"] == defaults["Accept-Encoding"]
    assert first["Accept"] == "*/*"
    assert first["Connection"] == "keep-alive"
    assert first["Content-Type"] == FORM["Content-Type"]
    assert first["Content-Length"] == str(len(BODY))
    assert overridden["User-Agent"] == "Acme/1"
    assert overridden["Accept"] == "text/xml"
    assert after_zeep["User-Agent"] == "Zeep/4.3.3"
    assert after_zeep["Content-Length"] == "0"  # a POST without body, as requests sends it
    assert session_calls == []


def test_a_text_body_is_sent_as_utf8(transport: Transport, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/leads", data="Zoë €".encode()).respond_with_data("ok")

    response = client(transport).send(post(httpserver.url_for("/leads"), body="Zoë €"))

    assert response.status == 200


# -- what comes back ----------------------------------------------------------------------


def test_a_gzip_answer_is_decoded(transport: Transport, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/leads").respond_with_response(Response(
        gzip.compress(b'{"id": 7}'), content_type="application/json",
        headers={"Content-Encoding": "gzip"},
    ))

    response = client(transport).send(post(httpserver.url_for("/leads")))

    assert response.body == b'{"id": 7}'
    assert response.json == {"id": 7}
    assert response.headers["Content-Encoding"] == "gzip"


def test_a_latin1_answer_keeps_its_encoding(transport: Transport, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/leads").respond_with_response(Response(
        "Créé".encode("latin-1"), headers={"Content-Type": "text/plain; charset=iso-8859-1"},
    ))
    http = client(transport)

    response = http.send(post(httpserver.url_for("/leads")))

    assert response.encoding == "iso-8859-1"
    assert response.text == "Créé"
    assert http.exchanges[0].response_body == "Créé"


def test_a_text_answer_without_charset_is_latin1_as_in_requests(
    transport: Transport, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/leads").respond_with_response(
        Response(b"ok", headers={"Content-Type": "text/html"})
    )

    assert client(transport).send(post(httpserver.url_for("/leads"))).encoding == "ISO-8859-1"


def test_duplicate_answer_headers_are_joined(transport: Transport, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/leads").respond_with_response(
        Response("ok", headers=[("X-Lead", "1"), ("X-Lead", "2")])
    )

    response = client(transport).send(post(httpserver.url_for("/leads")))

    assert response.headers["X-Lead"] == "1, 2"


def test_a_redirect_is_answered_not_followed(
    transport: Transport, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/leads").respond_with_response(
        Response("moved", status=302, headers={"Location": "/login"})
    )

    response = client(transport).send(post(httpserver.url_for("/leads")))

    assert response.status == 302
    assert response.headers["Location"] == "/login"
    assert response.body == b"moved"
    assert len(httpserver.log) == 1


def test_cookies_the_crm_sets_are_kept_and_sent_back_like_requests_does(
    transport: Transport, httpserver: HTTPServer, session_calls: list[dict[str, Any]]
) -> None:
    cookies: list[str | None] = []

    def answer(request: Request) -> Response:
        cookies.append(request.headers.get("Cookie"))
        return Response("ok", headers={"Set-Cookie": "lb=node-2; Path=/"})

    httpserver.expect_request("/leads").respond_with_handler(answer)
    http = client(transport)

    http.send(post(httpserver.url_for("/leads")))
    http.send(post(httpserver.url_for("/leads")))

    assert cookies == [None, "lb=node-2"]
    assert transport.session.cookies.get("lb") == "node-2"
    assert len(session_calls) == 1  # a session holding cookies sends through requests


def read_request(stream: Any) -> bool:
    """Read one whole request off a connection's ``makefile("rb")``; False at its end."""
    line = stream.readline()
    if not line:
        return False
    length = 0
    while line not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        line = stream.readline()
    stream.read(length)
    return True


@contextlib.contextmanager
def keepalive_crm() -> Iterator[tuple[str, list[int]]]:
    """A keep-alive CRM answering 200 to every request; the client port of each request."""
    listener = socket.create_server(("127.0.0.1", 0))
    peers: list[int] = []
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def serve(conn: socket.socket, port: int) -> None:
        with conn, conn.makefile("rb") as stream:
            while read_request(stream):
                peers.append(port)
                conn.sendall(answer)

    def accept() -> None:
        while True:
            try:
                conn, peer = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn, peer[1]), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", peers
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()


def test_the_connection_goes_back_to_the_pool_it_shares_with_the_session(
    transport: Transport,
) -> None:
    http = client(transport)

    with keepalive_crm() as (url, peers):
        http.send(post(f"{url}/leads"))
        transport.session.post(f"{url}/leads", data=BODY)  # how zeep sends
        http.send(post(f"{url}/leads"))
        transport.close()  # clears the pool: the next send opens a new connection
        http.send(post(f"{url}/leads"))

    assert len(peers) == 4
    assert len(set(peers[:3])) == 1  # one keep-alive connection for all three
    assert peers[3] != peers[0]


# -- failures -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def closing_server(*, answer: bytes | None = None) -> Iterator[str]:
    """A CRM that reads each request, then answers ``answer`` (if any) and closes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as stream:
                read_request(stream)
                if answer:
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()
        thread.join(5)


def assert_short_reason(error: str | None) -> None:
    assert error is not None
    assert SECRET not in error and "http" not in error and "127.0.0.1" not in error


def test_a_refused_connection_is_transient_with_a_short_reason(transport: Transport) -> None:
    http = client(transport)

    with pytest.raises(TransientError) as failure:
        http.send(post(f"http://127.0.0.1:{free_port()}/leads?api_token={SECRET}"))

    assert str(failure.value) == "connection failed: connection refused"
    assert http.exchanges[0].error == "connection failed: connection refused"
    assert_short_reason(http.exchanges[0].error)


def test_a_crm_that_closes_without_answering_is_transient(transport: Transport) -> None:
    http = client(transport)

    with closing_server() as url, pytest.raises(TransientError) as failure:
        http.send(post(f"{url}/leads?api_token={SECRET}"))

    assert str(failure.value) == "connection failed: remote end closed"
    assert_short_reason(http.exchanges[0].error)


def test_a_crm_silent_past_the_read_timeout_is_transient(httpserver: HTTPServer) -> None:
    transport = Transport(timeouts=Timeouts(connect=2, read=0.2))
    listener = socket.create_server(("127.0.0.1", 0))  # accepts in the kernel, never answers
    http = client(transport)
    try:
        with pytest.raises(TransientError) as failure:
            http.send(post(f"http://127.0.0.1:{listener.getsockname()[1]}/leads"))
    finally:
        listener.close()
        transport.close()

    assert str(failure.value) == "no answer within 0.2s"


def test_a_truncated_answer_is_transient(transport: Transport) -> None:
    short = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{\"id\":"
    http = client(transport)

    with closing_server(answer=short) as url, pytest.raises(TransientError) as failure:
        http.send(post(f"{url}/leads"))

    assert str(failure.value) == "answer cut short: the connection closed after 6 of 40 bytes"


def test_a_header_requests_would_reject_fails_the_same(
    transport: Transport, httpserver: HTTPServer
) -> None:
    with pytest.raises(TransientError) as failure:
        client(transport).send(post(httpserver.url_for("/leads"), {"X-Lead": "1\r\nX-Evil: 1"}))

    assert str(failure.value) == "request failed: InvalidHeader"
    assert httpserver.log == []


# -- TLS ----------------------------------------------------------------------------------


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
                 issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False,
                          key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        ).add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def tls_crm(tmp_path: Path) -> Iterator[tuple[HTTPServer, Path]]:
    """An HTTPS CRM whose certificate comes from a private CA; the CA's PEM file."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leadrelay test CA")])
    ca = _certificate("leadrelay test CA", ca_key, ca_name, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate("127.0.0.1", key, ca_name, ca_key, ca=False)
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "crm.pem", tmp_path / "crm.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.expect_request("/leads").respond_with_json({"id": 7})
    server.start()
    try:
        yield server, ca_file
    finally:
        server.clear()
        server.stop()


def test_an_untrusted_certificate_fails_verification_as_transient(
    transport: Transport, tls_crm: tuple[HTTPServer, Path]
) -> None:
    server, _ = tls_crm
    http = client(transport)

    with pytest.raises(TransientError) as failure:
        http.send(post(server.url_for(f"/leads?api_token={SECRET}")))

    assert str(failure.value) == "connection failed: SSLError"
    assert_short_reason(http.exchanges[0].error)
    assert server.log == []


def test_tls_verifies_against_the_ca_bundle_requests_uses(
    transport: Transport, tls_crm: tuple[HTTPServer, Path], monkeypatch: pytest.MonkeyPatch,
    session_calls: list[dict[str, Any]],
) -> None:
    server, ca_file = tls_crm
    monkeypatch.setattr(requests.adapters, "DEFAULT_CA_BUNDLE_PATH", str(ca_file))

    response = client(transport).send(post(server.url_for("/leads")))

    assert response.json == {"id": 7}
    assert session_calls == []


# -- which path ---------------------------------------------------------------------------


def test_without_proxy_requests_session_is_not_used(
    transport: Transport, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("sent through requests.Session.request")

    monkeypatch.setattr(requests.Session, "request", refuse)
    httpserver.expect_request("/leads", method="POST", data=BODY).respond_with_json({"id": 7})

    assert client(transport).send(post(httpserver.url_for("/leads"))).json == {"id": 7}


def test_through_a_proxy_requests_session_still_sends(
    httpserver: HTTPServer, session_calls: list[dict[str, Any]]
) -> None:
    proxy = f"http://127.0.0.1:{free_port()}"
    transport = Transport(proxy_route=OneProxy(proxy))
    try:
        with pytest.raises(ProxyFailure):
            client(transport).send(post(httpserver.url_for("/leads")))
    finally:
        transport.close()

    assert [call["proxies"] for call in session_calls] == [{"http": proxy, "https": proxy}]
    assert httpserver.log == []


def test_an_adapter_wrapped_on_the_session_sees_every_request(
    transport: Transport, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/leads").respond_with_data("ok")
    adapter = transport.session.get_adapter("http://")
    sent: list[str] = []
    send = adapter.send

    def recording(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        sent.append(f"{request.method} {request.path_url}")
        return send(request, **kwargs)

    adapter.send = recording  # type: ignore[method-assign,assignment]

    assert client(transport).send(post(httpserver.url_for("/leads"))).status == 200
    assert sent == ["POST /leads"]


@pytest.mark.parametrize("url", [
    "/leads?name=%7Ejane",  # requests rewrites %7E as ~
    "/leads?",  # requests drops the empty query
    "/caf\u00e9",  # requests quotes non-ASCII itself
])
def test_a_url_requests_rewrites_is_sent_through_requests(
    url: str, transport: Transport, httpserver: HTTPServer,
    session_calls: list[dict[str, Any]],
) -> None:
    httpserver.expect_request(url.split("?")[0]).respond_with_data("ok")

    assert client(transport).send(post(httpserver.url_for(url))).status == 200
    assert len(session_calls) == 1
