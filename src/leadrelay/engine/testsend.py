"""Test-send: try an integration with a lead before trusting it with real ones.

Without ``send``, the request is rendered exactly as it would go out (secrets
redacted) and nothing is sent or written. With ``send``, it goes to the CRM through
the integration's own connector, transport and static-IP route, is judged against
its expectations, and is recorded as a :class:`~.ledger.TestAttempt`: it belongs to
no delivery, so it never counts in the failed collection, the digest or the metrics
of real leads. An inactive integration can be tested: that is the point.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .audit import CLI_ACTOR, check_actor
from .connector import LeadEnvelope
from .delivery import attempt
from .errors import BadInput
from .ledger import Integration, TestAttempt
from .lookup import get_row
from .runtime import build_runtime
from .wire import safe_text

if TYPE_CHECKING:
    from .clock import Clock
    from .ledger import Ledger
    from .plugins import Plugins
    from .runtime import ProxyRoutes
    from .secrets import SecretBox

#: The lead a test sends when none is given.
SAMPLE_LEAD: dict[str, Any] = {
    "first_name": "Test",
    "last_name": "Lead",
    "email": "test.lead@example.com",
    "phone": "+1 555 0100",
    "company": "leadrelay test-send",
    "message": "A test lead sent by leadrelay to check this integration.",
}
#: The source a test lead claims.
TEST_SOURCE = "test"
#: ``lead`` left out: the sample lead is sent.
SAMPLE: Any = object()


def check_lead(lead: Any) -> dict[str, Any]:
    """The test lead's fields: a JSON object."""
    if not isinstance(lead, Mapping):
        raise BadInput(f"lead: must be a JSON object of fields, got {_kind(lead)}",
                       field="lead")
    return dict(lead)


class TestSender:
    """Renders or sends one test lead through an integration."""

    __test__ = False  # not a pytest class

    def __init__(self, ledger: Ledger, plugins: Plugins, box: SecretBox, clock: Clock,
                 routes: ProxyRoutes) -> None:
        self.ledger, self.plugins, self.box, self.clock = ledger, plugins, box, clock
        self.routes = routes

    def test(self, integration_id: int, lead: Any = SAMPLE, *, send: bool = False,
             scope: int | None = None, actor: str = CLI_ACTOR) -> dict[str, Any]:
        """Render (or, with ``send``, send and record) a test of the integration with
        ``lead``'s fields (left out: :data:`SAMPLE_LEAD`)."""
        fields = dict(SAMPLE_LEAD) if lead is SAMPLE else check_lead(lead)
        check_actor(actor)
        if not isinstance(send, bool):
            raise BadInput("send: must be true or false", field="send")
        with self.ledger.session() as s:
            integration: Integration = get_row(s, Integration, integration_id, "integration",
                                               scope=scope)
        runtime = build_runtime(integration, self.plugins, self.box, self.routes)
        try:
            envelope = LeadEnvelope(
                fields=fields, lead_id=0, delivery_id=0,
                idempotency_key=f"test-{integration.id}-{secrets.token_hex(8)}",
                form_id=integration.form_id, source=TEST_SOURCE,
                received_at=self.clock.now(),
            )
            base = {"integration_id": integration.id, "revision": integration.revision,
                    "active": integration.active, "lead": fields}
            if not send:
                rendered = runtime.connector.render(envelope)
                redact = runtime.redactor
                return {**base, "sent": False, "request": {
                    "step": rendered.step,
                    "method": rendered.method,
                    "url": redact.text(rendered.url),
                    "headers": redact.headers(rendered.headers),
                    "body": redact.text(rendered.body_text()),
                }}
            started_at = self.clock.now()
            http = runtime.transport.client(runtime.redactor)
            started = time.perf_counter()
            verdict = attempt(runtime, envelope, http).redacted(http.redactor.text)
            duration_ms = (time.perf_counter() - started) * 1000
            exchanges = [e.as_dict() for e in http.exchanges]
        finally:
            runtime.close()
        row = TestAttempt(
            integration_id=integration.id, revision=integration.revision, actor=actor,
            started_at=started_at, duration_ms=round(duration_ms, 2),
            outcome=verdict.outcome.value, reason=safe_text(verdict.reason),
            decided_by=verdict.decided_by[:200],
            crm_reference=safe_text(verdict.crm_reference[:500]) if verdict.crm_reference
            else None,
            lead=fields, exchanges=exchanges, trace=verdict.trace_dicts(),
        )
        with self.ledger.session() as s:
            s.add(row)
            s.flush()
            return {**base, "sent": True, **describe_test_attempt(row)}


def test_attempts(ledger: Ledger, integration_id: int, *, scope: int | None = None,
                  limit: int = 50) -> list[dict[str, Any]]:
    """The integration's recorded test-sends, newest first."""
    from sqlalchemy import select

    with ledger.session() as s:
        get_row(s, Integration, integration_id, "integration", scope=scope)
        rows = s.scalars(select(TestAttempt).where(TestAttempt.integration_id == integration_id)
                         .order_by(TestAttempt.id.desc()).limit(limit))
        return [describe_test_attempt(t) for t in rows]


def describe_test_attempt(t: TestAttempt) -> dict[str, Any]:
    """A recorded test-send as shown (API, CLI)."""
    return {
        "test_attempt_id": t.id,
        "revision": t.revision,
        "actor": t.actor,
        "started_at": t.started_at.isoformat(),
        "duration_ms": t.duration_ms,
        "outcome": t.outcome,
        "reason": t.reason,
        "decided_by": t.decided_by,
        "crm_reference": t.crm_reference,
        "trace": t.trace,
        "exchanges": t.exchanges,
    }


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else type(value).__name__
