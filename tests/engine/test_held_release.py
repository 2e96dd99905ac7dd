"""Deactivation holds, re-activation releases at once and in order, discard keeps them.

Against a real loopback CRM and the in-process broker with a real worker.
"""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.errors import BadInput
from leadrelay.engine.report import DeliveryFilter


def _integration(app: Leadrelay, form_id: int, url: str, **extra: object) -> int:
    return app.manage.create_integration(
        form_id, name="CRM", connector="http_post", config={"url": url},
        retry={"delays": ["2m", "5m"]}, active=True, **extra,  # type: ignore[arg-type]
    ).id


def _state(app: Leadrelay, delivery_id: int) -> str:
    return str(app.inspect(delivery_id)["delivery"]["state"])


def test_a_delivery_enqueued_then_switched_off_is_never_sent_and_reactivation_sends_it_once(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/leads").respond_with_json({"id": "crm-1"})
    integration_id = _integration(app, form_id, httpserver.url_for("/leads"))
    (delivery_id,) = app.submit(form_id, {"email": "ada@example.com"}).delivery_ids
    # Given its message already in the broker's queue
    app.dispatcher.announce([(integration_id, delivery_id)])
    app.dispatcher.announcer.flush()
    # When the integration is switched off before a worker picks the message
    app.manage.set_active(integration_id, False)
    app.start_worker(threads=1)
    app.join()
    # Then the CRM never hears of it, and it is held
    assert httpserver.log == []
    assert _state(app, delivery_id) == "held"
    assert [d["id"] for d in app.deliveries(DeliveryFilter(state="held"))] == [delivery_id]
    # When it is switched on again
    app.manage.set_active(integration_id, True)
    app.join()
    # Then it is sent, once
    assert len(httpserver.log) == 1
    assert _state(app, delivery_id) == "delivered"
    app.sweep()
    app.join()
    assert len(httpserver.log) == 1


def test_reactivation_releases_pending_and_retrying_deliveries_at_once_in_order(
    app: Leadrelay, form_id: int, httpserver: HTTPServer, clock: FakeClock
) -> None:
    httpserver.expect_oneshot_request("/leads").respond_with_data("down", status=503)
    httpserver.expect_request("/leads").respond_with_json({"ok": True})
    integration_id = _integration(app, form_id, httpserver.url_for("/leads"))
    ids = [app.submit(form_id, {"email": f"n{n}@example.com"}).delivery_ids[0]
           for n in range(4)]
    # Given the first delivery retrying (due in 2 minutes) and the rest pending
    first = app.deliver(ids[0])
    assert first is not None and first.state.value == "pending"
    app.manage.set_active(integration_id, False)
    assert [_state(app, i) for i in ids] == ["held"] * 4
    # When the integration is switched on again (no time has passed)
    app.manage.set_active(integration_id, True)
    # Then every one is due now and goes out in the order the leads arrived
    results = app.deliver_due()
    assert [r.delivery_id for r in results] == ids
    sent = [req.form["email"] for req, _ in httpserver.log[1:]]
    assert sent == [f"n{n}@example.com" for n in range(4)]


def test_held_deliveries_discarded_with_a_reason_stay_inspectable_and_are_never_sent(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/leads").respond_with_json({"ok": True})
    integration_id = _integration(app, form_id, httpserver.url_for("/leads"))
    ids = [app.submit(form_id, {"email": f"n{n}@example.com"}).delivery_ids[0]
           for n in range(3)]
    app.manage.set_active(integration_id, False)
    # When one of them, then the others, are discarded
    assert app.manage.discard_held(integration_id, "duplicates of an old import",
                                   delivery_ids=[ids[0]]) == 1
    assert app.manage.discard_held(integration_id, "campaign cancelled") == 2
    # Then they stay in the ledger, state discarded, with the reason
    shown = app.inspect(ids[0])["delivery"]
    assert (shown["state"], shown["last_reason"]) == (
        "discarded", "discarded: duplicates of an old import")
    assert {d["id"] for d in app.deliveries(DeliveryFilter(state="discarded"))} == set(ids)
    # and re-activation sends none of them
    app.manage.set_active(integration_id, True)
    assert app.deliver_due() == [] and httpserver.log == []
    # and the failed collection does not hold them
    assert app.deliveries(DeliveryFilter(state="not_integrated")) == []


@pytest.mark.parametrize(("reason", "message"), [("", "reason: say why"),
                                                 ("x" * 501, "reason: at most 500")])
def test_a_discard_without_a_reason_is_refused(
    app: Leadrelay, form_id: int, reason: str, message: str
) -> None:
    integration_id = _integration(app, form_id, "http://crm.example/leads")
    (delivery_id,) = app.submit(form_id, {"email": "a@b.test"}).delivery_ids
    app.manage.set_active(integration_id, False)
    with pytest.raises(BadInput, match=message):
        app.manage.discard_held(integration_id, reason)
    assert _state(app, delivery_id) == "held"
