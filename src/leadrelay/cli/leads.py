"""Leads and their deliveries: ``submit``, ``deliveries``, ``inspect``, ``replay``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

import click

from .context import pass_engine
from .output import clip, print_json, print_table, short_time, state_text
from .params import ID, MAX_ID, STATES, delivery_filter, filter_options, load_json

if TYPE_CHECKING:
    from leadrelay.engine.app import Leadrelay

SOURCES = ("form", "facebook", "external", "import")


@click.command()
@click.option("--form", "form_id", type=ID, required=True, metavar="ID",
              help="The form the lead was submitted to.")
@click.option("--json", "json_text", metavar="JSON", help="The lead, as a JSON object.")
@click.option("--file", "lead_file", type=click.File("r", encoding="utf-8"),
              help="A file holding the lead as a JSON object ('-' for standard input).")
@click.option("--source", type=click.Choice(SOURCES), default="form", show_default=True,
              help="Where the lead came from.")
@click.option("--external-id", metavar="TEXT",
              help="The source's own id of the lead (a Facebook leadgen id, an import row).")
@pass_engine
def submit(
    app: Leadrelay, form_id: int, json_text: str | None, lead_file: TextIO | None,
    source: str, external_id: str | None,
) -> None:
    """Accept one lead for a form.

    The lead is a JSON object given with --json, --file, or on standard input.
    It is stored with one delivery per active integration of the form before
    this returns; workers then send it. Prints the lead id and delivery ids as JSON.

    On the embedded default, a running `leadrelay serve` picks the deliveries up
    from the ledger within its sweeper's grace period (about 30 s).
    """
    from leadrelay.engine.errors import BadInput

    if json_text is not None and lead_file is not None:
        raise click.UsageError("give the lead with --json or --file, not both")
    try:
        if json_text is not None:
            text = json_text
        elif lead_file is not None:
            text = lead_file.read()
        else:
            stdin = sys.stdin
            if stdin is None or stdin.isatty():
                raise click.UsageError("give the lead with --json, --file or on standard input")
            text = stdin.read()
    except UnicodeDecodeError as exc:
        raise BadInput(f"payload: not UTF-8 text (byte {exc.start})", field="payload") from None
    if not text.strip():
        raise BadInput("payload: empty: give the lead as a JSON object", field="payload")
    try:
        payload = load_json(text)
    except ValueError as exc:
        raise BadInput(f"payload: {exc}", field="payload") from None
    accepted = app.submit(form_id, payload, source=source, external_id=external_id)
    print_json({"lead_id": accepted.lead_id, "delivery_ids": list(accepted.delivery_ids)})


@click.command()
@click.option("--state", type=click.Choice(STATES), help="Only deliveries in this state.")
@click.option("--failed", is_flag=True,
              help="The failed collection: same as --state not_integrated.")
@filter_options
@click.option("--limit", type=click.IntRange(min=0, max=1000), default=100, show_default=True,
              help="At most this many, newest first (0: every one).")
@click.option("--cursor", metavar="CURSOR",
              help="Go on where a previous listing stopped (it prints the cursor).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--csv", "as_csv", is_flag=True,
              help="Print CSV with each lead's fields, safe to open in a spreadsheet "
                   "(no cell runs as a formula); every match, --limit and --cursor aside.")
@pass_engine
def deliveries(
    app: Leadrelay, state: str | None, failed: bool, limit: int, cursor: str | None,
    as_json: bool, as_csv: bool, **filters: Any,
) -> None:
    """List deliveries, newest first, with their state and last outcome.

    --failed lists the failed collection: deliveries that are "not integrated"
    after their last attempt, waiting to be inspected or replayed.
    """
    if failed:
        if state not in (None, "not_integrated"):
            raise click.UsageError("--failed means --state not_integrated")
        state = "not_integrated"
    flt = delivery_filter(state=state, **filters)
    if as_csv:
        if as_json:
            raise click.UsageError("--csv and --json: choose one")
        click.echo(app.deliveries_csv(flt), nl=False)
        return
    if limit:
        page = app.deliveries_page(flt, limit=limit, cursor=cursor)
        rows, more = page.items, page.next_cursor
    else:
        rows, more = app.deliveries(flt), None  # every one: no page, no cursor
    if more:
        click.echo(f"more: add --cursor {more} for the next {limit}", err=True)
    if as_json:
        print_json(rows)
        return
    names = {i.id: i.name for i in app.manage.integrations()}
    title = "Failed collection (not integrated)" if state == "not_integrated" else "Deliveries"
    render_deliveries(rows, names, title=title)
    if state == "not_integrated":
        _facebook_not_read(app, filters.get("account_id"))


def _facebook_not_read(app: Leadrelay, account_id: int | None) -> None:
    """Say so when Facebook leads are failing too: they have no delivery to list here."""
    from leadrelay.engine.ledger import FacebookReadState

    waiting = app.facebook.count(FacebookReadState.NOT_READ, account_id=account_id)
    if waiting:
        account = f" --account {account_id}" if account_id is not None else ""
        click.echo(f"and {waiting} Facebook lead(s) whose Graph read gave up (no delivery yet):"
                   f" leadrelay facebook leads{account} --state not_read", err=True)


def render_deliveries(rows: list[dict[str, Any]], names: dict[int, str], *, title: str) -> None:
    """The deliveries table (also used by the demo).

    One line per delivery; its result is the CRM's reference for the new
    record when delivered, else the last outcome and reason.
    """
    print_table(
        ["id", "lead", "integration", "state", "tries", "result",
         "created (UTC)"],
        (
            [
                row["id"], row["lead_id"],
                clip(f"{row['integration_id']} {names.get(row['integration_id'], '')}", 20),
                state_text(row["state"]), row["attempts"], _result(row),
                short_time(row["created_at"]),
            ]
            for row in rows
        ),
        title=title,
        empty="no deliveries",
        flex=("integration", "result"),
    )


def _result(row: dict[str, Any]) -> str:
    if row["state"] == "delivered":
        return f"ref {row['crm_reference']}" if row["crm_reference"] else "accepted"
    return clip(": ".join(x for x in (row["last_outcome"], row["last_reason"]) if x), 300)


@click.command()
@click.argument("delivery_id", type=ID)
@pass_engine
def inspect(app: Leadrelay, delivery_id: int) -> None:
    """Print everything about one delivery as one JSON object.

    The lead, the integration (its config with secrets redacted), and every
    attempt with the requests sent, the responses received, and the trace of
    the rules that judged them.
    """
    print_json(app.inspect(delivery_id))


@click.command()
@filter_options
@click.option("--limit", type=click.IntRange(min=0, max=MAX_ID), default=0,
              help="At most this many deliveries (0: all that match).")
@click.option("--dry-run", is_flag=True,
              help="Show how many deliveries would be replayed and what would be sent; "
                   "send nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_engine
def replay(app: Leadrelay, limit: int, dry_run: bool, as_json: bool, **filters: Any) -> None:
    """Send failed deliveries again.

    Replays the failed collection (deliveries "not integrated"), narrowed by
    the filters. Each chosen delivery starts a new round of attempts under its
    integration's retry policy, with the same idempotency key and its history
    kept. With no filter, the whole failed collection is replayed.
    """
    plan = app.replay(delivery_filter(limit=limit, **filters), dry_run=dry_run)
    if as_json:
        print_json({"dry_run": plan.dry_run, "count": plan.count,
                    "delivery_ids": list(plan.delivery_ids), "previews": list(plan.previews)})
        return
    if not dry_run:
        ids = ", ".join(f"#{i}" for i in plan.delivery_ids)
        click.echo(f"replayed {plan.count} deliveries" + (f": {ids}" if ids else ""))
        return
    click.echo(f"dry run: {plan.count} deliveries would be replayed; nothing was sent")
    for preview in plan.previews:
        click.echo("")
        click.echo(f"#{preview['delivery_id']} to {preview['integration']} "
                   f"(last failure: {clip(preview.get('last_reason'), 100)})")
        if "error" in preview:
            click.echo(f"  cannot be rendered: {preview['error']}")
            continue
        request = preview["request"]
        click.echo(f"  {request['method']} {request['url']}")
        for name, value in request["headers"].items():
            click.echo(f"  {name}: {value}")
        click.echo(f"  {clip(request['body'], 500)}")
