"""Fenced claims: one sender at a time may move a delivery, and every send is on record.

Each claim takes the next claim number and writes its attempt (outcome ``sending``)
before the request leaves. A sender whose lease ran out and was taken back can still
record what its CRM said — kept, marked stale — but never moves the delivery again.
The CRM here is a real threaded HTTP server on loopback that can hold a request open
while the test moves the clock, sweeps and sends again from another thread.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.delivery import MAX_IN_DOUBT, AttemptResult, _Claim
from leadrelay.engine.report import DeliveryFilter
from leadrelay.engine.sweeper import IN_DOUBT_REASON, PARKED_REASON

LEAD = {"email": "ada@example.com", "first_name": "Ada"}


@dataclass
class HeldCrm:
    """A CRM that holds its first request until ``release`` is set, then answers it with
    ``first_status``; every later request is answered 200 at once."""

    first_status: int = 200
    url: str = ""
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    keys: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", 0))
        handler.rfile.read(length)
        with self.lock:
            self.keys.append(handler.headers.get("Idempotency-Key", ""))
            first = len(self.keys) == 1
        status = 200
        if first:
            self.entered.set()
            assert self.release.wait(20), "the test never released the held request"
            status = self.first_status
        body = b'{"ok": true}' if status == 200 else b'{"error": "busy"}'
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def _serve(crm: HeldCrm) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        disable_nagle_algorithm = True
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            crm.answer(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    crm.url = f"http://127.0.0.1:{server.server_address[1]}/leads"
    return server


@pytest.fixture
def crm() -> Iterator[HeldCrm]:
    held = HeldCrm()
    server = _serve(held)
    try:
        yield held
    finally:
        held.release.set()
        server.shutdown()
        server.server_close()


def _delivery(app: Leadrelay, form_id: int, url: str) -> int:
    app.manage.create_integration(
        form_id,
        name="CRM",
        connector="http_post",
        config={"url": url},
        retry={"delays": ["2m", "5m"]},
        active=True,
    )
    return app.submit(form_id, LEAD).delivery_ids[0]


def _attempts(app: Leadrelay, delivery_id: int) -> list[dict[str, Any]]:
    return app.inspect(delivery_id)["attempts"]


def _take_back(app: Leadrelay, clock: FakeClock) -> None:
    """Let the lease of whatever is claimed run out, and sweep."""
    clock.advance(app.runner.lease.total_seconds() + 1)
    app.sweep()


@pytest.mark.parametrize("first_status", [200, 500], ids=["late-success", "late-failure"])
def test_a_sender_whose_lease_was_taken_back_records_its_attempt_as_stale_and_moves_nothing(
    app: Leadrelay, form_id: int, clock: FakeClock, crm: HeldCrm, first_status: int
) -> None:
    crm.first_status = first_status
    delivery_id = _delivery(app, form_id, crm.url)
    with ThreadPoolExecutor(1) as pool:
        # Given a first sender whose CRM holds the request past the lease
        first = pool.submit(app.deliver, delivery_id)
        assert crm.entered.wait(10)
        # When the sweeper takes the claim back and a second sender delivers it
        _take_back(app, clock)
        second = app.deliver(delivery_id)
        # ... and only then does the first CRM answer come back
        crm.release.set()
        late: AttemptResult | None = first.result(20)

    # Then the delivery stays delivered, as the current claim recorded it
    assert second is not None and second.state.value == "delivered" and not second.stale
    assert late is not None and late.stale
    obj = app.inspect(delivery_id)
    assert obj["delivery"]["state"] == "delivered"
    # ... the late answer is on record, numbered apart, marked stale
    attempts = obj["attempts"]
    assert [(a["number"], a["stale"]) for a in attempts] == [(1, True), (2, False)]
    assert attempts[0]["outcome"] == ("accepted" if first_status == 200 else "transient")
    assert attempts[1]["outcome"] == "accepted" and attempts[1]["resend_of"] == 1
    # ... and the CRM saw both sends under one idempotency key, so it can tell
    assert len(crm.keys) == 2 and crm.keys[0] == crm.keys[1] == obj["delivery"]["idempotency_key"]


def test_an_attempt_is_on_record_before_its_request_leaves(
    app: Leadrelay, form_id: int, crm: HeldCrm
) -> None:
    delivery_id = _delivery(app, form_id, crm.url)
    with ThreadPoolExecutor(1) as pool:
        # Given a send the CRM has not answered yet
        running = pool.submit(app.deliver, delivery_id)
        assert crm.entered.wait(10)
        # Then the attempt is already in the ledger, claimed, with the idempotency key
        (attempt,) = _attempts(app, delivery_id)
        assert attempt["outcome"] == "sending" and attempt["claim"] == 1
        assert attempt["idempotency_key"] == app.inspect(delivery_id)["delivery"]["idempotency_key"]
        assert attempt["lane"] == "worker" and attempt["revision"] == 1
        crm.release.set()
        running.result(20)
    # ... and once answered, the same row holds the verdict
    (attempt,) = _attempts(app, delivery_id)
    assert attempt["outcome"] == "accepted" and not attempt["stale"]


def test_a_send_nobody_recorded_is_in_doubt_and_the_resend_names_it(
    app: Leadrelay, form_id: int, clock: FakeClock, crm: HeldCrm
) -> None:
    crm.release.set()
    delivery_id = _delivery(app, form_id, crm.url)
    # Given a sender that claimed the delivery and died before recording anything
    assert app.runner.writes(_Claim((delivery_id,)))
    # When its lease runs out
    _take_back(app, clock)
    # Then its attempt is in doubt, the delivery pending again, counted once
    (attempt,) = _attempts(app, delivery_id)
    assert attempt["outcome"] == "in_doubt" and attempt["reason"] == IN_DOUBT_REASON
    assert app.inspect(delivery_id)["delivery"]["state"] == "pending"
    # ... and the resend says which attempt it sends again; the retry round is not spent
    result = app.deliver(delivery_id)
    assert result is not None and result.state.value == "delivered" and result.attempt == 1
    assert [(a["number"], a["resend_of"]) for a in _attempts(app, delivery_id)] == [
        (1, None),
        (2, 1),
    ]


def test_a_lead_that_kills_its_sender_every_time_is_parked_in_the_failed_collection(
    app: Leadrelay, form_id: int, clock: FakeClock, crm: HeldCrm
) -> None:
    delivery_id = _delivery(app, form_id, crm.url)
    # Given a delivery whose every sender dies mid-send
    for _ in range(MAX_IN_DOUBT):
        assert app.runner.writes(_Claim((delivery_id,)))
        _take_back(app, clock)
    # Then after MAX_IN_DOUBT attempts in doubt it waits in the failed collection
    obj = app.inspect(delivery_id)
    assert obj["delivery"]["state"] == "not_integrated"
    assert obj["delivery"]["last_reason"] == PARKED_REASON
    assert [a["outcome"] for a in obj["attempts"]] == ["in_doubt"] * MAX_IN_DOUBT
    failed = app.deliveries(DeliveryFilter(state="not_integrated"))
    assert [d["id"] for d in failed] == [delivery_id]
    # ... it is never claimed again by itself, and the CRM never saw it
    assert app.deliver(delivery_id) is None and crm.keys == []
    # ... and a replay starts it afresh
    app.replay(DeliveryFilter(form_id=form_id))
    crm.release.set()
    result = app.deliver(delivery_id)
    assert result is not None and result.state.value == "delivered"


def test_the_record_of_a_send_is_retried_through_a_database_outage(
    app: Leadrelay, form_id: int, crm: HeldCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadrelay.engine.delivery import _Record

    crm.release.set()
    delivery_id = _delivery(app, form_id, crm.url)
    writes = app.runner.writes
    failures = {"left": 3}

    def flaky(item: Any) -> Any:
        if isinstance(item, _Record) and failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("database unreachable")  # as psycopg's OperationalError
        return writes(item)

    sleeps: list[float] = []
    monkeypatch.setattr(app.runner, "writes", flaky)
    monkeypatch.setattr(app.runner, "sleep", sleeps.append)
    # When the database is away three times just after the CRM answered
    result = app.deliver(delivery_id)
    # Then the record lands once it is back: one send, delivered, no resend to come
    assert result is not None and result.state.value == "delivered"
    assert len(crm.keys) == 1 and len(sleeps) == 3 and sleeps == sorted(sleeps)
    (attempt,) = _attempts(app, delivery_id)
    assert attempt["outcome"] == "accepted"


def test_a_record_the_database_refuses_is_kept_without_its_exchanges_at_once(
    app: Leadrelay, form_id: int, crm: HeldCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import DataError

    from leadrelay.engine.delivery import _Record

    crm.release.set()
    delivery_id = _delivery(app, form_id, crm.url)
    writes = app.runner.writes

    def refusing(item: Any) -> Any:
        # as PostgreSQL refuses a JSONB value it cannot store, whatever the wait
        if isinstance(item, _Record) and any(a["exchanges"][0].get("request")
                                             for a in item.attempts):
            raise DataError("UPDATE attempts ...", {}, ValueError("unstorable"))
        return writes(item)

    sleeps: list[float] = []
    monkeypatch.setattr(app.runner, "writes", refusing)
    monkeypatch.setattr(app.runner, "sleep", sleeps.append)
    # When the CRM accepted the lead but the database refuses the exchange's rows
    result = app.deliver(delivery_id)
    # Then, without waiting, the verdict is recorded with a note in place of the exchange
    assert result is not None and result.state.value == "delivered" and sleeps == []
    (attempt,) = _attempts(app, delivery_id)
    assert attempt["outcome"] == "accepted"
    assert attempt["exchanges"] == [
        {"error": "the exchanges of this attempt could not be stored: ValueError"}
    ]
    assert len(crm.keys) == 1


def test_a_real_time_attempt_says_so(app: Leadrelay, form_id: int, crm: HeldCrm) -> None:
    crm.release.set()
    delivery_id = _delivery(app, form_id, crm.url)
    app.runner.run(delivery_id, lane="realtime")
    assert [a["lane"] for a in _attempts(app, delivery_id)] == ["realtime"]


def _concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result(30) for f in [pool.submit(c) for c in calls]]


def test_senders_racing_for_one_delivery_send_it_once(
    app: Leadrelay, form_id: int, crm: HeldCrm
) -> None:
    crm.release.set()
    delivery_id = _delivery(app, form_id, crm.url)
    # Given workers and a real-time sender all asking for the same delivery at once
    results = _concurrently(
        [lambda: app.runner.run(delivery_id, lane="realtime")]
        + [lambda: app.deliver(delivery_id)] * 5
    )
    # Then exactly one of them sent it
    assert sum(r is not None for r in results) == 1
    assert len(crm.keys) == 1 and len(_attempts(app, delivery_id)) == 1
