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
