"""leadrelay plugins: what is installed, enabled, and what went wrong."""

from __future__ import annotations

import json
from pathlib import Path

from .helpers import Cli


def test_the_built_in_connector_is_listed_as_installed(cli: Cli) -> None:
    listing = cli.json("plugins", "--json")
    http_post = next(c for c in listing["connectors"] if c["name"] == "http_post")
    assert http_post["package"] == "leadrelay" and http_post["enabled"] is True
    assert isinstance(listing["problems"], list)
    table = cli("plugins").stdout
    assert "http_post" in table and "leadrelay" in table


def test_a_connector_disabled_in_plugins_toml(cli: Cli, form: int, tmp_path: Path) -> None:
    # Given plugins.toml disabling http_post
    toml = tmp_path / "disabled.toml"
    toml.write_text("[connectors.http_post]\nenabled = false\n")
    env = {"LEADRELAY_PLUGINS_FILE": str(toml)}

    # Then it is listed as disabled, with why
    listing = cli.json("plugins", "--json", env=env)
    http_post = next(c for c in listing["connectors"] if c["name"] == "http_post")
    assert http_post["enabled"] is False
    assert http_post["why_not"] == "disabled in plugins.toml"

    # and an integration naming it is refused at configuration time
    error = cli.error("integrations", "create", "--form", str(form), "--name", "CRM",
                      "--connector", "http_post", "--config",
                      json.dumps({"url": "https://crm.example/"}), env=env)
    assert error.startswith("connector 'http_post' is disabled in plugins.toml")


def test_a_broken_plugins_toml_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    toml = tmp_path / "broken.toml"
    toml.write_text("[connectors.http_post\n")
    error = cli.error("plugins", env={"LEADRELAY_PLUGINS_FILE": str(toml)})
    assert error.startswith(f"{toml}: not valid TOML:")
