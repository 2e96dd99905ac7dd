"""Config history, the audit trail, and deleting integrations and forms."""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.errors import BadInput, NotFound
from leadrelay.engine.report import DeliveryFilter

TOKEN = "tok-very-secret-123"


def _integration(app: Leadrelay, form_id: int, url: str, **extra: object) -> int:
    return app.manage.create_integration(
        form_id, name="CRM", connector="http_post",
        config={"url": url, "auth": {"type": "bearer", "token": TOKEN}},
        actor="alice", **extra,  # type: ignore[arg-type]
    ).id


def test_every_change_is_a_revision_with_who_and_when(
    app: Leadrelay, form_id: int, clock: FakeClock
) -> None:
    integration_id = _integration(app, form_id, "http://crm.example/a")
    clock.advance(minutes=1)
    app.manage.update_integration(integration_id, retry={"max_attempts": 5}, actor="bob")
    app.manage.update_integration(integration_id, realtime=True, realtime_budget=2.0)
    app.manage.set_active(integration_id, True, actor="carol")
    app.manage.set_active(integration_id, True, actor="carol")  # already on: no revision
    app.manage.set_active(integration_id, False, actor="carol")
    history = app.manage.history(integration_id)
    assert history["revision"] == 5
    assert [(r["revision"], r["change"], r["actor"]) for r in history["revisions"]] == [
        (5, "deactivated", "carol"), (4, "activated", "carol"), (3, "updated", "cli"),
        (2, "updated", "bob"), (1, "created", "alice")]
    assert history["revisions"][-1]["at"] < history["revisions"][-2]["at"]
    assert TOKEN not in str(history)
    assert history["revisions"][0]["settings"]["config"]["auth"]["token"] == "[REDACTED]"


def test_a_diff_shows_what_changed_and_secrets_only_as_changed_or_not(
    app: Leadrelay, form_id: int
) -> None:
    integration_id = _integration(app, form_id, "http://crm.example/a")
    app.manage.update_integration(integration_id, expectations={
        "rules": [{"kind": "status", "in": [201]}]})  # config resealed, token the same
    app.manage.update_integration(integration_id, config={
        "url": "http://crm.example/b", "auth": {"type": "bearer", "token": "another-token"}})

    same = app.manage.history(integration_id, diff=(1, 2))["diff"]
    assert [c["path"] for c in same["changes"]] == ["expectations"]
    assert same["unchanged_secrets"] == ["config.auth.token"]

    changed = app.manage.history(integration_id, diff=(2, 3))["diff"]
    by_path = {c["path"]: c for c in changed["changes"]}
    assert by_path["config.url"]["before"] == "http://crm.example/a"
    assert by_path["config.url"]["after"] == "http://crm.example/b"
    assert by_path["config.auth.token"] == {
        "path": "config.auth.token", "secret": True, "change": "changed",
        "before": "[REDACTED]", "after": "[REDACTED]"}
    assert changed["unchanged_secrets"] == []
    assert TOKEN not in str(changed) and "another-token" not in str(changed)


@pytest.mark.parametrize("pair", [(1, 9), (0, 1), (True, 1)])
def test_a_diff_between_revisions_that_do_not_exist_is_refused(
    app: Leadrelay, form_id: int, pair: tuple[object, object]
) -> None:
    integration_id = _integration(app, form_id, "http://crm.example/a")
    with pytest.raises(NotFound, match=r"has no revision .* \(revisions: 1\)"):
        app.manage.history(integration_id, diff=pair)


def test_each_attempt_records_the_revision_it_was_sent_with(
    app: Leadrelay, form_id: int, httpserver: HTTPServer, clock: FakeClock
) -> None:
    httpserver.expect_request("/leads").respond_with_data("down", status=503)
    integration_id = _integration(app, form_id, httpserver.url_for("/leads"), active=True)
    (delivery_id,) = app.submit(form_id, {"email": "a@b.test"}).delivery_ids
    app.deliver(delivery_id)
    app.manage.update_integration(integration_id, retry={"delays": ["1m"]})
    clock.advance(minutes=10)
    app.deliver_due()
    attempts = app.inspect(delivery_id)["attempts"]
    assert [a["revision"] for a in attempts] == [1, 2]  # created active 1, updated 2


