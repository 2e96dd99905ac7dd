"""Intake: a lead arrives, is validated, and becomes durable with its deliveries.

The lead and one delivery per *active* integration of its form are written in
one transaction, before anything answers the caller. Enqueuing happens after
the commit; if it is lost, the sweeper finds the deliveries in the ledger.

Its statements are built once, as Core statements (no ORM unit of work), and leads
submitted at the same time by different threads share a transaction, with one
INSERT for their leads and one for their deliveries: intake is on every lead's
path (``docs/benchmarks.md``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, and_, bindparam, insert, select

from .clock import Clock
from .errors import BadInput, NotFound
from .leads import MAX_FIELDS, MAX_PAYLOAD_BYTES, validate_payload
from .ledger import Delivery, DeliveryState, Form, Integration, Lead, Ledger
from .ledger.models import LeadSource

# What a valid lead is lives in leads.py, the same for every source and backend.
__all__ = [
    "MAX_FIELDS",
    "MAX_PAYLOAD_BYTES",
    "Accepted",
    "Intake",
    "LeadIn",
    "Target",
    "idempotency_key",
    "validate_payload",
    "validate_source",
]


class Target(NamedTuple):
    """An active integration of a form, as intake needs it."""

    id: int
    realtime: bool
    budget: float
    name: str
    connector: str


@dataclass(frozen=True)
class LeadIn:
    """One lead to accept."""

    form_id: int
    payload: Any
    source: str = LeadSource.FORM
    external_id: str | None = None
    #: The bulk import storing it, if any.
    import_id: int | None = None


@dataclass(frozen=True)
class Accepted:
    """A lead made durable, and the deliveries created for it."""

    lead_id: int
    delivery_ids: tuple[int, ...]
    #: Deliveries whose integration runs in real time, with their budgets (seconds).
    realtime: tuple[tuple[int, float], ...] = ()
    #: The integration of each delivery, in the order of ``delivery_ids``.
    integration_ids: tuple[int, ...] = ()
    #: Each delivery's integration name and connector, in the same order (what a post's
    #: answer shows of a queued delivery, without reading it back).
    integration_labels: tuple[tuple[str, str], ...] = ()

    def deliveries(self) -> list[tuple[int | None, int]]:
        """``(integration id, delivery id)`` of each delivery created."""
        if len(self.integration_ids) != len(self.delivery_ids):
            return [(None, d) for d in self.delivery_ids]
        return list(zip(self.integration_ids, self.delivery_ids, strict=True))


def validate_source(source: Any) -> str:
    """A known lead source name."""
    try:
        return LeadSource(source).value
    except ValueError:
        known = ", ".join(s.value for s in LeadSource)
        raise BadInput(
            f"source: unknown source {source!r} (known: {known})", field="source"
        ) from None


class _Checked(NamedTuple):
    """A lead that passed validation, with how its deliveries are announced."""

    lead: LeadIn
    payload: dict[str, Any]
    source: str
    queued: bool


def idempotency_key() -> str:
    """A new delivery's idempotency key: 32 hex digits, the milliseconds since the epoch
    then 80 random bits. As unique as a random UUID, but increasing, so the unique index
    on it grows at its end: a random key lands on a random page of that index at every
    insert, which on a ledger of millions of deliveries costs a cache miss and a page
    rewritten each time (docs/benchmarks.md, growth)."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def _check(lead: LeadIn, field: str, queued: bool) -> _Checked:
    return _Checked(
        lead, validate_payload(lead.payload, field=field), validate_source(lead.source), queued
    )


