"""The contract's checks of a connector before any lead is sent: discovery,
configuration, and the rendered request."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from ..connector import Connector, ConnectorConfig
from ..errors import ConfigError, UnknownConnector
from ..expectations import Expectations
from ..plugins import ENTRY_POINT_GROUP, LOAD_PLUGINS_ENV, Plugins
from ..secrets import MASK, redacted, secret_values
from ..settings import PluginsFile
from ..transport import HttpClient
from ..wire import RenderedRequest
from .base import ContractBase, envelope_of
from .fake_crm import FakeCrm
from .harness import ContractEngine, assert_no_secret, envelope_for
from .requirements import requires

__all__ = ["SetupChecks"]


class SetupChecks(ContractBase):
    """Discovery, configuration and rendering."""

    # -- discovery ------------------------------------------------------------------------

    def test_is_discovered_through_its_entry_point(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # Given the installed distributions, with no plugin filter
        monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)

        # When the engine loads its plugins
        plugins = Plugins()

        # Then the connector is listed, enabled, from an installed package's entry point
        listing = {info.name: info for info in plugins.listing()}
        assert self.connector_name in listing, (
            f"{self.connector_name!r} not found; available: {plugins.available()}; "
            f"problems: {plugins.problems}")
        info = listing[self.connector_name]
        assert info.enabled, info.why_not
        assert info.package not in ("(local)", "?"), "registered by hand, not by an entry point"
        names = {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
        assert info.plugin in names
        assert [p for p in plugins.problems if p.plugin == info.plugin] == []
        cls = plugins.connector_class(self.connector_name)
        assert issubclass(cls, Connector) and cls.name == self.connector_name

    def test_can_be_disabled_in_plugins_toml(
        self, tmp_path: Path, connector_config: Mapping[str, Any],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # Given a plugins.toml that disables the connector
        monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)
        path = tmp_path / "plugins.toml"
        path.write_text(f'[connectors."{self.connector_name}"]\nenabled = false\n')

        # When the engine loads its plugins with it
        plugins = Plugins(PluginsFile.load(path).connectors)

        # Then the connector is listed as disabled, and no integration can use it
        listing = {info.name: info for info in plugins.listing()}
        assert self.connector_name in listing, "a disabled connector must still be listed"
        assert not listing[self.connector_name].enabled
        assert "plugins.toml" in listing[self.connector_name].why_not
        assert self.connector_name not in plugins.available()
        with pytest.raises(UnknownConnector, match="disabled"):
            plugins.build(self.connector_name, connector_config)

    def test_declares_a_strict_config_and_usable_defaults(self) -> None:
        # Given the connector class the engine found
        cls = self.connector_class()

        # Then its config refuses unknown keys, and its default expectations parse
        assert issubclass(cls.Config, ConnectorConfig)
        assert cls.Config.model_config.get("extra") == "forbid"
        Expectations.parse(None, Plugins().expectation_kinds, default=cls.default_expectations)
        assert isinstance(cls.supports_idempotency_key, bool)

    # -- configuration --------------------------------------------------------------------

    def test_accepts_the_sample_config(
        self, contract_engine: ContractEngine, connector_config: Mapping[str, Any]
    ) -> None:
        # When an integration is created with the sample config (validated, checked, sealed)
        contract_engine.integrate(connector_config)

        # Then it is stored, and an instance builds from it and closes cleanly, twice
        assert len(contract_engine.app.manage.integrations()) == 1
        connector = contract_engine.plugins.build(self.connector_name, connector_config)
        connector.close()
        connector.close()

    def test_refuses_an_unknown_config_key(
        self, contract_engine: ContractEngine, connector_config: Mapping[str, Any],
        contract_secrets: frozenset[str],
    ) -> None:
        # Given the sample config with one key the connector does not know
        bad = {**connector_config, "no_such_setting": "x"}

        # When the engine builds the connector from it, or an integration is created
        with pytest.raises(ConfigError) as built:
            contract_engine.plugins.build(self.connector_name, bad)
        with pytest.raises(ConfigError):
            contract_engine.integrate(bad)

        # Then the error names the key, shows no secret, and nothing is written
        assert "no_such_setting" in str(built.value)
        assert_no_secret(contract_secrets, "the config error", str(built.value))
        assert contract_engine.app.manage.integrations() == []

    @requires.secrets
    def test_redacts_its_secrets(
        self, contract_engine: ContractEngine, connector_config: Mapping[str, Any]
    ) -> None:
        # Given the sample config, parsed by the connector
        config = self.connector_class().parse_config(connector_config)
        secrets = secret_values(config)
        assert secrets, ("the sample config has no secret: give it one, or declare "
                         "requirements = Requirements(secrets=False)")
        assert all(len(s) >= 8 for s in secrets), "give every secret a realistic value"

        # When it is shown, printed, serialised and stored
        shown = redacted(config)
        contract_engine.integrate(connector_config)

        # Then every secret is masked, and none is anywhere in plain text
        assert MASK in json.dumps(shown)
        assert_no_secret(secrets, "redacted(config)", shown)
        assert_no_secret(secrets, "repr(config)", repr(config))
        assert_no_secret(secrets, "config.model_dump_json()", config.model_dump_json())
        assert_no_secret(secrets, "the stored integration", contract_engine.stored())

    # -- the rendered request -------------------------------------------------------------

    def test_renders_the_request_without_sending_it(
        self, fake_crm: FakeCrm, contract_connector: tuple[Connector, HttpClient]
    ) -> None:
        # Given the connector and a lead
        connector, _ = contract_connector
        lead = envelope_for(self.sample_lead)

        # When it renders the request for the lead
        rendered = connector.render(lead)

        # Then it is a request to the configured CRM, and nothing was sent
        assert isinstance(rendered, RenderedRequest)
        assert rendered.method in {"POST", "PUT", "PATCH", "GET"}
        assert rendered.url.startswith(fake_crm.url), (
            f"{rendered.url} is not on the configured CRM ({fake_crm.url})")
        path = urlsplit(rendered.url).path
        assert fake_crm.requests_to(path, rendered.method) == [], "render() sent the request"

    @requires.deterministic_render
    def test_sends_what_it_renders(
        self, fake_crm: FakeCrm, contract_engine: ContractEngine,
        connector_config: Mapping[str, Any], contract_secrets: frozenset[str],
    ) -> None:
        # Given a CRM that accepts the lead
        self.answer_success(fake_crm)
        contract_engine.integrate(connector_config)

        # When the engine delivers a lead
        delivered = self.deliver(contract_engine, contract_secrets)

        # Then the last request the CRM got is exactly what render() gives for that delivery
        connector = contract_engine.plugins.build(self.connector_name, connector_config)
        try:
            expected = connector.render(envelope_of(delivered))
            again = connector.render(envelope_of(delivered))
        finally:
            connector.close()
        assert again == expected, "render() gives a different request each time"
        sent = fake_crm.last
        assert sent.method == expected.method
        parts = urlsplit(expected.url)
        assert sent.target == (f"{parts.path}?{parts.query}" if parts.query else parts.path)
        body = expected.body.encode() if isinstance(expected.body, str) else expected.body or b""
        assert sent.body == body
        for name, value in expected.headers.items():
            assert sent.headers.get(name) == value, f"header {name} was not sent as rendered"

