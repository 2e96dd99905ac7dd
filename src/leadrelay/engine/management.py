"""Accounts, plans, forms and integrations: creating and changing them, validated first.

Every change is validated completely before anything is written: bad input
raises :class:`~leadrelay.engine.errors.BadInput` naming the field, and the
ledger is left as it was. Every change names its actor (the API key's name, or
``cli``) and leaves an event in the audit trail (:mod:`.audit`), in its own
transaction. The integration verbs live in :mod:`.integration_admin`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import audit
from .audit import CLI_ACTOR, check_actor
from .clock import Clock
from .digest.addresses import check_address
from .digest.settings import check_hours
from .egress import EgressPolicy, default_policy
from .errors import BadInput
from .forms import (
    check_origins,
    check_required_fields,
    check_thank_you_message,
    check_thank_you_url,
    describe_form,
    new_public_key,
)
from .integration_admin import IntegrationVerbs, active_count
from .ledger import Account, Form, Integration, Ledger, Plan
from .lookup import get_row, not_archived, require_name
from .plans import (
    DEFAULT_PLANS,
    PlansSource,
    check_limit,
    check_plan_name,
    describe_limit,
)
from .plugins import Plugins
from .runtime import ProxyRoutes
from .secrets import SecretBox

__all__ = ["DEFAULT_PLANS", "Management"]

_ACCOUNT_FIELDS = frozenset({"name", "owner_email", "digest_hours", "plan"})
_FORM_FIELDS = frozenset(
    {"name", "allowed_origins", "required_fields", "thank_you_url", "thank_you_message",
     "active"}
)
#: The actor of changes the plans file makes.
PLANS_FILE_ACTOR = "plans file"


class Management(IntegrationVerbs):
    """The management verbs behind the CLI and the API."""

    def __init__(
        self,
        ledger: Ledger,
        plugins: Plugins,
        box: SecretBox,
        clock: Clock,
        routes: ProxyRoutes | None = None,
        *,
        plans_source: PlansSource | None = None,
        egress: EgressPolicy | None = None,
    ) -> None:
        self.ledger, self.plugins, self.box, self.clock = ledger, plugins, box, clock
        self.routes = routes or ProxyRoutes()
        #: Where integrations may connect: checked on create and update (:mod:`.egress`).
        self.egress = egress or default_policy()
        self.plans_source = plans_source or PlansSource(None)
        #: Told the deliveries released by an activation, after commit (the engine
        #: announces them to its workers).
        self.announce: Callable[[Iterable[tuple[int | None, int]]], None] = lambda _d: None
        #: Whether deliveries released now will be announced (see ``Leadrelay.queued``).
        self.queued: Callable[[], bool] = lambda: False

    # -- plans ------------------------------------------------------------------------

    def ensure_plans(self, session: Session) -> None:
        """Create the default plans if the ledger has none; apply the plans file if it
        changed since this process last did."""
        if session.scalar(select(func.count()).select_from(Plan)) == 0:
            session.add_all(
                Plan(name=n, max_active_integrations=m) for n, m in DEFAULT_PLANS.items()
            )
            session.flush()
        declared = self.plans_source.changed()
        if declared is None:
            return
        now = self.clock.now()
        for name, limit in declared.plans.items():
            plan = session.scalar(select(Plan).where(Plan.name == name))
            if plan is None:
                plan = Plan(name=name, max_active_integrations=limit)
                session.add(plan)
                session.flush()
                audit.record(session, actor=PLANS_FILE_ACTOR, action="plan.create",
                             object_type="plan", object_id=plan.id, account_id=None, at=now,
                             after=describe_plan(plan))
            elif plan.max_active_integrations != limit:
                before = describe_plan(plan)
                plan.max_active_integrations = limit
                audit.record(session, actor=PLANS_FILE_ACTOR, action="plan.update",
                             object_type="plan", object_id=plan.id, account_id=None, at=now,
                             before=before, after=describe_plan(plan))
        session.flush()
        self.plans_source.applied()

    def create_plan(self, name: str, max_active_integrations: Any, *,
                    actor: str = CLI_ACTOR) -> Plan:
        """Add a plan; ``max_active_integrations`` ``None`` (or ``"unlimited"``): no cap."""
        check_plan_name(name)
        limit = check_limit(max_active_integrations)
        check_actor(actor)
        with self.ledger.session() as s:
            self.ensure_plans(s)
            if s.scalar(select(Plan).where(Plan.name == name)):
                raise BadInput(f"name: a plan named {name!r} exists", field="name")
            plan = Plan(name=name, max_active_integrations=limit)
            s.add(plan)
            s.flush()
            audit.record(s, actor=actor, action="plan.create", object_type="plan",
                         object_id=plan.id, account_id=None, at=self.clock.now(),
                         after=describe_plan(plan))
        return plan

    def update_plan(self, name: str, max_active_integrations: Any, *,
                    actor: str = CLI_ACTOR) -> Plan:
        """Change a plan's cap. Lowering it below an account's active count deactivates
        nothing: that account activates nothing new until it is under the cap."""
        limit = check_limit(max_active_integrations)
        check_actor(actor)
        with self.ledger.session() as s:
            plan = self._plan_named(s, name, "name")
            before = describe_plan(plan)
            plan.max_active_integrations = limit
            audit.record(s, actor=actor, action="plan.update", object_type="plan",
                         object_id=plan.id, account_id=None, at=self.clock.now(),
                         before=before, after=describe_plan(plan))
        return plan

    def plans(self) -> list[Plan]:
        """Every plan (the default ones are made on first use)."""
        with self.ledger.session() as s:
            self.ensure_plans(s)
            return list(s.scalars(select(Plan).order_by(Plan.id)))

    def _plan_named(self, s: Session, name: Any, field: str) -> Plan:
        self.ensure_plans(s)
        plan = s.scalar(select(Plan).where(Plan.name == name)) if isinstance(name, str) else None
        if plan is None:
            names = ", ".join(s.scalars(select(Plan.name).order_by(Plan.name)))
            raise BadInput(f"{field}: unknown plan {name!r} (known: {names})", field=field)
        return plan

    # -- accounts ---------------------------------------------------------------------

    def create_account(self, name: str, owner_email: str, plan: str = "starter", *,
                       actor: str = CLI_ACTOR) -> Account:
        """Add an account on ``plan``."""
        require_name(name, "name")
        check_address(owner_email, "owner_email")
        check_actor(actor)
        with self.ledger.session() as s:
            plan_row = self._plan_named(s, plan, "plan")
            account = Account(
                name=name, owner_email=owner_email, plan_id=plan_row.id, created_at=self.clock.now()
            )
            s.add(account)
            s.flush()
            s.refresh(account)
            audit.record(s, actor=actor, action="account.create", object_type="account",
                         object_id=account.id, account_id=account.id, at=self.clock.now(),
                         after=_account_settings(account))
        return account

    def update_account(self, account_id: int, *, scope: int | None = None,
                       actor: str = CLI_ACTOR, **changes: Any) -> Account:
        """Change an account's name, owner email (where its digest goes), digest interval
        (``digest_hours``; ``None``: the deployment's) or plan; validated whole before it
        is written. A plan below the active count deactivates nothing (see
        :meth:`account_status`)."""
        unknown = set(changes) - _ACCOUNT_FIELDS
        if unknown:
            key = sorted(unknown)[0]
            raise BadInput(f"{key}: not a setting of an account", field=key)
        if "name" in changes:
            require_name(changes["name"], "name")
        if "owner_email" in changes:
            check_address(changes["owner_email"], "owner_email")
        if changes.get("digest_hours") is not None:
            changes["digest_hours"] = check_hours(changes["digest_hours"], "digest_hours",
                                                  error=BadInput)
        check_actor(actor)
        with self.ledger.session() as s:
            plan = self._plan_named(s, changes.pop("plan"), "plan") if "plan" in changes \
                else None
            account = get_row(s, Account, account_id, "account", scope=scope,
                              owner=lambda a: a.id)
            before = _account_settings(account)
            for key, value in changes.items():
                setattr(account, key, value)
            if plan is not None:
                account.plan_id = plan.id
            s.flush()
            s.refresh(account)
            audit.record(s, actor=actor, action="account.update", object_type="account",
                         object_id=account.id, account_id=account.id, at=self.clock.now(),
                         before=before, after=_account_settings(account))
        return account

    def accounts(self) -> list[Account]:
        """Every account."""
        with self.ledger.session() as s:
            return list(s.scalars(select(Account).order_by(Account.id)))

    def get_account(self, account_id: int, *, scope: int | None = None) -> Account:
        """One account; with ``scope``, only if it is that account (else not found)."""
        with self.ledger.session() as s:
            return get_row(s, Account, account_id, "account", scope=scope,
                           owner=lambda a: a.id)

    def account_status(self, account_id: int, *, scope: int | None = None) -> dict[str, Any]:
        """An account with its plan, the plan's limit and the active count; over its
        limit (after a downgrade), it says so."""
        with self.ledger.session() as s:
            self.ensure_plans(s)
            account = get_row(s, Account, account_id, "account", scope=scope,
                              owner=lambda a: a.id)
            active = active_count(s, account.id)
            limit = account.plan.max_active_integrations
            over = limit is not None and active > limit
            full = limit is not None and active >= limit
            note = None
            if over:
                note = (f"over the plan's limit: {active} active, {limit} allowed; nothing "
                        f"is deactivated, and no integration can be activated until "
                        f"{active - limit} are deactivated")
            return {
                "id": account.id, "name": account.name, "owner_email": account.owner_email,
                "plan": account.plan.name, "plan_limit": describe_limit(limit),
                "active_integrations": active, "over_limit": over,
                "can_activate": not full, "note": note,
                "digest_hours": account.digest_hours,
                "created_at": account.created_at.isoformat(),
            }

    # -- forms ------------------------------------------------------------------------

    def create_form(
        self,
        account_id: int,
        name: str,
        *,
        allowed_origins: Any = None,
        required_fields: Any = None,
        thank_you_url: Any = None,
        thank_you_message: Any = None,
        actor: str = CLI_ACTOR,
        scope: int | None = None,
    ) -> Form:
        """Add a form to an account, with a fresh public key."""
        require_name(name, "name")
        origins = check_origins(allowed_origins)
        required = check_required_fields(required_fields)
        thank_you = check_thank_you_url(thank_you_url)
        message = check_thank_you_message(thank_you_message)
        check_actor(actor)
        with self.ledger.session() as s:
            get_row(s, Account, account_id, "account", scope=scope, owner=lambda a: a.id)
            form = Form(account_id=account_id, name=name, created_at=self.clock.now(),
                        public_key=new_public_key(), allowed_origins=origins,
                        required_fields=required, thank_you_url=thank_you,
                        thank_you_message=message, active=True)
            s.add(form)
            s.flush()
            audit.record(s, actor=actor, action="form.create", object_type="form",
                         object_id=form.id, account_id=account_id, at=self.clock.now(),
                         after=_form_settings(form))
        return form

    def forms(self, account_id: int | None = None, *, archived: bool = False) -> list[Form]:
        """Forms, of one account or of all; deleted ones only with ``archived``."""
        with self.ledger.session() as s:
            q = select(Form).order_by(Form.id)
            if account_id is not None:
                q = q.where(Form.account_id == account_id)
            if not archived:
                q = q.where(Form.archived_at.is_(None))
            return list(s.scalars(q))

    def get_form(self, form_id: int, *, scope: int | None = None) -> Form:
        """One form; with ``scope``, only one of that account (another's is not found)."""
        with self.ledger.session() as s:
            return get_row(s, Form, form_id, "form", scope=scope)

    def update_form(self, form_id: int, *, scope: int | None = None, actor: str = CLI_ACTOR,
                    **changes: Any) -> Form:
        """Change a form's name or intake settings; validated whole before it is written."""
        unknown = set(changes) - _FORM_FIELDS
        if unknown:
            key = sorted(unknown)[0]
            raise BadInput(f"{key}: not a setting of a form", field=key)
        checked: dict[str, Any] = {}
        if "name" in changes:
            require_name(changes["name"], "name")
            checked["name"] = changes["name"]
        if "allowed_origins" in changes:
            checked["allowed_origins"] = check_origins(changes["allowed_origins"])
        if "required_fields" in changes:
            checked["required_fields"] = check_required_fields(changes["required_fields"])
        if "thank_you_url" in changes:
            checked["thank_you_url"] = check_thank_you_url(changes["thank_you_url"])
        if "thank_you_message" in changes:
            checked["thank_you_message"] = check_thank_you_message(changes["thank_you_message"])
        if "active" in changes:
            if not isinstance(changes["active"], bool):
                raise BadInput("active: must be true or false", field="active")
            checked["active"] = changes["active"]
        check_actor(actor)
        with self.ledger.session() as s:
            form = get_row(s, Form, form_id, "form", scope=scope)
            not_archived(form, "form")
            before = _form_settings(form)
            for key, value in checked.items():
                setattr(form, key, value)
            audit.record(s, actor=actor, action="form.update", object_type="form",
                         object_id=form.id, account_id=form.account_id, at=self.clock.now(),
                         before=before, after=_form_settings(form))
        return form

    def rotate_form_key(self, form_id: int, *, scope: int | None = None,
                        actor: str = CLI_ACTOR) -> Form:
        """Give a form a new public key; posts to the old one are refused from now on."""
        check_actor(actor)
        with self.ledger.session() as s:
            form = get_row(s, Form, form_id, "form", scope=scope)
            not_archived(form, "form")
            form.public_key = new_public_key()
            audit.record(s, actor=actor, action="form.rotate_key", object_type="form",
                         object_id=form.id, account_id=form.account_id, at=self.clock.now())
        return form

    def delete_form(self, form_id: int, *, scope: int | None = None,
                    actor: str = CLI_ACTOR) -> Form:
        """Delete (archive) a form: it accepts no lead any more, each of its integrations
        is deleted (see :meth:`delete_integration`); its leads and deliveries stay
        inspectable. Deleting a deleted form changes nothing."""
        check_actor(actor)
        now = self.clock.now()
        with self.ledger.session() as s:
            form = get_row(s, Form, form_id, "form", scope=scope)
            if form.archived_at is not None:
                return form
            before = _form_settings(form)
            for integration in s.scalars(
                select(Integration).where(Integration.form_id == form.id,
                                          Integration.archived_at.is_(None))
                .order_by(Integration.id)
            ):
                self._delete(s, integration, form.account_id, actor, now)
            form.active = False
            form.archived_at = now
            audit.record(s, actor=actor, action="form.delete", object_type="form",
                         object_id=form.id, account_id=form.account_id, at=now,
                         before=before, after=_form_settings(form))
        return form

    # -- audit ------------------------------------------------------------------------

    def audit_trail(self, account_id: int | None, *, scope: int | None = None,
                    limit: int = 100, cursor: str | None = None,
                    object_type: str | None = None,
                    object_id: int | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """The account's management changes, newest first (``account_id`` ``None``: the
        plans'), a page at a time; and the next page's cursor."""
        if account_id is not None:
            self.get_account(account_id, scope=scope)
        return audit.events(self.ledger, account_id, limit=limit, cursor=cursor,
                            object_type=object_type, object_id=object_id)


def describe_plan(p: Plan) -> dict[str, Any]:
    """A plan as shown: its cap on active integrations, or ``unlimited``."""
    return {"id": p.id, "name": p.name,
            "max_active_integrations": describe_limit(p.max_active_integrations)}


def _account_settings(a: Account) -> dict[str, Any]:
    return {"name": a.name, "owner_email": a.owner_email, "plan": a.plan.name,
            "digest_hours": a.digest_hours}


def _form_settings(f: Form) -> dict[str, Any]:
    shown = describe_form(f)
    kept = ("name", "active", "allowed_origins", "required_fields", "thank_you_url",
            "thank_you_message")
    return {k: shown[k] for k in kept if k in shown} | {"archived": f.archived_at is not None}
