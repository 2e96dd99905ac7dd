"""``leadrelay keys``: API keys shown once, listed without the secret, revoked at once."""

from __future__ import annotations

from leadrelay.engine.app import Leadrelay

from .helpers import Cli


def test_a_key_is_printed_once_listed_by_prefix_and_revoked(cli: Cli, engine: Leadrelay) -> None:
    account = cli.json("accounts", "create", "--name", "Acme", "--owner-email",
                       "owner@acme.test", "--json")
    made = cli("keys", "create", "--account", str(account["id"]), "--name", "zapier")
    secret = made.stdout.strip()
    assert secret.startswith("lr_") and "shown once" in made.stderr
    principal = engine.keys.authenticate(secret)
    assert principal is not None and principal.account_id == account["id"]

    listed = cli("keys", "list", "--account", str(account["id"]))
    assert "zapier" in listed.stdout and secret not in listed.stdout
    assert secret[:10] in listed.stdout
    [row] = cli.json("keys", "list", "--json")
    assert "key" not in row and row["revoked_at"] is None

    assert "revoked" in cli("keys", "revoke", str(row["id"])).stdout
    assert engine.keys.authenticate(secret) is None
    assert cli.json("keys", "list", "--json")[0]["revoked_at"] is not None


def test_operator_keys_and_usage_errors(cli: Cli, engine: Leadrelay) -> None:
    made = cli.json("keys", "create", "--operator", "--name", "ops", "--json")
    principal = engine.keys.authenticate(made["key"])
    assert principal is not None and principal.operator
    assert "--account ID or --operator" in cli.error("keys", "create")
    assert "account 99 does not exist" in cli.error("keys", "create", "--account", "99")
    assert "key 99 does not exist" in cli.error("keys", "revoke", "99")
    # the secrets key command is still there
    assert len(cli("secret-key").stdout.strip()) == 44
