"""Leads posted to a form from outside: by browsers (public key) and by external systems.

The rules of a post live here, once, for every caller: the form must exist (for
an external system: be one of its account's forms) and be active, a browser's page
must be of an origin the form allows, the lead must carry the form's required
fields. Then intake makes the lead durable with its deliveries, and only then is
there an answer.

An external system may retry a post safely. With an ``Idempotency-Key`` the answer
is stored in the very transaction that stores the leads: a retry finds either
nothing (the first post never happened) or the leads and their answer, which it
gets again unchanged. Without one, a lead whose ``external_id`` the form already
has from that source is not stored again; its entry in the answer is the lead
already there.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from sqlalchemy import Table, and_, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from .delivery import Claimed
from .errors import BadInput, Conflict, NotFound, Refused
from .forms import check_required, looks_like_public_key, origin_allowed
from .intake import (
    Accepted,
    LeadIn,
    Target,
    _check,
    _Checked,
    validate_payload,
    validate_source,
)
from .ledger import Delivery, DeliveryState, Form, Integration, Lead
from .ledger.models import IdempotentPost, LeadSource
from .realtime import RealtimeResult

if TYPE_CHECKING:
    from .app import Leadrelay

#: The most leads one external post may carry.
MAX_BATCH = 500
#: HTTP status of each kind of answer (the API's contract, stored with idempotent answers):
#: every real-time delivery finished in its budget; stored and queued; nothing new stored.
STATUS = {"answered": 201, "accepted": 202, "duplicate": 200}
#: Seconds the embed waits beyond the form's longest real-time budget before it stops
#: waiting for an answer, and the least it waits at all (a form with no real-time CRM).
CLIENT_MARGIN, CLIENT_FLOOR = 3.0, 6.0


@dataclass(frozen=True)
class FormTarget:
    """What a post needs to know of its form."""

    id: int
    account_id: int
    active: bool
    allowed_origins: tuple[str, ...]
    required_fields: tuple[str, ...]
    thank_you_url: str | None


@dataclass(frozen=True)
class ExternalLead:
    """One lead of an external post: its fields and, optionally, the sender's own id."""

    payload: Any
    external_id: str | None = None


@dataclass(frozen=True)
class Posted:
    """The answer to a post: what it is (``answered``, ``accepted``, ``duplicate``), its
    JSON body, and whether it is the stored answer of an earlier identical post."""

    kind: str
    body: dict[str, Any]
    replayed: bool = False
    accepted: tuple[Accepted, ...] = field(default=(), repr=False)
    #: Each real-time delivery's state when the answer was made.
    realtime: tuple[RealtimeResult, ...] = ()

    @property
    def status(self) -> int:
        """The HTTP status this answer goes out with."""
        return STATUS[self.kind]


