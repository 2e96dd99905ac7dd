"""An attempt is bounded whatever the CRM does: it ends by its deadline (connect + read
timeouts) however the answer trickles, reads at most the read cap however large or
compressed the answer is, and tells a broken answer apart with a clear reason — on the
direct path and through a real forward proxy, against the hostile loopback CRM.
"""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest

from faults.hostile_crm import NUL_BODY, HostileCrm, gzip_bomb
from leadrelay.engine.app import Leadrelay
from leadrelay.engine.delivery import verdict_for_error
from leadrelay.engine.errors import ProxyFailure, TransientError
from leadrelay.engine.outcome import Outcome
from leadrelay.engine.reading import BrokenAnswer, inflate
from leadrelay.engine.transport import ProxyRoute, Timeouts, Transport
from leadrelay.engine.wire import BODY_LIMIT, READ_CAP, RenderedRequest
from static_ip_support import ForwardProxy, OneProxy

#: An attempt's deadline here: 0.5 + 1.0 = 1.5 s.
TIMEOUTS = Timeouts(connect=0.5, read=1.0)
DEADLINE = 1.5
#: How late an attempt may end on this shared 2-core machine (measured: a few ms).
SLACK = 0.5
LATE = "timed out: no whole answer within the attempt's deadline (1.5s)"


@pytest.fixture
def crm() -> Iterator[HostileCrm]:
    """The hostile CRM, in mode ``ok``, dripping a byte every 100 ms where asked: the
    read timeout (1 s) never trips, only the deadline can end a drip."""
    with HostileCrm("ok", interval=0.1) as crm:
        yield crm


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwardProxy]:
    """A real forward proxy (proxy.py) on loopback, for the module."""
    proxy = ForwardProxy(tmp_path_factory.mktemp("proxy"), "egress-a").start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(params=["direct", "proxy"])
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    """A transport with the 1.5 s deadline, direct or through the forward proxy."""
    route: ProxyRoute | None = None
    if request.param == "proxy":
        route = OneProxy(request.getfixturevalue("proxy").url())
    transport = Transport(timeouts=TIMEOUTS, proxy_route=route)
    try:
        yield transport
    finally:
        transport.close()


def blame(transport: Transport, message: str) -> str:
    return f"proxy egress-a: {message}" if transport.proxy_route else message


def post(url: str) -> RenderedRequest:
    return RenderedRequest("POST", url, {"Content-Type": "application/x-www-form-urlencoded"},
                           b"first_name=Jane")


# -- the deadline ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/drip/leads", "/drip_head/leads"])
def test_a_trickling_answer_ends_at_the_attempt_deadline(
    path: str, crm: HostileCrm, transport: Transport
) -> None:
    # Given a CRM sending its body (or its head) one byte every 100 ms
    http = transport.client()
    started = time.monotonic()

    # When the attempt sends the lead
    with pytest.raises(TransientError) as failure:
        http.send(post(crm.url_for(path)))
    elapsed = time.monotonic() - started

    # Then it ends at its deadline, not after the 1,000 bytes (100 s), as a timeout
    # — through the proxy too, never as a proxy failure: the CRM may have the lead.
    assert DEADLINE <= elapsed < DEADLINE + SLACK
    assert not isinstance(failure.value, ProxyFailure)
    assert str(failure.value) == blame(transport, LATE)
    assert http.exchanges[0].error == str(failure.value)
    verdict = verdict_for_error(failure.value)
    assert verdict.outcome is Outcome.TRANSIENT and "timed out" in verdict.reason


def test_the_requests_of_one_attempt_share_its_deadline(
    crm: HostileCrm, transport: Transport
) -> None:
    http = transport.client()
    started = time.monotonic()

    # Given a first request answered in 0.8 s, within its 1 s read timeout
    assert http.send(post(crm.url_for("/slow/login?seconds=0.8"))).status == 200
    # When the second one would take 0.9 s: within its own read timeout, not within
    # what is left of the attempt's 1.5 s
    with pytest.raises(TransientError) as late:
        http.send(post(crm.url_for("/slow/create?seconds=0.9")))
    elapsed = time.monotonic() - started
    # and a third comes after the deadline
    with pytest.raises(TransientError) as after:
        http.send(post(crm.url_for("/ok/again")))

    # Then the second ends at the attempt's deadline and the third is never sent
    assert DEADLINE <= elapsed < DEADLINE + SLACK
    assert str(late.value) == str(after.value) == blame(transport, LATE)
    assert crm.count("/ok") == 0
    assert [e.error for e in http.exchanges][1:] == [str(late.value)] * 2
    # and the next attempt has a deadline of its own
    assert transport.client().send(post(crm.url_for("/ok/next"))).status == 200


