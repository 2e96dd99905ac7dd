"""The embed in a real browser: a landing page submits, the console shows the integration
object, the visitor is never left in "sending…", and refusals say why."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from leadrelay.engine.app import Leadrelay

from .conftest import Crm, LossyFront, Page

#: What the visitor may wait beyond the budget in a browser (a loaded 2-core machine).
MARGIN = 1.5
WITH_REFERENCE = {"rules": [{"kind": "status", "in": [200]}], "reference": {"json": "id"}}


def leads_stored(app: Leadrelay) -> int:
    with app.ledger.transaction() as conn:
        return int(conn.execute(sa.text("select count(*) from leads")).scalar_one())


def a_form(app: Leadrelay, origin: str, **settings: Any) -> Any:
    account = app.manage.create_account("Acme", "owner@acme.test", plan="growth")
    return app.manage.create_form(account.id, "Contact us", allowed_origins=[origin],
                                  **settings)


def integration(app: Leadrelay, form_id: int, name: str, url: str, **extra: Any) -> int:
    return app.manage.create_integration(
        form_id, name=name, connector="http_post", config={"url": url}, active=True,
        expectations=WITH_REFERENCE, **extra).id


def test_a_submission_logs_the_integration_object_and_follows_the_queued_deliveries(
    app: Leadrelay, open_page: Callable[..., Page], site_origin: str,
    crm: Callable[[float], Crm],
) -> None:
    # Given a form with a real-time CRM and a background one, and workers running
    form = a_form(app, site_origin)
    integration(app, form.id, "Pipedrive", crm(0.0).url, realtime=True, realtime_budget=3.0)
    integration(app, form.id, "Odoo", crm(0.0).url)
    app.start_worker(threads=2)
    page = open_page(form.public_key)

    # When the visitor fills in the form and submits
    page.fill(first_name="Jane", email="jane.doe@example.com")
    page.submit()

    # Then the visitor sees the thank-you
    thanks = page.wait(lambda: page.text_of(".leadrelay-thank-you"), "the thank-you")
    assert thanks == "Thanks, we will call you back."
    # and window.leadrelay.lastSubmission holds the integration object of the answer
    sub = page.wait(lambda: (s := page.last()) and s["lead_id"] and s, "the submission")
    assert sub["http_status"] == 201 and sub["state"] == "answered"
    by_name = {d["integration"]: d for d in sub["deliveries"]}
    assert set(by_name) == {"Pipedrive", "Odoo"}
    realtime = by_name["Pipedrive"]
    assert (realtime["connector"], realtime["state"], realtime["outcome"],
            realtime["crm_reference"]) == ("http_post", "delivered", "accepted", "crm-1")
    assert realtime["decided_by"]
    # the background delivery was queued when the answer went out; the embed follows it
    # through the status URL until every delivery settles
    settled = page.wait(lambda: (s := page.last())["settled"] and s, "the deliveries to settle")
    assert {d["integration"]: d["state"] for d in settled["deliveries"]} == {
        "Pipedrive": "delivered", "Odoo": "delivered"}
    assert settled["status_url"].startswith("http://127.0.0.1:")
    # and the console has one group per report, with a line per integration
    console = page.console.text()
    lead = sub["lead_id"]
    assert (f'"lead {lead} answered by its real-time CRMs (HTTP 201): '
            'window.leadrelay.lastSubmission ="') in console
    assert ('"Pipedrive [http_post]: delivered · outcome accepted · CRM reference crm-1 · '
            'reason: response matched all 1 rules · rule: status in [200]"') in console
    assert '"Odoo [http_post]: queued"' in console
    assert f'"lead {lead} settled: window.leadrelay.lastSubmission ="' in console
    # nothing of the lead's fields, the CRM's address or its answers reached the page
    shown = json.dumps(settled)
    assert "jane.doe@example.com" not in shown and "/leads" not in shown.replace(
        "/v1/", "")
    assert leads_stored(app) == 1


def test_a_crm_slower_than_its_budget_still_gets_the_visitor_to_the_thank_you(
    app: Leadrelay, open_page: Callable[..., Page], site_origin: str,
    crm: Callable[[float], Crm],
) -> None:
    # Given a real-time CRM that answers after 4 s, with a 1 s budget
    form = a_form(app, site_origin)
    slow = crm(4.0)
    integration(app, form.id, "Slow CRM", slow.url, realtime=True, realtime_budget=1.0)
    page = open_page(form.public_key)

    # When the visitor submits
    page.fill(first_name="Jane", email="jane@example.com")
    clicked = page.submit()

    # Then the thank-you shows within the budget and a margin, not after the CRM
    page.wait(lambda: page.text_of(".leadrelay-thank-you"), "the thank-you", timeout=10)
    import time

    waited = time.monotonic() - clicked
    assert waited < 1.0 + MARGIN, waited
    sub = page.last()
    assert sub["http_status"] == 202 and sub["state"] == "accepted"
    assert [d["state"] for d in sub["deliveries"]] == ["queued"]
    # and the console later shows the delivery made by the attempt the budget left running
    settled = page.wait(lambda: (s := page.last())["settled"] and s, "the delivery to settle")
    assert [(d["state"], d["crm_reference"]) for d in settled["deliveries"]] == [
        ("delivered", "crm-1")]
    assert slow.requests == 1
    assert "Slow CRM [http_post]: delivered" in page.console.text()


def test_a_refused_lead_shows_the_field_error_next_to_the_field(
    app: Leadrelay, open_page: Callable[..., Page], site_origin: str,
) -> None:
    # Given a form that requires an email
    form = a_form(app, site_origin, required_fields=["email"])
    page = open_page(form.public_key)

    # When the visitor submits without one
    page.fill(first_name="Jane")
    page.submit()

    # Then the error is shown next to the email field, the form stays, nothing is stored
    note = page.wait(lambda: page.text_of(".leadrelay-field-error[data-field=email]"),
                     "the field error")
    assert "required by this form" in note
    assert page.js("return document.querySelector('[name=email]').getAttribute("
                   "'aria-invalid')") == "true"
    assert page.js("return document.getElementById('contact').hidden") is False
    sub = page.last()
    assert (sub["state"], sub["http_status"], sub["error"]["field"]) == ("invalid", 422, "email")
    assert "the lead was not accepted (HTTP 422)" in page.console.text()
    assert leads_stored(app) == 0

    # When the visitor adds the email and submits again
    page.fill(email="jane@example.com")
    page.submit()

    # Then the lead goes in, once
    page.wait(lambda: page.text_of(".leadrelay-thank-you"), "the thank-you")
    assert leads_stored(app) == 1


def test_a_page_of_an_origin_the_form_does_not_allow_is_refused(
    app: Leadrelay, open_page: Callable[..., Page], site_origin: str,
) -> None:
    # Given a form that allows only pages of 127.0.0.1:<port>
    form = a_form(app, site_origin)

    # When the same page is opened as localhost:<port> (another origin) and submitted
    page = open_page(form.public_key, host="localhost")
    page.fill(first_name="Jane", email="jane@example.com")
    page.submit()

    # Then the page says it does not accept submissions from this site, the console why
    message = page.wait(lambda: page.text_of(".leadrelay-status"), "the refusal")
    assert message == "This form does not accept submissions from this site."
    assert "the form refuses this page: Origin: pages of 'http://localhost:" in (
        page.console.text())
    assert page.last()["state"] == "refused"
    assert leads_stored(app) == 0


def test_a_page_with_a_rotated_form_key_says_so(
    app: Leadrelay, open_page: Callable[..., Page], site_origin: str,
) -> None:
    # Given a page written with a form key that was rotated since
    form = a_form(app, site_origin)
    old_key = form.public_key
    app.manage.rotate_form_key(form.id)

    # When the page opens and the visitor submits
    page = open_page(old_key)
    page.fill(first_name="Jane", email="jane@example.com")
    page.submit()

    # Then the page and the console say the key no longer works; nothing is stored
    message = page.wait(lambda: page.text_of(".leadrelay-status"), "the message")
    assert message == "This form is no longer available: its key was changed."
    assert f"the form key {old_key} is unknown (a rotated key stops working)" in (
        page.console.text())
    assert leads_stored(app) == 0


def test_a_page_of_an_inactive_form_says_it_takes_no_submissions(
    app: Leadrelay, open_page: Callable[..., Page], site_origin: str,
) -> None:
    # Given a form switched off
    form = a_form(app, site_origin)
    app.manage.update_form(form.id, active=False)

    # When its page opens and the visitor submits
    page = open_page(form.public_key)
    page.submit()

    # Then the page says so and nothing is stored
    message = page.wait(lambda: page.text_of(".leadrelay-status"), "the message")
    assert message == "This form is not taking submissions at the moment."
    assert "the form is inactive" in page.console.text()
    assert leads_stored(app) == 0


def test_a_lost_answer_is_asked_again_with_the_same_key_and_the_lead_stored_once(
    app: Leadrelay, open_page: Callable[..., Page], site_origin: str,
    lossy_front: Callable[[list[str]], LossyFront],
) -> None:
    # Given a network that loses the API's answer to the first post (the lead got in)
    form = a_form(app, site_origin)
    front = lossy_front(["drop"])
    page = open_page(form.public_key, api_url=front.url)

    # When the visitor submits
    page.fill(first_name="Jane", email="jane@example.com")
    page.submit()

    # Then the embed asks once more with the same key, gets the first post's answer, and
    # the visitor sees the thank-you; the lead is stored once
    page.wait(lambda: page.text_of(".leadrelay-thank-you"), "the thank-you")
    assert front.posts == 2
    assert leads_stored(app) == 1
    assert page.last()["http_status"] == 202
    assert "asking once more with the same key" in page.console.text()


def test_no_answer_at_all_says_so_truthfully_and_sending_again_stores_nothing_twice(
    app: Leadrelay, open_page: Callable[..., Page], site_origin: str,
    lossy_front: Callable[[list[str]], LossyFront],
) -> None:
    # Given a network that holds the first answer past the embed's timeout (6 s for a form
    # without real-time CRMs), then loses the second
    form = a_form(app, site_origin)
    front = lossy_front(["hold", "drop"])
    page = open_page(form.public_key, api_url=front.url)

    # When the visitor submits
    page.fill(first_name="Jane", email="jane@example.com")
    clicked = page.submit()

    # Then after the timeout the page says it could not confirm — not that it failed, not
    # that it was received — and is no longer "sending…"
    message = page.wait(lambda: (t := page.text_of(".leadrelay-status")) != "Sending…" and t,
                        "the message", timeout=15)
    import time

    assert time.monotonic() - clicked < 6.0 + 2.0
    assert message.startswith("We could not confirm that your details were received.")
    assert page.last()["state"] == "unconfirmed"
    assert "timed out after 6 s" in page.console.text()
    key = page.last()["idempotency_key"]

    # When the visitor sends again, the network now fine
    page.submit()

    # Then the same key goes out, the first post's answer comes back: one lead
    page.wait(lambda: page.text_of(".leadrelay-thank-you"), "the thank-you")
    assert page.last()["idempotency_key"] == key
    assert front.posts == 3
    assert leads_stored(app) == 1


def test_the_thank_you_is_the_forms_message_or_its_thank_you_page(
    app: Leadrelay, open_page: Callable[..., Page], site_origin: str, site: Any,
) -> None:
    # Given a form with a thank-you message, on a page that sets none of its own
    form = a_form(app, site_origin, thank_you_message="Merci ! Nous vous rappelons.")
    page = open_page(form.public_key, thank_you=None)

    # When the visitor submits, then the form's message shows
    page.fill(email="jane@example.com")
    page.submit()
    assert page.wait(lambda: page.text_of(".leadrelay-thank-you"), "the thank-you") == (
        "Merci ! Nous vous rappelons.")

    # Given the form now has a thank-you page
    site.pages["/thanks.html"] = b"<!doctype html><title>Thanks</title><p>Thanks!</p>"
    app.manage.update_form(form.id, thank_you_url=f"{site_origin}/thanks.html")
    page = open_page(form.public_key)

    # When the visitor submits, then the browser goes there, the lead stored
    page.fill(email="jane@example.com")
    page.submit()
    page.wait(lambda: page.driver.current_url == f"{site_origin}/thanks.html",
              "the thank-you page")
    assert leads_stored(app) == 2
