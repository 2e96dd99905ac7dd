"""The API's request and answer shapes (pydantic), as its OpenAPI document shows them.

They check shape only (types, unknown fields); what a value means — a valid
connector config, an origin, a plan limit — the engine checks, the same for the CLI.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

#: Ids are 64-bit signed in the ledger: larger ones cannot name anything.
MAX_ID = 2**63 - 1
#: An id in a path, a query, a body.
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
IdField = Annotated[int, Field(ge=1, le=MAX_ID)]


class _In(BaseModel):
    """A request body: unknown fields are refused by name."""

    model_config = ConfigDict(extra="forbid")


# -- accounts, plans, keys -------------------------------------------------------------


class AccountIn(_In):
    """A new account."""

    name: str
    owner_email: str
    plan: str = "starter"


class AccountOut(BaseModel):
    """An account; shown alone, with its plan's limit and how many are active."""

    id: int
    name: str
    owner_email: str
    plan: str
    created_at: datetime
    plan_limit: int | str | None = Field(
        default=None, description="The plan's cap on active integrations, or 'unlimited'")
    active_integrations: int | None = None
    over_limit: bool | None = Field(
        default=None, description="More are active than the plan allows (after a downgrade): "
        "nothing is deactivated, nothing new can be activated")
    can_activate: bool | None = None
    note: str | None = None


class AccountPatch(_In):
    """Changes to an account (operator key); what is left out stays as it is."""

    name: str | None = None
    owner_email: str | None = None
    plan: str | None = None


#: A plan's cap: a whole number from 0, or "unlimited" (checked by the engine).
Limit = Annotated[Any, Field(description="A whole number from 0, or 'unlimited'",
                             json_schema_extra={"anyOf": [{"type": "integer", "minimum": 0},
                                                          {"const": "unlimited"}]})]


class PlanIn(_In):
    """A new plan."""

    name: str
    max_active_integrations: Limit


class PlanPatch(_In):
    """A plan's new cap."""

    max_active_integrations: Limit


class PlanOut(BaseModel):
    """A plan: how many integrations its accounts may have active."""

    id: int
    name: str
    max_active_integrations: int | str


class AuditEventOut(BaseModel):
    """One management change: who made it, what it was before and after (secrets masked)."""

    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: int | None
    account_id: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditPage(BaseModel):
    """A page of the audit trail, newest first; ``next_cursor`` fetches the next."""

    items: list[AuditEventOut]
    next_cursor: str | None


class KeyIn(_In):
    """A new API key of an account."""

    name: str = "default"


class KeyOut(BaseModel):
    """An API key as listed: its first characters, never the key."""

    id: int
    account_id: int | None
    operator: bool
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    """A key just made: ``key`` is shown this once and is not kept."""

    key: str


# -- forms and integrations ------------------------------------------------------------


class FormIn(_In):
    """A new form of the calling account."""

    name: str
    allowed_origins: list[str] = Field(default_factory=list)
    required_fields: list[str] = Field(default_factory=list)
    thank_you_url: str | None = None
    thank_you_message: str | None = None


class FormPatch(_In):
    """Changes to a form; what is left out stays as it is."""

    name: str | None = None
    allowed_origins: list[str] | None = None
    required_fields: list[str] | None = None
    thank_you_url: str | None = None
    thank_you_message: str | None = None
    active: bool | None = None


class FormOut(BaseModel):
    """A form, with the public key its pages post to."""

    id: int
    account_id: int
    name: str
    public_key: str
    active: bool
    allowed_origins: list[str]
    required_fields: list[str]
    thank_you_url: str | None
    thank_you_message: str | None = None
    created_at: datetime
    archived_at: datetime | None = Field(
        default=None, description="When the form was deleted (it accepts no more leads)")


class IntegrationIn(_In):
    """A new integration of one of the calling account's forms."""

    form_id: IdField
    name: str
    connector: str
    config: dict[str, Any]
    expectations: dict[str, Any] | None = None
    retry: dict[str, Any] | None = None
    realtime: bool = False
    realtime_budget: float = 3.0
    static_ip_pool: str | None = None
    active: bool = False
    #: What the CRM's API allows: ``"5/s"``, ``"300/min"``; honoured by every worker.
    rate_limit: str | None = None


class IntegrationPatch(_In):
    """Changes to an integration; ``config`` replaces the whole config, secrets included."""

    name: str | None = None
    config: dict[str, Any] | None = None
    expectations: dict[str, Any] | None = None
    retry: dict[str, Any] | None = None
    realtime: bool | None = None
    realtime_budget: float | None = None
    static_ip_pool: str | None = None
    #: A new rate limit (``"5/s"``), or null for none.
    rate_limit: str | None = None


class IntegrationOut(BaseModel):
    """An integration, its config's secrets redacted."""

    id: int
    form_id: IdField
    name: str
    connector: str
    config: dict[str, Any]
    expectations: dict[str, Any] | None
    retry: dict[str, Any] | None
    static_ip_pool: str | None
    realtime: bool
    realtime_budget: float
    active: bool
    revision: int
    #: What the CRM's API allows (``"5/s"``); null: no limit.
    rate_limit: str | None = None
    #: Until when a 429 asked every worker to wait; null: not paused.
    paused_until: datetime | None = None
    archived_at: datetime | None = Field(
        default=None, description="When the integration was deleted (it receives no leads)")


