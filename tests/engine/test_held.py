"""Deliveries of a switched-off integration are held: never sent, kept for later.

Deactivation holds pending and retrying deliveries at once; here, what the delivery
path guarantees whatever the timing: a message sent before the switch-off claims
nothing, and a retry recorded after it (its attempt was in flight) is held by the next
sweep. Release and discard: tests/engine/test_held_release.py.
"""

from __future__ import annotations

from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock


def _integration(app: Leadrelay, form_id: int, url: str) -> int:
    return app.manage.create_integration(
        form_id,
        name="CRM",
        connector="http_post",
        config={"url": url},
        retry={"delays": ["2m", "5m"]},
        active=True,
    ).id


def test_a_delivery_announced_before_the_switch_off_is_never_sent(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/leads").respond_with_json({"ok": True})
    integration_id = _integration(app, form_id, httpserver.url_for("/leads"))
    # Given a lead whose delivery is already on its way to a worker
    (delivery_id,) = app.submit(form_id, {"email": "ada@example.com"}).delivery_ids
    # When the integration is switched off before the worker claims it
    app.manage.set_active(integration_id, False)
    # Then the worker claims nothing and the CRM never hears of the lead
    assert app.deliver(delivery_id) is None
    assert httpserver.log == []
    # ... and the sweeper shows it held, not lost
    app.sweep()
    assert app.inspect(delivery_id)["delivery"]["state"] == "held"


def test_a_retrying_delivery_is_held_by_the_switch_off(
    app: Leadrelay, form_id: int, httpserver: HTTPServer, clock: FakeClock
) -> None:
    httpserver.expect_request("/leads").respond_with_data("down", status=503)
    integration_id = _integration(app, form_id, httpserver.url_for("/leads"))
    (delivery_id,) = app.submit(form_id, {"email": "ada@example.com"}).delivery_ids
    # Given a failed attempt whose retry is pending, and the integration switched off
    result = app.deliver(delivery_id)
    assert result is not None and result.state.value == "pending"
    app.manage.set_active(integration_id, False)
    assert app.inspect(delivery_id)["delivery"]["state"] == "held"
    # When the retry comes due
    clock.advance(minutes=3)
    report = app.sweep()
    # Then it stays held, not announced, not sent
    assert report.enqueued == 0
    assert app.inspect(delivery_id)["delivery"]["state"] == "held"
    assert app.deliver(delivery_id) is None and len(httpserver.log) == 1


def test_an_attempt_in_flight_at_the_switch_off_comes_back_held(
    app: Leadrelay, form_id: int, httpserver: HTTPServer, clock: FakeClock
) -> None:
    from sqlalchemy import update

    from leadrelay.engine.ledger import Delivery

    httpserver.expect_request("/leads").respond_with_data("down", status=503)
    integration_id = _integration(app, form_id, httpserver.url_for("/leads"))
    (delivery_id,) = app.submit(form_id, {"email": "ada@example.com"}).delivery_ids
    # Given a delivery being sent (claimed) while its integration is switched off
    with app.ledger.session() as s:
        s.execute(update(Delivery).where(Delivery.id == delivery_id).values(state="sending"))
    app.manage.set_active(integration_id, False)
    with app.ledger.session() as s:
        s.execute(update(Delivery).where(Delivery.id == delivery_id).values(state="pending"))
    # When the sweeper passes after its retry was recorded
    report = app.sweep()
    # Then it is held
    assert report.held == 1 and report.enqueued == 0
    assert app.inspect(delivery_id)["delivery"]["state"] == "held"


def test_an_attempt_in_flight_when_its_integration_is_deleted_comes_back_discarded(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    from sqlalchemy import update

    from leadrelay.engine.ledger import Delivery

    integration_id = _integration(app, form_id, httpserver.url_for("/leads"))
    (delivery_id,) = app.submit(form_id, {"email": "ada@example.com"}).delivery_ids
    with app.ledger.session() as s:
        s.execute(update(Delivery).where(Delivery.id == delivery_id).values(state="sending"))
    app.manage.delete_integration(integration_id)
    with app.ledger.session() as s:  # its retry recorded after the deletion
        s.execute(update(Delivery).where(Delivery.id == delivery_id).values(state="pending"))
    app.sweep()
    shown = app.inspect(delivery_id)["delivery"]
    assert (shown["state"], shown["last_reason"]) == ("discarded", "discarded: integration deleted")
    assert httpserver.log == []
