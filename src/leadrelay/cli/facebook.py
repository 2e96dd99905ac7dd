"""``leadrelay facebook``: connect Facebook pages, and see what their leads became.

The secrets (app secret, verify token, page access token) are asked for with hidden
input when not given as options, sealed by the engine, and never printed. Everything
is checked by the engine before anything is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from .context import pass_engine
from .output import print_json, print_table, short_time
from .params import ID, JSON_VALUE

if TYPE_CHECKING:
    from leadrelay.engine.app import Leadrelay

_JSON_FLAG = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
_FORM = click.option(
    "--form", "forms", multiple=True, metavar="FB_FORM_ID=FORM_ID",
    help="Send the leads of this Facebook lead form to this leadrelay form. Repeat for several.")
_FIELD = click.option(
    "--field", "fields", multiple=True, metavar="NAME=TARGET",
    help="Map a field_data name to a lead field (city=town), to two split at the first "
         "space (full_name=first_name,last_name), or drop it (internal=-). Repeat for several.")
_RETRY = click.option("--retry", type=JSON_VALUE, metavar="JSON",
                      help='How Graph reads are retried, e.g. \'{"max_attempts": 5}\'.')


@click.group()
def facebook() -> None:
    """Facebook Lead Ads: connected pages, and the leads their notifications carried."""


@facebook.command("connect")
@click.option("--account", "account_id", type=ID, required=True, metavar="ID",
              help="The account the page's leads belong to.")
@click.option("--page-id", required=True, help="The Facebook page id (digits).")
@click.option("--name", help="A name to tell the page apart.")
@click.option("--app-secret", prompt=True, hide_input=True,
              help="The Meta app's secret (asked for when left out).")
@click.option("--verify-token", prompt=True, hide_input=True,
              help="The verify token entered in the app's webhook settings (asked for).")
@click.option("--page-access-token", prompt=True, hide_input=True,
              help="A page access token with leads_retrieval (asked for).")
@_FORM
@_FIELD
@_RETRY
@_JSON_FLAG
@pass_engine
def facebook_connect(
    app: Leadrelay, account_id: int, page_id: str, name: str | None, app_secret: str,
    verify_token: str, page_access_token: str, forms: tuple[str, ...],
    fields: tuple[str, ...], retry: Any, as_json: bool,
) -> None:
    """Connect a Facebook page to an account; prints the webhook URL for the Meta app."""
    row = app.facebook.connect(
        account_id, page_id, name=name, app_secret=app_secret, verify_token=verify_token,
        page_access_token=page_access_token, forms=_form_map(forms),
        field_map=_field_map(fields), retry=retry,
    )
    _show([app.facebook.describe(row)], as_json, single=True)


@facebook.command("update")
@click.argument("connection_id", type=ID)
@click.option("--name", help="A new name.")
@click.option("--app-secret", help="A new app secret.")
@click.option("--verify-token", help="A new verify token.")
@click.option("--page-access-token", help="A new page access token (an expired one, 190).")
@click.option("--ask", is_flag=True, help="Ask for a new page access token, hidden.")
@_FORM
@click.option("--no-form", "no_forms", multiple=True, metavar="FB_FORM_ID",
              help="Stop mapping this Facebook form.")
@_FIELD
@click.option("--no-field", "no_fields", multiple=True, metavar="NAME",
              help="Back to the default for this field_data name.")
@_RETRY
@_JSON_FLAG
@pass_engine
def facebook_update(
    app: Leadrelay, connection_id: int, name: str | None, app_secret: str | None,
    verify_token: str | None, page_access_token: str | None, ask: bool,
    forms: tuple[str, ...], no_forms: tuple[str, ...], fields: tuple[str, ...],
    no_fields: tuple[str, ...], retry: Any, as_json: bool,
) -> None:
    """Change a connection; --form and --field add to what it has. Leads of a Facebook form
    mapped now, stored unroutable until now, are read and routed."""
    current = app.facebook.pages.get(connection_id)
    changes: dict[str, Any] = {}
    if ask:
        page_access_token = click.prompt("Page access token", hide_input=True)
    for key, value in (("name", name), ("app_secret", app_secret),
                       ("verify_token", verify_token),
                       ("page_access_token", page_access_token), ("retry", retry)):
        if value is not None:
            changes[key] = value
    if forms or no_forms:
        mapping: dict[str, Any] = {**current.forms, **_form_map(forms)}
        for fb_form in no_forms:
            if mapping.pop(fb_form, None) is None:
                raise click.UsageError(f"--no-form: Facebook form {fb_form} is not mapped")
        changes["forms"] = mapping
    if fields or no_fields:
        field_map = {**current.field_map, **_field_map(fields)}
        for name_ in no_fields:
            field_map.pop(name_, None)
        changes["field_map"] = field_map
    if not changes:
        raise click.UsageError("nothing to change: give --name, a secret, --form, --no-form, "
                               "--field, --no-field or --retry")
    _show([app.facebook.describe(app.facebook.update(connection_id, **changes))], as_json,
          single=True)


@facebook.command("list")
@click.option("--account", "account_id", type=ID, metavar="ID", help="Only this account's.")
@_JSON_FLAG
@pass_engine
def facebook_list(app: Leadrelay, account_id: int | None, as_json: bool) -> None:
    """List the connected pages."""
    _show([app.facebook.describe(r) for r in app.facebook.pages.list(account_id)], as_json)


@facebook.command("show")
@click.argument("connection_id", type=ID)
@pass_engine
def facebook_show(app: Leadrelay, connection_id: int) -> None:
    """Print one connection as JSON (its secrets masked)."""
    print_json(app.facebook.describe(app.facebook.pages.get(connection_id)))


@facebook.command("leads")
@click.option("--account", "account_id", type=ID, metavar="ID", help="Only this account's.")
@click.option("--connection", "connection_id", type=ID, metavar="ID", help="Only this page's.")
@click.option("--state", type=click.Choice(["reading", "stored", "not_read", "unroutable"]),
              help="not_read: the Graph reads that gave up; unroutable: unmapped forms.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@_JSON_FLAG
@pass_engine
def facebook_leads(app: Leadrelay, account_id: int | None, connection_id: int | None,
                   state: str | None, limit: int, as_json: bool) -> None:
    """The leads Facebook notified, newest first: read, waiting, or why not."""
    rows = app.facebook.leads(account_id=account_id, connection_id=connection_id,
                              state=state, limit=limit)
    if as_json:
        print_json(rows)
        return
    print_table(
        ["id", "leadgen_id", "page", "fb form", "state", "tries", "lead", "received", "reason"],
        [[r["id"], r["leadgen_id"], r["page_id"], r["facebook_form_id"], r["state"],
          r["attempts"], r["lead_id"] or "", short_time(r["received_at"]), r["reason"] or ""]
         for r in rows],
        empty="no Facebook leads", flex={"reason"},
    )


@facebook.command("read-again")
@click.argument("connection_id", type=ID)
@pass_engine
def facebook_read_again(app: Leadrelay, connection_id: int) -> None:
    """Read again the page's leads whose Graph read gave up (after a new token)."""
    ids = app.facebook.read_again(connection_id=connection_id)
    click.echo(f"{len(ids)} Facebook lead(s) to read again")


def _form_map(values: tuple[str, ...]) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for value in values:
        fb_form, sep, form_id = value.partition("=")
        if not sep or not form_id.strip().isdigit():
            raise click.UsageError(f"--form: expected FB_FORM_ID=FORM_ID, got {value!r}")
        mapping[fb_form.strip()] = int(form_id)
    return mapping


def _field_map(values: tuple[str, ...]) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for value in values:
        name, sep, target = value.partition("=")
        if not sep or not name.strip():
            raise click.UsageError(f"--field: expected NAME=TARGET, got {value!r}")
        target = target.strip()
        mapping[name.strip()] = (None if target == "-" else
                                 [t.strip() for t in target.split(",")] if "," in target
                                 else target)
    return mapping


def _show(rows: list[dict[str, Any]], as_json: bool, *, single: bool = False) -> None:
    if as_json:
        print_json(rows[0] if single else rows)
        return
    print_table(
        ["id", "account", "page_id", "name", "forms", "webhook"],
        [[r["id"], r["account_id"], r["page_id"], r["name"],
          ", ".join(f"{k}→{v}" for k, v in r["forms"].items()) or "(none)", r["webhook_url"]]
         for r in rows],
        empty="no connected pages", flex={"forms", "webhook"},
    )
