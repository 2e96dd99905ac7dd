"""The ledger's tables, as typed SQLAlchemy ORM classes.

Changes to this module need an Alembic revision in ``migrations/versions``.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: JSON everywhere, JSONB on PostgreSQL.
Json = JSON().with_variant(JSONB(), "postgresql")
#: 64-bit ids on PostgreSQL; SQLite needs plain INTEGER for its rowid alias.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Base of the ledger's tables."""


class DeliveryState(enum.StrEnum):
    """Where a delivery stands."""

    PENDING = "pending"
    """Waiting for its next attempt at ``next_due_at``."""
    SENDING = "sending"
    """Claimed by a worker until ``lease_until``."""
    DELIVERED = "delivered"
    """The CRM accepted it."""
    NOT_INTEGRATED = "not_integrated"
    """Gave up after the last attempt: it sits in the failed collection."""
    HELD = "held"
    """Its integration is inactive: kept, never sent, until it is activated again."""
    DISCARDED = "discarded"
    """Held, then discarded by an operator (or with its deleted integration): never sent,
    kept for inspection, its reason in ``last_reason`` (revision 0007)."""


class LeadSource(enum.StrEnum):
    """Where a lead came from."""

    FORM = "form"
    FACEBOOK = "facebook"
    EXTERNAL = "external"
    IMPORT = "import"


class Plan(Base):
    """A plan caps how many integrations an account may have active."""

    __tablename__ = "plans"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    #: The cap, unless :attr:`unlimited`.
    cap: Mapped[int] = mapped_column("max_active_integrations", Integer)
    #: No cap at all (revision 0007).
    unlimited: Mapped[bool] = mapped_column(default=False, server_default=false())

    @property
    def max_active_integrations(self) -> int | None:
        """How many integrations an account on this plan may have active; ``None``: any."""
        return None if self.unlimited else self.cap

    @max_active_integrations.setter
    def max_active_integrations(self, value: int | None) -> None:
        self.unlimited = value is None
        self.cap = 0 if value is None else value


class Account(Base):
    """A customer: owns forms, gets the failure digest."""

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner_email: Mapped[str] = mapped_column(String(320))
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"))
    api_key_hash: Mapped[str | None] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Hours each failure digest of this account covers; ``None``: the deployment's
    #: ``LEADRELAY_DIGEST_HOURS`` (revision 0004).
    digest_hours: Mapped[float | None] = mapped_column(default=None)
    plan: Mapped[Plan] = relationship(lazy="joined")


class Form(Base):
    """A lead-capture form; its integrations receive every lead it gets."""

    __tablename__ = "forms"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # -- the HTTP API's settings of a form (revision 0003) --
    #: The form's public key, which browsers post to: unguessable, rotatable, never its id.
    public_key: Mapped[str] = mapped_column(String(64))
    #: Origins (``https://shop.example``) whose pages may post to the form; ``*``: any.
    allowed_origins: Mapped[list[str]] = mapped_column(Json, default=list, server_default="[]")
    #: Fields a lead of this form must have, non-empty, or it is refused.
    required_fields: Mapped[list[str]] = mapped_column(Json, default=list, server_default="[]")
    #: Where a plain HTML post is redirected once its lead is stored.
    thank_you_url: Mapped[str | None] = mapped_column(String(2000))
    #: What the browser embed shows once a lead is received (revision 0006).
    thank_you_message: Mapped[str | None] = mapped_column(String(500))
    #: An inactive form accepts no leads.
    active: Mapped[bool] = mapped_column(default=True, server_default=true())
    #: When the form was deleted (archived): inactive for good, kept for inspection
    #: (revision 0007).
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("public_key", name="uq_forms_public_key"),)


