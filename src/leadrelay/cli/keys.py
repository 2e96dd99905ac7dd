"""``leadrelay secret-key``: a new key for ``LEADRELAY_SECRET_KEY``."""

from __future__ import annotations

import click


@click.command("secret-key")
def secret_key() -> None:
    """Print a new key for LEADRELAY_SECRET_KEY, which encrypts the secrets of integrations.

    The embedded default keeps a generated key in LEADRELAY_HOME; a shared
    database (PostgreSQL) needs this one key, the same on every machine. Keep
    it in your secret store: without it the stored secrets cannot be read.
    """
    from leadrelay.engine.secrets import SecretBox

    click.echo(SecretBox.generate_key())
