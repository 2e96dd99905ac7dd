"""Setting things up without SQL: ``accounts``, ``forms`` and ``integrations``.

Everything is validated by the engine before anything is written: a refused
command changes nothing. Integration configs are shown with their secrets
redacted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from .context import pass_engine
from .output import print_json, print_table, short_time
from .params import ID, JSON_VALUE

if TYPE_CHECKING:
    from leadrelay.engine.app import Leadrelay
    from leadrelay.engine.ledger import Account, Form, Integration

_JSON_FLAG = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


# -- accounts -----------------------------------------------------------------------


@click.group()
def accounts() -> None:
    """Accounts: who owns forms, on which plan."""


@accounts.command("create")
@click.option("--name", required=True, help="The account's name.")
@click.option("--owner-email", required=True, help="Who receives the failure digest.")
@click.option("--plan", default="starter", show_default=True,
              help="The plan, which caps the number of active integrations.")
@_JSON_FLAG
@pass_engine
def accounts_create(app: Leadrelay, name: str, owner_email: str, plan: str, as_json: bool) -> None:
    """Add an account."""
    account = app.manage.create_account(name, owner_email, plan=plan)
    _show_accounts([_account(account, plan)], as_json, single=True)


@accounts.command("update")
@click.argument("account_id", type=int)
@click.option("--name", help="A new name.")
@click.option("--owner-email", help="Who receives the failure digest from now on.")
@click.option("--digest-hours", metavar="HOURS",
              help="Hours each failure digest of this account covers; 'default' for the "
                   "deployment's LEADRELAY_DIGEST_HOURS.")
@click.option("--plan", help="A new plan; below the active count it deactivates nothing.")
@_JSON_FLAG
@pass_engine
def accounts_update(app: Leadrelay, account_id: int, name: str | None, owner_email: str | None,
                    digest_hours: str | None, plan: str | None, as_json: bool) -> None:
    """Change an account's name, owner email, digest interval or plan."""
    changes: dict[str, Any] = {}
    if plan is not None:
        changes["plan"] = plan
    if name is not None:
        changes["name"] = name
    if owner_email is not None:
        changes["owner_email"] = owner_email
    if digest_hours is not None:
        changes["digest_hours"] = None if digest_hours == "default" else digest_hours
    if not changes:
        raise click.UsageError(
            "nothing to change: give --name, --owner-email, --digest-hours or --plan")
    account = app.manage.update_account(account_id, **changes)
    _show_accounts([_account(account)], as_json, single=True)


@accounts.command("list")
@_JSON_FLAG
@pass_engine
def accounts_list(app: Leadrelay, as_json: bool) -> None:
    """List every account."""
    _show_accounts([_account(a) for a in app.manage.accounts()], as_json)


def _account(a: Account, plan: str | None = None) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "owner_email": a.owner_email,
            "plan": plan or a.plan.name, "digest_hours": a.digest_hours,
            "created_at": a.created_at.isoformat()}


def _show_accounts(rows: list[dict[str, Any]], as_json: bool, *, single: bool = False) -> None:
    if as_json:
        print_json(rows[0] if single else rows)
        return
    print_table(["id", "name", "owner email", "plan", "created (UTC)"],
                ([r["id"], r["name"], r["owner_email"], r["plan"], short_time(r["created_at"])]
                 for r in rows), empty="no accounts", flex=("name", "owner email"))


# -- forms --------------------------------------------------------------------------


@click.group()
def forms() -> None:
    """Forms: where leads come in; each form's integrations receive its leads."""


_ORIGIN = click.option(
    "--allowed-origin", "allowed_origins", multiple=True, metavar="ORIGIN",
    help="A page origin allowed to post to the form (https://shop.example; * for any). "
         "Repeat for several.")
_REQUIRED = click.option(
    "--required-field", "required_fields", multiple=True, metavar="FIELD",
    help="A field every lead of the form must have. Repeat for several.")
_THANKS = click.option("--thank-you-url", metavar="URL",
                       help="Where a plain HTML form post is redirected once stored.")
_MESSAGE = click.option("--thank-you-message", metavar="TEXT",
                        help="What the browser embed shows once a lead is received.")


@forms.command("create")
@click.option("--account", "account_id", type=ID, required=True, metavar="ID",
              help="The account that owns the form.")
@click.option("--name", required=True, help="The form's name.")
@_ORIGIN
@_REQUIRED
@_THANKS
@_MESSAGE
@_JSON_FLAG
@pass_engine
def forms_create(
    app: Leadrelay, account_id: int, name: str, allowed_origins: tuple[str, ...],
    required_fields: tuple[str, ...], thank_you_url: str | None,
    thank_you_message: str | None, as_json: bool,
) -> None:
    """Add a form to an account; its public key is what its pages post to."""
    form = app.manage.create_form(account_id, name, allowed_origins=list(allowed_origins),
                                  required_fields=list(required_fields),
                                  thank_you_url=thank_you_url,
                                  thank_you_message=thank_you_message)
    _show_forms([_form(form)], as_json, single=True)