class Integration(Base):
    """One CRM a form's leads go to, through one connector."""

    __tablename__ = "integrations"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    form_id: Mapped[int] = mapped_column(ForeignKey("forms.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    connector: Mapped[str] = mapped_column(String(100))
    #: The connector config with secrets sealed (see ``engine.secrets``).
    config: Mapped[dict[str, Any]] = mapped_column(Json)
    expectations: Mapped[dict[str, Any] | None] = mapped_column(Json)
    retry_policy: Mapped[dict[str, Any] | None] = mapped_column(Json)
    #: The static-IP proxy pool this integration's traffic goes through, if any.
    static_ip_pool: Mapped[str | None] = mapped_column(String(100))
    realtime: Mapped[bool] = mapped_column(default=False)
    #: Seconds a real-time submission waits for this CRM before answering.
    realtime_budget: Mapped[float] = mapped_column(default=3.0)
    active: Mapped[bool] = mapped_column(default=False, index=True)
    #: Bumped on every change, so workers rebuild their cached connector; each one is
    #: an :class:`IntegrationRevision`.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: When the integration was deleted (archived): it left its form for good, its
    #: history, deliveries and attempts stay inspectable (revision 0007).
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # -- flow control (revision 0008) --
    #: What the CRM's API allows (``"5/s"``, ``"300/min"``), honoured by every worker
    #: process for every source; ``None``: no limit (see ``engine.throttle``).
    rate_limit: Mapped[str | None] = mapped_column(String(32), default=None)
    #: Until when the CRM asked everybody to wait (a 429's ``Retry-After``).
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class Lead(Base):
    """A lead as received: payload and source. Never changed after it is accepted."""

    __tablename__ = "leads"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    form_id: Mapped[int] = mapped_column(ForeignKey("forms.id"), index=True)
    source: Mapped[str] = mapped_column(String(16))
    #: The source's own id of the lead (Facebook leadgen id, import row), for dedupe.
    external_id: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: The bulk import that stored it, if any (revision 0008).
    import_id: Mapped[int | None] = mapped_column(
        ForeignKey("imports.id"), default=None, index=True
    )

    __table_args__ = (
        UniqueConstraint("form_id", "source", "external_id", name="uq_leads_external"),
    )


#: ``Attempt.outcome`` of an attempt claimed and being sent: nothing is known yet.
SENDING = "sending"
#: ``Attempt.outcome`` of an attempt whose sender's lease ran out before it recorded:
#: the CRM may or may not have the lead.
IN_DOUBT = "in_doubt"


class Delivery(Base):
    """One lead to one integration: its state, attempts and next due time."""

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"))
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id"))
    state: Mapped[str] = mapped_column(String(16))
    #: Attempts in the current round (replay starts a new round).
    attempts_count: Mapped[int] = mapped_column(Integer, default=0)
    #: Attempts over the delivery's whole life.
    total_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: When a broker message for it is expected to arrive; the sweeper re-sends after that.
    queued_for: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    crm_reference: Mapped[str | None] = mapped_column(String(500))
    last_outcome: Mapped[str | None] = mapped_column(String(16))
    last_reason: Mapped[str | None] = mapped_column(Text)
    replays: Mapped[int] = mapped_column(Integer, default=0)
    #: Claims so far: each claim (worker, real-time send, replay) takes the next number,
    #: and only the current claim may record an outcome or move the state (fencing).
    claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Attempts in a row whose sender never recorded an outcome (lease ran out while
    #: sending): after a few, the delivery is parked in the failed collection.
    in_doubt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("lead_id", "integration_id", name="uq_deliveries_lead_integration"),
        Index("ix_deliveries_state_due", "state", "next_due_at"),
        Index("ix_deliveries_integration_state", "integration_id", "state"),
    )


class AttemptLane(enum.StrEnum):
    """Which sender made an attempt."""

    WORKER = "worker"
    REALTIME = "realtime"
    """Sent inside the submission request (a real-time integration)."""


class Attempt(Base):
    """One try of one delivery: what was sent, what came back, and the verdict.

    The row is written when the delivery is claimed, before anything is sent, with the
    outcome ``sending`` (see :data:`SENDING`); the verdict replaces it after the send. A
    sender that never came back leaves it ``in_doubt``.
    """

    __tablename__ = "attempts"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"))
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_ms: Mapped[float] = mapped_column()
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(String(200), default="")
    #: Every request/response exchange of the attempt (redacted, bodies bounded).
    exchanges: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    trace: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    proxy: Mapped[str | None] = mapped_column(String(100))
    #: The claim (``Delivery.claims``) this attempt was sent under.
    claim: Mapped[int | None] = mapped_column(Integer)
    #: Its sender's claim had already been taken back when it recorded: kept for audit,
    #: it changed nothing.
    stale: Mapped[bool] = mapped_column(default=False, server_default=false())
    lane: Mapped[str] = mapped_column(String(16), default="worker", server_default="worker")
    #: The number of the in-doubt attempt this one sends again, if any.
    resend_of: Mapped[int | None] = mapped_column(Integer)
    #: The integration's revision the attempt was sent with.
    revision: Mapped[int | None] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_attempts_delivery_number", "delivery_id", "number"),)


# -- the HTTP API (revision 0003) ------------------------------------------------------


class ApiKey(Base):
    """A bearer key of the HTTP API: an account's, or an operator's (no account).

    Only the key's SHA-256 is stored; the key itself is shown once, when created.
    """

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    #: The account the key acts for; ``None`` for an operator key.
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    #: An operator key administers accounts and plans across accounts.
    operator: Mapped[bool] = mapped_column(default=False)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The key's first characters, to tell keys apart in listings.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IdempotentPost(Base):
    """The answer given to an external post made with an ``Idempotency-Key``.

    Written in the transaction that stores the post's leads, so a retried post finds
    either nothing stored or the leads and their answer.
    """

    __tablename__ = "idempotent_posts"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    key: Mapped[str] = mapped_column(String(200))
    #: SHA-256 of what was posted (form, body), so a key reused for another post is refused.
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    answer: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("account_id", "key", name="uq_idempotent_posts_key"),)


# -- bulk imports (revision 0008) -------------------------------------------------------


class ImportState(enum.StrEnum):
    """Where a bulk import stands."""

    RUNNING = "running"
    """Rows are being read and stored (or the importer stopped without finishing)."""
    FINISHED = "finished"
    """Every row was read: stored, skipped as a duplicate or rejected."""
    FAILED = "failed"
    """Stopped early (the file could not be read on); ``error`` says why."""


class Import(Base):
    """One bulk import of a file into a form: its settings, counts and rejections.

    Counts are written with each batch of stored rows, in the batch's transaction, so
    they always match the leads in the ledger, even after a crash.
    """

    __tablename__ = "imports"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    form_id: Mapped[int] = mapped_column(ForeignKey("forms.id"), index=True)
    filename: Mapped[str] = mapped_column(String(500))
    #: ``csv`` or ``jsonl``, and how the file was read.
    format: Mapped[str] = mapped_column(String(8))
    encoding: Mapped[str | None] = mapped_column(String(32))
    delimiter: Mapped[str | None] = mapped_column(String(4))
    #: ``off``, ``on`` or ``throttled``; ``rate`` for throttled (``"5/s"``).
    integrate: Mapped[str] = mapped_column(String(16))
    rate: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    #: Data rows read, leads stored, rows already in the ledger, rows rejected.
    rows: Mapped[int] = mapped_column(Integer, default=0)
    stored: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    #: Deliveries created for its leads (at import, or later by ``send``).
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    #: The last line of the file whose row is settled: a resumed import starts after it.
    lines_done: Mapped[int] = mapped_column(Integer, default=0)
    #: The first rejected rows: ``[{"line": 7, "reason": "..."}]`` (all are counted).
    rejections: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# -- the failure digest (revision 0004) -------------------------------------------------


class DigestState(enum.StrEnum):
    """Where one account's digest of one window stands."""

    CLAIMED = "claimed"
    """Claimed by a scheduler; not sent yet, or to be tried again at ``next_try_at``."""
    SENDING = "sending"
    """Handed to the SMTP server by one scheduler right now."""
    SENT = "sent"
    """The SMTP server accepted it."""
    FAILED = "failed"
    """Given up: the server refused it as many times as allowed."""
    IN_DOUBT = "in_doubt"
    """The server may have it (the answer to the message never came): never sent again."""
    SKIPPED = "skipped"
    """Nothing was left to report when its turn came (what it counted was delivered since)."""


class Digest(Base):
    """One failure digest: one account, one window, sent at most once.

    The row is the claim: a scheduler inserts it before anything is sent, and the unique
    (account, window start) lets one scheduler in, whatever runs at the same time. The
    Message-ID is chosen at the claim, so a digest tried again carries the same one.
    """

    __tablename__ = "digests"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    window_end: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    message_id: Mapped[str] = mapped_column(String(255))
    recipient: Mapped[str] = mapped_column(String(320))
    state: Mapped[str] = mapped_column(String(16))
    #: Tries so far (a try that never reached the server counts too).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Tries the server refused (recipient or message): the digest gives up after a few.
    refusals: Mapped[int] = mapped_column(Integer, default=0)
    #: When a claimed digest may be tried (again).
    next_try_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: When the last try began; a digest left ``sending`` long after it is in doubt.
    tried_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: How many deliveries the digest reported when it was last built.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    #: The last try's error, safe to show (never a password).
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("account_id", "window_start", name="uq_digests_account_window"),
        Index("ix_digests_state_next_try", "state", "next_try_at"),
    )