def test_the_audit_trail_holds_every_change_of_an_account_with_secrets_masked(
    app: Leadrelay,
) -> None:
    account = app.manage.create_account("Acme", "o@acme.test", plan="growth", actor="ops")
    form = app.manage.create_form(account.id, "Contact", actor="ops")
    integration_id = _integration(app, form.id, "http://crm.example/a")
    app.manage.update_integration(integration_id, config={
        "url": "http://crm.example/a", "auth": {"type": "bearer", "token": "rotated-token"}})
    app.manage.set_active(integration_id, True)
    app.manage.update_form(form.id, name="Contact us")
    app.manage.delete_integration(integration_id, actor="ops")
    other = app.manage.create_account("Other", "o@other.test")
    app.manage.create_form(other.id, "Theirs")

    events, cursor = app.manage.audit_trail(account.id)
    assert cursor is None
    assert [(e["actor"], e["action"]) for e in events] == [
        ("ops", "integration.delete"), ("cli", "form.update"), ("cli", "integration.activate"),
        ("cli", "integration.update"), ("alice", "integration.create"),
        ("ops", "form.create"), ("ops", "account.create")]
    update = events[3]
    assert update["before"]["config"]["auth"]["token"] == "[REDACTED]"
    assert update["object_type"] == "integration" and update["object_id"] == integration_id
    assert TOKEN not in str(events) and "rotated-token" not in str(events)
    assert events[1]["before"]["name"] == "Contact" and events[1]["after"]["name"] == "Contact us"
    # a page at a time, and nothing of another account
    page, more = app.manage.audit_trail(account.id, limit=2)
    assert [e["id"] for e in page] == [e["id"] for e in events[:2]] and more
    rest, _ = app.manage.audit_trail(account.id, limit=10, cursor=more)
    assert [e["id"] for e in rest] == [e["id"] for e in events[2:]]
    with pytest.raises(NotFound):
        app.manage.audit_trail(account.id, scope=other.id)


def test_a_refused_change_leaves_no_revision_and_no_event(app: Leadrelay, form_id: int) -> None:
    integration_id = _integration(app, form_id, "http://crm.example/a")
    account_id = app.manage.get_form(form_id).account_id
    before = app.manage.audit_trail(account_id)
    with pytest.raises(BadInput, match=r"config\.url"):
        app.manage.update_integration(integration_id, config={"url": "nope"})
    with pytest.raises(BadInput, match=r"expectations.rules\[0\].pattern"):
        app.manage.update_integration(integration_id, expectations={
            "rules": [{"kind": "regex", "pattern": "(["}]})
    assert app.manage.audit_trail(account_id) == before
    assert app.manage.history(integration_id)["revision"] == 1


