"""Accounts, plans, forms and integrations: creating and changing them, validated first.

Every change is validated completely before anything is written: bad input
raises :class:`~leadrelay.engine.errors.BadInput` naming the field, and the
ledger is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .clock import Clock
from .digest.addresses import check_address
from .digest.settings import check_hours
from .errors import BadInput, ConfigError, NotFound, PlanLimitError
from .expectations import Expectations
from .forms import (
    check_origins,
    check_required_fields,
    check_thank_you_message,
    check_thank_you_url,
    new_public_key,
)
from .ledger import Account, Form, Integration, Ledger, Plan
from .plugins import Plugins
from .proxies import static_ip_variant
from .retry import RetryPolicy
from .runtime import ProxyRoutes, timeouts_from
from .secrets import Redactor, SecretBox, secret_values
from .transport import Transport

#: Plans every new ledger starts with (name → max active integrations).
DEFAULT_PLANS = {"free": 1, "starter": 5, "growth": 25, "scale": 250}
_INTEGRATION_FIELDS = frozenset(
    {"name", "config", "expectations", "retry", "realtime", "realtime_budget", "static_ip_pool"}
)

_ACCOUNT_FIELDS = frozenset({"name", "owner_email", "digest_hours"})
_FORM_FIELDS = frozenset(
    {"name", "allowed_origins", "required_fields", "thank_you_url", "thank_you_message",
     "active"}
)


class Management:
    """The management verbs behind the CLI and the API."""

    def __init__(
        self,
        ledger: Ledger,
        plugins: Plugins,
        box: SecretBox,
        clock: Clock,
        routes: ProxyRoutes | None = None,
    ) -> None:
        self.ledger, self.plugins, self.box, self.clock = ledger, plugins, box, clock
        self.routes = routes or ProxyRoutes()

    # -- plans and accounts ---------------------------------------------------------

    def ensure_plans(self, session: Session) -> None:
        """Create the default plans if the ledger has none."""
        if session.scalar(select(func.count()).select_from(Plan)) == 0:
            session.add_all(
                Plan(name=n, max_active_integrations=m) for n, m in DEFAULT_PLANS.items()
            )
            session.flush()

    def create_plan(self, name: str, max_active_integrations: int) -> Plan:
        """Add a plan."""
        _require_name(name, "name")
        if not isinstance(max_active_integrations, int) or max_active_integrations < 0:
            raise BadInput(
                "max_active_integrations: must be a whole number ≥ 0",
                field="max_active_integrations",
            )
        with self.ledger.session() as s:
            if s.scalar(select(Plan).where(Plan.name == name)):
                raise BadInput(f"name: a plan named {name!r} exists", field="name")
            plan = Plan(name=name, max_active_integrations=max_active_integrations)
            s.add(plan)
        return plan

    def create_account(self, name: str, owner_email: str, plan: str = "starter") -> Account:
        """Add an account on ``plan``."""
        _require_name(name, "name")
        check_address(owner_email, "owner_email")
        with self.ledger.session() as s:
            self.ensure_plans(s)
            plan_row = s.scalar(select(Plan).where(Plan.name == plan))
            if plan_row is None:
                names = ", ".join(s.scalars(select(Plan.name).order_by(Plan.name)))
                raise BadInput(f"plan: unknown plan {plan!r} (known: {names})", field="plan")
            account = Account(
                name=name, owner_email=owner_email, plan_id=plan_row.id, created_at=self.clock.now()
            )
            s.add(account)
            s.flush()
            s.refresh(account)
        return account

    def update_account(self, account_id: int, *, scope: int | None = None,
                       **changes: Any) -> Account:
        """Change an account's name, owner email (where its digest goes) or digest interval
        (``digest_hours``; ``None``: the deployment's); validated whole before it is written."""
        unknown = set(changes) - _ACCOUNT_FIELDS
        if unknown:
            key = sorted(unknown)[0]
            raise BadInput(f"{key}: not a setting of an account", field=key)
        if "name" in changes:
            _require_name(changes["name"], "name")
        if "owner_email" in changes:
            check_address(changes["owner_email"], "owner_email")
        if changes.get("digest_hours") is not None:
            changes["digest_hours"] = check_hours(changes["digest_hours"], "digest_hours",
                                                  error=BadInput)
        with self.ledger.session() as s:
            account = _get(s, Account, account_id, "account", scope=scope, owner=lambda a: a.id)
            for key, value in changes.items():
                setattr(account, key, value)
            s.flush()
            s.refresh(account)
        return account

    def plans(self) -> list[Plan]:
        """Every plan (the default ones are made on first use)."""
        with self.ledger.session() as s:
            self.ensure_plans(s)
            return list(s.scalars(select(Plan).order_by(Plan.id)))

    def accounts(self) -> list[Account]:
        """Every account."""
        with self.ledger.session() as s:
            return list(s.scalars(select(Account).order_by(Account.id)))

    def get_account(self, account_id: int, *, scope: int | None = None) -> Account:
        """One account; with ``scope``, only if it is that account (else not found)."""
        with self.ledger.session() as s:
            return _get(s, Account, account_id, "account", scope=scope, owner=lambda a: a.id)

    # -- forms ----------------------------------------------------------------------

    def create_form(
        self,
        account_id: int,
        name: str,
        *,
        allowed_origins: Any = None,
        required_fields: Any = None,
        thank_you_url: Any = None,
        thank_you_message: Any = None,
    ) -> Form:
        """Add a form to an account, with a fresh public key."""
        _require_name(name, "name")
        origins = check_origins(allowed_origins)
        required = check_required_fields(required_fields)
        thank_you = check_thank_you_url(thank_you_url)
        message = check_thank_you_message(thank_you_message)
        with self.ledger.session() as s:
            _get(s, Account, account_id, "account")
            form = Form(account_id=account_id, name=name, created_at=self.clock.now(),
                        public_key=new_public_key(), allowed_origins=origins,
                        required_fields=required, thank_you_url=thank_you,
                        thank_you_message=message, active=True)
            s.add(form)
        return form

    def forms(self, account_id: int | None = None) -> list[Form]:
        """Forms, of one account or of all."""
        with self.ledger.session() as s:
            q = select(Form).order_by(Form.id)
            if account_id is not None:
                q = q.where(Form.account_id == account_id)
            return list(s.scalars(q))

    def get_form(self, form_id: int, *, scope: int | None = None) -> Form:
        """One form; with ``scope``, only one of that account (another's is not found)."""
        with self.ledger.session() as s:
            return _get(s, Form, form_id, "form", scope=scope)

    def update_form(self, form_id: int, *, scope: int | None = None, **changes: Any) -> Form:
        """Change a form's name or intake settings; validated whole before it is written."""
        unknown = set(changes) - _FORM_FIELDS
        if unknown:
            key = sorted(unknown)[0]
            raise BadInput(f"{key}: not a setting of a form", field=key)
        checked: dict[str, Any] = {}
        if "name" in changes:
            _require_name(changes["name"], "name")
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
        with self.ledger.session() as s:
            form = _get(s, Form, form_id, "form", scope=scope)
            for key, value in checked.items():
                setattr(form, key, value)
        return form

    def rotate_form_key(self, form_id: int, *, scope: int | None = None) -> Form:
        """Give a form a new public key; posts to the old one are refused from now on."""
        with self.ledger.session() as s:
            form = _get(s, Form, form_id, "form", scope=scope)
            form.public_key = new_public_key()
        return form

    # -- integrations ---------------------------------------------------------------

    def create_integration(
        self,
        form_id: int,
        *,
        name: str,
        connector: str,
        config: Mapping[str, Any],
        expectations: Mapping[str, Any] | None = None,
        retry: Mapping[str, Any] | None = None,
        realtime: bool = False,
        realtime_budget: float = 3.0,
        static_ip_pool: str | None = None,
        active: bool = False,
        scope: int | None = None,
    ) -> Integration:
        """Add an integration to a form; validated whole before it is written.

        ``<connector>_static_ip`` names ``<connector>`` run through a static-IP
        pool (``static_ip_pool``, by default ``"default"``): stored that way.
        """
        _require_name(name, "name")
        connector, static_ip_pool = static_ip_variant(
            self.plugins.available(), connector, static_ip_pool
        )
        sealed, checked_expectations, policy = self._validate(
            connector, config, expectations, retry, static_ip_pool
        )
        _check_realtime(realtime, realtime_budget)
        now = self.clock.now()
        with self.ledger.session() as s:
            form = _get(s, Form, form_id, "form", scope=scope)
            integration = Integration(
                form_id=form_id,
                name=name,
                connector=connector,
                config=sealed,
                expectations=checked_expectations,
                retry_policy=policy,
                static_ip_pool=static_ip_pool,
                realtime=realtime,
                realtime_budget=realtime_budget,
                active=False,
                revision=1,
                created_at=now,
                updated_at=now,
            )
            s.add(integration)
            s.flush()
            if active:
                self._activate(s, form.account_id, integration)
        return integration

    def update_integration(
        self, integration_id: int, *, scope: int | None = None, **changes: Any
    ) -> Integration:
        """Change an integration's settings; workers pick the change up on its next delivery."""
        unknown = set(changes) - _INTEGRATION_FIELDS
        if unknown:
            key = sorted(unknown)[0]
            raise BadInput(f"{key}: not a setting of an integration", field=key)
        with self.ledger.session() as s:
            integration = _get(s, Integration, integration_id, "integration", scope=scope)
            config = changes.get("config")
            if config is None:
                config = self.box.unseal(integration.config)
            sealed, checked_expectations, policy = self._validate(
                integration.connector,
                config,
                changes.get("expectations", integration.expectations),
                changes.get("retry", integration.retry_policy),
                changes.get("static_ip_pool", integration.static_ip_pool),
            )
            _check_realtime(
                changes.get("realtime", integration.realtime),
                changes.get("realtime_budget", integration.realtime_budget),
            )
            if "name" in changes:
                _require_name(changes["name"], "name")
                integration.name = changes["name"]
            integration.config = sealed
            integration.expectations = checked_expectations
            integration.retry_policy = policy
            for key in ("static_ip_pool", "realtime", "realtime_budget"):
                if key in changes:
                    setattr(integration, key, changes[key])
            integration.revision += 1
            integration.updated_at = self.clock.now()
        return integration

    def set_active(
        self, integration_id: int, active: bool, *, scope: int | None = None
    ) -> Integration:
        """Switch an integration on or off. Activation respects the plan's cap."""
        with self.ledger.session() as s:
            integration = _get(s, Integration, integration_id, "integration", scope=scope)
            if active and not integration.active:
                form = _get(s, Form, integration.form_id, "form")
                self._activate(s, form.account_id, integration)
            elif not active:
                integration.active = False
            integration.updated_at = self.clock.now()
        return integration

    def integrations(
        self, form_id: int | None = None, *, scope: int | None = None
    ) -> list[Integration]:
        """Integrations, of one form or of all (of the ``scope`` account's forms)."""
        with self.ledger.session() as s:
            q = select(Integration).order_by(Integration.id)
            if form_id is not None:
                q = q.where(Integration.form_id == form_id)
            if scope is not None:
                q = q.where(
                    Integration.form_id.in_(select(Form.id).where(Form.account_id == scope))
                )
            return list(s.scalars(q))

    def get_integration(self, integration_id: int, *, scope: int | None = None) -> Integration:
        """One integration (with ``scope``, only one of that account's forms)."""
        with self.ledger.session() as s:
            return _get(s, Integration, integration_id, "integration", scope=scope)

    # -- helpers --------------------------------------------------------------------

    def _validate(
        self,
        connector: str,
        config: Mapping[str, Any],
        expectations: Mapping[str, Any] | None,
        retry: Mapping[str, Any] | None,
        static_ip_pool: str | None,
    ) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
        if not isinstance(connector, str) or not connector:
            raise BadInput("connector: required", field="connector")
        instance = self.plugins.build(connector, config)
        transport = Transport(
            timeouts=timeouts_from(self.plugins.settings_for(connector), instance.config),
            proxy_route=self.routes.route(static_ip_pool) if static_ip_pool else None,
        )
        try:
            instance.check(transport.client(Redactor(secret_values(instance.config))))
            settled = instance.settle_expectations(expectations or None)
        finally:
            instance.close()
            transport.close()
        if settled is not expectations and settled:
            expectations = settled  # derived by the connector: stored, so shown
        parsed = Expectations.parse(
            expectations,
            self.plugins.expectation_kinds,
            default=instance.default_expectations,
        )
        RetryPolicy.parse(retry)  # validation only: the raw form is what is stored
        if static_ip_pool is not None:
            self.routes.route(static_ip_pool)  # raises ConfigError when the pool is unknown
        return (
            self.box.seal(instance.config),
            parsed.to_dict() if expectations else None,
            dict(retry) if retry else None,
        )

    def _activate(self, s: Session, account_id: int, integration: Integration) -> None:
        # Lock the account row so concurrent activations are counted one after another.
        account = s.scalar(
            select(Account).where(Account.id == account_id).with_for_update(of=Account)
        )
        assert account is not None
        active = (
            s.scalar(
                select(func.count())
                .select_from(Integration)
                .join(Form, Form.id == Integration.form_id)
                .where(Form.account_id == account_id, Integration.active.is_(True))
            )
            or 0
        )
        if active >= account.plan.max_active_integrations:
            raise PlanLimitError(
                plan=account.plan.name, limit=account.plan.max_active_integrations, active=active
            )
        integration.active = True


def _require_name(value: Any, field: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{field}: required", field=field)
    if len(value) > 200:
        raise BadInput(f"{field}: at most 200 characters", field=field)


def _check_realtime(realtime: Any, budget: Any) -> None:
    if not isinstance(realtime, bool):
        raise ConfigError("realtime: must be true or false", field="realtime")
    if not isinstance(budget, int | float) or isinstance(budget, bool) or not 0 < budget <= 30:
        raise ConfigError("realtime_budget: seconds between 0 and 30", field="realtime_budget")


def _get(
    s: Session,
    model: type[Any],
    ident: int,
    what: str,
    *,
    scope: int | None = None,
    owner: Callable[[Any], int] | None = None,
) -> Any:
    """The row, or :class:`NotFound`. With ``scope`` (an account id), a row of another
    account is not found either, with the very same message: an API caller cannot
    tell another account's object from a missing one."""
    row = s.get(model, ident)
    if row is not None and scope is not None and (owner or _account_of(s))(row) != scope:
        row = None
    if row is None:
        raise NotFound(f"{what} {ident} does not exist", field=f"{what}_id")
    return row


def _account_of(s: Session) -> Callable[[Any], int]:
    """The account owning a form or an integration."""

    def account(row: Any) -> int:
        if isinstance(row, Form):
            return row.account_id
        if isinstance(row, Integration):
            form = s.get(Form, row.form_id)
            return form.account_id if form is not None else -1
        raise TypeError(f"no account for {type(row).__name__}")

    return account
