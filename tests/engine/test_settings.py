"""Deployment settings from the environment and plugins.toml: defaults, and one clear error each."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadrelay.engine.errors import ConfigError
from leadrelay.engine.settings import PluginsFile, Settings


def test_the_embedded_default_needs_nothing(tmp_path: Path) -> None:
    settings = Settings.from_env({"LEADRELAY_HOME": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'leadrelay.db'}"
    assert settings.broker_url is None
    # The generated key is kept, owner-only, and reused on the next start
    key_file = tmp_path / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert Settings.from_env({"LEADRELAY_HOME": str(tmp_path)}).secret_key == settings.secret_key


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LEADRELAY_BROKER_URL": "amqp://x"}, "LEADRELAY_BROKER_URL must be a redis:// URL"),
        ({"LEADRELAY_DATABASE_URL": "postgresql://db/leads"}, "LEADRELAY_SECRET_KEY is required"),
        ({"LEADRELAY_WORKER_THREADS": "many"}, "LEADRELAY_WORKER_THREADS must be a number"),
        ({"LEADRELAY_PLUGINS_FILE": "/nonexistent.toml"}, "LEADRELAY_PLUGINS_FILE: /nonexistent"),
    ],
)
def test_bad_environment_is_named(tmp_path: Path, env: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"LEADRELAY_HOME": str(tmp_path), **env})


def test_plugins_toml_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "plugins.toml"
    path.write_text('[connectors.http_post]\nenabled = true\nread_timeout = "10s"\n')
    assert PluginsFile.load(path).connectors == {
        "http_post": {"enabled": True, "read_timeout": "10s"}
    }
    path.write_text("[conectors.http_post]\n")
    with pytest.raises(ConfigError, match=r"unknown table \[conectors\]"):
        PluginsFile.load(path)
    path.write_text('[connectors.http_post]\nenabled = "yes"\n')
    with pytest.raises(ConfigError, match=r"connectors\.http_post\.enabled must be true or false"):
        PluginsFile.load(path)
    path.write_text("[connectors\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        PluginsFile.load(path)
