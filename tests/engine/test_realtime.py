"""Real-time delivery: sent inside the submission, never holding it past the budget.

The CRM is a real threaded HTTP server on loopback that can be told to answer late or
to fail; the clock of the budget is real time (it bounds a visitor's real wait), kept
to fractions of a second.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.broker import QUEUE, RETRY_QUEUE

LEAD = {"email": "ada@example.com"}


@dataclass
class Crm:
    """Answers every POST after ``delay`` seconds with ``status``; counts what it got."""

    delay: float = 0.0
    status: int = 200
    url: str = ""
    keys: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        with self.lock:
            self.keys.append(handler.headers.get("Idempotency-Key", ""))
        time.sleep(self.delay)  # the CRM's own slowness, which the visitor must not wait out
        body = b'{"id": "crm-42"}' if self.status == 200 else b'{"error": "down"}'
        handler.send_response(self.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


@pytest.fixture
def crm() -> Iterator[Crm]:
    state = Crm()

    class Handler(http.server.BaseHTTPRequestHandler):
        disable_nagle_algorithm = True
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            state.answer(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/leads"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _realtime(app: Leadrelay, form_id: int, crm: Crm, budget: float) -> int:
    return app.manage.create_integration(
        form_id,
        name="Live CRM",
        connector="http_post",
        config={"url": crm.url},
        expectations={"rules": [{"kind": "status", "in": [200]}], "reference": {"json": "id"}},
        realtime=True,
        realtime_budget=budget,
        active=True,
    ).id


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    value = call()
    return value, time.monotonic() - started


def test_a_crm_answering_in_budget_is_delivered_inside_the_submission(
    app: Leadrelay, form_id: int, crm: Crm
) -> None:
    _realtime(app, form_id, crm, budget=3.0)
    accepted = app.submit(form_id, LEAD, realtime=True)
    (result,) = app.deliver_realtime(accepted)
    assert (result.state, result.finished, result.outcome) == ("delivered", True, "accepted")
    assert result.crm_reference == "crm-42"
    (attempt,) = app.inspect(result.delivery_id)["attempts"]
    assert attempt["lane"] == "realtime" and attempt["number"] == 1
    # No worker was told about it: nothing more will send it.
    assert app.broker.queues[QUEUE].qsize() == 0 and len(crm.keys) == 1


def test_a_crm_slower_than_the_budget_does_not_hold_the_visitor_and_is_sent_once(
    app: Leadrelay, form_id: int, crm: Crm, wait_for: Callable[..., None]
) -> None:
    # Given a CRM answering after 1.5 s, a budget of 0.3 s and workers running
    crm.delay = 1.5
    _realtime(app, form_id, crm, budget=0.3)
    app.start_worker(threads=2)
    accepted = app.submit(form_id, LEAD, realtime=True)
    # When the submission delivers in real time
    (result,), took = _timed(lambda: app.deliver_realtime(accepted))
    # Then the answer comes at the budget, the delivery queued
    assert result.state == "queued" and not result.finished
    assert 0.3 <= took < 0.3 + 0.25
    # ... the attempt in flight finishes in the background and is recorded, once
    wait_for(lambda: app.inspect(result.delivery_id)["delivery"]["state"] == "delivered")
    app.sweep()
    app.join()
    obj = app.inspect(result.delivery_id)
    assert [a["lane"] for a in obj["attempts"]] == ["realtime"]
    assert len(crm.keys) == 1 and crm.keys[0] == obj["delivery"]["idempotency_key"]


def test_a_failed_real_time_attempt_is_attempt_one_and_retried_in_the_background(
    app: Leadrelay, form_id: int, crm: Crm
) -> None:
    crm.status = 503
    _realtime(app, form_id, crm, budget=3.0)
    accepted = app.submit(form_id, LEAD, realtime=True)
    (result,) = app.deliver_realtime(accepted)
    assert (result.state, result.finished, result.outcome) == ("retrying", True, "transient")
    obj = app.inspect(result.delivery_id)
    assert obj["delivery"]["attempts"] == 1 and obj["delivery"]["state"] == "pending"
    # The retry is on its way to the workers, at its due time.
    retries = app.broker.queues.get(f"{RETRY_QUEUE}.DQ") or app.broker.queues[RETRY_QUEUE]
    assert retries.qsize() == 1


def test_workers_racing_the_real_time_sender_never_send_it_twice(
    app: Leadrelay, form_id: int, crm: Crm, wait_for: Callable[..., None]
) -> None:
    crm.delay = 0.2
    _realtime(app, form_id, crm, budget=2.0)
    app.start_worker(threads=4)
    for n in range(10):
        accepted = app.submit(form_id, {**LEAD, "n": n}, realtime=True)
        # Given the workers told about the same delivery at the very same moment
        app.dispatcher.announce([(None, d) for d in accepted.delivery_ids] * 3)
        app.deliver_realtime(accepted)
    app.join()
    # Then every lead reached the CRM exactly once
    assert len(crm.keys) == 10 and len(set(crm.keys)) == 10


def _key(app: Leadrelay, form_id: int) -> str:
    return str(app.manage.get_form(form_id).public_key)


def test_a_page_post_claims_its_real_time_delivery_in_the_transaction_storing_it(
    app: Leadrelay, form_id: int, crm: Crm
) -> None:
    # Given a real-time integration free of rate limits, and a first post that got the
    # real-time sender going
    _realtime(app, form_id, crm, budget=3.0)
    app.posts.post_to_form(_key(app, form_id), LEAD)
    before = app.ledger.writes.batches

    # When a page posts a lead
    _, posted = app.posts.post_to_form(_key(app, form_id), {**LEAD, "n": 2})

    # Then it was stored and claimed in one transaction, and recorded in a second
    assert app.ledger.writes.batches - before == 2
    [entry] = posted.body["deliveries"]
    assert (entry["state"], entry["attempts"]) == ("delivered", 1)
    obj = app.inspect(entry["delivery_id"])
    assert [(a["lane"], a["number"], a["outcome"]) for a in obj["attempts"]] == [
        ("realtime", 1, "accepted")]
    assert obj["delivery"]["state"] == "delivered" and len(crm.keys) == 2
    # and no worker was told about it
    assert app.broker.queues[QUEUE].qsize() == 0


def test_a_claimed_delivery_whose_send_never_starts_is_given_back_to_the_workers(
    app: Leadrelay, form_id: int, crm: Crm, wait_for: Callable[..., None]
) -> None:
    # Given one real-time thread, kept busy by a first post to a CRM answering in 1 s
    crm.delay = 1.0
    _realtime(app, form_id, crm, budget=0.3)
    app.realtime._threads = 1
    app.start_worker(threads=2)
    key = _key(app, form_id)
    busy = threading.Thread(target=app.posts.post_to_form, args=(key, LEAD))
    busy.start()
    wait_for(lambda: len(crm.keys) == 1)

    # When a second post is claimed as it is stored, but no thread can send it in budget
    _, posted = app.posts.post_to_form(key, {**LEAD, "n": 2})
    busy.join()

    # Then its answer says queued, its claim was given back (no attempt left on record
    # by the send that never started), and a worker delivers it, once
    [entry] = posted.body["deliveries"]
    assert entry["state"] == "queued"
    wait_for(lambda: app.inspect(entry["delivery_id"])["delivery"]["state"] == "delivered")
    obj = app.inspect(entry["delivery_id"])
    assert [(a["lane"], a["number"]) for a in obj["attempts"]] == [("worker", 1)]
    assert crm.keys.count(obj["delivery"]["idempotency_key"]) == 1