def test_a_silent_crm_still_ends_at_its_read_timeout(
    crm: HostileCrm, transport: Transport
) -> None:
    started = time.monotonic()

    with pytest.raises(TransientError) as failure:
        transport.client().send(post(crm.url_for("/slow/leads?seconds=5")))

    assert str(failure.value) == blame(transport, "no answer within 1s")
    assert 1.0 <= time.monotonic() - started < 1.0 + SLACK


# -- broken answers -------------------------------------------------------------------------


def test_a_reset_is_transient_with_a_clear_reason(crm: HostileCrm) -> None:
    transport = Transport(timeouts=TIMEOUTS)
    try:
        with pytest.raises(TransientError) as failure:
            transport.client().send(post(crm.url_for("/reset/leads")))
    finally:
        transport.close()

    assert str(failure.value) == "connection failed: connection reset"
    assert crm.count("/reset") == 1


def test_a_reset_behind_the_proxy_is_the_proxys_connection_failing(
    crm: HostileCrm, proxy: ForwardProxy
) -> None:
    # proxy.py closes our connection when the CRM resets its own: the proxy is what
    # we talk to, and it may have forwarded the lead, so no other proxy is tried.
    transport = Transport(timeouts=TIMEOUTS, proxy_route=OneProxy(proxy.url()))
    try:
        with pytest.raises(ProxyFailure) as failure:
            transport.client().send(post(crm.url_for("/reset/leads")))
    finally:
        transport.close()

    assert str(failure.value).startswith("proxy egress-a failed: ")
    assert crm.count("/reset") == 1


def test_a_short_body_is_transient_and_says_how_much_came(
    crm: HostileCrm, transport: Transport
) -> None:
    http = transport.client()

    with pytest.raises(TransientError) as failure:
        http.send(post(crm.url_for("/short_body/leads")))

    assert str(failure.value) == blame(
        transport, "answer cut short: the connection closed after 13 of 1000 bytes")
    # Through the proxy, the connection cut short is the proxy's (it may have sent the lead).
    assert isinstance(failure.value, ProxyFailure) == (transport.proxy_route is not None)
    # The broken connection was dropped: the next attempt is answered normally.
    assert transport.client().send(post(crm.url_for("/ok/next"))).status == 200


# -- bounded answers ------------------------------------------------------------------------


def test_a_gzip_bomb_inflates_no_further_than_the_read_cap(
    crm: HostileCrm, transport: Transport
) -> None:
    # Given a 190 KB gzip answer that inflates to 192 MiB
    size = 192 * 1024 * 1024
    compressed = len(gzip_bomb(size))  # built before measuring: the CRM runs in this process
    http = transport.client()

    tracemalloc.start()
    try:
        response = http.send(post(crm.url_for(f"/gzip_bomb/leads?bomb_bytes={size}")))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Then no more than the read cap was inflated, and memory stayed near it
    assert response.status == 200
    assert len(response.body) == READ_CAP and response.capped
    assert response.body.startswith(b'{"pad": "aaaa')
    assert peak < 4 * READ_CAP, f"peak {peak} bytes"
    exchange = http.exchanges[0].as_dict()["response"]
    assert exchange["bytes"] == compressed
    assert exchange["capped"] is True and exchange["truncated"] is True
    assert len(exchange["body"]) == BODY_LIMIT


@pytest.mark.parametrize("chunked", [0, 1])
def test_a_huge_answer_is_read_up_to_the_cap_and_its_connection_dropped(
    chunked: int, crm: HostileCrm, transport: Transport
) -> None:
    # Given a 20 MiB answer, with its length or chunked
    http = transport.client()
    started = time.monotonic()

    response = http.send(post(crm.url_for(f"/huge/leads?chunked={chunked}")))

    # Then reading stopped at the cap
    assert len(response.body) == READ_CAP and response.capped
    assert http.exchanges[0].response_bytes == READ_CAP
    assert time.monotonic() - started < DEADLINE
    # and the connection, with 19 MiB unread, was not reused; a whole answer's is
    transport.client().send(post(crm.url_for("/ok/a")))
    transport.client().send(post(crm.url_for("/ok/b")))
    huge, first, second = (r.peer for r in crm.received)
    assert first != huge
    assert second == first


