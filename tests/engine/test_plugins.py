"""Finding connector plugins: the hooks, and every way a plugin package can be broken.

Each test installs small packages the way pip would leave them — a module and
a ``*.dist-info`` with ``entry_points.txt`` — in a temporary directory on
``sys.path``, so the engine discovers them through real entry points. Whatever
is wrong with a package, the engine starts without it and says which package
and why, with the connectors that are available.
"""

from __future__ import annotations

import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leadrelay.connectors.http_post import HttpPostConnector
from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.errors import ConfigError, UnknownConnector
from leadrelay.engine.expectations import Expectations
from leadrelay.engine.hookspecs import hookimpl
from leadrelay.engine.plugins import LOAD_PLUGINS_ENV, PluginProblem, Plugins
from leadrelay.engine.secrets import SecretBox
from leadrelay.engine.settings import PluginsFile, Settings
from leadrelay.engine.wire import CrmResponse

PREFIX = "lrtest_"

#: A connector package's module, as a third party would write it.
GOOD = """
    from leadrelay.engine import Connector, ConnectorConfig, RenderedRequest, hookimpl

    class Config(ConnectorConfig):
        url: str

    class {cls}(Connector):
        name = "{name}"
        Config = Config

        def render(self, lead):
            return RenderedRequest("POST", self.config.url, {{}}, b"")

        def send(self, lead, http):
            return http.send(self.render(lead))

    @hookimpl
    def register_connectors(register):
        register({cls})
"""