class Intake:
    """Accepts leads into the ledger."""

    def __init__(self, ledger: Ledger, clock: Clock) -> None:
        self.ledger = ledger
        self.clock = clock
        # Leads submitted at the same time by different threads (API requests) are
        # stored in one transaction, with the workers' writes; each caller still returns
        # only once its lead is committed (batching.py).
        ledger.writes.handle(_Checked, self._store)

    def accept(self, lead: LeadIn, *, integrate: bool = True, queued: bool = True) -> Accepted:
        """Validate and store one lead with its deliveries; committed when this returns."""
        if not integrate:
            return self.accept_many([lead], integrate=False, queued=queued)[0]
        return cast(Accepted, self.ledger.writes(_check(lead, "payload", queued)))

    def accept_many(
        self,
        leads: Sequence[LeadIn],
        *,
        integrate: bool = True,
        due: datetime | None = None,
        queued: bool = True,
    ) -> list[Accepted]:
        """Store several leads (of any forms) in one transaction; all or none.

        ``integrate=False`` stores the leads without deliveries (an import that
        switched integration off). ``due`` delays the first attempt (throttled imports).
        ``queued=False`` says no broker message will announce the deliveries, so the
        sweeper sends them at once instead of waiting for a message presumed on its way.
        """
        checked = [
            _check(lead, f"leads[{i}].payload" if len(leads) > 1 else "payload", queued)
            for i, lead in enumerate(leads)
        ]
        with self.ledger.transaction() as conn:
            return self._store(conn, checked, integrate=integrate, due=due)

    def _store(
        self,
        conn: Any,
        checked: Sequence[_Checked],
        *,
        integrate: bool = True,
        due: datetime | None = None,
        targets: dict[int, list[Target]] | None = None,
    ) -> list[Accepted]:
        """Insert the leads and their deliveries on ``conn``, inside its transaction.

        ``targets``: each form's active integrations, when the caller read them already
        in this transaction (a page's post reads them with its form)."""
        now = self.clock.now()
        first_due = due or now
        if targets is None:
            targets = self._targets(conn, {c.lead.form_id for c in checked})
        if not integrate:
            targets = {}
        # All the leads in one INSERT, then all their deliveries in one: two statements
        # per transaction, however many leads it carries (ids come back in row order).
        lead_ids = _insert(
            conn,
            [
                {
                    "form_id": c.lead.form_id,
                    "source": c.source,
                    "payload": c.payload,
                    "external_id": c.lead.external_id,
                    "received_at": now,
                    "import_id": c.lead.import_id,
                }
                for c in checked
            ],
            one=_INSERT_LEAD,
            many=_INSERT_LEADS,
        )
        delivery_rows = [
            {
                "lead_id": lead_id,
                "integration_id": integration_id,
                "state": DeliveryState.PENDING.value,
                "attempts_count": 0,
                "total_attempts": 0,
                "replays": 0,
                "next_due_at": first_due,
                "queued_for": first_due if c.queued else None,
                "idempotency_key": idempotency_key(),
                "created_at": now,
            }
            for c, lead_id in zip(checked, lead_ids, strict=True)
            for integration_id, *_ in targets.get(c.lead.form_id, ())
        ]
        delivery_ids = iter(
            _insert(conn, delivery_rows, one=_INSERT_DELIVERY, many=_INSERT_DELIVERIES)
        )
        results: list[Accepted] = []
        for c, lead_id in zip(checked, lead_ids, strict=True):
            found = targets.get(c.lead.form_id, ())
            ids = tuple(next(delivery_ids) for _ in found)
            realtime = tuple(
                (did, t.budget) for did, t in zip(ids, found, strict=True) if t.realtime
            )
            results.append(Accepted(lead_id, ids, realtime, tuple(t.id for t in found),
                                    tuple((t.name, t.connector) for t in found)))
        return results

    def _targets(self, conn: Any, form_ids: set[int]) -> dict[int, list[Target]]:
        """Active integrations per form. Unknown forms are refused."""
        targets: dict[int, list[Target]] = {}
        rows = (
            conn.execute(_TARGETS_OF_ONE, {"form_id": next(iter(form_ids))})
            if len(form_ids) == 1
            else conn.execute(_TARGETS, {"form_ids": list(form_ids)})
        )
        for form_id, integration_id, realtime, budget, name, connector in rows:
            found = targets.setdefault(form_id, [])
            if integration_id is not None:  # the form has no active integration
                found.append(Target(integration_id, realtime, budget, name, connector))
        missing = sorted(form_ids - targets.keys())
        if missing:
            raise NotFound(f"form {missing[0]} does not exist", field="form_id")
        return targets


# -- intake's statements, built once ----------------------------------------------------

_F, _I = cast(Table, Form.__table__), cast(Table, Integration.__table__)
_L, _D = cast(Table, Lead.__table__), cast(Table, Delivery.__table__)
#: Each form asked for, with its active integrations in id order (none: one NULL row).
_ALL_TARGETS = (
    select(_F.c.id, _I.c.id, _I.c.realtime, _I.c.realtime_budget, _I.c.name, _I.c.connector)
    .select_from(_F.outerjoin(_I, and_(_I.c.form_id == _F.c.id, _I.c.active.is_(True))))
    .order_by(_I.c.id)
)
_TARGETS = _ALL_TARGETS.where(_F.c.id.in_(bindparam("form_ids", expanding=True)))
#: The same for one form (the usual case: no list to expand on each call).
_TARGETS_OF_ONE = _ALL_TARGETS.where(_F.c.id == bindparam("form_id"))
_INSERT_LEAD = insert(_L).returning(_L.c.id)
#: Several leads at once; ids come back in the order of the rows given.
_INSERT_LEADS = insert(_L).returning(_L.c.id, sort_by_parameter_order=True)
_INSERT_DELIVERY = insert(_D).returning(_D.c.id)
#: Several deliveries at once; ids come back in the order of the rows given.
_INSERT_DELIVERIES = insert(_D).returning(_D.c.id, sort_by_parameter_order=True)


def _insert(conn: Any, rows: list[dict[str, Any]], *, one: Any, many: Any) -> list[int]:
    """Insert ``rows``; their ids, in order."""
    if not rows:
        return []
    if len(rows) == 1:
        return [conn.execute(one, rows[0]).scalar_one()]
    return list(conn.scalars(many, rows))
