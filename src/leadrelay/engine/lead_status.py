"""What a page may learn about the lead it just posted: the public view of its deliveries.

A browser post's answer, and the status URL it carries, tell the page where each of
its lead's deliveries stands — enough for a developer to see, in the browser console,
what happened at each CRM — and deliberately less than the integration object of
``GET /v1/deliveries/{id}`` (an account key's view):

=========================  ================================  ============================
                           public answer and status URL      ``GET /v1/deliveries/{id}``
=========================  ================================  ============================
delivery and integration   ids, integration name, connector  the same, and the config
                                                             (secrets redacted)
where it stands            state, outcome, CRM reference,    the same, with timings,
                           reason, deciding rule, attempts   due times, leases
the lead's fields          no                                yes
requests sent to the CRM   no (no URL, body or headers)      rendered, secrets redacted
CRM answers                no status, headers or body (a     status, headers, body
                           rejection's reason may quote the
                           CRM's words, secrets redacted)
evaluation traces, proxy   no                                yes
=========================  ================================  ============================

The status URL is opened by a *status token*, made per lead: an HMAC of the lead id
under a key derived from ``LEADRELAY_SECRET_KEY``. It opens that one lead's view and
nothing else; it cannot be guessed from the lead id, and needs no table. It opens the view
for :data:`VALID_FOR` after the lead came (a page needs it for seconds; a link pasted
somewhere does not keep showing the lead's deliveries for ever), then answers not found.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select

from .clock import Clock, SystemClock
from .errors import NotFound
from .ledger import Delivery, DeliveryState, Form, Integration, Lead, Ledger
from .ledger.models import Attempt

#: States after which nothing more happens to a delivery without a replay.
SETTLED = frozenset({DeliveryState.DELIVERED.value, DeliveryState.NOT_INTEGRATED.value})
#: Keys of one delivery in the public view: nothing else is ever shown to a page.
PUBLIC_KEYS = ("delivery_id", "integration_id", "integration", "connector", "state",
               "outcome", "crm_reference", "reason", "decided_by", "attempts")
_TOKEN_BYTES = 18
_NOT_FOUND = "no lead has this status token"
#: How long after its lead came a status token opens the lead's view.
VALID_FOR = timedelta(days=30)


@dataclass(frozen=True)
class LeadView:
    """A lead's public view, and the origins its form allows (for the page's CORS)."""

    body: dict[str, Any]
    allowed_origins: tuple[str, ...]


def public_state(state: str, attempts: int) -> str:
    """A delivery's state as a page sees it: ``queued`` before any attempt, ``retrying``
    after a failed one, ``sending`` while claimed, else the ledger's state."""
    if state == DeliveryState.PENDING.value:
        return "retrying" if attempts else "queued"
    return state


