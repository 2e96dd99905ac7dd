"""Keys: ``leadrelay keys`` (API keys of the HTTP API) and ``leadrelay secret-key`` (a new
key for ``LEADRELAY_SECRET_KEY``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .context import pass_engine
from .output import print_json, print_table, short_time
from .params import ID

if TYPE_CHECKING:
    from leadrelay.engine.app import Leadrelay


@click.group()
def keys() -> None:
    """API keys of the HTTP API (Authorization: Bearer KEY).

    An account key acts for one account and sees only its objects; an operator
    key creates accounts and plans. Only a hash of each key is stored: a key is
    shown once, when it is created.
    """


@keys.command("create")
@click.option("--account", "account_id", type=ID, metavar="ID",
              help="The account the key acts for.")
@click.option("--operator", is_flag=True, help="An operator key (belongs to no account).")
@click.option("--name", default="default", show_default=True, help="What the key is for.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_engine
def keys_create(
    app: Leadrelay, account_id: int | None, operator: bool, name: str, as_json: bool
) -> None:
    """Make a key and print it, this once: it cannot be shown again."""
    if operator == (account_id is not None):
        raise click.UsageError("give --account ID or --operator")
    new = app.keys.create(account_id, name=name, operator=operator)
    if as_json:
        print_json({**new.description, "key": new.secret})
        return
    click.echo(new.secret)
    click.echo(f"key {new.id} ({'operator' if operator else f'account {account_id}'}, "
               f"{name!r}): shown once, store it now", err=True)


@keys.command("list")
@click.option("--account", "account_id", type=ID, metavar="ID", help="Only this account's keys.")
@click.option("--operator", is_flag=True, help="Only operator keys.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_engine
def keys_list(app: Leadrelay, account_id: int | None, operator: bool, as_json: bool) -> None:
    """List keys by their first characters (never the keys)."""
    rows = app.keys.keys(account_id, operators=operator)
    if as_json:
        print_json(rows)
        return
    print_table(["id", "account", "name", "starts with", "created (UTC)", "revoked (UTC)"],
                ([r["id"], "operator" if r["operator"] else r["account_id"], r["name"],
                  r["prefix"] + "…", short_time(r["created_at"]), short_time(r["revoked_at"])]
                 for r in rows), empty="no keys", flex=("name",))


@keys.command("revoke")
@click.argument("key_id", type=ID)
@pass_engine
def keys_revoke(app: Leadrelay, key_id: int) -> None:
    """Revoke a key: requests made with it are refused from now on."""
    row = app.keys.revoke(key_id)
    click.echo(f"key {row['id']} ({row['name']!r}) revoked")


@click.command("secret-key")
def secret_key() -> None:
    """Print a new key for LEADRELAY_SECRET_KEY, which encrypts the secrets of integrations.

    The embedded default keeps a generated key in LEADRELAY_HOME; a shared
    database (PostgreSQL) needs this one key, the same on every machine. Keep
    it in your secret store: without it the stored secrets cannot be read.
    """
    from leadrelay.engine.secrets import SecretBox

    click.echo(SecretBox.generate_key())
