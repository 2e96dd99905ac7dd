"""The webhook: the subscription handshake, and notifications stored before the answer.

A notification is checked whole, its signature verified over the exact bytes received
with the app secret of the page it is for (in constant time), and each of its
``leadgen`` changes stored — one row per ``leadgen_id``, so a notification Facebook sends
again stores nothing new — in one transaction, before the webhook answers 200. The Graph
reads happen afterwards, in the background (:mod:`.reader`).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from leadrelay.engine.clock import Clock
from leadrelay.engine.errors import BadInput, NotFound, Refused
from leadrelay.engine.ledger import FacebookLead, FacebookPage, FacebookReadState, Ledger

from .notification import LeadChange, parse
from .pages import Pages
from .signature import HEADER, verify

log = logging.getLogger(__name__)

_LEADS = cast(Table, FacebookLead.__table__)
#: One row per new lead; a leadgen_id received before inserts nothing and returns nothing.
#: Built once per dialect (intake's statements are too: webhook acceptance is per lead).
_INSERT = {
    name: insert(_LEADS).on_conflict_do_nothing(index_elements=["leadgen_id"])
    .returning(_LEADS.c.id, _LEADS.c.state)
    for name, insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}
#: The longest challenge echoed back (Facebook sends an integer).
MAX_CHALLENGE = 200


@dataclass(frozen=True)
class Receipt:
    """What one notification stored."""

    #: ``leadgen`` changes it carried (every entry, every change).
    leads: int
    #: New leads stored now.
    stored: int = 0
    #: Of those, the rows waiting for their Graph read (the others are unroutable).
    reading: tuple[int, ...] = ()
    #: Of those, for a Facebook form mapped to no leadrelay form.
    unroutable: int = 0
    #: Leads received before (Facebook sends again until it gets a 200).
    duplicates: int = 0
    #: Changes of another field than ``leadgen``.
    skipped: int = 0
    #: Pages of the notification connected to no account (their changes are not stored).
    unknown_pages: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        """The webhook's answer body."""
        return {"leads": self.leads, "stored": self.stored, "unroutable": self.unroutable,
                "duplicates": self.duplicates, "skipped": self.skipped,
                "unknown_pages": list(self.unknown_pages)}


class Webhook:
    """Answers the handshake and stores notifications."""

    def __init__(self, ledger: Ledger, pages: Pages, clock: Clock,
                 queued: Callable[[], bool]) -> None:
        self.ledger, self.pages, self.clock = ledger, pages, clock
        self._queued = queued

    def handshake(self, mode: str | None, verify_token: str | None,
                  challenge: str | None) -> str:
        """The challenge to echo when ``verify_token`` is a connection's; :class:`Refused`
        otherwise."""
        if mode != "subscribe":
            raise Refused("hub.mode: expected 'subscribe'", field="hub.mode")
        if not challenge or len(challenge) > MAX_CHALLENGE or not challenge.isprintable():
            raise BadInput("hub.challenge: required", field="hub.challenge")
        if not verify_token:
            raise Refused("hub.verify_token: required", field="hub.verify_token")
        given = verify_token.encode()
        matched = False
        for row in self.pages.list():  # every token compared, in constant time each
            token = self.pages.secrets(row)["verify_token"].encode()
            matched = hmac.compare_digest(given, token) or matched
        if not matched:
            raise Refused("hub.verify_token: is not the verify token of a connected page",
                          field="hub.verify_token")
        return challenge

    def receive(self, body: bytes, signature: str | None) -> Receipt:
        """Verify and store one notification (see the module docstring).

        :raises Refused: no signature, or one that no connected page's app secret makes.
        :raises NotJson: the body is not JSON; :raises BadInput: not a notification.
        :raises NotFound: none of its pages is connected.
        """
        if not signature:
            raise Refused(f"{HEADER}: missing: a notification must be signed", field=HEADER)
        note = parse(body)
        wanted = set(note.pages) | {c.page_id for c in note.leads}
        with self.ledger.session() as s:
            rows = list(s.scalars(select(FacebookPage).where(FacebookPage.page_id.in_(wanted))))
        if not rows:
            first = note.pages[0] if note.pages else None
            if first is None:
                raise BadInput("entry: names no page", field="entry")
            raise NotFound(f"entry[0].id: page {first} is not connected to leadrelay",
                           field="entry[0].id")
        signed = {r.page_id: r for r in rows
                  if verify(body, signature, self.pages.secrets(r)["app_secret"])}
        if not signed:
            raise Refused(f"{HEADER}: does not match the body signed with the app secret of "
                          f"page {rows[0].page_id}", field=HEADER)
        unknown = tuple(sorted(wanted - {r.page_id for r in rows}))
        if unknown:
            log.warning("Facebook notification for pages connected to no account: %s",
                        ", ".join(unknown))
        changes = _unique(c for c in note.leads if c.page_id in signed)
        reading, stored = self._store(changes, signed)
        return Receipt(
            leads=len(note.leads), stored=stored, reading=reading,
            unroutable=stored - len(reading),
            duplicates=len(note.leads) - stored
            - sum(1 for c in note.leads if c.page_id not in signed),
            skipped=note.skipped, unknown_pages=unknown,
        )

    def _store(self, changes: list[LeadChange],
               pages: dict[str, FacebookPage]) -> tuple[tuple[int, ...], int]:
        """Insert a row per new lead; (ids of those waiting for a read, how many new)."""
        if not changes:
            return (), 0
        now = self.clock.now()
        queued = now if self._queued() else None
        rows = []
        for c in changes:
            page = pages[c.page_id]
            mapped = c.form_id is not None and c.form_id in page.forms
            rows.append({
                "connection_id": page.id, "leadgen_id": c.leadgen_id, "page_id": c.page_id,
                "facebook_form_id": c.form_id, "ad_id": c.ad_id, "adgroup_id": c.adgroup_id,
                "created_time": c.created_time,
                "state": (FacebookReadState.READING if mapped
                          else FacebookReadState.UNROUTABLE).value,
                "attempts": 0, "next_due_at": now if mapped else None,
                "queued_for": queued if mapped else None,
                "last_reason": None if mapped else unmapped_reason(c.form_id, page),
                "received_at": now, "finished_at": None if mapped else now,
            })
        statement = _INSERT[self.ledger.dialect]
        with self.ledger.transaction() as conn:
            new = list(conn.execute(statement, rows)) if len(rows) > 1 else list(
                conn.execute(statement, rows[0]))
        reading = tuple(i for i, state in new if state == FacebookReadState.READING.value)
        if len(new) > len(reading):
            log.warning("%d Facebook lead(s) of unmapped forms stored as unroutable",
                        len(new) - len(reading))
        return reading, len(new)


def unmapped_reason(form_id: str | None, page: FacebookPage) -> str:
    """Why a lead of ``form_id`` waits: its Facebook form goes to no leadrelay form."""
    which = f"Facebook form {form_id}" if form_id else "a lead without a form id"
    return (f"{which} of page {page.page_id} is mapped to no leadrelay form (or to one "
            "deleted since): map it "
            f"(leadrelay facebook update {page.id} --form {form_id or 'FB_FORM_ID'}=FORM_ID) "
            "and the lead is read and routed")


def _unique(changes: Iterable[LeadChange]) -> list[LeadChange]:
    """One change per ``leadgen_id`` (a notification may name a lead twice)."""
    seen: dict[str, LeadChange] = {}
    for c in changes:
        seen.setdefault(c.leadgen_id, c)
    return list(seen.values())