class DiscardIn(_In):
    """Discard held deliveries: why (kept on each), and optionally which."""

    reason: str
    delivery_ids: list[IdField] | None = None


class DiscardOut(BaseModel):
    """How many held deliveries were discarded."""

    integration_id: int
    discarded: int


class TestIn(_In):
    """A test-send: ``lead`` (a JSON object of fields) or ``sample``; ``send`` to send it."""

    __test__ = False  # not a pytest class
    lead: Any = None
    sample: bool = False
    send: bool = False


class RevisionOut(BaseModel):
    """One revision of an integration: the change, who made it, when, the settings."""

    revision: int
    change: str
    actor: str
    at: datetime
    settings: dict[str, Any]


class HistoryOut(BaseModel):
    """An integration's revisions, newest first, and the diff asked for."""

    integration_id: int
    revision: int
    revisions: list[RevisionOut]
    diff: dict[str, Any] | None = None


# -- leads, deliveries, replays --------------------------------------------------------


class DeliveryOut(BaseModel):
    """One delivery in a listing."""

    id: int
    lead_id: int
    form_id: int
    integration_id: int
    state: str
    attempts: int
    next_due_at: datetime | None
    last_outcome: str | None
    last_reason: str | None
    crm_reference: str | None
    created_at: datetime
    finished_at: datetime | None


class DeliveryPage(BaseModel):
    """A page of deliveries, newest first; ``next_cursor`` fetches the next (null: last)."""

    items: list[DeliveryOut]
    next_cursor: str | None


class FailedPage(DeliveryPage):
    """A page of the failed collection, and the Facebook leads that never became a lead."""

    facebook_not_read: int = Field(
        description="Facebook leads of the account whose Graph read gave up (state "
        "`not_read`): they have no delivery yet. List them with `GET /v1/facebook/leads"
        "?state=not_read`; read them again with `POST /v1/facebook/pages/{id}/read-again`.")


class LeadOut(BaseModel):
    """A lead as received, with each of its deliveries."""

    id: int
    form_id: int
    source: str
    external_id: str | None
    received_at: datetime
    payload: dict[str, Any]
    deliveries: list[DeliveryOut]


class ReplayIn(_In):
    """Which failed deliveries of the calling account to send again."""

    integration_id: IdField | None = None
    form_id: IdField | None = None
    since: datetime | None = None
    until: datetime | None = None
    reason: str | None = None
    outcome: str | None = None
    limit: int | None = Field(default=None, ge=1, le=1_000_000)
    dry_run: bool = False


class ReplayOut(BaseModel):
    """What a replay chose; for a dry run, what each delivery would send."""

    dry_run: bool
    count: int
    delivery_ids: list[int]
    previews: list[dict[str, Any]]


# -- intake ------------------------------------------------------------------------------


class DeliveryResult(BaseModel):
    """Where one delivery of a posted lead stands in the answer."""

    delivery_id: int
    integration_id: int | None
    state: str
    outcome: str | None = None
    crm_reference: str | None = None
    reason: str | None = None


class PostedLead(BaseModel):
    """The answer for one lead: its id and one entry per delivery."""

    lead_id: int
    external_id: str | None = None
    duplicate: bool = False
    deliveries: list[DeliveryResult]


class PageDelivery(DeliveryResult):
    """One delivery of a page's lead, as the page may see it (``engine/lead_status.py``):
    no request, no answer of the CRM, nothing secret."""

    integration: str | None = None
    connector: str | None = None
    decided_by: str | None = Field(default=None, description="The rule that decided")
    attempts: int | None = None


class PagePosted(BaseModel):
    """The answer to a page's post: the lead, its deliveries, and the status URL that
    tells the page (and nobody else) how the queued ones end."""

    lead_id: int
    deliveries: list[PageDelivery]
    status_token: str
    status_url: str


class LeadStatusOut(BaseModel):
    """Where a page's lead stands now: ``settled`` once every delivery is delivered or
    not integrated."""

    lead_id: int
    settled: bool
    deliveries: list[PageDelivery]


class PageSettings(BaseModel):
    """What the embed needs before a visitor submits."""

    form_key: str
    thank_you_url: str | None
    thank_you_message: str | None = Field(
        default=None, description="What the embed shows once a lead is received")
    required_fields: list[str]
    longest_realtime_budget: float = Field(
        description="Seconds: the longest real-time budget of the form's active integrations")
    client_timeout: float = Field(
        description="Seconds the embed waits for an answer before it stops waiting")


class PostedBatch(BaseModel):
    """The answer for a batch: one entry per lead, in the order posted."""

    leads: list[PostedLead]


class ExternalLeadIn(_In):
    """One lead from an external system."""

    fields: dict[str, Any]
    external_id: str | None = None
    source: str | None = Field(
        default=None, description="external (the default), or another known source name"
    )


class ExternalLeadOnly(_In):
    """One lead of a batch."""

    fields: dict[str, Any]
    external_id: str | None = None


class ExternalBatchIn(_In):
    """Several leads (at most 500) from an external system, stored all or none."""

    leads: list[ExternalLeadOnly] = Field(min_length=1)
    source: str | None = None


def _shape(value: Any) -> str:
    return "batch" if isinstance(value, dict) and "leads" in value else "one"


ExternalPostIn = Annotated[
    Annotated[ExternalLeadIn, Tag("one")] | Annotated[ExternalBatchIn, Tag("batch")],
    Discriminator(_shape),
]