def request_hash(form_id: int, body: Any) -> str:
    """A fingerprint of an external post, to tell a retry from another post with the same key."""
    text = json.dumps([form_id, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def delivery_entries(accepted: Accepted) -> list[dict[str, Any]]:
    """One answer entry per delivery of a lead just stored: all queued."""
    pairs = accepted.deliveries()
    return [
        {"delivery_id": d, "integration_id": i, "state": "queued", "outcome": None,
         "crm_reference": None, "reason": None}
        for i, d in pairs
    ]


class _ExternalPost(NamedTuple):
    """Store an external post's new leads (and its idempotent answer) in one transaction."""

    account_id: int
    form_id: int
    source: str
    leads: list[_Checked]
    key: str | None
    request_hash: str
    batch: bool


class _PagePost(NamedTuple):
    """A page's lead (fields valid already) to its form's public key: the form is read,
    checked and written to in one transaction."""

    public_key: str
    fields: dict[str, Any]
    origin: str | None
    queued: bool


class _Written(NamedTuple):
    """A page's post stored: its form, its lead, and the real-time deliveries claimed
    with it (delivery id → the claim)."""

    form: FormTarget
    accepted: Accepted
    claimed: dict[int, Claimed]


class Posts:
    """Form posts and external posts, checked against their form, then accepted."""

    def __init__(self, app: Leadrelay) -> None:
        self.app = app
        self.ledger = app.ledger
        self.intake = app.intake
        self.ledger.writes.handle(_ExternalPost, self._write_posts)
        self.ledger.writes.handle(_PagePost, self._write_page_posts)

    # -- finding the form -------------------------------------------------------------

    def form_by_key(self, public_key: str) -> FormTarget:
        """The form a public key opens; :class:`NotFound` for an unknown or rotated key."""
        _check_key(public_key)
        with self.ledger.transaction() as conn:
            row = conn.execute(_FORM_BY_KEY, {"key": public_key}).first()
        if row is None:
            raise _unknown_key()
        return _target(row)

    def form_by_id(self, form_id: int, *, scope: int | None) -> FormTarget:
        """A form by id; with ``scope``, only one of that account."""
        with self.ledger.transaction() as conn:
            row = conn.execute(_FORM_BY_ID, {"id": form_id}).first()
        if row is None or (scope is not None and row.account_id != scope):
            raise NotFound(f"form {form_id} does not exist", field="form_id")
        return _target(row)

    def check_origin(self, form: FormTarget, origin: str | None) -> None:
        """Refuse a browser post from a page of an origin the form does not allow."""
        if origin is not None and not origin_allowed(form.allowed_origins, origin):
            raise Refused(
                f"Origin: pages of {origin[:200]!r} may not post to this form "
                "(add the origin to the form's allowed_origins)",
                field="Origin",
            )

    # -- browsers ---------------------------------------------------------------------

    def post_to_form(
        self, public_key: str, payload: Any, *, origin: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[FormTarget, Posted]:
        """A lead posted by a page to a form's public key; durable when this returns.

        With ``idempotency_key`` (the embed makes one per submission in the page), a
        post sent again — after a timeout, a lost answer, a second click — stores
        nothing new and gets the first post's answer. The answer's deliveries carry
        what a page may know of them (:mod:`.lead_status`), never more.
        """
        _check_key(public_key)
        try:
            fields = validate_payload(payload)
        except BadInput:
            self._check_page_post(public_key, origin)  # its form's refusal comes first
            raise
        if idempotency_key is None:
            # The form is read, checked and written to in the lead's own transaction:
            # one round of the ledger for a page's post (docs/benchmarks.md, API intake).
            written = self.ledger.writes(_PagePost(public_key, fields, origin, self.app.queued))
            if isinstance(written, Exception):
                raise written
            form, accepted, claimed = cast(_Written, written)
            self.app.announce([accepted], realtime=True)
            posted = self._realtime(self._answer_one(accepted), accepted, claimed)
        else:
            form = self._check_page_post(public_key, origin)
            check_required(form.required_fields, fields)
            posted = self._idempotent_page_post(form, fields, idempotency_key)
        return form, self._public(posted)

    def _check_page_post(self, public_key: str, origin: str | None) -> FormTarget:
        """The form of a page's post, which must exist, allow its origin and be active."""
        form = self.form_by_key(public_key)
        self.check_origin(form, origin)
        _open(form)
        return form

    def page_settings(self, public_key: str, origin: str | None) -> dict[str, Any]:
        """What the embed needs to know of a form before a visitor submits: where the
        thank-you goes, and how long a post may take (its longest real-time budget)."""
        form = self._check_page_post(public_key, origin)
        with self.ledger.transaction() as conn:
            budget = conn.execute(_LONGEST_BUDGET, {"form_id": form.id}).scalar()
            message = conn.execute(_THANK_YOU_MESSAGE, {"id": form.id}).scalar()
        longest = float(budget or 0.0)
        return {"thank_you_url": form.thank_you_url, "thank_you_message": message,
                "required_fields": list(form.required_fields),
                "longest_realtime_budget": longest,
                "client_timeout": max(longest + CLIENT_MARGIN, CLIENT_FLOOR)}

    def _idempotent_page_post(self, form: FormTarget, fields: dict[str, Any],
                              key: str) -> Posted:
        if not _PAGE_KEY.fullmatch(key):
            raise BadInput("Idempotency-Key: 8 to 64 letters, digits, '-' or '_'",
                           field="Idempotency-Key")
        checked = _check(LeadIn(form.id, fields, LeadSource.FORM.value, None), "payload",
                         self.app.queued)
        # A page's keys live apart from the account's external keys: they cannot clash.
        stored_key = f"page:{form.id}:{key}"
        op = _ExternalPost(form.account_id, form.id, LeadSource.FORM.value, [checked],
                           stored_key, request_hash(form.id, fields), False)
        try:
            posted = cast(Posted, self.ledger.writes(op))
        except IntegrityError:  # the same post, stored by another request meanwhile
            posted = cast(Posted, self.ledger.writes(op))
        self.app.announce(posted.accepted, realtime=True)
        if posted.accepted and posted.accepted[0].realtime:
            posted = self._realtime(posted, posted.accepted[0])
            with self.ledger.transaction() as conn:
                conn.execute(_UPDATE_STORED.values(status=posted.status, answer=posted.body),
                             {"a": form.account_id, "k": stored_key})
        return posted

    def _public(self, posted: Posted) -> Posted:
        """A page's answer: its deliveries described as a page may see them."""
        lead_id = posted.body.get("lead_id")
        if not isinstance(lead_id, int):
            return posted
        labels = {d: label for a in posted.accepted
                  for d, label in zip(a.delivery_ids, a.integration_labels, strict=False)}
        attempted = {r.delivery_id: (r.decided_by, r.attempts)
                     for r in posted.realtime if r.finished}
        entries = self.app.lead_status.describe(lead_id, posted.body.get("deliveries", ()),
                                                labels, attempted)
        body = {"lead_id": lead_id, "deliveries": entries,
                "status_token": self.app.lead_status.token(lead_id)}
        return replace(posted, body=body)

    # -- external systems -------------------------------------------------------------

    def post_external(
        self,
        form_id: int,
        leads: Sequence[ExternalLead],
        *,
        scope: int,
        source: str | None = None,
        idempotency_key: str | None = None,
        fingerprint: str = "",
        batch: bool = False,
    ) -> Posted:
        """One lead, or a batch of up to :data:`MAX_BATCH`, from an external system."""
        form = self.form_by_id(form_id, scope=scope)
        _open(form)
        if not leads:
            raise BadInput("leads: at least one lead", field="leads")
        if len(leads) > MAX_BATCH:
            raise BadInput(f"leads: at most {MAX_BATCH} in one post, got {len(leads)}",
                           field="leads")
        if idempotency_key is not None and (
            not idempotency_key.strip() or len(idempotency_key) > 200
            or not idempotency_key.isprintable()
        ):
            raise BadInput("Idempotency-Key: 1 to 200 printable characters",
                           field="Idempotency-Key")
        kind = validate_source(source or LeadSource.EXTERNAL.value)
        queued = self.app.queued
        checked: list[_Checked] = []
        for i, lead in enumerate(leads):
            where = f"leads[{i}]" if batch else ""
            external_id = lead.external_id
            if external_id is not None and (
                not isinstance(external_id, str) or not external_id.strip()
                or len(external_id) > 200
            ):
                name = f"{where}.external_id" if where else "external_id"
                raise BadInput(f"{name}: 1 to 200 characters", field=name)
            one = _check(LeadIn(form.id, lead.payload, kind, external_id),
                         f"{where}.fields" if where else "fields", queued)
            try:
                check_required(form.required_fields, one.payload)
            except BadInput as exc:
                name = f"{where}.fields.{exc.field}" if where else f"fields.{exc.field}"
                raise BadInput(f"{name}: required by this form", field=name) from None
            checked.append(one)
        op = _ExternalPost(form.account_id, form.id, kind, checked, idempotency_key,
                           fingerprint, batch)
        try:
            posted = cast(Posted, self.ledger.writes(op))
        except IntegrityError:
            # Another process stored the same external id or key at the same moment:
            # the second try finds what it stored, and stores nothing.
            posted = cast(Posted, self.ledger.writes(op))
        single = not batch and len(posted.accepted) == 1
        self.app.announce(posted.accepted, realtime=single)
        if single and posted.accepted[0].realtime:
            posted = self._realtime(posted, posted.accepted[0])
            if idempotency_key is not None:
                with self.ledger.transaction() as conn:
                    conn.execute(_UPDATE_STORED.values(status=posted.status, answer=posted.body),
                                 {"a": form.account_id, "k": idempotency_key})
        return posted

    # -- answers ----------------------------------------------------------------------

    def _realtime(self, posted: Posted, accepted: Accepted,
                  claimed: Mapping[int, Claimed] | None = None) -> Posted:
        """Send the lead's real-time deliveries within their budgets; the answer then says
        where each stands, and is ``answered`` when every one finished in its budget."""
        if not accepted.realtime:
            return posted
        results = self.app.deliver_realtime(accepted, claimed)
        by_id = {r.delivery_id: r for r in results}
        entries = [
            {**entry, "state": r.state, "outcome": r.outcome, "crm_reference": r.crm_reference,
             "reason": r.reason} if (r := by_id.get(entry["delivery_id"])) else entry
            for entry in posted.body["deliveries"]
        ]
        kind = "answered" if all(r.finished for r in results) else "accepted"
        return replace(posted, kind=kind, body={**posted.body, "deliveries": entries},
                       realtime=tuple(results))

    def _answer_one(self, accepted: Accepted) -> Posted:
        body = {"lead_id": accepted.lead_id, "deliveries": delivery_entries(accepted)}
        return Posted("accepted", body, accepted=(accepted,))

    def _write_page_posts(self, conn: Any, ops: list[_PagePost]) -> list[_Written | Exception]:
        """Store pages' leads: each post's form and its active integrations read in one
        query, the post checked against them (a refusal is that post's result, not
        raised: the other posts of the transaction go on), the valid ones stored, and
        their real-time deliveries claimed for sending (when this process sends in real
        time already: the sender is never built inside a transaction)."""
        forms: dict[str, FormTarget] = {}
        targets: dict[int, list[Target]] = {}
        keys = sorted({op.public_key for op in ops})
        rows = (conn.execute(_FORM_WITH_TARGETS, {"key": keys[0]}) if len(keys) == 1
                else conn.execute(_FORMS_WITH_TARGETS, {"keys": keys}))
        for row in rows:
            of_row = forms.setdefault(row.public_key, _target(row))
            found = targets.setdefault(of_row.id, [])
            if row.integration_id is not None:  # else the form has no active integration
                found.append(Target(row.integration_id, row.realtime, row.realtime_budget,
                                    row.name, row.connector))
        results: list[_Written | Exception | None] = []
        valid: list[tuple[int, FormTarget, _Checked]] = []  # where, its form, the lead
        for op in ops:
            try:
                form = forms.get(op.public_key)
                if form is None:
                    raise _unknown_key()
                self.check_origin(form, op.origin)
                _open(form)
                check_required(form.required_fields, op.fields)
            except (NotFound, Refused, BadInput) as exc:
                results.append(exc)
                continue
            lead = LeadIn(form.id, op.fields, LeadSource.FORM.value)
            valid.append((len(results), form, _Checked(lead, op.fields, lead.source, op.queued)))
            results.append(None)
        if valid:
            stored = self.intake._store(conn, [c for _, _, c in valid], targets=targets)
            sender = self.app.realtime_if_built()
            claimed = sender.claim_in(conn, stored) if sender is not None else {}
            for (i, form, _), accepted in zip(valid, stored, strict=True):
                mine = {d: claimed[d] for d, _ in accepted.realtime if d in claimed}
                results[i] = _Written(form, accepted, mine)
        return cast(list[_Written | Exception], results)

    def _write_posts(self, conn: Any, ops: list[_ExternalPost]) -> list[Posted]:
        return [self._write_post(conn, op) for op in ops]

    def _write_post(self, conn: Any, op: _ExternalPost) -> Posted:
        if op.key is not None:
            stored = conn.execute(_STORED, {"account_id": op.account_id, "key": op.key}).first()
            if stored is not None:
                if stored.request_hash != op.request_hash:
                    raise Conflict(
                        "Idempotency-Key: already used for a different post "
                        "(a retry must send the same form and body)",
                        field="Idempotency-Key",
                    )
                kind = {v: k for k, v in STATUS.items()}.get(stored.status, "accepted")
                return Posted(kind, dict(stored.answer), replayed=True)
        known = self._known_leads(conn, op)
        fresh: list[_Checked] = []
        seen: set[str] = set()
        for c in op.leads:
            ext = c.lead.external_id
            if ext is None or (ext not in known and ext not in seen):
                fresh.append(c)
                if ext is not None:
                    seen.add(ext)
        stored_now = self.intake._store(conn, fresh) if fresh else []
        by_ext = {c.lead.external_id: a for c, a in zip(fresh, stored_now, strict=True)
                  if c.lead.external_id is not None}
        fresh_ids = {id(c): a for c, a in zip(fresh, stored_now, strict=True)}
        entries: list[dict[str, Any]] = []
        for c in op.leads:
            accepted = fresh_ids.get(id(c))
            if accepted is not None:
                entries.append({"lead_id": accepted.lead_id, "external_id": c.lead.external_id,
                                "duplicate": False, "deliveries": delivery_entries(accepted)})
            elif c.lead.external_id in by_ext:  # the same id twice in one batch
                first = by_ext[c.lead.external_id]
                entries.append({"lead_id": first.lead_id, "external_id": c.lead.external_id,
                                "duplicate": True, "deliveries": delivery_entries(first)})
            else:
                entries.append(known[cast(str, c.lead.external_id)])
        kind = "accepted" if stored_now else "duplicate"
        body: dict[str, Any] = {"leads": entries} if op.batch else entries[0]
        if op.key is not None:
            conn.execute(_STORE, {
                "account_id": op.account_id, "key": op.key, "request_hash": op.request_hash,
                "status": STATUS[kind], "answer": body, "created_at": self.app.clock.now(),
            })
        return Posted(kind, body, accepted=tuple(stored_now))

    def _known_leads(self, conn: Any, op: _ExternalPost) -> dict[str, dict[str, Any]]:
        """Answer entries of the leads of this post the form already has (by external id)."""
        ids = sorted({c.lead.external_id for c in op.leads if c.lead.external_id is not None})
        if not ids:
            return {}
        leads = {
            row.id: row.external_id
            for row in conn.execute(
                _KNOWN, {"form_id": op.form_id, "source": op.source, "ids": ids}
            )
        }
        entries = {
            ext: {"lead_id": lead_id, "external_id": ext, "duplicate": True, "deliveries": []}
            for lead_id, ext in leads.items()
        }
        if leads:
            for d in conn.execute(_DELIVERIES_OF, {"lead_ids": list(leads)}):
                entries[leads[d.lead_id]]["deliveries"].append(_entry(d))
        return entries


def _entry(d: Any) -> dict[str, Any]:
    """The answer entry of a delivery as the ledger has it now."""
    state = "queued" if d.state == DeliveryState.PENDING.value else d.state
    return {"delivery_id": d.id, "integration_id": d.integration_id, "state": state,
            "outcome": d.last_outcome, "crm_reference": d.crm_reference,
            "reason": d.last_reason}


def _check_key(public_key: Any) -> None:
    if not isinstance(public_key, str) or not looks_like_public_key(public_key):
        raise _unknown_key()


def _unknown_key() -> NotFound:
    return NotFound("no form has this key (a key that was rotated no longer works)",
                    field="form_key")


def _open(form: FormTarget) -> None:
    if not form.active:
        raise Refused("form: this form is inactive and accepts no leads", field="form")


def _target(row: Any) -> FormTarget:
    return FormTarget(row.id, row.account_id, bool(row.active),
                      tuple(row.allowed_origins or ()), tuple(row.required_fields or ()),
                      row.thank_you_url)


# -- statements, built once --------------------------------------------------------------

_F, _L = cast(Table, Form.__table__), cast(Table, Lead.__table__)
_D, _P = cast(Table, Delivery.__table__), cast(Table, IdempotentPost.__table__)
_I = cast(Table, Integration.__table__)
_FORM = select(_F.c.id, _F.c.account_id, _F.c.active, _F.c.allowed_origins,
               _F.c.required_fields, _F.c.thank_you_url)
_FORM_BY_KEY = _FORM.where(_F.c.public_key == bindparam("key"))
_FORM_BY_ID = _FORM.where(_F.c.id == bindparam("id"))
#: Forms by public key, each with its active integrations in id order (none: one row
#: of NULLs), as a page's post reads them in the transaction that stores its lead.
_WITH_TARGETS = (
    _FORM.add_columns(_F.c.public_key, _I.c.id.label("integration_id"), _I.c.realtime,
                      _I.c.realtime_budget, _I.c.name, _I.c.connector)
    .select_from(_F.outerjoin(_I, and_(_I.c.form_id == _F.c.id, _I.c.active.is_(True))))
    .order_by(_I.c.id)
)
_FORMS_WITH_TARGETS = _WITH_TARGETS.where(_F.c.public_key.in_(bindparam("keys", expanding=True)))
#: The same for one key (the usual case: no list to expand on each call).
_FORM_WITH_TARGETS = _WITH_TARGETS.where(_F.c.public_key == bindparam("key"))
_THANK_YOU_MESSAGE = select(_F.c.thank_you_message).where(_F.c.id == bindparam("id"))
_LONGEST_BUDGET = select(func.max(_I.c.realtime_budget)).where(
    _I.c.form_id == bindparam("form_id"), _I.c.active.is_(True), _I.c.realtime.is_(True)
)
#: A page's idempotency key (the embed makes a random one per submission).
_PAGE_KEY = re.compile(r"[A-Za-z0-9_-]{8,64}")
_STORED = select(_P.c.request_hash, _P.c.status, _P.c.answer).where(
    and_(_P.c.account_id == bindparam("account_id"), _P.c.key == bindparam("key"))
)
_STORE = insert(_P)
_UPDATE_STORED = update(_P).where(
    and_(_P.c.account_id == bindparam("a"), _P.c.key == bindparam("k"))
)
_KNOWN = select(_L.c.id, _L.c.external_id).where(
    _L.c.form_id == bindparam("form_id"),
    _L.c.source == bindparam("source"),
    _L.c.external_id.in_(bindparam("ids", expanding=True)),
)
_DELIVERIES_OF = (
    select(_D.c.id, _D.c.lead_id, _D.c.integration_id, _D.c.state, _D.c.last_outcome,
           _D.c.crm_reference, _D.c.last_reason)
    .where(_D.c.lead_id.in_(bindparam("lead_ids", expanding=True)))
    .order_by(_D.c.id)
)
