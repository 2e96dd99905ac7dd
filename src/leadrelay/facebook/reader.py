"""The Graph reads, in the background: each stored notification becomes a lead.

A read claims its row (a conditional UPDATE: one reader at a time, a lease so a reader
that dies is replaced), reads the lead from the Graph API, and stores it through the
engine's intake as a lead of the mapped form with source ``facebook`` and the
``leadgen_id`` as its external id — from there it is routed like any lead of the form.
A failed read (Graph error 190, a 5xx, a timeout, an answer without ``field_data``) is
scheduled again by the engine's retry policy; when the policy gives up, the row is
``not_read``, in the failed collection with Graph's error as its reason, and
:meth:`GraphReader.read_again` puts it back. Nothing here is lost with a broker
message: :meth:`GraphReader.sweep` re-announces what is due from the ledger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from leadrelay.engine.clock import Clock
from leadrelay.engine.errors import BadInput, ValidationError
from leadrelay.engine.intake import Accepted
from leadrelay.engine.ledger import (
    FacebookLead,
    FacebookPage,
    FacebookReadState,
    Form,
    Lead,
    Ledger,
)
from leadrelay.engine.ledger.models import LeadSource
from leadrelay.engine.outcome import Outcome
from leadrelay.engine.retry import RetryPolicy, next_due

from .fields import lead_fields
from .graph import Graph, GraphFailure
from .pages import Pages
from .webhook import unmapped_reason

log = logging.getLogger(__name__)

#: How long a reader holds a row: past the Graph timeout, then another may take it.
LEASE = timedelta(seconds=120)
_READING = FacebookReadState.READING.value

#: Stores a lead: (form id, payload, leadgen id) → the accepted lead.
Submit = Callable[[int, dict[str, Any], str], Accepted]
#: Announces rows to read: (row ids, not before) to the workers.
Announce = Callable[[list[int], datetime | None], None]


@dataclass(frozen=True)
class ReadResult:
    """Where one read left its row."""

    row_id: int
    state: FacebookReadState
    lead_id: int | None = None
    reason: str | None = None
    next_due_at: datetime | None = None


class GraphReader:
    """Claims stored notifications, reads them from Graph, stores the leads."""

    def __init__(self, ledger: Ledger, pages: Pages, graph: Graph, clock: Clock, *,
                 submit: Submit, announce: Announce, queued: Callable[[], bool],
                 grace_seconds: float = 30.0) -> None:
        self.ledger, self.pages, self.graph, self.clock = ledger, pages, graph, clock
        self._submit, self._announce, self._queued = submit, announce, queued
        self.grace = timedelta(seconds=grace_seconds)

    def read(self, row_id: int) -> ReadResult | None:
        """Read one row now if it is due and nobody holds it; ``None`` otherwise."""
        claimed = self._claim(row_id)
        if claimed is None:
            return None
        row, page = claimed
        form_id = page.forms.get(row.facebook_form_id or "")
        if form_id is not None and self._deleted(form_id):
            form_id = None
        if form_id is None:
            reason = unmapped_reason(row.facebook_form_id, page)
            self._finish(row, FacebookReadState.UNROUTABLE, reason=reason)
            return ReadResult(row.id, FacebookReadState.UNROUTABLE, reason=reason)
        try:
            answer = self.graph.read_lead(row.leadgen_id, self.pages.secrets(page)[
                "page_access_token"])
            payload = _payload(answer, row, page)
            lead_id = self._store(form_id, payload, row.leadgen_id)
        except GraphFailure as failure:
            return self._failed(row, page, failure.outcome, failure.reason)
        except ValidationError as exc:
            return self._failed(row, page, Outcome.REJECTED, f"Graph answer: {exc}")
        except BadInput as exc:  # the form cannot take it (gone since it was mapped)
            return self._failed(row, page, Outcome.REJECTED, f"storing the lead: {exc}")
        self._finish(row, FacebookReadState.STORED, lead_id=lead_id, form_id=form_id)
        return ReadResult(row.id, FacebookReadState.STORED, lead_id=lead_id)

    def read_due(self, *, limit: int = 1000) -> list[ReadResult]:
        """Read every due row once, in this thread (tests, one-shot runs)."""
        now = self.clock.now()
        with self.ledger.session() as s:
            ids = list(s.scalars(select(FacebookLead.id).where(*_due(now))
                                 .order_by(FacebookLead.next_due_at).limit(limit)))
        return [r for r in map(self.read, ids) if r is not None]

    def sweep(self, *, batch: int = 1000) -> int:
        """Announce the due rows whose message is lost or late; how many."""
        now = self.clock.now()
        with self.ledger.session() as s:
            ids = list(s.scalars(
                select(FacebookLead.id).where(
                    *_due(now),
                    or_(FacebookLead.queued_for.is_(None),
                        FacebookLead.queued_for < now - self.grace),
                ).order_by(FacebookLead.next_due_at).limit(batch)
            ))
            if ids:
                s.execute(update(FacebookLead).where(FacebookLead.id.in_(ids))
                          .values(queued_for=now).execution_options(synchronize_session=False))
        if ids:
            self._announce(ids, None)
        return len(ids)

    def read_again(self, *, connection_id: int | None = None, account_id: int | None = None,
                   states: tuple[FacebookReadState, ...] = (FacebookReadState.NOT_READ,),
                   facebook_forms: list[str] | None = None) -> list[int]:
        """Put rows (``not_read`` ones by default) back to be read now; their ids."""
        now = self.clock.now()
        where: list[Any] = [FacebookLead.state.in_([s.value for s in states])]
        if connection_id is not None:
            where.append(FacebookLead.connection_id == connection_id)
        if account_id is not None:
            where.append(FacebookLead.connection_id.in_(
                select(FacebookPage.id).where(FacebookPage.account_id == account_id)))
        if facebook_forms is not None:
            where.append(FacebookLead.facebook_form_id.in_(facebook_forms))
        queued = now if self._queued() else None
        with self.ledger.session() as s:
            ids = list(s.scalars(select(FacebookLead.id).where(*where)))
            if ids:
                s.execute(update(FacebookLead).where(FacebookLead.id.in_(ids)).values(
                    state=_READING, attempts=0, next_due_at=now, queued_for=queued,
                    lease_until=None, finished_at=None,
                ).execution_options(synchronize_session=False))
        if ids and queued is not None:
            self._announce(ids, None)
        return ids

    # -- the steps of a read --------------------------------------------------------

    def _claim(self, row_id: int) -> tuple[FacebookLead, FacebookPage] | None:
        now = self.clock.now()
        with self.ledger.session() as s:
            taken = s.execute(
                update(FacebookLead).where(FacebookLead.id == row_id, *_due(now)).values(
                    attempts=FacebookLead.attempts + 1, lease_until=now + LEASE,
                    queued_for=None,
                ).execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            if not taken:
                return None
            row = s.get(FacebookLead, row_id, populate_existing=True)
            assert row is not None
            page = s.get(FacebookPage, row.connection_id)
            assert page is not None
        return row, page

    def _deleted(self, form_id: int) -> bool:
        """Whether the mapped form was deleted (archived) since: its leads go nowhere."""
        with self.ledger.session() as s:
            form = s.get(Form, form_id)
        return form is None or form.archived_at is not None

    def _store(self, form_id: int, payload: dict[str, Any], leadgen_id: str) -> int:
        """The lead's id, stored now — or before, by a reader that died before recording."""
        try:
            return self._submit(form_id, payload, leadgen_id).lead_id
        except IntegrityError:
            with self.ledger.session() as s:
                found = s.scalar(select(Lead.id).where(
                    Lead.form_id == form_id, Lead.source == LeadSource.FACEBOOK.value,
                    Lead.external_id == leadgen_id))
            if found is None:
                raise
            return found

    def _failed(self, row: FacebookLead, page: FacebookPage, outcome: Outcome,
                reason: str) -> ReadResult:
        now = self.clock.now()
        policy = RetryPolicy.parse(page.retry_policy)
        due = next_due(policy, row.attempts, outcome, now=now)
        if due is None:
            self._finish(row, FacebookReadState.NOT_READ, reason=reason)
            log.warning("Facebook lead %s not read: %s", row.leadgen_id, reason)
            return ReadResult(row.id, FacebookReadState.NOT_READ, reason=reason)
        queued = due if self._queued() else None
        self._finish(row, FacebookReadState.READING, reason=reason, due=due, queued=queued)
        if queued is not None:
            self._announce([row.id], due)
        return ReadResult(row.id, FacebookReadState.READING, reason=reason, next_due_at=due)

    def _finish(self, row: FacebookLead, state: FacebookReadState, *, reason: str | None = None,
                lead_id: int | None = None, form_id: int | None = None,
                due: datetime | None = None, queued: datetime | None = None) -> None:
        """Record the read under its claim (a reader whose lease was taken back records
        nothing: the claim's attempt number is part of the condition)."""
        now = self.clock.now()
        done = state is not FacebookReadState.READING
        with self.ledger.session() as s:
            s.execute(update(FacebookLead).where(
                FacebookLead.id == row.id, FacebookLead.state == _READING,
                FacebookLead.attempts == row.attempts,
            ).values(
                state=state.value, last_reason=reason, lead_id=lead_id, form_id=form_id,
                next_due_at=due, queued_for=queued, lease_until=None,
                finished_at=now if done else None,
            ).execution_options(synchronize_session=False))


def _due(now: datetime) -> tuple[Any, ...]:
    """Rows to read now: waiting, due, held by no live reader."""
    return (
        FacebookLead.state == _READING,
        FacebookLead.next_due_at <= now,
        or_(FacebookLead.lease_until.is_(None), and_(FacebookLead.lease_until < now)),
    )


def _payload(answer: dict[str, Any], row: FacebookLead, page: FacebookPage) -> dict[str, Any]:
    """The lead's fields (the page's field map over ``field_data``) and its Facebook ids."""
    if "field_data" not in answer:
        raise ValidationError("the Graph answer has no field_data", field="field_data")
    fields = lead_fields(answer["field_data"], page.field_map)
    ids = {
        "facebook_leadgen_id": row.leadgen_id,
        "facebook_page_id": row.page_id,
        "facebook_form_id": _text(answer.get("form_id")) or row.facebook_form_id,
        "facebook_ad_id": _text(answer.get("ad_id")) or row.ad_id,
        "facebook_adgroup_id": row.adgroup_id,
        "facebook_created_time": _text(answer.get("created_time")) or _unix(row.created_time),
    }
    return {**fields, **{k: v for k, v in ids.items() if v is not None}}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _unix(value: int | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat()
