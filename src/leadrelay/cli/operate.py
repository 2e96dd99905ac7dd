"""Operating integrations with confidence: ``integrations test``, ``history``,
``discard-held``, ``delete``; ``forms delete``; ``accounts show``.

The verbs join the ``accounts``, ``forms`` and ``integrations`` groups of
:mod:`.manage`; every rule is the engine's (``app.manage``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from .context import pass_engine
from .manage import (
    _JSON_FLAG,
    _form,
    _show_forms,
    _show_integrations,
    accounts,
    forms,
    integrations,
)
from .output import print_json, print_table, short_time
from .params import ID, JSON_VALUE

if TYPE_CHECKING:
    from leadrelay.engine.app import Leadrelay


@accounts.command("show")
@click.argument("account_id", type=ID)
@pass_engine
def accounts_show(app: Leadrelay, account_id: int) -> None:
    """Print one account as JSON: its plan, the plan's limit and the active count (and,
    over the limit after a downgrade, what that means)."""
    print_json(app.manage.account_status(account_id))


@forms.command("delete")
@click.argument("form_id", type=ID)
@_JSON_FLAG
@pass_engine
def forms_delete(app: Leadrelay, form_id: int, as_json: bool) -> None:
    """Delete (archive) a form: it accepts no more leads and its integrations are deleted;
    its leads, deliveries and attempts stay inspectable."""
    _show_forms([_form(app.manage.delete_form(form_id))], as_json, single=True)


@integrations.command("test")
@click.argument("integration_id", type=ID)
@click.option("--lead", type=JSON_VALUE, metavar="JSON|@FILE",
              help="The lead's fields, a JSON object (inline or @file).")
@click.option("--sample", is_flag=True, help="Use the sample lead (the default).")
@click.option("--send", is_flag=True,
              help="Send it to the CRM and record the test attempt (apart from deliveries).")
@pass_engine
def integrations_test(app: Leadrelay, integration_id: int, lead: Any, sample: bool,
                      send: bool) -> None:
    """Try an integration, active or not, with a lead.

    Without --send: prints the request exactly as it would go out (secrets redacted);
    nothing is sent or written. With --send: sends it and prints the CRM's answer, the
    outcome, the rule that decided and the full trace; the test attempt never counts in
    the failed collection, the digest or the metrics. Exit 1 when the CRM's answer
    does not pass.
    """
    from leadrelay.engine.outcome import Outcome
    from leadrelay.engine.testsend import SAMPLE

    given = click.get_current_context().get_parameter_source("lead")
    chosen = lead if given is click.core.ParameterSource.COMMANDLINE else SAMPLE
    result = app.manage.test_integration(integration_id, chosen, sample=sample, send=send)
    print_json(result)
    if send and result["outcome"] != Outcome.ACCEPTED.value:
        raise click.exceptions.Exit(1)


@integrations.command("history")
@click.argument("integration_id", type=ID)
@click.option("--diff", nargs=2, type=int, metavar="FROM TO",
              help="Show what changed from revision FROM to revision TO.")
@_JSON_FLAG
@pass_engine
def integrations_history(app: Leadrelay, integration_id: int, diff: tuple[int, int] | None,
                         as_json: bool) -> None:
    """The integration's revisions: which change, who made it, when (newest first); with
    --diff, what changed between two (secrets only as changed/unchanged)."""
    out = app.manage.history(integration_id, diff=diff or None)
    if as_json:
        print_json(out)
        return
    if diff:
        d = out["diff"]
        click.echo(f"integration {integration_id}: revision {d['from']} → {d['to']}")
        if not d["changes"]:
            click.echo("  no change")
        for c in d["changes"]:
            if c.get("secret"):
                click.echo(f"  {c['path']}: secret changed")
            else:
                click.echo(f"  {c['path']}: {_short(c['before'])} → {_short(c['after'])}")
        for path in d["unchanged_secrets"]:
            click.echo(f"  {path}: secret unchanged")
        return
    print_table(["revision", "change", "actor", "at (UTC)"],
                ([r["revision"], r["change"], r["actor"], short_time(r["at"])]
                 for r in out["revisions"]),
                empty="no revisions recorded", flex=("actor",))


@integrations.command("discard-held")
@click.argument("integration_id", type=ID)
@click.option("--reason", required=True, help="Why: kept on each discarded delivery.")
@click.option("--delivery", "delivery_ids", type=ID, multiple=True, metavar="ID",
              help="Only this held delivery (repeat for several); all of them by default.")
@pass_engine
def integrations_discard_held(app: Leadrelay, integration_id: int, reason: str,
                              delivery_ids: tuple[int, ...]) -> None:
    """Discard an integration's held deliveries instead of releasing them: never sent,
    still inspectable (state discarded)."""
    count = app.manage.discard_held(integration_id, reason,
                                    delivery_ids=list(delivery_ids) or None)
    click.echo(f"discarded {count} held deliver{'y' if count == 1 else 'ies'} of "
               f"integration {integration_id}")


@integrations.command("delete")
@click.argument("integration_id", type=ID)
@_JSON_FLAG
@pass_engine
def integrations_delete(app: Leadrelay, integration_id: int, as_json: bool) -> None:
    """Delete (archive) an integration: it leaves its form and receives no more leads; its
    held deliveries are discarded ("integration deleted"); its history, deliveries and
    attempts stay inspectable."""
    _show_integrations([app.manage.delete_integration(integration_id)], as_json, single=True)


def _short(value: Any) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."
