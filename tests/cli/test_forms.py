"""``leadrelay forms``: a form's public key and its intake settings, validated by the engine."""

from __future__ import annotations

from .helpers import Cli


def test_a_form_gets_its_intake_settings_and_a_rotatable_key(cli: Cli) -> None:
    account = cli.json("accounts", "create", "--name", "Acme", "--owner-email",
                       "owner@acme.test", "--json")
    form = cli.json("forms", "create", "--account", str(account["id"]), "--name", "Contact",
                    "--allowed-origin", "https://acme.example", "--allowed-origin",
                    "https://www.acme.example", "--required-field", "email",
                    "--thank-you-url", "https://acme.example/thanks", "--json")
    assert form["allowed_origins"] == ["https://acme.example", "https://www.acme.example"]
    assert form["required_fields"] == ["email"] and form["public_key"].startswith("fk_")
    assert form["public_key"] in cli("forms", "list").stdout

    changed = cli.json("forms", "update", str(form["id"]), "--no-required-fields",
                       "--inactive", "--json")
    assert changed["required_fields"] == [] and changed["active"] is False
    assert changed["allowed_origins"] == form["allowed_origins"]

    rotated = cli.json("forms", "rotate-key", str(form["id"]), "--json")
    assert rotated["public_key"] != form["public_key"]
    assert cli.json("forms", "show", str(form["id"]))["public_key"] == rotated["public_key"]


def test_bad_settings_are_one_line_naming_the_field(cli: Cli, form: int) -> None:
    before = cli.json("forms", "show", str(form))
    assert "allowed_origins" in cli.error("forms", "update", str(form),
                                          "--allowed-origin", "acme.example")
    assert "thank_you_url" in cli.error("forms", "update", str(form),
                                        "--thank-you-url", "/thanks")
    assert "nothing to change" in cli.error("forms", "update", str(form))
    assert "form 999 does not exist" in cli.error("forms", "rotate-key", "999")
    assert cli.json("forms", "show", str(form)) == before
