"""What one account's digest of one window says, read from the ledger, bounded.

Two kinds of failure are counted, apart:

- **given up**: deliveries *not integrated* whose last attempt failed in the window (the
  failed collection, including those parked after attempts in doubt);
- **still retrying**: deliveries pending (or being sent) now, with a failed attempt in the
  window.

Beside them, **leads not routed**: Facebook Lead Ads leads whose Graph read gave up
(``not_read``, Graph's error as the reason) or whose Facebook form is mapped to no form
(``unroutable``), in the window — no delivery exists for them yet, so they are counted
apart, grouped per state and reason.

Both kinds of failed delivery are grouped per integration and, within one, per reason (the
delivery's last reason), each group with its count, first and last failure, and one sample
answer of the CRM (already redacted when it was recorded). However many failures a window holds, the
content has at most :data:`TOP_INTEGRATIONS` integrations and :data:`TOP_REASONS` reasons of
each kind per integration, with totals for the rest: the database counts, Python reads
a few dozen rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Subquery

from ..ledger import (
    IN_DOUBT,
    SENDING,
    Attempt,
    Delivery,
    DeliveryState,
    FacebookLead,
    FacebookPage,
    FacebookReadState,
    Form,
    Integration,
)
from ..outcome import Outcome
from .windows import Window

#: Integrations shown, at most; the others are totalled.
TOP_INTEGRATIONS = 10
#: Reasons shown per integration and kind, at most; the others are totalled.
TOP_REASONS = 3
#: Characters of a sample CRM answer shown.
SAMPLE_CHARS = 200
#: Characters of a reason shown.
REASON_CHARS = 300

_NOT_FAILED = (Outcome.ACCEPTED.value, SENDING)
_RETRYING_STATES = (DeliveryState.PENDING.value, DeliveryState.SENDING.value)


@dataclass(frozen=True)
class Sample:
    """One CRM answer for a reason: the last failed attempt of one delivery."""

    delivery_id: int
    attempt: int
    status: int | None
    body: str
    error: str | None


@dataclass(frozen=True)
class ReasonGroup:
    """Deliveries of one integration that failed for one reason."""

    outcome: str | None
    reason: str
    count: int
    first_at: datetime
    last_at: datetime
    sample: Sample | None


@dataclass(frozen=True)
class Tally:
    """One kind of failure of one integration: how many, when, and why (top reasons)."""

    count: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    reasons: tuple[ReasonGroup, ...] = ()
    #: Reasons not shown, and how many deliveries they hold.
    other_reasons: int = 0
    other_count: int = 0


@dataclass(frozen=True)
class IntegrationPart:
    """One integration's failures in the window."""

    id: int
    name: str
    form_id: int
    form_name: str
    given_up: Tally
    retrying: Tally
    #: No lead got through since its first failure in the window.
    failing_every_attempt: bool
    #: Its last delivered lead, ever (``None``: none yet).
    last_success: datetime | None

    @property
    def total(self) -> int:
        """Given up and still retrying."""
        return self.given_up.count + self.retrying.count

    @property
    def first_at(self) -> datetime:
        """Its first failure in the window."""
        return min(t.first_at for t in (self.given_up, self.retrying) if t.first_at)

    @property
    def last_at(self) -> datetime:
        """Its last failure in the window."""
        return max(t.last_at for t in (self.given_up, self.retrying) if t.last_at)


@dataclass(frozen=True)
class Unrouted:
    """Leads of one source that reached no form's deliveries, for one reason."""

    source: str
    #: ``not_read`` (the read from the source gave up) or ``unroutable`` (no form mapped).
    state: str
    reason: str
    count: int
    first_at: datetime
    last_at: datetime