class LeadStatus:
    """Status tokens, and the public view of a lead's deliveries they open."""

    def __init__(self, ledger: Ledger, secret_key: str, clock: Clock | None = None) -> None:
        self.ledger = ledger
        self.clock = clock or SystemClock()
        # A key of its own, derived: a status token reveals nothing of the secrets key.
        self._key = hashlib.sha256(b"leadrelay lead-status\0" + secret_key.encode()).digest()

    def token(self, lead_id: int) -> str:
        """The status token of a lead: ``<lead id>.<MAC>``."""
        return f"{lead_id}.{self._mac(lead_id)}"

    def lead_of(self, token: str) -> int:
        """The lead a token opens; :class:`NotFound` for anything else."""
        lead, _, mac = token.partition(".") if isinstance(token, str) else ("", "", "")
        if not lead.isdigit() or len(lead) > 19 or not mac:
            raise NotFound(_NOT_FOUND, field="token")
        if not hmac.compare_digest(mac.encode(), self._mac(int(lead)).encode()):
            raise NotFound(_NOT_FOUND, field="token")
        return int(lead)

    def view(self, token: str) -> LeadView:
        """The public view of the lead a status token opens."""
        lead_id = self.lead_of(token)
        with self.ledger.transaction() as conn:
            form = conn.execute(_FORM_OF_LEAD, {"lead_id": lead_id}).first()
            if form is None:
                raise NotFound(_NOT_FOUND, field="token")
            received = form.received_at
            if received.tzinfo is None:  # SQLite keeps naive UTC
                received = received.replace(tzinfo=UTC)
            if self.clock.now() - received > VALID_FOR:
                raise NotFound(f"this status token has expired: it opens a lead's status for "
                               f"{VALID_FOR.days} days after the lead came", field="token")
            rows = list(conn.execute(_DELIVERIES, {"lead_ids": [lead_id]}))
        deliveries = [_public(r) for r in rows]
        body = {
            "lead_id": lead_id,
            "settled": all(d["state"] in SETTLED for d in deliveries),
            "deliveries": deliveries,
        }
        return LeadView(body, tuple(form.allowed_origins or ()))

    def describe(
        self, lead_id: int, entries: Iterable[dict[str, Any]],
        labels: Mapping[int, tuple[str, str]] | None = None,
        attempted: Mapping[int, tuple[str | None, int | None]] | None = None,
    ) -> list[dict[str, Any]]:
        """A post's answer entries with what a page may also know of each delivery
        (integration name, connector, deciding rule, attempts); their states are kept
        as the answer has them. ``labels``: delivery id → (integration name, connector),
        and ``attempted``: delivery id → (deciding rule, attempts on record) of those the
        post attempted itself (real time), when the caller has them: an answer whose
        deliveries are each queued or attempted is then made without reading the ledger."""
        entries = list(entries)
        attempted = attempted or {}
        if labels is not None and all(
            e.get("delivery_id") in labels
            and (e.get("state") == "queued" or e.get("delivery_id") in attempted)
            for e in entries
        ):
            return [_described(e, labels[e["delivery_id"]], attempted) for e in entries]
        with self.ledger.transaction() as conn:
            known = {r.id: _public(r) for r in conn.execute(_DELIVERIES, {"lead_ids": [lead_id]})}
        out = []
        for entry in entries:
            extra = dict(known.get(entry.get("delivery_id"), {}))
            if entry.get("state") == "queued":  # what a worker did since is not this answer's
                extra.update(decided_by=None, attempts=0)
            out.append({**{k: extra.get(k) for k in PUBLIC_KEYS}, **entry})
        return out

    def _mac(self, lead_id: int) -> str:
        digest = hmac.new(self._key, f"lead:{lead_id}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:_TOKEN_BYTES]).decode()


def _described(entry: dict[str, Any], label: tuple[str, str],
               attempted: Mapping[int, tuple[str | None, int | None]]) -> dict[str, Any]:
    """An answer entry in the public view, from what the post knows of its delivery."""
    decided_by, attempts = (
        (None, 0) if entry.get("state") == "queued" else attempted[entry["delivery_id"]]
    )
    return {**dict.fromkeys(PUBLIC_KEYS), "integration": label[0], "connector": label[1],
            "decided_by": decided_by or None, "attempts": attempts, **entry}


def _public(r: Any) -> dict[str, Any]:
    return {
        "delivery_id": r.id,
        "integration_id": r.integration_id,
        "integration": r.name,
        "connector": r.connector,
        "state": public_state(r.state, r.attempts_count),
        "outcome": r.last_outcome,
        "crm_reference": r.crm_reference,
        "reason": r.last_reason,
        "decided_by": r.decided_by or None,
        "attempts": r.total_attempts,
    }


_D, _I = cast(Table, Delivery.__table__), cast(Table, Integration.__table__)
_A, _L = cast(Table, Attempt.__table__), cast(Table, Lead.__table__)
_F = cast(Table, Form.__table__)
_LAST = (
    select(_A.c.delivery_id, func.max(_A.c.id).label("attempt_id"))
    .where(_A.c.delivery_id.in_(
        select(_D.c.id).where(_D.c.lead_id.in_(bindparam("lead_ids", expanding=True)))))
    .group_by(_A.c.delivery_id)
    .subquery()
)
_DELIVERIES = (
    select(_D.c.id, _D.c.integration_id, _D.c.state, _D.c.attempts_count,
           _D.c.total_attempts, _D.c.last_outcome, _D.c.crm_reference, _D.c.last_reason,
           _I.c.name, _I.c.connector, _A.c.decided_by)
    .join(_I, _I.c.id == _D.c.integration_id)
    .outerjoin(_LAST, _LAST.c.delivery_id == _D.c.id)
    .outerjoin(_A, _A.c.id == _LAST.c.attempt_id)
    .where(_D.c.lead_id.in_(bindparam("lead_ids", expanding=True)))
    .order_by(_D.c.id)
)
_FORM_OF_LEAD = (
    select(_F.c.allowed_origins, _L.c.received_at).join(_L, _L.c.form_id == _F.c.id)
    .where(_L.c.id == bindparam("lead_id"))
)
