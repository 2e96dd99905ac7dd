"""A window with thousands of failures gives a digest of the top groups with totals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.digest.content import TOP_INTEGRATIONS, TOP_REASONS
from leadrelay.engine.ledger import Attempt, Delivery, Lead
from smtp_mailbox import Mailbox

from .conftest import Crm

FAILURES = 6000
INTEGRATIONS = 14
REASONS = 40


def test_thousands_of_failures_stay_a_small_email_with_exact_totals(
    app: Leadrelay, crm: Crm, mailbox: Mailbox, clock: FakeClock
) -> None:
    # Given 6,000 deliveries given up in the window, over 14 integrations and 40 reasons
    # (written straight to the ledger: what is tested is the digest, not the senders)
    ids = [crm.integration(f"CRM {i}", f"/c{i}") for i in range(INTEGRATIONS)]
    start = datetime(2026, 1, 1, 6, 30, tzinfo=UTC)
    with app.ledger.session() as s:
        leads = s.scalars(insert(Lead).returning(Lead.id), [
            {"form_id": crm.form_id, "source": "import", "payload": {"n": n},
             "received_at": start} for n in range(FAILURES)]).all()
        rows = [{"lead_id": lead, "integration_id": ids[n % INTEGRATIONS],
                 "state": "not_integrated", "attempts_count": 1, "total_attempts": 1,
                 "idempotency_key": f"k{n}", "last_outcome": "rejected",
                 "last_reason": f"reason {n % REASONS}", "created_at": start,
                 "finished_at": start + timedelta(seconds=n)}
                for n, lead in enumerate(leads)]
        deliveries = s.scalars(insert(Delivery).returning(Delivery.id), rows).all()
        s.execute(insert(Attempt), [
            {"delivery_id": d, "number": 1, "started_at": start, "duration_ms": 1.0,
             "outcome": "rejected", "reason": "no", "decided_by": "status", "trace": [],
             "exchanges": [{"response": {"status": 400, "body": "x" * 5000}}]}
            for d in deliveries])

    # When the window closes and the digest is sent
    clock.advance(hours=3)
    [result] = app.digests.run()

    # Then it counts all of them, shows the top groups only, and totals the rest
    assert result.state == "sent" and result.failures == FAILURES
    [mail] = mailbox.received
    text = mail.part("plain")
    assert len(mail.raw) < 48_000
    assert f"{FAILURES} deliveries failed: {FAILURES} given up" in text
    assert text.count("\n== CRM ") == TOP_INTEGRATIONS
    hidden = INTEGRATIONS - TOP_INTEGRATIONS
    hidden_count = sum(1 for n in range(FAILURES) if n % INTEGRATIONS >= TOP_INTEGRATIONS)
    assert (f"... and {hidden} more integrations: {hidden_count} given up, 0 still being "
            "retried.") in text
    # each integration shown lists its top reasons and the rest as a total
    per_integration = FAILURES // INTEGRATIONS + 1  # 429 or 428
    reasons_each = REASONS // 2  # 14 integrations x 40 reasons: 20 reasons each
    assert text.count(f"  - and {reasons_each - TOP_REASONS} more reasons (") == \
        TOP_INTEGRATIONS
    assert text.count("      sample answer:") == TOP_INTEGRATIONS * TOP_REASONS
    assert f"Given up (in the failed collection): {per_integration}" in text