@forms.command("list")
@click.option("--account", "account_id", type=ID, metavar="ID", help="Only this account's forms.")
@_JSON_FLAG
@pass_engine
def forms_list(app: Leadrelay, account_id: int | None, as_json: bool) -> None:
    """List forms."""
    _show_forms([_form(f) for f in app.manage.forms(account_id)], as_json)


@forms.command("show")
@click.argument("form_id", type=ID)
@pass_engine
def forms_show(app: Leadrelay, form_id: int) -> None:
    """Print one form as JSON: public key, allowed origins, required fields."""
    print_json(_form(app.manage.get_form(form_id)))


@forms.command("update")
@click.argument("form_id", type=ID)
@click.option("--name", help="A new name.")
@_ORIGIN
@click.option("--no-allowed-origins", is_flag=True, help="Allow no page origin any more.")
@_REQUIRED
@click.option("--no-required-fields", is_flag=True, help="Require no field any more.")
@_THANKS
@_MESSAGE
@click.option("--active/--inactive", default=None,
              help="Accept leads, or refuse every lead posted to the form.")
@_JSON_FLAG
@pass_engine
def forms_update(
    app: Leadrelay, form_id: int, name: str | None, allowed_origins: tuple[str, ...],
    no_allowed_origins: bool, required_fields: tuple[str, ...], no_required_fields: bool,
    thank_you_url: str | None, thank_you_message: str | None, active: bool | None,
    as_json: bool,
) -> None:
    """Change a form; --allowed-origin and --required-field replace the whole list."""
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if allowed_origins or no_allowed_origins:
        changes["allowed_origins"] = list(allowed_origins)
    if required_fields or no_required_fields:
        changes["required_fields"] = list(required_fields)
    if thank_you_url is not None:
        changes["thank_you_url"] = thank_you_url or None
    if thank_you_message is not None:
        changes["thank_you_message"] = thank_you_message or None
    if active is not None:
        changes["active"] = active
    if not changes:
        raise click.UsageError("nothing to change: give --name, --allowed-origin, "
                               "--required-field, --thank-you-url, --thank-you-message or "
                               "--active/--inactive")
    _show_forms([_form(app.manage.update_form(form_id, **changes))], as_json, single=True)


@forms.command("rotate-key")
@click.argument("form_id", type=ID)
@_JSON_FLAG
@pass_engine
def forms_rotate_key(app: Leadrelay, form_id: int, as_json: bool) -> None:
    """Give a form a new public key: posts to the old one are refused from now on."""
    _show_forms([_form(app.manage.rotate_form_key(form_id))], as_json, single=True)


def _form(f: Form) -> dict[str, Any]:
    from leadrelay.engine.forms import describe_form

    return describe_form(f)


def _show_forms(rows: list[dict[str, Any]], as_json: bool, *, single: bool = False) -> None:
    if as_json:
        print_json(rows[0] if single else rows)
        return
    print_table(["id", "account", "name", "public key", "active", "origins", "created (UTC)"],
                ([r["id"], r["account_id"], r["name"], r["public_key"], r["active"],
                  " ".join(r["allowed_origins"]), short_time(r["created_at"])]
                 for r in rows), empty="no forms", flex=("name", "origins"))


# -- integrations -------------------------------------------------------------------


@click.group()
def integrations() -> None:
    """Integrations: a form's leads going to one CRM through one connector.

    JSON options take the JSON inline or from a file: --config @crm.json.
    """


_CONFIG_HELP = "The connector's config (see docs/configuring.md). Secrets in it are stored " \
    "encrypted and never shown."
_EXPECTATIONS_HELP = "What a good CRM answer looks like; the connector's default when left out."
_RETRY_HELP = 'Retry policy, e.g. {"max_attempts": 3, "delays": ["2m", "5m"]}.'
_POOL_HELP = "Send through this static-IP proxy pool of plugins.toml ([proxies.NAME]); " \
    "a connector named CONNECTOR_static_ip (http_post_static_ip) uses the pool 'default'."
_RATE_HELP = "What the CRM's API allows, e.g. 5/s or 300/min: every worker process " \
    "together sends no faster."
_REALTIME_HELP = "Deliver inside the submission request of the HTTP API, waiting at most " \
    "--realtime-budget seconds for this CRM."


@integrations.command("create")
@click.option("--form", "form_id", type=ID, required=True, metavar="ID",
              help="The form whose leads go to this integration.")
@click.option("--name", required=True, help="A name for the integration.")
@click.option("--connector", required=True, help="The connector (see `leadrelay plugins`).")
@click.option("--config", type=JSON_VALUE, required=True, help=_CONFIG_HELP)
@click.option("--expectations", type=JSON_VALUE, help=_EXPECTATIONS_HELP)
@click.option("--retry", type=JSON_VALUE, help=_RETRY_HELP)
@click.option("--static-ip-pool", metavar="POOL", help=_POOL_HELP)
@click.option("--realtime", is_flag=True, help=_REALTIME_HELP)
@click.option("--realtime-budget", type=float, default=3.0, show_default=True,
              help="Seconds a real-time submission waits for this CRM.")
