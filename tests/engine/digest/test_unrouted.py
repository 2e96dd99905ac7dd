"""The digest's "leads not routed": Facebook leads whose Graph read gave up, or whose
Facebook form is mapped to no form, are reported with their reason (they have no delivery)."""

from __future__ import annotations

import json

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.facebook import GraphSettings, sign
from leadrelay.facebook.graph import Graph
from smtp_mailbox import Mailbox

from .conftest import Crm

PAGE = "104736952280912"


def notify(app: Leadrelay, *changes: tuple[str, str]) -> None:
    body = json.dumps({"object": "page", "entry": [{"id": PAGE, "time": 1, "changes": [
        {"field": "leadgen", "value": {"leadgen_id": lead, "form_id": form, "page_id": PAGE}}
        for lead, form in changes]}]}).encode()
    app.facebook.receive(body, sign(body, "app-secret"))


def test_leads_not_routed_are_a_section_of_the_digest_with_their_reason(
    app: Leadrelay, crm: Crm, mailbox: Mailbox, clock: FakeClock
) -> None:
    # Given a page whose token expired, with one mapped form, and a lead of an unmapped one
    crm.server.expect_request("/v21.0/11").respond_with_json(
        {"error": {"message": "Session has expired", "type": "OAuthException", "code": 190}},
        status=400)
    app.facebook.reader.graph = Graph(GraphSettings(base_url=crm.server.url_for("").rstrip("/")))
    app.facebook.connect(crm.account_id, PAGE, app_secret="app-secret", verify_token="v",
                         page_access_token="EAAG-expired", forms={"900": crm.form_id},
                         retry={"max_attempts": 1})
    notify(app, ("11", "900"), ("12", "901"))
    [result] = app.facebook.read_due()
    assert result.state == "not_read"

    # When the window has closed and the digest runs
    clock.advance(hours=3)
    [sent] = app.digests.run()

    # Then one email reports both, with why and what to do, and no token
    [mail] = mailbox.received
    assert sent.state == "sent"
    assert mail.message["Subject"] == (
        "leadrelay: 2 leads not routed for Acme (2026-01-01 06:00 to 2026-01-01 12:00 UTC)")
    text, html = mail.part("plain"), mail.part("html")
    assert "LEADS NOT ROUTED: 2" in text and "Leads not routed: 2" in html
    assert ("1 x Facebook Lead Ads: the Graph read gave up: Graph API answered 400: "
            "error 190 (OAuthException): Session has expired") in text
    assert "1 x Facebook Lead Ads: no form mapped: Facebook form 901 of page" in text
    assert f"leadrelay facebook leads --account {crm.account_id}" in text
    assert "EAAG-expired" not in text + html
