"""The integration verbs of :class:`~.management.Management`: create, change, switch on
and off (holding and releasing deliveries), delete, config history, test-send.

Every change makes a new revision (:mod:`.revisions`) and an audit event (:mod:`.audit`)
in its own transaction. Activation counts the account's active integrations under a
lock of the account row, so the plan's cap holds whatever runs at the same time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import audit, held, revisions
from .audit import CLI_ACTOR, check_actor
from .errors import BadInput, ConfigError, PlanLimitError, RefusedTarget
from .expectations import Expectations
from .ledger import Account, Form, Integration
from .lookup import get_row, not_archived, require_name
from .proxies import static_ip_variant
from .retry import RetryPolicy
from .runtime import timeouts_from
from .secrets import Redactor, secret_values
from .testsend import SAMPLE, TestSender, test_attempts
from .throttle import check_rate_limit
from .transport import Transport

if TYPE_CHECKING:
    from datetime import datetime

    from .clock import Clock
    from .egress import EgressPolicy
    from .ledger import Ledger
    from .plugins import Plugins
    from .runtime import ProxyRoutes
    from .secrets import SecretBox

_INTEGRATION_FIELDS = frozenset(
    {"name", "config", "expectations", "retry", "realtime", "realtime_budget", "static_ip_pool",
     "rate_limit"}
)


class IntegrationVerbs:
    """Integrations: the verbs, and the rules they keep (validation, plan cap, history)."""

    ledger: Ledger
    plugins: Plugins
    box: SecretBox
    clock: Clock
    routes: ProxyRoutes
    egress: EgressPolicy
    announce: Callable[[Iterable[tuple[int | None, int]]], None]
    queued: Callable[[], bool]

    def ensure_plans(self, session: Session) -> None:  # pragma: no cover - Management's
        """See :meth:`.management.Management.ensure_plans`."""
        raise NotImplementedError

    # -- creating and changing ----------------------------------------------------------

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
        rate_limit: str | None = None,
        scope: int | None = None,
        actor: str = CLI_ACTOR,
    ) -> Integration:
        """Add an integration to a form; validated whole before it is written.

        ``<connector>_static_ip`` names ``<connector>`` run through a static-IP
        pool (``static_ip_pool``, by default ``"default"``): stored that way.
        """
        require_name(name, "name")
        check_actor(actor)
        connector, static_ip_pool = static_ip_variant(
            self.plugins.available(), connector, static_ip_pool
        )
        sealed, checked_expectations, policy = self._validate(
            connector, config, expectations, retry, static_ip_pool
        )
        _check_realtime(realtime, realtime_budget)
        rate = check_rate_limit(rate_limit)
        now = self.clock.now()
        with self.ledger.session() as s:
            form = get_row(s, Form, form_id, "form", scope=scope)
            not_archived(form, "form")
            integration = Integration(
                form_id=form_id, name=name, connector=connector, config=sealed,
                expectations=checked_expectations, retry_policy=policy,
                static_ip_pool=static_ip_pool, realtime=realtime,
                realtime_budget=realtime_budget, rate_limit=rate, active=False, revision=1,
                created_at=now, updated_at=now,
            )
            s.add(integration)
            s.flush()
            if active:  # created active: one change, one revision
                self._check_cap(s, form.account_id)
                integration.active = True
            settings = revisions.new_revision(s, integration, "created", actor=actor, at=now,
                                              box=self.box, bump=False)
            audit.record(s, actor=actor, action="integration.create",
                         object_type="integration", object_id=integration.id,
                         account_id=form.account_id, at=now, after=revisions.shown(settings))
        return integration

    def update_integration(
        self, integration_id: int, *, scope: int | None = None, actor: str = CLI_ACTOR,
        **changes: Any
    ) -> Integration:
        """Change an integration's settings; workers pick the change up on its next
        delivery (one in flight finishes with the revision it claimed)."""
        unknown = set(changes) - _INTEGRATION_FIELDS
        if unknown:
            key = sorted(unknown)[0]
            raise BadInput(f"{key}: not a setting of an integration", field=key)
        check_actor(actor)
        with self.ledger.session() as s:
            integration = get_row(s, Integration, integration_id, "integration", scope=scope,
                                  lock=True)
            not_archived(integration, "integration")
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
                require_name(changes["name"], "name")
            rate = check_rate_limit(changes["rate_limit"]) if "rate_limit" in changes else None
            previous = revisions.snapshot(integration, self.box)
            before = revisions.shown(previous)
            if "name" in changes:
                integration.name = changes["name"]
            integration.config = sealed
            integration.expectations = checked_expectations
            integration.retry_policy = policy
            for key in ("static_ip_pool", "realtime", "realtime_budget"):
                if key in changes:
                    setattr(integration, key, changes[key])
            if "rate_limit" in changes:
                integration.rate_limit = rate
            now = self.clock.now()
            after = revisions.new_revision(s, integration, "updated", actor=actor, at=now,
                                           box=self.box, previous=previous)
            audit.record(s, actor=actor, action="integration.update",
                         object_type="integration", object_id=integration.id,
                         account_id=_account_id(s, integration), at=now, before=before,
                         after=revisions.shown(after))
        return integration

    def set_active(
        self, integration_id: int, active: bool, *, scope: int | None = None,
        actor: str = CLI_ACTOR,
    ) -> Integration:
        """Switch an integration on or off; switching it to what it is changes nothing.

        Activation respects the plan's cap and releases the held deliveries (due at
        once, in the order they arrived); deactivation holds the pending ones.
        """
        if not isinstance(active, bool):
            raise BadInput("active: must be true or false", field="active")
        check_actor(actor)
        released: list[tuple[int | None, int]] = []
        with self.ledger.session() as s:
            # The row lock orders this switch after any change of the same integration.
            integration = get_row(s, Integration, integration_id, "integration", scope=scope,
                                  lock=True)
            not_archived(integration, "integration")
            if integration.active != active:
                released = self._switch(s, integration, _account_id(s, integration), active,
                                        actor)
        if released:
            self.announce(released)
        return integration

    def delete_integration(self, integration_id: int, *, scope: int | None = None,
                           actor: str = CLI_ACTOR) -> Integration:
        """Delete (archive) an integration: it leaves its form and receives no more leads;
        its held and pending deliveries are discarded ("integration deleted"); its
        history, deliveries and attempts stay inspectable. Deleting it again changes
        nothing."""
        check_actor(actor)
        with self.ledger.session() as s:
            integration = get_row(s, Integration, integration_id, "integration", scope=scope,
                                  lock=True)
            if integration.archived_at is None:
                self._delete(s, integration, _account_id(s, integration), actor,
                             self.clock.now())
        return integration

    def discard_held(
        self, integration_id: int, reason: str, *, delivery_ids: Sequence[int] | None = None,
        scope: int | None = None, actor: str = CLI_ACTOR,
    ) -> int:
        """Discard the integration's held deliveries (or only ``delivery_ids`` of them)
        with ``reason``: never sent, kept for inspection; how many."""
        reason = held.check_reason(reason)
        check_actor(actor)
        if delivery_ids is not None and (
            not isinstance(delivery_ids, list | tuple)
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in delivery_ids)
        ):
            raise BadInput("delivery_ids: a list of delivery ids", field="delivery_ids")
        with self.ledger.session() as s:
            integration = get_row(s, Integration, integration_id, "integration", scope=scope)
            now = self.clock.now()
            count = held.discard(s, integration.id, reason, now, delivery_ids)
            audit.record(s, actor=actor, action="integration.discard_held",
                         object_type="integration", object_id=integration.id,
                         account_id=_account_id(s, integration), at=now,
                         after={"discarded": count, "reason": reason,
                                "delivery_ids": list(delivery_ids) if delivery_ids else None})
        return count

    # -- reading --------------------------------------------------------------------------

    def integrations(
        self, form_id: int | None = None, *, scope: int | None = None, archived: bool = False
    ) -> list[Integration]:
        """Integrations, of one form or of all (of the ``scope`` account's forms); deleted
        ones only with ``archived``."""
        with self.ledger.session() as s:
            q = select(Integration).order_by(Integration.id)
            if form_id is not None:
                q = q.where(Integration.form_id == form_id)
            if scope is not None:
                q = q.where(
                    Integration.form_id.in_(select(Form.id).where(Form.account_id == scope))
                )
            if not archived:
                q = q.where(Integration.archived_at.is_(None))
            return list(s.scalars(q))

    def get_integration(self, integration_id: int, *, scope: int | None = None) -> Integration:
        """One integration (with ``scope``, only one of that account's forms); a deleted
        one too."""
        with self.ledger.session() as s:
            return get_row(s, Integration, integration_id, "integration",
                           scope=scope)

    def history(self, integration_id: int, *, scope: int | None = None,
                diff: tuple[Any, Any] | None = None) -> dict[str, Any]:
        """The integration's revisions (who, when, what change, the settings, secrets
        masked), newest first; with ``diff`` = (a, b), what changed from revision a to b
        (a secret only as changed or unchanged)."""
        with self.ledger.session() as s:
            integration = get_row(s, Integration, integration_id, "integration", scope=scope)
            history = revisions.revisions(s, integration.id)
            out: dict[str, Any] = {
                "integration_id": integration.id,
                "revision": integration.revision,
                "revisions": [revisions.describe_revision(r) for r in reversed(history)],
            }
            if diff is not None:
                old = revisions.pick(history, diff[0], integration.id, "from")
                new = revisions.pick(history, diff[1], integration.id, "to")
                out["diff"] = {
                    "from": old.revision, "to": new.revision,
                    "changes": revisions.diff(old.settings, new.settings),
                    "unchanged_secrets": revisions.unchanged_secrets(old.settings,
                                                                     new.settings),
                }
        return out

    # -- test-send ------------------------------------------------------------------------

    def test_integration(self, integration_id: int, lead: Any = SAMPLE, *, sample: bool = False,
                         send: bool = False, scope: int | None = None,
                         actor: str = CLI_ACTOR) -> dict[str, Any]:
        """Test the integration with ``lead`` (a JSON object of fields) or, with
        ``sample`` (or no lead), the sample lead: rendered only, or with ``send`` sent,
        judged and recorded apart from deliveries (see :mod:`.testsend`)."""
        if sample and lead is not SAMPLE:
            raise BadInput("lead: give a lead or ask for the sample, not both", field="lead")
        sender = TestSender(self.ledger, self.plugins, self.box, self.clock, self.routes)
        return sender.test(integration_id, lead, send=send, scope=scope, actor=actor)

    def test_attempts(self, integration_id: int, *,
                      scope: int | None = None) -> list[dict[str, Any]]:
        """The integration's recorded test-sends, newest first."""
        return test_attempts(self.ledger, integration_id, scope=scope)

    # -- helpers ----------------------------------------------------------------------------

    def _switch(self, s: Session, integration: Integration, account_id: int, active: bool,
                actor: str) -> list[tuple[int | None, int]]:
        """Activate (cap checked, held released) or deactivate (pending held); a revision
        and an audit event. The released deliveries, to announce after commit."""
        now = self.clock.now()
        released: list[int] = []
        previous = revisions.snapshot(integration, self.box)
        if active:
            self._check_cap(s, account_id)
            integration.active = True
            released = held.release(s, integration.id, now, queued=self.queued())
        else:
            integration.active = False
            held.hold(s, integration.id)
        change = "activated" if active else "deactivated"
        revisions.new_revision(s, integration, change, actor=actor, at=now, box=self.box,
                               previous=previous)
        audit.record(s, actor=actor, action=f"integration.{'activate' if active else 'deactivate'}",
                     object_type="integration", object_id=integration.id,
                     account_id=account_id, at=now, before={"active": not active},
                     after={"active": active, **({"released": len(released)} if active else {})})
        return [(integration.id, d) for d in released]

    def _check_cap(self, s: Session, account_id: int) -> None:
        self.ensure_plans(s)
        # Lock the account row so concurrent activations are counted one after another.
        account = s.scalar(
            select(Account).where(Account.id == account_id).with_for_update(of=Account)
        )
        assert account is not None
        limit = account.plan.max_active_integrations
        if limit is None:
            return
        active = active_count(s, account_id)
        if active >= limit:
            raise PlanLimitError(plan=account.plan.name, limit=limit, active=active)

    def _delete(self, s: Session, integration: Integration, account_id: int, actor: str,
                now: datetime) -> None:
        previous = revisions.snapshot(integration, self.box)
        before = revisions.shown(previous)
        integration.active = False
        integration.archived_at = now
        discarded = held.discard(s, integration.id, held.DELETED_REASON, now, pending_too=True)
        after = revisions.new_revision(s, integration, "deleted", actor=actor, at=now,
                                       box=self.box, previous=previous)
        audit.record(s, actor=actor, action="integration.delete", object_type="integration",
                     object_id=integration.id, account_id=account_id, at=now, before=before,
                     after={**revisions.shown(after), "discarded": discarded})

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
        try:
            for where, url in instance.targets():
                self.egress.check_url(url, field=where)
        except ConfigError:
            instance.close()
            raise
        transport = Transport(
            timeouts=timeouts_from(self.plugins.settings_for(connector), instance.config),
            proxy_route=self.routes.route(static_ip_pool) if static_ip_pool else None,
            egress=self.egress,
        )
        try:
            instance.check(transport.client(Redactor(secret_values(instance.config))))
            # A connector may refuse to leave success to a generic default, or derive one.
            settled = instance.settle_expectations(expectations or None)
        except RefusedTarget as exc:  # a fetch the check made (a WSDL, a redirect hop)
            raise ConfigError(f"config: {exc}", field="config") from None
        finally:
            instance.close()
            transport.close()
        if settled:
            expectations = settled  # stored, so shown by integrations show
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


def active_count(s: Session, account_id: int) -> int:
    """How many integrations of the account are active."""
    return int(
        s.scalar(
            select(func.count())
            .select_from(Integration)
            .join(Form, Form.id == Integration.form_id)
            .where(Form.account_id == account_id, Integration.active.is_(True))
        )
        or 0
    )


def _account_id(s: Session, integration: Integration) -> int:
    form = s.get(Form, integration.form_id)
    assert form is not None
    return form.account_id


def _check_realtime(realtime: Any, budget: Any) -> None:
    if not isinstance(realtime, bool):
        raise ConfigError("realtime: must be true or false", field="realtime")
    if not isinstance(budget, int | float) or isinstance(budget, bool) or not 0 < budget <= 30:
        raise ConfigError("realtime_budget: seconds between 0 and 30", field="realtime_budget")
