"""Every attempt is bounded because its timeouts are: each is more than 0 and at most its
documented maximum, refused with the field named when an integration is saved (its own
config or plugins.toml), and the lease is refused unless it outlasts a batch's longest
possible attempt — which is why it needs no renewal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.errors import ConfigError
from leadrelay.engine.limits import (
    DEFAULT_LEASE_SECONDS,
    LEASE_MARGIN,
    MAX_ATTEMPT_SECONDS,
    MAX_CONNECT_TIMEOUT,
    MAX_READ_TIMEOUT,
    MIN_LEASE_SECONDS,
)
from leadrelay.engine.runtime import timeouts_from
from leadrelay.engine.settings import Settings
from leadrelay.engine.transport import Timeouts


def test_the_lease_outlasts_two_of_the_longest_attempts_and_the_default_is_valid(
    tmp_path: Path,
) -> None:
    # A batch starts attempts until half its lease; the last one may take the longest
    # deadline: the lease must cover both, and the time to record.
    assert MAX_ATTEMPT_SECONDS == MAX_CONNECT_TIMEOUT + MAX_READ_TIMEOUT
    assert MIN_LEASE_SECONDS == 2 * MAX_ATTEMPT_SECONDS + LEASE_MARGIN
    assert MIN_LEASE_SECONDS / 2 + MAX_ATTEMPT_SECONDS < MIN_LEASE_SECONDS
    assert DEFAULT_LEASE_SECONDS >= MIN_LEASE_SECONDS
    default = Settings.from_env({"LEADRELAY_HOME": str(tmp_path)})
    assert default.lease_seconds == DEFAULT_LEASE_SECONDS
    assert Timeouts().deadline <= MAX_ATTEMPT_SECONDS


@pytest.mark.parametrize("value", ["120", "329", "nan", "inf", "-400"])
def test_a_lease_shorter_than_the_minimum_is_refused_naming_it(
    tmp_path: Path, value: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"LEADRELAY_HOME": str(tmp_path), "LEADRELAY_LEASE_SECONDS": value})

    assert refused.value.field == "LEADRELAY_LEASE_SECONDS"
    assert "LEADRELAY_LEASE_SECONDS" in str(refused.value)
    if value != "-400":
        assert f"at least {MIN_LEASE_SECONDS:g}" in str(refused.value)


def test_a_lease_at_the_minimum_is_accepted(tmp_path: Path) -> None:
    settings = Settings.from_env({"LEADRELAY_HOME": str(tmp_path),
                                  "LEADRELAY_LEASE_SECONDS": f"{MIN_LEASE_SECONDS:g}"})

    assert settings.lease_seconds == MIN_LEASE_SECONDS


@pytest.mark.parametrize(("settings", "expected"), [
    ({}, Timeouts(5, 30)),
    ({"connect_timeout": "2s", "read_timeout": "1m"}, Timeouts(2, 60)),
    ({"connect_timeout": MAX_CONNECT_TIMEOUT, "read_timeout": "2m"},
     Timeouts(MAX_CONNECT_TIMEOUT, MAX_READ_TIMEOUT)),
])
def test_timeouts_within_their_maxima_are_taken(settings: dict[str, Any],
                                                expected: Timeouts) -> None:
    assert timeouts_from(settings, None) == expected


@pytest.mark.parametrize(("name", "value"), [
    ("connect_timeout", 0), ("connect_timeout", "0s"), ("connect_timeout", 31),
    ("read_timeout", "121s"), ("read_timeout", "3m"), ("read_timeout", float("inf")),
    ("read_timeout", float("nan")), ("read_timeout", "soon"), ("read_timeout", -1),
])
def test_timeouts_outside_their_bounds_are_refused_naming_them(name: str, value: Any) -> None:
    with pytest.raises(ConfigError) as refused:
        timeouts_from({name: value}, None)

    assert refused.value.field == name
    assert str(refused.value).startswith(f"{name}: ")


Create = Callable[[dict[str, Any]], Any]


@pytest.fixture
def create(app: Leadrelay, form_id: int) -> Create:
    def create(config: dict[str, Any]) -> Any:
        return app.manage.create_integration(
            form_id, name="CRM", connector="http_post",
            config={"url": "http://127.0.0.1:9/leads", **config})

    return create


@pytest.mark.parametrize(("config", "field"), [
    ({"connect_timeout": MAX_CONNECT_TIMEOUT + 1}, "connect_timeout"),
    ({"read_timeout": MAX_READ_TIMEOUT + 1}, "read_timeout"),
    ({"read_timeout": 0}, "read_timeout"),
])
def test_an_integration_with_an_unbounded_timeout_is_refused_and_nothing_is_saved(
    app: Leadrelay, form_id: int, create: Create, config: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        create(config)

    assert field in str(refused.value)
    assert app.manage.integrations(form_id=form_id) == []


def test_an_integration_at_the_maxima_is_saved(app: Leadrelay, form_id: int,
                                               create: Create) -> None:
    create({"connect_timeout": MAX_CONNECT_TIMEOUT, "read_timeout": MAX_READ_TIMEOUT})

    assert len(app.manage.integrations(form_id=form_id)) == 1


def test_an_unbounded_timeout_in_plugins_toml_is_refused_when_an_integration_is_saved(
    tmp_path: Path, database_url: str, clock: FakeClock, make_settings: Any
) -> None:
    plugins = tmp_path / "plugins.toml"
    plugins.write_text('[connectors.http_post]\nread_timeout = "10m"\n')
    app = Leadrelay(make_settings(tmp_path, database_url, plugins_file=plugins), clock=clock)
    try:
        account = app.manage.create_account("Acme", "owner@acme.test", plan="growth")
        form_id = app.manage.create_form(account.id, "Contact us").id

        with pytest.raises(ConfigError) as refused:
            app.manage.create_integration(form_id, name="CRM", connector="http_post",
                                          config={"url": "http://127.0.0.1:9/leads"})

        assert refused.value.field == "read_timeout"
        assert "at most 120 seconds" in str(refused.value)
        assert app.manage.integrations(form_id=form_id) == []
    finally:
        app.close()