@click.option("--active", is_flag=True,
              help="Activate it at once (counts against the account's plan).")
@click.option("--rate-limit", metavar="RATE", help=_RATE_HELP)
@_JSON_FLAG
@pass_engine
def integrations_create(
    app: Leadrelay, form_id: int, name: str, connector: str, config: Any, expectations: Any,
    retry: Any, static_ip_pool: str | None, realtime: bool, realtime_budget: float,
    active: bool, rate_limit: str | None, as_json: bool,
) -> None:
    """Add an integration to a form (inactive unless --active)."""
    integration = app.manage.create_integration(
        form_id, name=name, connector=connector, config=config, expectations=expectations,
        retry=retry, static_ip_pool=static_ip_pool, realtime=realtime,
        realtime_budget=realtime_budget, active=active, rate_limit=rate_limit,
    )
    _show_integrations([integration], as_json, single=True)


@integrations.command("list")
@click.option("--form", "form_id", type=ID, metavar="ID", help="Only this form's integrations.")
@click.option("--archived", is_flag=True, help="Deleted integrations too.")
@_JSON_FLAG
@pass_engine
def integrations_list(app: Leadrelay, form_id: int | None, archived: bool,
                      as_json: bool) -> None:
    """List integrations."""
    _show_integrations(app.manage.integrations(form_id, archived=archived), as_json)


@integrations.command("show")
@click.argument("integration_id", type=ID)
@pass_engine
def integrations_show(app: Leadrelay, integration_id: int) -> None:
    """Print one integration as JSON, its config's secrets redacted."""
    from leadrelay.engine.report import describe_integration

    print_json(describe_integration(app.manage.get_integration(integration_id)))


@integrations.command("update")
@click.argument("integration_id", type=ID)
@click.option("--name", help="A new name.")
@click.option("--config", type=JSON_VALUE,
              help="A new config; it replaces the whole config, secrets included.")
@click.option("--expectations", type=JSON_VALUE, help=_EXPECTATIONS_HELP)
@click.option("--retry", type=JSON_VALUE, help=_RETRY_HELP)
@click.option("--static-ip-pool", metavar="POOL", help=_POOL_HELP)
@click.option("--realtime/--no-realtime", default=None, help=_REALTIME_HELP)
@click.option("--realtime-budget", type=float,
              help="Seconds a real-time submission waits for this CRM.")
@click.option("--rate-limit", metavar="RATE", help=_RATE_HELP + " 'none' removes it.")
@_JSON_FLAG
@pass_engine
def integrations_update(
    app: Leadrelay, integration_id: int, as_json: bool, **options: Any
) -> None:
    """Change an integration's settings; workers use them from its next delivery."""
    changes = {k: v for k, v in options.items() if v is not None}
    if str(changes.get("rate_limit", "")).strip().lower() == "none":
        changes["rate_limit"] = None
    if not changes:
        raise click.UsageError(
            "nothing to change: give --name, --config, --expectations, --retry, "
            "--static-ip-pool, --realtime/--no-realtime, --realtime-budget or --rate-limit"
        )
    _show_integrations([app.manage.update_integration(integration_id, **changes)], as_json,
                       single=True)


@integrations.command("activate")
@click.argument("integration_id", type=ID)
@_JSON_FLAG
@pass_engine
def integrations_activate(app: Leadrelay, integration_id: int, as_json: bool) -> None:
    """Switch an integration on: the form's new leads go to it, its held deliveries are
    released at once, in order. Respects the plan's cap; already on: nothing changes."""
    _show_integrations([app.manage.set_active(integration_id, True)], as_json, single=True)


@integrations.command("deactivate")
@click.argument("integration_id", type=ID)
@_JSON_FLAG
@pass_engine
def integrations_deactivate(app: Leadrelay, integration_id: int, as_json: bool) -> None:
    """Switch an integration off: new leads no longer go to it; its pending and retrying
    deliveries are held (never sent) until it is activated again, which releases them."""
    _show_integrations([app.manage.set_active(integration_id, False)], as_json, single=True)


def _show_integrations(
    items: list[Integration], as_json: bool, *, single: bool = False
) -> None:
    from leadrelay.engine.report import describe_integration

    if as_json:
        described = [describe_integration(i) for i in items]
        print_json(described[0] if single else described)
        return
    print_table(
        ["id", "form", "name", "connector", "static-IP pool", "active", "realtime", "revision"],
        ([i.id, i.form_id, i.name, i.connector, i.static_ip_pool, i.active, i.realtime,
          i.revision] for i in items),
        empty="no integrations",
        flex=("name",),
    )