@dataclass(frozen=True)
class DigestContent:
    """Everything one digest says (links and commands are the renderer's)."""

    account_id: int
    account_name: str
    window: Window
    #: When it was read: "still retrying" and "failing for" are as of then.
    built_at: datetime
    given_up: int
    retrying: int
    integrations: tuple[IntegrationPart, ...]
    #: Integrations with failures not shown, and their counts.
    other_integrations: int = 0
    other_given_up: int = 0
    other_retrying: int = 0
    #: Leads not routed in the window (top reasons), how many in all, and in hidden reasons.
    unrouted: tuple[Unrouted, ...] = ()
    unrouted_count: int = 0
    other_unrouted: int = 0

    @property
    def deliveries(self) -> int:
        """Failed deliveries the digest is about."""
        return self.given_up + self.retrying

    @property
    def total(self) -> int:
        """Everything the digest is about: failed deliveries and leads not routed."""
        return self.given_up + self.retrying + self.unrouted_count

    @property
    def first_at(self) -> datetime | None:
        """The window's first failure shown."""
        return min((i.first_at for i in self.integrations), default=None)

    @property
    def last_at(self) -> datetime | None:
        """The window's last failure shown."""
        return max((i.last_at for i in self.integrations), default=None)


def count_failures(s: Session, account_id: int, window: Window) -> int:
    """How many deliveries a digest of ``window`` would be about (cheap: counts only)."""
    total = 0
    for failures in (_given_up(account_id, window), _retrying(account_id, window),
                     _unrouted(account_id, window)):
        total += s.scalar(select(func.count()).select_from(failures)) or 0
    return total


def build_content(
    s: Session, *, account_id: int, account_name: str, window: Window, now: datetime
) -> DigestContent:
    """The digest of ``window`` for one account, as the ledger stands ``now``."""
    kinds = {"given_up": _given_up(account_id, window),
             "retrying": _retrying(account_id, window)}
    totals: dict[str, dict[int, tuple[int, datetime, datetime]]] = {
        kind: {row[0]: (row[1], row[2], row[3]) for row in s.execute(_per_integration(sq))}
        for kind, sq in kinds.items()
    }
    ids = sorted(set(totals["given_up"]) | set(totals["retrying"]))
    unrouted, unrouted_count = _unrouted_groups(s, account_id, window)
    others = unrouted_count - sum(u.count for u in unrouted)
    if not ids:
        return DigestContent(account_id, account_name, window, now, 0, 0, (),
                             unrouted=unrouted, unrouted_count=unrouted_count,
                             other_unrouted=others)
    successes = dict(
        s.execute(
            select(Delivery.integration_id, func.max(Delivery.finished_at))
            .where(Delivery.integration_id.in_(ids),
                   Delivery.state == DeliveryState.DELIVERED.value)
            .group_by(Delivery.integration_id)
        ).all()
    )

    def first_failure(iid: int) -> datetime:
        return min(t[iid][1] for t in totals.values() if iid in t)

    def failing(iid: int) -> bool:
        last = successes.get(iid)
        return last is None or last < first_failure(iid)

    def size(iid: int) -> int:
        return sum(t[iid][0] for t in totals.values() if iid in t)

    def rank(iid: int) -> tuple[int, float, int, int]:
        # Integrations failing every attempt first, the longest failing first; then the most.
        if failing(iid):
            since = successes.get(iid) or first_failure(iid)
            return (0, since.timestamp(), -size(iid), iid)
        return (1, 0.0, -size(iid), iid)

    ordered = sorted(ids, key=rank)
    shown, hidden = ordered[:TOP_INTEGRATIONS], ordered[TOP_INTEGRATIONS:]
    reasons = {kind: _top_reasons(s, sq, shown) for kind, sq in kinds.items()}
    samples = _samples(s, {g[6] for rows in reasons.values() for gs in rows.values() for g in gs})
    names = {
        row[0]: row[1:]
        for row in s.execute(
            select(Integration.id, Integration.name, Form.id, Form.name)
            .join(Form, Form.id == Integration.form_id)
            .where(Integration.id.in_(shown))
        )
    }
    parts = []
    for iid in shown:
        name, form_id, form_name = names[iid]
        tallies = {
            kind: _tally(totals[kind].get(iid), reasons[kind].get(iid, []), samples)
            for kind in kinds
        }
        parts.append(IntegrationPart(
            id=iid, name=name, form_id=form_id, form_name=form_name,
            given_up=tallies["given_up"], retrying=tallies["retrying"],
            failing_every_attempt=failing(iid), last_success=successes.get(iid),
        ))
    given_up = sum(n for n, _, _ in totals["given_up"].values())
    retrying = sum(n for n, _, _ in totals["retrying"].values())
    return DigestContent(
        account_id, account_name, window, now, given_up, retrying, tuple(parts),
        other_integrations=len(hidden),
        other_given_up=sum(totals["given_up"].get(i, (0,))[0] for i in hidden),
        other_retrying=sum(totals["retrying"].get(i, (0,))[0] for i in hidden),
        unrouted=unrouted, unrouted_count=unrouted_count, other_unrouted=others,
    )


