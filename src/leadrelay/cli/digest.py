"""``digest``: preview the failure digest, send it now, list the digests sent."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from . import CliFailure
from .context import pass_engine
from .output import clip, print_json, print_table, short_time

if TYPE_CHECKING:
    from leadrelay.engine.app import Leadrelay


@click.command()
@click.option("--preview", "action", flag_value="preview",
              help="Print the digest the current window would send now; send and record "
                   "nothing.")
@click.option("--send-now", "action", flag_value="send-now",
              help="Send the digest of the current window (up to now) at once, after any "
                   "closed window still unsent.")
@click.option("--history", "action", flag_value="history",
              help="List the digests claimed: window, recipient, Message-ID, state.")
@click.option("--account", "account_id", type=int, metavar="ID",
              help="Only this account [default: every account].")
@click.option("--html", is_flag=True, help="With --preview: print the HTML part, not the text.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="With --history: at most this many, newest window first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_engine
def digest(app: Leadrelay, action: str | None, account_id: int | None, html: bool,
           limit: int, as_json: bool) -> None:
    """The failure digest each account owner receives (LEADRELAY_SMTP_URL).

    Every LEADRELAY_DIGEST_HOURS hours (or the account's own interval), the
    scheduler sends each owner with failures in the window one email: what
    failed, why, and the command that replays exactly those deliveries. No
    failures, no email. Give one of --preview, --send-now, --history.
    """
    if action is None:
        raise click.UsageError("give one of --preview, --send-now or --history")
    if html and action != "preview":
        raise click.UsageError("--html goes with --preview")
    if action == "preview":
        _preview(app, account_id, html=html, as_json=as_json)
    elif action == "send-now":
        _send_now(app, account_id, as_json=as_json)
    else:
        _history(app, account_id, limit=limit, as_json=as_json)


def _preview(app: Leadrelay, account_id: int | None, *, html: bool, as_json: bool) -> None:
    previews = app.digests.preview(account_id)
    if as_json:
        print_json([p.as_dict() for p in previews])
        return
    for n, preview in enumerate(previews):
        if n:
            click.echo("")
        window = preview.content.window
        if preview.rendered is None:
            click.echo(f"account {preview.account_id} ({preview.account_name}): no failures "
                       f"since {short_time(window.start.isoformat())} UTC; nothing would be "
                       "sent")
            continue
        click.echo(f"To: {preview.recipient}")
        click.echo(f"Subject: {preview.rendered.subject}")
        click.echo("")
        click.echo(preview.rendered.html if html else preview.rendered.text, nl=False)
    if not previews:
        click.echo("no accounts")


def _send_now(app: Leadrelay, account_id: int | None, *, as_json: bool) -> None:
    results = app.digests.send_now(account_id)
    if as_json:
        print_json([r.as_dict() for r in results])
    else:
        for r in results:
            head = f"account {r.account_id}, {r.window}:"
            if r.state == "empty":
                click.echo(f"{head} no failures, nothing sent")
            elif r.state == "sent":
                click.echo(f"{head} sent {r.failures} failures to {r.recipient} "
                           f"(Message-ID {r.message_id})")
            # A digest not sent is the error line below (and in --history).
    unsent = [r for r in results if r.state not in ("sent", "empty", "skipped")]
    if unsent:
        raise CliFailure(f"{len(unsent)} digest(s) not sent: {unsent[0].error} "
                         "(`leadrelay digest --history` shows each)")


def _history(app: Leadrelay, account_id: int | None, *, limit: int, as_json: bool) -> None:
    rows = app.digests.history(account_id, limit=limit)
    if as_json:
        print_json(rows)
        return
    print_table(
        ["id", "account", "window (UTC)", "state", "recipient", "message-id", "failures",
         "tries", "last error"],
        ([r["id"], r["account_id"],
          f"{short_time(r['window_start'])} to {short_time(r['window_end'])}",
          r["state"], r["recipient"], r["message_id"], r["failures"], r["attempts"],
          clip(r["last_error"], 200)] for r in rows),
        title="Failure digests", empty="no digest yet", flex=("last error", "message-id"),
    )
