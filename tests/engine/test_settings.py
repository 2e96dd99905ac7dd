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
        ({"LEADRELAY_WORKER_THREADS": "many"}, "LEADRELAY_WORKER_THREADS must be a whole number"),
        ({"LEADRELAY_PLUGINS_FILE": "/nonexistent.toml"}, "LEADRELAY_PLUGINS_FILE: /nonexistent"),
    ],
)
def test_bad_environment_is_named(tmp_path: Path, env: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"LEADRELAY_HOME": str(tmp_path), **env})


NOT_FINITE = ["nan", "NaN", "inf", "-inf", "Infinity", "1e400"]


@pytest.mark.parametrize(("name", "value", "message"), [
    *[("LEADRELAY_SWEEP_INTERVAL", v, "must be a number of seconds from 0.1 to 3600")
      for v in [*NOT_FINITE, "0", "-1", "0.01", "3601", "1e9"]],
    ("LEADRELAY_SWEEP_INTERVAL", "often", "must be a number of seconds, got 'often'"),
    *[("LEADRELAY_WORKER_THREADS", v, "must be a whole number from 1 to 256")
      for v in [*NOT_FINITE, "0", "-1", "0.5", "2.5", "257", "1" * 5000, "\u00b2", "8 threads"]],
    *[("LEADRELAY_LEASE_SECONDS", v, "must be a finite number of seconds, at least")
      for v in [*NOT_FINITE, "86401", "1e12"]],
    *[("LEADRELAY_DIGEST_HOURS", v, "LEADRELAY_DIGEST_HOURS: must be between 0.25 and 720")
      for v in [*NOT_FINITE, "0", "-6", "721"]],
    *[("LEADRELAY_DIGEST_ATTEMPTS", v, "LEADRELAY_DIGEST_ATTEMPTS: must be a whole number")
      for v in [*NOT_FINITE, "0", "101", "1.5", "\u00b2", "1" * 5000]],
])
def test_numbers_not_finite_or_out_of_range_are_refused_naming_the_variable(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        Settings.from_env({"LEADRELAY_HOME": str(tmp_path), name: value})

    assert refused.value.field == name
    assert str(refused.value).startswith(name)
    # one line, the value shown short
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 400


def test_numbers_within_range_are_taken(tmp_path: Path) -> None:
    settings = Settings.from_env({
        "LEADRELAY_HOME": str(tmp_path), "LEADRELAY_SWEEP_INTERVAL": " 0.1 ",
        "LEADRELAY_WORKER_THREADS": "256", "LEADRELAY_LEASE_SECONDS": "86400",
        "LEADRELAY_DIGEST_HOURS": "720", "LEADRELAY_DIGEST_ATTEMPTS": "100",
    })
    assert (settings.sweep_interval, settings.worker_threads, settings.lease_seconds,
            settings.digest_hours, settings.digest_attempts) == (0.1, 256, 86400, 720, 100)
    # unset (or empty) is the default
    default = Settings.from_env({"LEADRELAY_HOME": str(tmp_path),
                                 "LEADRELAY_SWEEP_INTERVAL": "", "LEADRELAY_WORKER_THREADS": ""})
    assert (default.sweep_interval, default.worker_threads) == (1.0, 8)


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