# -- leads not routed (no delivery yet) ---------------------------------------------------

_UNROUTED_STATES = (FacebookReadState.NOT_READ.value, FacebookReadState.UNROUTABLE.value)


def _unrouted(account_id: int, window: Window) -> Subquery:
    """Facebook leads of the account that gave up or found no form, in the window."""
    return (
        select(FacebookLead.id.label("id"), FacebookLead.state.label("state"),
               func.coalesce(FacebookLead.last_reason, "").label("reason"),
               FacebookLead.finished_at.label("at"))
        .join(FacebookPage, FacebookPage.id == FacebookLead.connection_id)
        .where(FacebookPage.account_id == account_id,
               FacebookLead.state.in_(_UNROUTED_STATES),
               FacebookLead.finished_at >= window.start,
               FacebookLead.finished_at < window.end)
        .subquery()
    )


def _unrouted_groups(s: Session, account_id: int,
                     window: Window) -> tuple[tuple[Unrouted, ...], int]:
    """The top reasons of the window's leads not routed, and how many there are."""
    sq = _unrouted(account_id, window)
    rows = list(s.execute(
        select(sq.c.state, sq.c.reason, func.count().label("n"), func.min(sq.c.at),
               func.max(sq.c.at))
        .group_by(sq.c.state, sq.c.reason)
        .order_by(func.count().desc(), sq.c.reason)
        .limit(2 * TOP_REASONS)
    ))
    shown = tuple(Unrouted("facebook", state, reason[:REASON_CHARS], n, first, last)
                  for state, reason, n, first, last in rows)
    total = (s.scalar(select(func.count()).select_from(sq)) or 0) if rows else 0
    return shown, total


# -- the two kinds of failure, as subqueries of (id, iid, outcome, reason, first, last) ------


def _integrations_of(account_id: int) -> Select[Any]:
    return (select(Integration.id).join(Form, Form.id == Integration.form_id)
            .where(Form.account_id == account_id))


def _given_up(account_id: int, window: Window) -> Subquery:
    return (
        select(
            Delivery.id.label("id"),
            Delivery.integration_id.label("iid"),
            Delivery.last_outcome.label("outcome"),
            func.coalesce(Delivery.last_reason, "").label("reason"),
            Delivery.finished_at.label("first"),
            Delivery.finished_at.label("last"),
        )
        .where(
            Delivery.integration_id.in_(_integrations_of(account_id)),
            Delivery.state == DeliveryState.NOT_INTEGRATED.value,
            Delivery.finished_at >= window.start,
            Delivery.finished_at < window.end,
        )
        .subquery()
    )


def _retrying(account_id: int, window: Window) -> Subquery:
    return (
        select(
            Delivery.id.label("id"),
            Delivery.integration_id.label("iid"),
            Delivery.last_outcome.label("outcome"),
            func.coalesce(Delivery.last_reason, "").label("reason"),
            func.min(Attempt.started_at).label("first"),
            func.max(Attempt.started_at).label("last"),
        )
        .join(Attempt, Attempt.delivery_id == Delivery.id)
        .where(
            Delivery.integration_id.in_(_integrations_of(account_id)),
            Delivery.state.in_(_RETRYING_STATES),
            Attempt.started_at >= window.start,
            Attempt.started_at < window.end,
            Attempt.outcome.notin_(_NOT_FAILED),
        )
        .group_by(Delivery.id, Delivery.integration_id, Delivery.last_outcome,
                  Delivery.last_reason)
        .subquery()
    )


