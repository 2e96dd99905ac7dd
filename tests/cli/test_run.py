"""serve, worker and scheduler as real processes: they deliver, and stop cleanly on SIGTERM."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock, SystemClock

from .helpers import LEAD, Cli, add_integration, start, stop, wait_for


def accepted_two_minutes_ago(engine_for: Callable[..., Leadrelay], form: int) -> int:
    """A lead accepted two minutes ago whose broker message was lost; its delivery id.

    The engine that accepted it had the in-process broker and no worker, so
    only the ledger knows about it: the sweeper must find it.
    """
    clock = FakeClock(SystemClock().now() - timedelta(minutes=2))
    app = engine_for(clock=clock, LEADRELAY_BROKER_URL=None)
    return app.submit(form, LEAD).delivery_ids[0]


def delivered(engine: Leadrelay, delivery: int) -> Callable[[], bool]:
    """A check that ``delivery`` is delivered (read through one engine, not a CLI call
    per poll: on SQLite every transaction takes the write lock)."""
    return lambda: engine.inspect(delivery)["delivery"]["state"] == "delivered"


def test_serve_delivers_what_the_ledger_holds_and_stops_on_sigterm(
    cli: Cli, form: int, engine: Leadrelay, engine_for: Callable[..., Leadrelay],
    httpserver: HTTPServer,
) -> None:
    # Given a CRM, an integration and a lead only the ledger knows about
    httpserver.expect_request("/leads").respond_with_data("ok")
    add_integration(cli, form, httpserver.url_for("/leads"))
    delivery = accepted_two_minutes_ago(engine_for, form)

    # When `leadrelay serve` runs
    serve = start(cli, "serve", "--threads", "2", "--port", "0")
    try:
        # Then its sweeper finds the delivery and its worker delivers it
        wait_for(delivered(engine, delivery), what="the delivery", logs=[serve])
    finally:
        code, stderr = stop(serve)

    # and SIGTERM stops it gracefully
    assert code == 0, stderr
    assert "leadrelay serve: 2 worker threads and the scheduler" in stderr
    assert "in-process broker" in stderr
    assert "leadrelay: stopped" in stderr
    assert "Traceback" not in stderr


def test_a_redis_worker_delivers_what_submit_enqueued(
    cli: Cli, form: int, engine: Leadrelay, redis_url: str, httpserver: HTTPServer
) -> None:
    # Given a CRM and a Redis worker
    httpserver.expect_request("/leads").respond_with_data("ok")
    add_integration(cli, form, httpserver.url_for("/leads"))
    redis = {"LEADRELAY_BROKER_URL": redis_url}
    worker = start(cli, "worker", "--threads", "2", env=redis)
    try:
        # When a lead is submitted with the same broker
        delivery = cli.json("submit", "--form", str(form), "--json", json.dumps(LEAD),
                            env=redis)["delivery_ids"][0]

        # Then the worker delivers it at once (no sweeper runs)
        wait_for(delivered(engine, delivery), timeout=30, what="the worker to deliver",
                 logs=[worker])
    finally:
        code, stderr = stop(worker)
    assert code == 0, stderr
    assert "leadrelay worker: 2 threads" in stderr and redis_url in stderr


def test_the_scheduler_recovers_a_lost_message_for_the_workers(
    cli: Cli, form: int, engine: Leadrelay, engine_for: Callable[..., Leadrelay],
    redis_url: str, httpserver: HTTPServer,
) -> None:
    # Given a lead whose message was lost, a Redis worker and the scheduler
    httpserver.expect_request("/leads").respond_with_data("ok")
    add_integration(cli, form, httpserver.url_for("/leads"))
    delivery = accepted_two_minutes_ago(engine_for, form)
    redis = {"LEADRELAY_BROKER_URL": redis_url}
    worker = start(cli, "worker", env=redis)
    scheduler = start(cli, "scheduler", env=redis)
    try:
        # Then the scheduler re-sends it from the ledger and the worker delivers it
        wait_for(delivered(engine, delivery), what="the delivery", logs=[scheduler, worker])
    finally:
        results = [stop(scheduler), stop(worker)]
    for code, stderr in results:
        assert code == 0, stderr
    assert "leadrelay scheduler: sweeping every 0.2s" in results[0][1]