def test_a_deleted_integration_leaves_its_form_and_stays_inspectable(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/leads").respond_with_json({"ok": True})
    integration_id = _integration(app, form_id, httpserver.url_for("/leads"), active=True)
    delivered = app.submit(form_id, {"email": "a@b.test"}).delivery_ids[0]
    app.deliver(delivered)
    waiting = app.submit(form_id, {"email": "c@d.test"}).delivery_ids[0]
    app.manage.set_active(integration_id, False)
    held_too = waiting
    # When it is deleted
    deleted = app.manage.delete_integration(integration_id)
    # Then it is archived, inactive, out of the listings, and its held delivery discarded
    assert deleted.archived_at is not None and not deleted.active
    assert app.manage.integrations(form_id) == []
    assert [i.id for i in app.manage.integrations(form_id, archived=True)] == [integration_id]
    shown = app.inspect(held_too)["delivery"]
    assert (shown["state"], shown["last_reason"]) == ("discarded", "discarded: integration deleted")
    # and its history, deliveries and attempts remain
    assert app.inspect(delivered)["attempts"][0]["outcome"] == "accepted"
    assert app.manage.history(integration_id)["revisions"][0]["change"] == "deleted"
    # and new leads no longer go to it; it cannot be changed or switched on
    assert app.submit(form_id, {"email": "e@f.test"}).delivery_ids == ()
    with pytest.raises(BadInput, match=f"integration {integration_id} was deleted"):
        app.manage.set_active(integration_id, True)
    with pytest.raises(BadInput, match="was deleted"):
        app.manage.update_integration(integration_id, name="back")
    # and deleting it again changes nothing
    assert app.manage.delete_integration(integration_id).revision == deleted.revision
    assert len(httpserver.log) == 1


def test_deleting_a_form_archives_its_integrations(app: Leadrelay, form_id: int) -> None:
    kept = [_integration(app, form_id, "http://crm.example/a", active=True) for _ in range(2)]
    (pending,) = set(app.submit(form_id, {"email": "a@b.test"}).delivery_ids[:1])
    form = app.manage.delete_form(form_id)
    assert form.archived_at is not None and not form.active
    assert app.manage.forms() == []
    assert all(app.manage.get_integration(i).archived_at is not None for i in kept)
    assert app.inspect(pending)["delivery"]["state"] == "discarded"
    assert app.deliveries(DeliveryFilter(state="discarded"))
    with pytest.raises(BadInput, match=r"form .* was deleted"):
        app.manage.create_integration(form_id, name="x", connector="http_post",
                                      config={"url": "http://crm.example/x"})


def test_another_accounts_integration_cannot_be_changed_or_deleted(
    app: Leadrelay, form_id: int
) -> None:
    integration_id = _integration(app, form_id, "http://crm.example/a")
    other = app.manage.create_account("Other", "o@other.test")
    message = f"integration {integration_id} does not exist"
    for call in (
        lambda: app.manage.delete_integration(integration_id, scope=other.id),
        lambda: app.manage.update_integration(integration_id, name="x", scope=other.id),
        lambda: app.manage.set_active(integration_id, True, scope=other.id),
        lambda: app.manage.discard_held(integration_id, "x", scope=other.id),
        lambda: app.manage.history(integration_id, scope=other.id),
    ):
        with pytest.raises(NotFound, match=message):
            call()
    assert app.manage.get_integration(integration_id).archived_at is None


def test_a_delivery_in_flight_during_a_change_finishes_with_the_revision_it_claimed(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    from werkzeug import Request, Response

    integration_id = _integration(app, form_id, httpserver.url_for("/old"), active=True)
    (delivery_id,) = app.submit(form_id, {"email": "a@b.test"}).delivery_ids

    def change_while_sending(request: Request) -> Response:
        # The operator changes the URL while the CRM is still answering this attempt
        app.manage.update_integration(integration_id, config={
            "url": httpserver.url_for("/new"), "auth": {"type": "bearer", "token": TOKEN}})
        return Response("ok")

    httpserver.expect_request("/old").respond_with_handler(change_while_sending)
    httpserver.expect_request("/new").respond_with_data("ok")
    app.deliver(delivery_id)
    (attempt,) = app.inspect(delivery_id)["attempts"]
    assert attempt["revision"] == 1  # created active 1; the change made 2
    assert attempt["exchanges"][0]["request"]["url"].endswith("/old")
    assert app.manage.get_integration(integration_id).revision == 2


def test_an_integration_older_than_history_gets_a_baseline_at_its_first_change(
    app: Leadrelay, form_id: int
) -> None:
    import sqlalchemy as sa

    from leadrelay.engine.ledger import IntegrationRevision

    integration_id = _integration(app, form_id, "http://crm.example/a")
    # Given an integration made before the ledger kept history (no stored revision)
    with app.ledger.session() as s:
        s.execute(sa.delete(IntegrationRevision))
    assert app.manage.history(integration_id)["revisions"] == []
    # When it is first changed
    app.manage.update_integration(integration_id, name="Renamed", actor="bob")
    # Then what it was is kept as a baseline, and the change diffs against it
    history = app.manage.history(integration_id, diff=(1, 2))
    assert [(r["revision"], r["change"], r["actor"]) for r in history["revisions"]] == [
        (2, "updated", "bob"), (1, "baseline", "unknown")]
    assert history["diff"]["changes"] == [{"path": "name", "before": "CRM", "after": "Renamed"}]
    assert history["diff"]["unchanged_secrets"] == ["config.auth.token"]
