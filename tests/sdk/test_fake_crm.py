"""The fake CRM the contract suite and connector packages script: a real server on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from leadrelay.engine.testing import FakeCrm, Reply, http_date
from leadrelay.engine.transport import retry_after_seconds

pytest_plugins = ["leadrelay.engine.testing.plugin"]


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False
        yield s


def test_it_answers_as_scripted_and_records_what_it_got(
    fake_crm: FakeCrm, session: requests.Session
) -> None:
    # Given a CRM answering JSON
    fake_crm.reply(Reply(201, {"id": "lead-1"}, {"X-Request-Id": "r-1"}))

    # When a client posts a form to it, twice on one keep-alive connection
    answers = [session.post(fake_crm.url_for("/leads?src=web"), data={"email": "a@b.example"},
                            headers={"X-Api-Key": "k"}, timeout=5) for _ in range(2)]

    # Then it answered as scripted, and recorded both requests exactly
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[0].json() == {"id": "lead-1"}
    assert answers[0].headers["Content-Type"] == "application/json"
    assert answers[0].headers["X-Request-Id"] == "r-1"
    assert len(fake_crm.requests) == 2
    last = fake_crm.last
    assert (last.method, last.path, last.query, last.target) == (
        "POST", "/leads", "src=web", "/leads?src=web")
    assert last.headers["x-api-key"] == "k"
    assert last.form() == {"email": ["a@b.example"]}
    assert last.args() == {"src": ["web"]}
    assert last.contains("a%40b.example") and last.contains("src=web") and last.contains("k")


def test_the_most_specific_then_newest_script_answers(
    fake_crm: FakeCrm, session: requests.Session
) -> None:
    # Given a catch-all, a path-specific, a method-and-path one, and a newer one-shot catch-all
    fake_crm.reply(200, "any")
    fake_crm.reply(200, "wsdl", method="GET", path="/service")
    fake_crm.reply(200, "path", path="/service")
    fake_crm.reply(503, "once", times=1)

    # When requests arrive
    def get(method: str, path: str) -> str:
        return session.request(method, fake_crm.url_for(path), timeout=5).text

    # Then the most specific script answers, a newer catch-all only where it is the best match
    assert get("GET", "/service") == "wsdl"
    assert get("POST", "/service") == "path"
    assert get("POST", "/other") == "once"
    assert get("POST", "/other") == "any"


def test_an_unscripted_request_gets_a_501_naming_it(
    fake_crm: FakeCrm, session: requests.Session
) -> None:
    answer = session.post(fake_crm.url_for("/nowhere"), timeout=5)
    assert answer.status_code == 501
    assert "no reply scripted for POST /nowhere" in answer.text


def test_throttle_and_server_error_carry_retry_after(
    fake_crm: FakeCrm, session: requests.Session
) -> None:
    # Given a 503 with seconds, and a newer one-shot 429 with an HTTP date
    fake_crm.server_error(503, retry_after=120)
    fake_crm.throttle(retry_after=http_date(300), times=1)

    # When a client calls twice
    first = session.post(fake_crm.url, timeout=5)
    second = session.post(fake_crm.url, timeout=5)

    # Then each says when to come back
    assert first.status_code == 429
    assert retry_after_seconds(first.headers) == pytest.approx(300, abs=2)
    assert (second.status_code, second.headers["Retry-After"]) == (503, "120")


def test_a_hung_answer_trips_the_read_timeout_and_is_released_on_close(
    session: requests.Session
) -> None:
    # Given a CRM that never answers
    crm = FakeCrm()
    crm.hang()

    # When a client waits with a short read timeout
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.post(crm.url, timeout=(2, 0.3))

    # Then closing the CRM does not wait for the hung answer
    started = time.monotonic()
    crm.close()
    assert time.monotonic() - started < 3


def test_refused_and_dropped_connections(fake_crm: FakeCrm, session: requests.Session) -> None:
    # Given a CRM that drops the connection without answering
    fake_crm.drop_connection(times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        session.post(fake_crm.url, timeout=5)

    # When it stops listening, then connections are refused
    fake_crm.refuse_connections()
    with pytest.raises(requests.exceptions.ConnectionError, match="refused"):
        requests.post(fake_crm.url, timeout=5)


def test_a_chunked_body_is_recorded_whole(fake_crm: FakeCrm, session: requests.Session) -> None:
    # Given a client streaming its body in chunks
    fake_crm.reply(200)
    session.post(fake_crm.url, data=iter([b"first=1&", b"second=2"]), timeout=5)

    # Then the CRM recorded the whole body
    assert fake_crm.last.headers["Transfer-Encoding"] == "chunked"
    assert fake_crm.last.body == b"first=1&second=2"


def test_reply_from_a_contract_shape() -> None:
    shape = {"status": 400, "headers": {"Content-Type": "application/json"},
             "body": {"status": "error"}}
    reply = Reply.from_contract(shape)
    assert (reply.status, reply.encoded()) == (
        400, (b'{"status": "error"}', {"Content-Type": "application/json"}))