# -- Facebook Lead Ads (revision 0005) ---------------------------------------------------


class FacebookPage(Base):
    """A Facebook page connected to an account: where its Lead Ads leads go.

    The app secret, verify token and page access token are sealed together in
    ``secrets`` (``engine.secrets``); they are never shown.
    """

    __tablename__ = "facebook_pages"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    #: Facebook's id of the page (``entry[].id`` of a notification).
    page_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    #: ``{"app_secret", "verify_token", "page_access_token"}``, each sealed.
    secrets: Mapped[dict[str, Any]] = mapped_column(Json)
    #: Facebook lead-form id → leadrelay form id.
    forms: Mapped[dict[str, int]] = mapped_column(Json, default=dict)
    #: ``field_data`` name → lead field, over the defaults (``facebook.fields``).
    field_map: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    #: How Graph reads are retried (the engine's retry policy; ``None``: its defaults).
    retry_policy: Mapped[dict[str, Any] | None] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("page_id", name="uq_facebook_pages_page_id"),)


class FacebookReadState(enum.StrEnum):
    """Where the Graph read of one Lead Ads lead stands."""

    READING = "reading"
    """Notified; its answers are read from the Graph API at ``next_due_at``."""
    STORED = "stored"
    """Read and stored as a lead (``lead_id``), routed like any lead of its form."""
    NOT_READ = "not_read"
    """The Graph read kept failing: in the failed collection, the reason is Graph's."""
    UNROUTABLE = "unroutable"
    """Its Facebook form is mapped to no leadrelay form: kept, reported, not read yet."""


