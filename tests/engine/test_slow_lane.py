"""The slow lane: an integration whose CRM hangs never holds the threads healthy ones need."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.broker import SLOW_QUEUE

WaitFor = Callable[..., None]
LEAD = {"email": "jane.doe@example.com"}


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """A CRM that accepts connections (in the kernel) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/crm"
    finally:
        sock.close()


def test_a_hanging_crm_goes_to_the_slow_lane_and_healthy_deliveries_go_on(
    tmp_path: Path, httpserver: HTTPServer, hanging_url: str, make_settings, wait_for: WaitFor
) -> None:
    httpserver.expect_request("/crm").respond_with_json({"ok": True})
    app = Leadrelay(make_settings(tmp_path, f"sqlite:///{tmp_path / 'l.db'}"))
    try:
        account = app.manage.create_account("Acme", "owner@acme.test", plan="growth")
        form = app.manage.create_form(account.id, "Contact")
        app.manage.create_integration(
            form.id,
            name="Healthy",
            connector="http_post",
            config={"url": httpserver.url_for("/crm")},
            active=True,
        )
        app.manage.create_integration(
            form.id,
            name="Hanging",
            connector="http_post",
            config={"url": hanging_url, "read_timeout": 1.0},
            active=True,
        )
        # Given two worker threads and a first lead whose hanging delivery marks its CRM slow
        app.start_worker(threads=2)
        first = app.submit(form.id, LEAD).delivery_ids
        wait_for(lambda: app.inspect(first[1])["delivery"]["attempts"])
        assert app.inspect(first[1])["delivery"]["state"] == "pending"

        # When more leads arrive than there are threads
        later = [app.submit(form.id, {**LEAD, "n": i}).delivery_ids for i in range(8)]

        # Then every healthy delivery is delivered well before two shared threads could
        # have worked through the hanging ones (8 x 1 s / 2): those wait in the slow lane
        started = time.monotonic()
        wait_for(
            lambda: all(app.inspect(h)["delivery"]["state"] == "delivered" for h, _ in later),
            timeout=10,
        )
        assert time.monotonic() - started < 2.0
        assert app.broker.queues.get(SLOW_QUEUE) is not None
    finally:
        app.close()


class _Runner:
    """Stands in for the delivery runner: records what the slow lane runs."""

    def __init__(self) -> None:
        self.ran: list[list[int]] = []

    def run_batch(self, ids: list[int], **_: object) -> list[object]:
        self.ran.append(list(ids))
        return []

    def latency(self, integration_id: int) -> float | None:
        return None


def test_one_integration_holds_at_most_its_share_of_the_slow_lane() -> None:
    from dramatiq.brokers.stub import StubBroker

    from leadrelay.engine.broker import Dispatcher
    from leadrelay.engine.clock import FakeClock

    # Given a slow lane where each integration may hold one thread, and integration 7
    # already holding its one
    broker = StubBroker()
    runner = _Runner()
    dispatcher = Dispatcher(broker, runner, FakeClock())  # type: ignore[arg-type]
    try:
        dispatcher.slow_cap = 1
        dispatcher._slow_running[7] = 1
        # When another slow delivery of 7 comes, and one of integration 8
        dispatcher._deliver_slow([5], 7)
        dispatcher._deliver_slow([6], 8)
        # Then 8's is sent at once; 7's waits its turn on the queue, unsent and unclaimed
        assert runner.ran == [[6]]
        delayed = broker.queues[f"{SLOW_QUEUE}.DQ"]
        assert delayed.qsize() == 1
        assert dispatcher._slow_running[8] == 0  # given back once sent
    finally:
        dispatcher.announcer.close()
        dispatcher.bulk_announcer.close()
        broker.close()