def _per_integration(sq: Subquery) -> Select[Any]:
    return (select(sq.c.iid, func.count(), func.min(sq.c.first), func.max(sq.c.last))
            .group_by(sq.c.iid))


def _top_reasons(s: Session, sq: Subquery, shown: list[int]) -> dict[int, list[Any]]:
    """Per integration of ``shown``: its top reasons (``(iid, outcome, reason, n, first,
    last, sample id, groups)``), ranked by the database."""
    grouped = (
        select(sq.c.iid, sq.c.outcome, sq.c.reason, func.count().label("n"),
               func.min(sq.c.first).label("first"), func.max(sq.c.last).label("last"),
               func.max(sq.c.id).label("sample"))
        .where(sq.c.iid.in_(shown))
        .group_by(sq.c.iid, sq.c.outcome, sq.c.reason)
        .subquery()
    )
    ranked = select(
        *grouped.c,
        func.row_number().over(partition_by=grouped.c.iid,
                               order_by=(grouped.c.n.desc(), grouped.c.reason)).label("rank"),
        func.count().over(partition_by=grouped.c.iid).label("groups"),
    ).subquery()
    out: dict[int, list[Any]] = {}
    for row in s.execute(select(ranked).where(ranked.c.rank <= TOP_REASONS)
                         .order_by(ranked.c.iid, ranked.c.rank)):
        out.setdefault(row.iid, []).append(
            (row.iid, row.outcome, row.reason, row.n, row.first, row.last, row.sample,
             row.groups))
    return out


def _samples(s: Session, delivery_ids: set[int]) -> dict[int, Sample]:
    """The last failed attempt of each delivery, as a sample answer."""
    if not delivery_ids:
        return {}
    latest = (
        select(Attempt.delivery_id, func.max(Attempt.number).label("number"))
        .where(Attempt.delivery_id.in_(delivery_ids), Attempt.outcome.notin_(_NOT_FAILED))
        .group_by(Attempt.delivery_id)
        .subquery()
    )
    rows = s.execute(
        select(Attempt.delivery_id, Attempt.number, Attempt.outcome, Attempt.reason,
               Attempt.exchanges)
        .join(latest, and_(Attempt.delivery_id == latest.c.delivery_id,
                           Attempt.number == latest.c.number))
        .order_by(Attempt.id)
    )
    out: dict[int, Sample] = {}
    for delivery_id, number, outcome, reason, exchanges in rows:
        out[delivery_id] = _sample_of(delivery_id, number, outcome, reason, exchanges or [])
    return out


def _sample_of(
    delivery_id: int, number: int, outcome: str, reason: str, exchanges: list[dict[str, Any]]
) -> Sample:
    # The last exchange is the CRM's final word (a login step may come before it).
    last = exchanges[-1] if exchanges else {}
    response = last.get("response") or {}
    error = last.get("error") or (reason if outcome == IN_DOUBT or not response else None)
    return Sample(
        delivery_id=delivery_id,
        attempt=number,
        status=response.get("status"),
        body=clip(str(response.get("body") or ""), SAMPLE_CHARS),
        error=clip(error, SAMPLE_CHARS) if error else None,
    )


def _tally(
    total: tuple[int, datetime, datetime] | None, rows: list[Any], samples: dict[int, Sample]
) -> Tally:
    if total is None:
        return Tally()
    count, first, last = total
    groups = tuple(
        ReasonGroup(outcome=outcome, reason=clip(reason, REASON_CHARS) or "(no reason recorded)",
                    count=n, first_at=g_first, last_at=g_last, sample=samples.get(sample))
        for _, outcome, reason, n, g_first, g_last, sample, _ in rows
    )
    group_count = rows[0][7] if rows else 0
    return Tally(count=count, first_at=first, last_at=last, reasons=groups,
                 other_reasons=max(group_count - len(groups), 0),
                 other_count=count - sum(g.count for g in groups))


def clip(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters (``…`` where it was cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