class FacebookLead(Base):
    """One ``leadgen`` change of a notification, stored before the webhook answers.

    ``leadgen_id`` is unique: Facebook sends a notification again until it gets a 200,
    and a lead it names twice is stored once.
    """

    __tablename__ = "facebook_leads"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("facebook_pages.id"), index=True)
    leadgen_id: Mapped[str] = mapped_column(String(64))
    page_id: Mapped[str] = mapped_column(String(64))
    facebook_form_id: Mapped[str | None] = mapped_column(String(64))
    ad_id: Mapped[str | None] = mapped_column(String(64))
    adgroup_id: Mapped[str | None] = mapped_column(String(64))
    #: ``created_time`` of the notification (Unix seconds).
    created_time: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    #: Graph reads tried in the current round.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: When a broker message for it is expected; the sweep re-sends after that.
    queued_for: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: A reader holds it until then.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_reason: Mapped[str | None] = mapped_column(Text)
    #: The leadrelay form it was stored on, and the lead.
    form_id: Mapped[int | None] = mapped_column(ForeignKey("forms.id"))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("leadgen_id", name="uq_facebook_leads_leadgen_id"),
        Index("ix_facebook_leads_state_due", "state", "next_due_at"),
    )


# -- operating integrations (revision 0007) ---------------------------------------------


class IntegrationRevision(Base):
    """One revision of an integration: its settings after a change, who made it, when.

    ``settings`` holds the integration as it then was, its config's secrets replaced by
    keyed fingerprints (``{"$fingerprint": ...}``): enough to tell a changed secret from
    an unchanged one, never enough to recover it.
    """

    __tablename__ = "integration_revisions"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id"))
    revision: Mapped[int] = mapped_column(Integer)
    #: ``created``, ``updated``, ``activated``, ``deactivated``, ``deleted`` (or
    #: ``baseline``: what an integration older than history was before its first change).
    change: Mapped[str] = mapped_column(String(32))
    #: The API key's name, ``cli``, or another named actor (``settings file``).
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    settings: Mapped[dict[str, Any]] = mapped_column(Json)

    __table_args__ = (
        UniqueConstraint("integration_id", "revision", name="uq_integration_revisions"),
    )


class AuditEvent(Base):
    """One management change: who, what, before and after (secrets redacted), when."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    #: The account the changed object belongs to; ``None`` for plans.
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    actor: Mapped[str] = mapped_column(String(200))
    #: What was done, as ``object.verb``: ``integration.update``, ``plan.create``...
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[int | None] = mapped_column(BigInteger)
    before: Mapped[dict[str, Any] | None] = mapped_column(Json)
    after: Mapped[dict[str, Any] | None] = mapped_column(Json)
    at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_audit_events_account", "account_id", "id"),)


class TestAttempt(Base):
    """A test-send of an integration: recorded like an attempt, apart from deliveries.

    It belongs to no delivery, so it never counts in the failed collection, the digest
    or the metrics of real leads.
    """

    __tablename__ = "test_attempts"
    __test__ = False  # not a pytest class
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_ms: Mapped[float] = mapped_column()
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(String(200), default="")
    crm_reference: Mapped[str | None] = mapped_column(String(500))
    #: The lead's fields as sent.
    lead: Mapped[dict[str, Any]] = mapped_column(Json)
    exchanges: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    trace: Mapped[list[dict[str, Any]]] = mapped_column(Json)
