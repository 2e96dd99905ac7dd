"""Real-time delivery through the API: the visitor waits at most the integration's budget.

The CRM is a real threaded HTTP server on loopback that answers at once or sleeps past
the budget. The end-to-end test runs ``leadrelay serve`` (uvicorn on a socket).
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from leadrelay.engine.app import Leadrelay

from .conftest import LEAD, Tenant, add_integration
from .test_server import Process, wait_until

#: What the visitor may wait beyond the budget (a loaded 2-core machine included).
MARGIN = 0.5
#: Expectations that take the CRM's record id as the delivery's reference.
WITH_REFERENCE = {"rules": [{"kind": "status", "in": [200]}], "reference": {"json": "id"}}


class Crm:
    """A loopback CRM that answers ``{"id": ...}`` after ``delay`` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.requests = 0
        crm = self

        class Handler(http.server.BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                crm.requests += 1
                time.sleep(crm.delay)
                body = json.dumps({"id": f"crm-{crm.requests}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/leads"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def crm() -> Iterator[Callable[[float], Crm]]:
    made: list[Crm] = []

    def make(delay: float = 0.0) -> Crm:
        made.append(Crm(delay))
        return made[-1]

    try:
        yield make
    finally:
        for c in made:
            c.close()


def test_a_crm_answering_in_budget_gives_201_with_its_outcome_and_reference(
    client: TestClient, engine: Leadrelay, acme: Tenant, crm: Callable[[float], Crm]
) -> None:
    # Given a real-time integration and a background one on the form
    fast = crm(0.0)
    realtime = add_integration(client, acme, fast.url, realtime=True, realtime_budget=3.0,
                               expectations=WITH_REFERENCE)
    background = add_integration(client, acme, crm(0.0).url)

    # When a page posts a lead
    answer = client.post(f"/v1/forms/{acme.form_key}/leads", json=LEAD)

    # Then the real-time delivery was made inside the request: 201 with its result
    assert answer.status_code == 201, answer.text
    entries = {d["integration_id"]: d for d in answer.json()["deliveries"]}
    assert entries[realtime["id"]]["state"] == "delivered"
    assert entries[realtime["id"]]["outcome"] == "accepted"
    assert entries[realtime["id"]]["crm_reference"] == "crm-1"
    # while the background one is queued for the workers
    assert entries[background["id"]]["state"] == "queued"
    assert fast.requests == 1
    attempts = engine.inspect(entries[realtime["id"]]["delivery_id"])["attempts"]
    assert [a["lane"] for a in attempts] == ["realtime"]


def test_a_crm_slower_than_its_budget_does_not_hold_the_visitor(
    client: TestClient, engine: Leadrelay, acme: Tenant, crm: Callable[[float], Crm],
    wait_for: Callable[..., None],
) -> None:
    # Given a real-time integration whose CRM answers after 1.5 s, with a 0.4 s budget
    slow = crm(1.5)
    add_integration(client, acme, slow.url, realtime=True, realtime_budget=0.4)

    # When a page posts a lead
    started = time.monotonic()
    answer = client.post(f"/v1/forms/{acme.form_key}/leads", json=LEAD)
    waited = time.monotonic() - started

    # Then the visitor has an answer at the budget: 202, the delivery queued
    assert waited < 0.4 + MARGIN, waited
    assert answer.status_code == 202
    [entry] = answer.json()["deliveries"]
    assert entry["state"] == "queued"
    # and the same delivery ends accepted in the background, sent once
    delivery = entry["delivery_id"]
    wait_for(lambda: engine.inspect(delivery)["delivery"]["state"] == "delivered")
    assert slow.requests == 1
    assert [a["lane"] for a in engine.inspect(delivery)["attempts"]] == ["realtime"]


def test_an_external_post_is_real_time_too_and_its_retry_gets_that_answer(
    client: TestClient, engine: Leadrelay, acme: Tenant, crm: Callable[[float], Crm]
) -> None:
    fast = crm(0.0)
    add_integration(client, acme, fast.url, realtime=True, expectations=WITH_REFERENCE)
    headers = {**acme.headers, "Idempotency-Key": "rt-1"}
    path = f"/v1/forms/{acme.form_id}/leads"
    first = client.post(path, headers=headers, json={"fields": LEAD})
    assert first.status_code == 201, first.text
    assert first.json()["deliveries"][0]["crm_reference"] == "crm-1"
    again = client.post(path, headers=headers, json={"fields": LEAD})
    assert (again.status_code, again.json()) == (201, first.json())
    assert fast.requests == 1


def test_through_uvicorn_the_answer_comes_at_the_budget_and_the_crm_gets_one_request(
    environ: dict[str, str], prepared_realtime: Callable[[str], str],
    crm: Callable[[float], Crm],
) -> None:
    # Given `leadrelay serve` and a form whose real-time CRM sleeps past its 0.5 s budget
    slow = crm(2.0)
    form_key = prepared_realtime(slow.url)
    serve = Process(["serve", "--port", "0", "--threads", "2"], environ)
    try:
        with httpx.Client(base_url=serve.url(), timeout=10) as http:
            http.get("/healthz")  # connection up and app warm: time the post alone
            # When a visitor's page posts over a real socket
            started = time.monotonic()
            answer = http.post(f"/v1/forms/{form_key}/leads", json=LEAD)
            waited = time.monotonic() - started

            # Then the answer arrives within the budget and a small margin, queued
            assert answer.status_code == 202, answer.text
            assert waited < 0.5 + MARGIN, waited
            [entry] = answer.json()["deliveries"]
            assert entry["state"] == "queued"
            lead = answer.json()["lead_id"]
            key = environ["TEST_ACCOUNT_KEY"]

            # and the same delivery ends accepted in the background
            def delivered() -> bool:
                got = http.get(f"/v1/leads/{lead}",
                               headers={"Authorization": f"Bearer {key}"}).json()
                return bool(got["deliveries"][0]["state"] == "delivered")

            wait_until(delivered, "the background to finish the delivery", serve)
            got = http.get(f"/v1/deliveries/{entry['delivery_id']}",
                           headers={"Authorization": f"Bearer {key}"}).json()
            # with the one attempt that started in real time, and one request at the CRM
            assert [(a["lane"], a["outcome"]) for a in got["attempts"]] == [
                ("realtime", "accepted")]
            assert slow.requests == 1
            metrics = http.get("/metrics").text
            assert 'leadrelay_realtime_deliveries_total{result="handed_off"} 1.0' in metrics
    finally:
        assert serve.stop() == 0, serve.stderr


@pytest.fixture
def prepared_realtime(environ: dict[str, str]) -> Iterator[Callable[[str], str]]:
    """``prepare(crm_url)``: a form with a real-time integration (budget 0.5 s); its key."""
    from leadrelay.engine.settings import Settings

    engines: list[Leadrelay] = []

    def prepare(crm_url: str) -> str:
        engine = Leadrelay(Settings.from_env(environ))
        engines.append(engine)
        account = engine.manage.create_account("Acme", "owner@acme.test", plan="growth")
        form = engine.manage.create_form(account.id, "Contact")
        engine.manage.create_integration(form.id, name="CRM", connector="http_post",
                                         config={"url": crm_url}, active=True,
                                         realtime=True, realtime_budget=0.5)
        environ["TEST_ACCOUNT_KEY"] = engine.keys.create(account.id).secret
        return form.public_key

    try:
        yield prepare
    finally:
        for engine in engines:
            engine.close()


def test_a_rate_limit_holds_for_real_time_posts_too(
    client: TestClient, engine: Leadrelay, acme: Tenant, crm: Callable[[float], Crm]
) -> None:
    # Given a real-time integration whose CRM allows one lead a minute
    fast = crm(0.0)
    made = add_integration(client, acme, fast.url, realtime=True, realtime_budget=3.0,
                           rate_limit="1/min")
    # When two leads are posted at once
    first = client.post(f"/v1/forms/{acme.form_key}/leads", json=LEAD)
    second = client.post(f"/v1/forms/{acme.form_key}/leads", json={**LEAD, "n": 2})
    # Then the first is sent inside its request, the second is answered queued without a
    # request to the CRM, and is due when the window lets it go
    assert first.status_code == 201, first.text
    assert first.json()["deliveries"][0]["state"] == "delivered"
    assert second.status_code == 202, second.text
    [entry] = second.json()["deliveries"]
    assert entry["state"] == "queued" and entry["integration_id"] == made["id"]
    assert fast.requests == 1
    delivery = engine.inspect(entry["delivery_id"])["delivery"]
    assert delivery["state"] == "pending" and delivery["attempts"] == 0
    due = datetime.fromisoformat(delivery["next_due_at"])
    assert due - engine.clock.now() > timedelta(seconds=30)