class Site:
    """A directory on ``sys.path`` where a test installs plugin packages."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def install(self, package: str, module: str, code: str,
                entry_points: dict[str, str] | None = None, version: str = "1.0") -> None:
        """Install ``module`` (source ``code``) as distribution ``package`` with entry points."""
        (self.root / f"{module}.py").write_text(textwrap.dedent(code))
        info = self.root / f"{package.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        points = entry_points or {module.removeprefix(PREFIX): module}
        (info / "entry_points.txt").write_text(
            "[leadrelay.connectors]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))

    def connector(self, package: str, name: str, *, entry_point: str | None = None) -> None:
        """Install a working connector package registering connector ``name``."""
        module = PREFIX + package.replace("-", "_")
        cls = "".join(p.title() for p in name.split("_")) + "Connector"
        self.install(package, module, GOOD.format(cls=cls, name=name),
                     {entry_point or name: module})


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """A fresh plugin directory ahead of everything else on ``sys.path``."""
    root = tmp_path / "site-packages"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)
    try:
        yield Site(root)
    finally:
        for name in [m for m in sys.modules if m.startswith(PREFIX)]:
            del sys.modules[name]


def problem_of(plugins: Plugins, package: str) -> PluginProblem:
    """The one problem reported for ``package``."""
    found = [p for p in plugins.problems if p.package == package]
    assert len(found) == 1, plugins.problems
    return found[0]


# -- the hooks ----------------------------------------------------------------------------


def test_hook_register_connectors(site: Site) -> None:
    # Given an installed package whose plugin registers one connector
    site.connector("lrtest-acme", "acme", entry_point="acme")

    # When the engine loads its plugins
    plugins = Plugins()

    # Then the connector is usable, listed with its package and version
    assert "acme" in plugins.available()
    info = {i.name: i for i in plugins.listing()}["acme"]
    assert (info.plugin, info.package, info.version, info.enabled) == (
        "acme", "lrtest-acme", "1.0", True)
    connector = plugins.build("acme", {"url": "http://crm.example/leads"})
    assert type(connector).name == "acme"
    assert plugins.problems == []


def test_hook_register_expectation_kinds(site: Site) -> None:
    # Given a package adding an expectation kind, and one trying to replace a built-in kind
    site.install("lrtest-kinds", "lrtest_kinds", """
        from leadrelay.engine import Rule, hookimpl

        class Teapot(Rule):
            kind = "teapot"

            def evaluate(self, response):
                return self.make_trace(response.status == 418, f"saw {response.status}")

        class Status(Teapot):
            kind = "status"

        @hookimpl
        def register_expectation_kinds(register):
            register(Teapot)
            register(Status)
    """)

    # When the engine loads its plugins
    plugins = Plugins()

    # Then the new kind is usable in any integration's expectations
    expectations = Expectations.parse({"rules": [{"kind": "teapot"}]}, plugins.expectation_kinds)
    assert expectations.evaluate(CrmResponse(418)).outcome.value == "accepted"
    assert expectations.evaluate(CrmResponse(200)).outcome.value == "rejected"
    # and the built-in kind is not replaced: the attempt is reported instead
    assert plugins.expectation_kinds["status"].__module__.startswith("leadrelay.engine")
    assert "'status' refused" in problem_of(plugins, "lrtest-kinds").reason


def test_local_plugins_register_through_the_same_hooks() -> None:
    # Given a plugin object registered by hand (how tests add a temporary connector)
    class Local:
        @hookimpl
        def register_connectors(self, register: Any) -> None:
            register(type("LocalConnector", (HttpPostConnector,), {"name": "local_post"}))

    # When the engine loads it beside the entry points
    plugins = Plugins(extra_plugins=[Local()])

    # Then its connector is usable and marked as local
    assert {"http_post", "local_post"} <= set(plugins.available())
    assert {i.name: i for i in plugins.listing()}["local_post"].package == "(local)"


# -- broken packages ----------------------------------------------------------------------


def test_a_package_that_raises_at_import_is_left_out(
    site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a package whose module raises when imported, and a working one
    site.install("lrtest-broken", "lrtest_broken", "raise RuntimeError('no API key in env')",
                 {"broken": "lrtest_broken"})
    site.connector("lrtest-acme", "acme")

    # When the engine starts
    caplog.set_level(logging.WARNING, logger="leadrelay")
    app = Leadrelay(Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'l.db'}",
                             broker_url=None, secret_key=SecretBox.generate_key(),
                             plugins_file=None), clock=FakeClock())
    try:
        plugins = app.plugins
    finally:
        app.close()

    # Then it starts without the package, saying which package and why
    problem = problem_of(plugins, "lrtest-broken")
    assert problem.plugin == "broken"
    assert problem.reason == "import failed: RuntimeError: no API key in env"
    assert {"acme", "http_post"} <= set(plugins.available())
    assert "lrtest-broken" in caplog.text and "no API key in env" in caplog.text
    # and an integration naming it is told why, with the available connectors
    with pytest.raises(UnknownConnector) as refused:
        plugins.build("broken", {})
    message = str(refused.value)
    assert "lrtest-broken" in message and "no API key in env" in message
    assert "available connectors: acme, http_post" in message


def test_a_duplicate_connector_name_is_refused_and_a_built_in_keeps_its_name(site: Site) -> None:
    # Given a package claiming "http_post" (ahead of leadrelay on sys.path),
    # and two packages both claiming "acme"
    site.connector("lrtest-aaa-impostor", "http_post", entry_point="impostor")
    site.connector("lrtest-acme", "acme", entry_point="acme_one")
    site.connector("lrtest-acme-fork", "acme", entry_point="acme_two")

    # When the engine loads its plugins
    plugins = Plugins()

    # Then the built-in keeps its name and the first package (by name) keeps "acme"
    assert plugins.connector_class("http_post") is HttpPostConnector
    assert {i.name: i for i in plugins.listing()}["acme"].package == "lrtest-acme"
    # and each refusal names the package and who has the name
    assert problem_of(plugins, "lrtest-aaa-impostor").reason == (
        "connector 'http_post' is already registered by leadrelay")
    assert problem_of(plugins, "lrtest-acme-fork").reason == (
        "connector 'acme' is already registered by lrtest-acme")


def test_a_duplicate_entry_point_name_is_reported(site: Site) -> None:
    # Given two packages using the same entry-point name
    site.connector("lrtest-acme", "acme", entry_point="acme")
    site.connector("lrtest-acme-two", "acme_two", entry_point="acme")

    # When the engine loads its plugins
    plugins = Plugins()

    # Then the first is loaded and the second is reported, not silently dropped
    assert "acme" in plugins.available()
    assert problem_of(plugins, "lrtest-acme-two").reason == (
        "entry point 'acme' is already used by package lrtest-acme")


def test_a_hook_with_a_wrong_signature_is_refused(site: Site) -> None:
    # Given a package whose hook asks for an argument the hook does not have
    site.install("lrtest-wrongsig", "lrtest_wrongsig", """
        from leadrelay.engine import hookimpl

        @hookimpl
        def register_connectors(register, settings):
            raise AssertionError("never called")
    """, {"wrongsig": "lrtest_wrongsig"})

    # When the engine loads its plugins
    plugins = Plugins()

    # Then the package is left out, on one line naming the hook and the argument
    problem = problem_of(plugins, "lrtest-wrongsig")
    assert problem.plugin == "wrongsig"
    assert problem.reason.startswith("invalid hook:")
    assert "register_connectors" in problem.reason and "settings" in problem.reason
    assert "\n" not in problem.reason
    assert "http_post" in plugins.available()


def test_an_unknown_hook_is_refused(site: Site) -> None:
    # Given a package implementing a hook that does not exist (a typo)
    site.install("lrtest-typo", "lrtest_typo", """
        from leadrelay.engine import hookimpl

        @hookimpl
        def register_connector(register):
            pass
    """, {"typo": "lrtest_typo"})

    # When the engine loads its plugins
    plugins = Plugins()

    # Then it is left out, naming the unknown hook
    problem = problem_of(plugins, "lrtest-typo")
    assert "unknown hook" in problem.reason and "register_connector" in problem.reason


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("raise KeyError('portal_id')", "register_connectors failed: 'portal_id'"),
        ("register(dict)", "<class 'dict'> is not a Connector"),
    ],
    ids=["raises", "not-a-connector"],
)
def test_a_register_connectors_that_misbehaves_is_left_out(
    site: Site, body: str, expected: str
) -> None:
    # Given a package whose register_connectors raises, or registers something else
    site.install("lrtest-odd", "lrtest_odd", f"""
        from leadrelay.engine import hookimpl

        @hookimpl
        def register_connectors(register):
            {body}
    """, {"odd": "lrtest_odd"})

    # When the engine loads its plugins
    plugins = Plugins()

    # Then the package is reported and the others are usable
    assert problem_of(plugins, "lrtest-odd").reason == expected
    assert "http_post" in plugins.available()


def test_an_expectation_kinds_hook_that_raises_is_left_out(site: Site) -> None:
    # Given a package whose register_expectation_kinds raises
    site.install("lrtest-badkinds", "lrtest_badkinds", """
        from leadrelay.engine import hookimpl

        @hookimpl
        def register_expectation_kinds(register):
            raise RuntimeError("kinds exploded")
    """, {"badkinds": "lrtest_badkinds"})

    # When the engine loads its plugins
    plugins = Plugins()

    # Then the engine starts with the built-in kinds, and says which package failed
    assert "status" in plugins.expectation_kinds
    assert "kinds exploded" in problem_of(plugins, "lrtest-badkinds").reason


def test_a_connector_enabled_in_plugins_toml_but_not_installed(tmp_path: Path) -> None:
    # Given a plugins.toml enabling a connector no installed package provides
    path = tmp_path / "plugins.toml"
    path.write_text("[connectors.salesforce_rest]\nenabled = true\nread_timeout = '10s'\n")

    # When the engine starts with it
    app = Leadrelay(Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'l.db'}",
                             broker_url=None, secret_key=SecretBox.generate_key(),
                             plugins_file=path), clock=FakeClock())
    try:
        problems = app.plugins.problems
        available = app.plugins.available()
    finally:
        app.close()

    # Then it starts, and says which connector is missing and which are available
    [problem] = problems
    assert problem.plugin == "salesforce_rest"
    assert problem.reason == (
        "connector 'salesforce_rest' is enabled in plugins.toml but not installed "
        f"(available connectors: {', '.join(available)})")
    assert "http_post" in available


# -- choosing what loads ------------------------------------------------------------------


def test_plugins_toml_disables_a_connector(site: Site, tmp_path: Path) -> None:
    # Given plugins.toml disabling a built-in and a third-party connector (which would
    # fail to import: a disabled package is never imported)
    site.install("lrtest-broken", "lrtest_broken", "raise RuntimeError('imported')",
                 {"broken": "lrtest_broken"})
    path = tmp_path / "plugins.toml"
    path.write_text("[connectors.http_post]\nenabled = false\n\n"
                    "[connectors.broken]\nenabled = false\n")

    # When the engine loads its plugins with it
    plugins = Plugins(PluginsFile.load(path).connectors)

    # Then both are listed as disabled, with why, and neither can be used
    listing = {i.name: i for i in plugins.listing()}
    for name in ("http_post", "broken"):
        assert not listing[name].enabled
        assert listing[name].why_not == "disabled in plugins.toml"
        assert name not in plugins.available()
    assert listing["broken"].package == "lrtest-broken"
    assert "lrtest_broken" not in sys.modules
    assert plugins.problems == []
    with pytest.raises(UnknownConnector, match=r"disabled in plugins\.toml"):
        plugins.build("http_post", {"url": "http://crm.example/"})


def test_plugins_toml_refuses_a_non_boolean_enabled(tmp_path: Path) -> None:
    # Given a plugins.toml with enabled = "no"
    path = tmp_path / "plugins.toml"
    path.write_text('[connectors.http_post]\nenabled = "no"\n')

    # When it is loaded, then the error names the key
    with pytest.raises(ConfigError, match=r"connectors\.http_post\.enabled"):
        PluginsFile.load(path)


@pytest.mark.parametrize(
    ("allow", "loaded"),
    [("", set()), ("acme", {"acme"}), ("acme, other", {"acme", "other"}),
     (None, {"acme", "other"})],
    ids=["empty-loads-none", "one", "two", "unset-loads-all"],
)
def test_leadrelay_load_plugins_chooses_the_third_party_plugins(
    site: Site, monkeypatch: pytest.MonkeyPatch, allow: str | None, loaded: set[str]
) -> None:
    # Given two third-party connectors, and LEADRELAY_LOAD_PLUGINS naming some
    site.connector("lrtest-acme", "acme")
    site.connector("lrtest-other", "other")
    if allow is not None:
        monkeypatch.setenv(LOAD_PLUGINS_ENV, allow)

    # When the engine loads its plugins
    plugins = Plugins()

    # Then only the named third-party plugins load; built-ins always do
    third_party = set(plugins.available()) - {"http_post", "webservice_soap"}
    assert third_party == loaded
    assert "http_post" in plugins.available()
    # and the others are listed as not loaded, with why, without being imported
    for name in {"acme", "other"} - loaded:
        info = {i.name: i for i in plugins.listing()}[name]
        assert not info.enabled and LOAD_PLUGINS_ENV in info.why_not
        assert f"{PREFIX}{name}" not in sys.modules
