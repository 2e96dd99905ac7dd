"""``leadrelay plans``: plans and their caps on active integrations; ``leadrelay audit``.

Plans can also be declared in a file (``LEADRELAY_PLANS_FILE``, see
:mod:`leadrelay.engine.plans`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .context import pass_engine
from .output import print_json, print_table, short_time
from .params import ID

if TYPE_CHECKING:
    from leadrelay.engine.app import Leadrelay

_JSON_FLAG = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
_LIMIT = click.option("--limit", "limit", required=True, metavar="N|unlimited",
                      help="How many integrations an account on the plan may have active, "
                           "or 'unlimited'.")


@click.group()
def plans() -> None:
    """Plans: each caps how many integrations an account may have active.

    Plans can also be declared in a TOML file named by LEADRELAY_PLANS_FILE
    ([plans] NAME = N or "unlimited").
    """


@plans.command("list")
@_JSON_FLAG
@pass_engine
def plans_list(app: Leadrelay, as_json: bool) -> None:
    """List the plans and their caps."""
    from leadrelay.engine.management import describe_plan

    rows = [describe_plan(p) for p in app.manage.plans()]
    if as_json:
        print_json(rows)
        return
    print_table(["id", "name", "max active integrations"],
                ([r["id"], r["name"], r["max_active_integrations"]] for r in rows),
                empty="no plans")


@plans.command("create")
@click.option("--name", required=True, help="The plan's name.")
@_LIMIT
@_JSON_FLAG
@pass_engine
def plans_create(app: Leadrelay, name: str, limit: str, as_json: bool) -> None:
    """Add a plan."""
    from leadrelay.engine.management import describe_plan

    _show(describe_plan(app.manage.create_plan(name, limit)), as_json)


@plans.command("update")
@click.argument("name")
@_LIMIT
@_JSON_FLAG
@pass_engine
def plans_update(app: Leadrelay, name: str, limit: str, as_json: bool) -> None:
    """Change a plan's cap. Lowering it deactivates nothing: an account over it
    activates nothing new until it is under."""
    from leadrelay.engine.management import describe_plan

    _show(describe_plan(app.manage.update_plan(name, limit)), as_json)


def _show(row: dict[str, object], as_json: bool) -> None:
    if as_json:
        print_json(row)
        return
    print_table(["id", "name", "max active integrations"],
                [[row["id"], row["name"], row["max_active_integrations"]]])


@click.command("audit")
@click.option("--account", "account_id", type=ID, metavar="ID",
              help="The account whose management changes to list.")
@click.option("--plans", "plans_only", is_flag=True, help="Changes to plans instead.")
@click.option("--object", "object_type",
              type=click.Choice(["account", "form", "integration", "key", "plan"]),
              help="Only changes to this kind of object.")
@click.option("--id", "object_id", type=ID, metavar="ID", help="Only changes to this object.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="Continue a listing where the previous page stopped.")
@_JSON_FLAG
@pass_engine
def audit(app: Leadrelay, account_id: int | None, plans_only: bool, object_type: str | None,
          object_id: int | None, limit: int, cursor: str | None, as_json: bool) -> None:
    """The audit trail: every management change of an account (or of plans), newest first,
    with its actor (the API key's name, or cli), before and after (secrets masked)."""
    if (account_id is None) == (not plans_only):
        raise click.UsageError("give --account ID or --plans")
    items, next_cursor = app.manage.audit_trail(account_id, limit=limit, cursor=cursor,
                                                object_type=object_type, object_id=object_id)
    if as_json:
        print_json({"items": items, "next_cursor": next_cursor})
        return
    print_table(["id", "at (UTC)", "actor", "action", "object"],
                ([e["id"], short_time(e["at"]), e["actor"], e["action"],
                  f"{e['object_type']} {e['object_id']}"] for e in items),
                empty="no changes", flex=("actor",))
    if next_cursor:
        click.echo(f"more: --cursor {next_cursor}")
