"""Flow control per integration on each ledger backend: rates parsed and refused, the
window admitting what it allows and postponing the rest in the ledger, a 429 pausing its
integration for every process, and 429s never spending a delivery's attempts."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select
from werkzeug import Request, Response

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.delivery import AttemptResult
from leadrelay.engine.errors import BadInput
from leadrelay.engine.ledger import Attempt, Delivery, DeliveryState, Integration
from leadrelay.engine.outcome import Outcome
from leadrelay.engine.throttle import Gate, Limiter, parse_rate

LEAD = {"email": "jane@example.com"}


def add_crm(app: Leadrelay, form_id: int, url: str, **kw) -> int:  # type: ignore[no-untyped-def]
    return app.manage.create_integration(
        form_id, name=kw.pop("name", "CRM"), connector="http_post", config={"url": url},
        active=True, **kw,
    ).id


@pytest.mark.parametrize(
    ("text", "count", "seconds", "item"),
    [
        ("5/s", 5, 1, "5 per 1 second"),
        ("300/min", 300, 60, "5 per 1 second"),
        ("120 per minute", 120, 60, "2 per 1 second"),
        ("10/min", 10, 60, "1 per 6 second"),
        ("7/min", 7, 60, "7 per 60 second"),
        ("1000/1h", 1000, 3600, "1000 per 3600 second"),
        ("10000/day", 10000, 86400, "10000 per 86400 second"),
    ],
)
def test_rates_are_read_and_smoothed(text: str, count: int, seconds: int, item: str) -> None:
    rate = parse_rate(text)
    assert (rate.count, rate.seconds) == (count, seconds)
    assert str(rate.item()).replace("seconds", "second") == item


@pytest.mark.parametrize("text", ["0/s", "-5/s", "5", "5/fortnight", "fast", "", "5/0s"])
def test_a_rate_of_zero_negative_or_unreadable_is_refused(text: str) -> None:
    with pytest.raises(BadInput, match="rate"):
        parse_rate(text)


def test_an_integration_keeps_its_rate_limit_and_refuses_a_bad_one(
    app: Leadrelay, form_id: int
) -> None:
    integration_id = add_crm(app, form_id, "http://127.0.0.1:9/", rate_limit="300/min")
    assert app.manage.get_integration(integration_id).rate_limit == "300/min"
    with pytest.raises(BadInput, match="rate_limit: a rate must be more than 0"):
        app.manage.update_integration(integration_id, rate_limit="0/s")
    assert app.manage.get_integration(integration_id).rate_limit == "300/min"
    app.manage.update_integration(integration_id, rate_limit=None)
    assert app.manage.get_integration(integration_id).rate_limit is None


def test_the_window_admits_what_the_rate_allows_and_postpones_the_rest_spread(
    app: Leadrelay, form_id: int, clock: FakeClock
) -> None:
    # Given an integration limited to 5 a second, and 20 of its deliveries announced at once
    integration_id = add_crm(app, form_id, "http://127.0.0.1:9/", rate_limit="5/s")
    ids = [app.submit(form_id, {"n": i}).delivery_ids[0] for i in range(20)]
    # When a message carries them all
    admitted = app.gate.admit(integration_id, ids)
    # Then 5 may go now, the others are due later, 0.2 s apart, no message on their way
    assert admitted == ids[:5]
    with app.ledger.session() as s:
        rows = {d.id: d for d in s.scalars(select(Delivery).where(Delivery.id.in_(ids[5:])))}
    due = [rows[i].next_due_at for i in ids[5:]]
    assert all(d > clock.now() for d in due)
    assert {round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(due)} == {0.2}
    assert all(rows[i].queued_for is None for i in ids[5:])


def test_an_integration_without_a_rate_limit_is_never_held(
    app: Leadrelay, form_id: int
) -> None:
    integration_id = add_crm(app, form_id, "http://127.0.0.1:9/")
    ids = [app.submit(form_id, {"n": i}).delivery_ids[0] for i in range(50)]
    assert app.gate.admit(integration_id, ids) == ids


def test_a_429_pauses_the_integration_for_every_process(
    app: Leadrelay, form_id: int, clock: FakeClock
) -> None:
    # Given an integration without a rate limit and a second process on the same ledger
    integration_id = add_crm(app, form_id, "http://127.0.0.1:9/")
    other = Gate(app.ledger, clock, Limiter())
    [first, second] = [app.submit(form_id, {"n": i}).delivery_ids[0] for i in range(2)]
    # When one delivery's CRM answers 429 with Retry-After: 30
    app.dispatcher.after([AttemptResult(
        first, 1, Outcome.THROTTLED, "429", DeliveryState.PENDING,
        clock.now() + timedelta(seconds=30), integration_id=integration_id, retry_after=30,
    )])
    # Then nothing of that integration is sent by either process until then
    assert app.gate.admit(integration_id, [second]) == []
    assert other.admit(integration_id, [second]) == []
    with app.ledger.session() as s:
        paused = s.get(Integration, integration_id).paused_until  # type: ignore[union-attr]
        due = s.get(Delivery, second).next_due_at  # type: ignore[union-attr]
    assert paused == clock.now() + timedelta(seconds=30)
    assert due is not None and due >= paused
    # And once the pause is over, it goes
    clock.advance(31)
    other.forget()
    assert other.admit(integration_id, [second]) == [second]


def test_a_429_storm_ends_delivered_without_spending_attempts(
    app: Leadrelay, form_id: int, clock: FakeClock, httpserver: HTTPServer
) -> None:
    # Given a CRM answering 429 (Retry-After: 1) to its first 12 requests, then 200,
    # and a policy that gives up after 2 counted attempts
    answered = {"n": 0}

    def crm(request: Request) -> Response:
        answered["n"] += 1
        if answered["n"] <= 12:
            return Response("slow down", status=429, headers={"Retry-After": "1"})
        return Response("ok", status=200)

    httpserver.expect_request("/crm").respond_with_handler(crm)
    add_crm(app, form_id, httpserver.url_for("/crm"),
            retry={"max_attempts": 2, "delays": ["1s"], "floor": "0s", "jitter": 0})
    ids = [app.submit(form_id, {"n": i}).delivery_ids[0] for i in range(3)]
    # When the engine keeps trying as the deliveries come due
    for _ in range(20):
        app.deliver_due()
        clock.advance(2)
    # Then every delivery is delivered, after many 429s, none counted against the policy
    with app.ledger.session() as s:
        deliveries = list(s.scalars(select(Delivery).where(Delivery.id.in_(ids))))
        throttled = list(s.scalars(select(Attempt).where(Attempt.outcome == "throttled")))
    assert [d.state for d in deliveries] == ["delivered"] * 3
    assert len(throttled) == 12  # every 429 is on record
    assert [d.attempts_count for d in deliveries] == [1, 1, 1]  # only the accepted one