def test_an_answer_within_the_cap_is_whole_and_counted(
    crm: HostileCrm, transport: Transport
) -> None:
    http = transport.client()

    response = http.send(post(crm.url_for(f"/huge/leads?huge_bytes={READ_CAP}")))

    assert len(response.body) == READ_CAP and not response.capped
    recorded = http.exchanges[0].as_dict()["response"]
    assert recorded["bytes"] == READ_CAP
    assert recorded["capped"] is False and recorded["truncated"] is True  # stored: 16 KiB


def test_only_encodings_inflated_within_the_cap_are_asked_for(
    crm: HostileCrm, transport: Transport
) -> None:
    transport.client().send(post(crm.url_for("/ok/leads")))

    assert crm.received[0].headers["Accept-Encoding"] == "gzip, deflate"


# -- inflating ------------------------------------------------------------------------------


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(("encoding", "data"), [
    ("gzip", gzip.compress(b"hello")),
    ("x-gzip", gzip.compress(b"hello")),
    ("deflate", zlib.compress(b"hello")),  # zlib-wrapped, as the RFC says
    ("deflate", _raw_deflate(b"hello")),  # raw, as some servers send
    ("gzip", gzip.compress(b"hel") + gzip.compress(b"lo")),  # two members
    ("gzip", gzip.compress(b"hello") + b"\x00garbage"),  # trailing garbage ignored
    ("deflate, gzip", gzip.compress(zlib.compress(b"hello"))),  # undone last first
    ("identity", b"hello"),
    ("br", b"hello"),  # not asked for, cannot be inflated here: left as it came
])
def test_inflate_decodes_what_urllib3_decodes(encoding: str, data: bytes) -> None:
    assert inflate(data, encoding) == (b"hello", False)


def test_inflate_stops_at_the_cap_and_says_so() -> None:
    assert inflate(gzip.compress(b"a" * 1000), "gzip", cap=100) == (b"a" * 100, True)
    assert inflate(gzip.compress(b"a" * 100), "gzip", cap=100) == (b"a" * 100, False)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_inflate_refuses_data_that_is_not_its_encoding(encoding: str) -> None:
    with pytest.raises(BrokenAnswer, match=f"not valid {encoding} data"):
        inflate(b"plain text, not compressed", encoding)


# -- through the engine ---------------------------------------------------------------------


def test_a_dripping_crm_makes_a_transient_attempt_that_says_it_timed_out(
    app: Leadrelay, form_id: int, crm: HostileCrm
) -> None:
    # Given an http_post integration (connect 0.5 s, read 1 s) to a dripping CRM
    app.manage.create_integration(
        form_id, name="CRM", connector="http_post", active=True, retry={"max_attempts": 1},
        config={"url": crm.url_for("/drip/lead"), "connect_timeout": 0.5, "read_timeout": 1},
    )
    delivery_id = app.submit(form_id, {"email": "jane@example.com"}).delivery_ids[0]

    # When it is delivered
    app.deliver_due()

    # Then the attempt is recorded at the deadline, transient, saying it timed out
    attempt = app.inspect(delivery_id)["attempts"][0]
    assert attempt["outcome"] == "transient"
    assert attempt["reason"] == LATE
    assert DEADLINE * 1000 <= attempt["duration_ms"] < (DEADLINE + SLACK) * 1000


def test_an_answer_with_nul_bytes_and_invalid_utf8_is_recorded_as_safe_text(
    app: Leadrelay, form_id: int, crm: HostileCrm
) -> None:
    # Given a CRM whose 200 answer has NUL bytes and invalid UTF-8 in its body and a NUL
    # in a header (PostgreSQL stores neither in text or JSONB)
    app.manage.create_integration(
        form_id, name="CRM", connector="http_post", active=True,
        config={"url": crm.url_for("/nul/lead")},
    )
    delivery_id = app.submit(form_id, {"email": "jane@example.com"}).delivery_ids[0]

    # When it is delivered
    app.deliver_due()

    # Then it is delivered once, and its answer is on record with the NULs escaped
    report = app.inspect(delivery_id)
    assert report["delivery"]["state"] == "delivered"
    [attempt] = report["attempts"]
    response = attempt["exchanges"][-1]["response"]
    assert "\x00" not in response["body"] and "nul\\x00here" in response["body"]
    assert response["headers"]["X-Note"].startswith("nul\\x00here")
    assert response["bytes"] == len(NUL_BODY)
