"""The Facebook Lead Ads source, as the engine carries it: ``app.facebook``.

It puts the pieces together — page connections (:mod:`.pages`), the webhook
(:mod:`.webhook`), the background Graph reads (:mod:`.reader`) — over the engine's
ledger, clock, secrets box, intake and broker. The reads run on the delivery workers,
announced by id like deliveries (``leadrelay.facebook_read``); the scheduler's sweep
re-announces what a lost message left behind.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

import dramatiq
from sqlalchemy import func, select

from leadrelay.engine.broker import QUEUE, RETRY_QUEUE
from leadrelay.engine.errors import BadInput
from leadrelay.engine.intake import Accepted
from leadrelay.engine.ledger import FacebookLead, FacebookPage, FacebookReadState
from leadrelay.engine.ledger.models import LeadSource

from .graph import Graph, GraphSettings
from .pages import Pages, describe_page
from .reader import GraphReader, ReadResult
from .webhook import Receipt, Webhook

if TYPE_CHECKING:
    from leadrelay.engine.app import Leadrelay

log = logging.getLogger(__name__)

READ_ACTOR = "leadrelay.facebook_read"
READ_RETRY_ACTOR = "leadrelay.facebook_read_retry"
MAX_LISTED = 1000


class FacebookSource:
    """Facebook Lead Ads for one engine: setup, webhook, Graph reads, reporting."""

    def __init__(self, app: Leadrelay, graph: GraphSettings | None = None) -> None:
        self.app = app
        self.settings = graph or GraphSettings.from_env()
        self.graph = Graph(self.settings, egress=app.egress)
        self.pages = Pages(app.ledger, app.box, app.clock)
        self.webhook = Webhook(app.ledger, self.pages, app.clock, lambda: app.queued)
        self.reader = GraphReader(app.ledger, self.pages, self.graph, app.clock,
                                  submit=self._submit, announce=self._announce,
                                  queued=lambda: app.queued)
        self._actor = dramatiq.actor(actor_name=READ_ACTOR, queue_name=QUEUE,
                                     broker=app.broker)(self._read_message)
        self._retry_actor = dramatiq.actor(actor_name=READ_RETRY_ACTOR, queue_name=RETRY_QUEUE,
                                           broker=app.broker)(self._read_message)

    # -- setup ----------------------------------------------------------------------

    def connect(self, account_id: int, page_id: Any, **settings: Any) -> FacebookPage:
        """Connect a Facebook page to an account (see :meth:`.pages.Pages.connect`)."""
        return self.pages.connect(account_id, page_id, **settings)

    def update(self, connection_id: int, *, scope: int | None = None,
               **changes: Any) -> FacebookPage:
        """Change a connection (``actor=`` for the audit trail); leads of Facebook forms it
        now maps, stored unroutable until now, are read and routed."""
        row, moved = self.pages.update(connection_id, scope=scope, **changes)
        if moved:
            self.reader.read_again(connection_id=row.id,
                                   states=(FacebookReadState.UNROUTABLE,),
                                   facebook_forms=list(row.forms))
        return row

    def describe(self, row: FacebookPage) -> dict[str, Any]:
        """A connection as shown to users (secrets masked)."""
        return describe_page(row, public_url=self.app.settings.public_url)

    # -- the webhook ----------------------------------------------------------------

    def handshake(self, mode: str | None, verify_token: str | None,
                  challenge: str | None) -> str:
        """The subscription handshake: the challenge, when the token is a connection's."""
        return self.webhook.handshake(mode, verify_token, challenge)

    def receive(self, body: bytes, signature: str | None) -> Receipt:
        """Verify and store a notification, then have its leads read in the background."""
        receipt = self.webhook.receive(body, signature)
        if receipt.reading and self.app.queued:
            self._announce(list(receipt.reading), None)
        return receipt

    # -- reading --------------------------------------------------------------------

    def read(self, row_id: int) -> ReadResult | None:
        """Read one stored notification now, if it is due."""
        return self.reader.read(row_id)

    def read_due(self, *, limit: int = 1000) -> list[ReadResult]:
        """Read every due notification once, in this thread."""
        return self.reader.read_due(limit=limit)

    def sweep(self) -> int:
        """Announce due reads whose message was lost; how many."""
        return self.reader.sweep()

    def read_again(self, *, connection_id: int | None = None,
                   scope: int | None = None) -> list[int]:
        """Put the reads that gave up (``not_read``) back to be read now."""
        if connection_id is not None:
            self.pages.get(connection_id, scope=scope)
        return self.reader.read_again(connection_id=connection_id, account_id=scope)

    def leads(self, *, account_id: int | None = None, state: str | None = None,
              connection_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The notified leads, newest first: where each read stands, and why."""
        if state is not None and state not in {s.value for s in FacebookReadState}:
            known = ", ".join(s.value for s in FacebookReadState)
            raise BadInput(f"state: unknown state {state!r} (known: {known})", field="state")
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LISTED:
            raise BadInput(f"limit: between 1 and {MAX_LISTED}", field="limit")
        query = (select(FacebookLead, FacebookPage.account_id)
                 .join(FacebookPage, FacebookPage.id == FacebookLead.connection_id)
                 .order_by(FacebookLead.id.desc()).limit(limit))
        if account_id is not None:
            query = query.where(FacebookPage.account_id == account_id)
        if state is not None:
            query = query.where(FacebookLead.state == state)
        if connection_id is not None:
            query = query.where(FacebookLead.connection_id == connection_id)
        with self.app.ledger.session() as s:
            return [describe_lead(row, account) for row, account in s.execute(query)]

    def count(self, state: FacebookReadState, *, account_id: int | None = None) -> int:
        """How many notified leads are in ``state`` (of one account)."""
        query = (select(func.count()).select_from(FacebookLead)
                 .join(FacebookPage, FacebookPage.id == FacebookLead.connection_id)
                 .where(FacebookLead.state == state.value))
        if account_id is not None:
            query = query.where(FacebookPage.account_id == account_id)
        with self.app.ledger.session() as s:
            return int(s.scalar(query) or 0)

    def close(self) -> None:
        """Close the Graph session."""
        self.graph.close()

    # -- plumbing -------------------------------------------------------------------

    def _submit(self, form_id: int, payload: dict[str, Any], leadgen_id: str) -> Accepted:
        return self.app.submit(form_id, payload, source=LeadSource.FACEBOOK.value,
                               external_id=leadgen_id)

    def _announce(self, ids: list[int], at: datetime | None) -> None:
        try:
            if at is None:
                self._actor.send(ids)
                return
            ms = int((at - self.app.clock.now()).total_seconds() * 1000)
            self._retry_actor.send_with_options(args=(ids,), delay=ms if ms > 0 else None)
        except Exception:  # the ledger has them: the sweep announces them again
            log.warning("could not announce Facebook reads %s", ids, exc_info=True)

    def _read_message(self, ids: list[int]) -> None:
        for row_id in ids:
            try:
                self.reader.read(row_id)
            except Exception:  # its lease runs out and the sweep tries it again
                log.exception("Facebook read %s failed", row_id)


def describe_lead(row: FacebookLead, account_id: int) -> dict[str, Any]:
    """One notified lead as listed."""
    return {
        "id": row.id,
        "account_id": account_id,
        "connection_id": row.connection_id,
        "leadgen_id": row.leadgen_id,
        "page_id": row.page_id,
        "facebook_form_id": row.facebook_form_id,
        "ad_id": row.ad_id,
        "state": row.state,
        "attempts": row.attempts,
        "next_due_at": _iso(row.next_due_at),
        "reason": row.last_reason,
        "form_id": row.form_id,
        "lead_id": row.lead_id,
        "received_at": _iso(row.received_at),
        "finished_at": _iso(row.finished_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
