"""Finding, loading and validating connector plugins.

Load order (the one tox uses): add the hookspecs → block what ``plugins.toml``
disables → load every entry point of ``leadrelay.connectors`` (built-in
connectors are entry points too) → ``check_pending`` → collect connector and
expectation classes. A plugin that fails any step is left out and reported;
the engine starts with the rest. Nothing else touches ``pm.hook``: the typed
:class:`Plugins` wrapper is the only caller.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .connector import Connector
from .errors import ConfigError, UnknownConnector

if TYPE_CHECKING:
    from .expectations import Rule

ENTRY_POINT_GROUP = "leadrelay.connectors"
#: Comma-separated entry-point names of third-party plugins to load; empty loads none.
LOAD_PLUGINS_ENV = "LEADRELAY_LOAD_PLUGINS"
BUILTIN_DISTRIBUTION = "leadrelay"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectorInfo:
    """One discovered connector, as ``leadrelay plugins`` lists it."""

    name: str
    plugin: str
    package: str
    version: str
    enabled: bool
    why_not: str = ""
    cls: type[Connector] | None = None


@dataclass(frozen=True)
class PluginProblem:
    """A plugin that could not be used, and why."""

    plugin: str
    package: str
    reason: str


class Plugins:
    """The loaded connectors and expectation kinds; the typed face of the plugin manager."""

    def __init__(
        self,
        connector_settings: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        extra_plugins: Iterable[object] = (),
        load_entry_points: bool = True,
    ) -> None:
        self._settings = {k: dict(v) for k, v in (connector_settings or {}).items()}
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.problems: list[PluginProblem] = []
        self._origin: dict[str, tuple[str, str]] = {}  # plugin name -> (package, version)
        self._connectors: dict[str, ConnectorInfo] = {}
        self._disabled = {n for n, s in self._settings.items() if s.get("enabled", True) is False}
        for name in self._disabled:
            self.pm.set_blocked(name)
        if load_entry_points:
            self._load_entry_points()
        for plugin in extra_plugins:
            self._register(plugin, getattr(plugin, "__name__", None), ("(local)", ""))
        self._collect_connectors()
        self.expectation_kinds = self._collect_expectation_kinds()
        #: Functions plugins registered for request templates, by name.
        self.template_functions = self._collect_template_functions()
        self._check_enabled_are_installed()
        for problem in self.problems:  # the engine starts without them, and says so
            log.warning("plugin %s (package %s) left out: %s",
                        problem.plugin, problem.package, problem.reason)

    # -- loading --------------------------------------------------------------------

    def _load_entry_points(self) -> None:
        wanted = os.environ.get(LOAD_PLUGINS_ENV)
        allow = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
        # Built-in connectors first, then the others in a stable order: a third-party
        # package can never take a built-in's name, whatever the order of sys.path.
        entry_points = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
                              key=_load_order)
        for ep in entry_points:
            dist = ep.dist
            package = dist.metadata["Name"] if dist else "?"
            version = dist.version if dist else "?"
            builtin = package == BUILTIN_DISTRIBUTION
            if not builtin and allow is not None and ep.name not in allow:
                # Not imported, but still listed, so `leadrelay plugins` says why.
                self._connectors.setdefault(ep.name, ConnectorInfo(
                    ep.name, ep.name, package, version, False,
                    f"not loaded ({LOAD_PLUGINS_ENV} leaves it out)"))
                continue
            if self.pm.is_blocked(ep.name):
                self._origin.setdefault(ep.name, (package, version))
                self._connectors.setdefault(ep.name, ConnectorInfo(
                    ep.name, ep.name, package, version, False, "disabled in plugins.toml"))
                continue
            if self.pm.has_plugin(ep.name):
                other = self._origin.get(ep.name, ("?", "?"))[0]
                if other != package:
                    self.problems.append(PluginProblem(
                        ep.name, package,
                        f"entry point {ep.name!r} is already used by package {other}"))
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken package must not stop the engine
                self.problems.append(
                    PluginProblem(ep.name, package, f"import failed: {type(exc).__name__}: {exc}")
                )
                continue
            self._register(plugin, ep.name, (package, version))

    def _register(self, plugin: object, name: str | None, origin: tuple[str, str]) -> None:
        try:
            registered = self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self.problems.append(
                PluginProblem(name or "?", origin[0], f"invalid hook: {_one_line(exc)}"))
            return
        except ValueError as exc:  # duplicate plugin name
            self.problems.append(PluginProblem(name or "?", origin[0], str(exc)))
            return
        if registered:
            self._origin[registered] = origin

    def _collect_connectors(self) -> None:
        for plugin_name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            package, version = self._origin.get(plugin_name, ("?", "?"))
            found: list[type[Connector]] = []
            hook = self.pm.subset_hook_caller(
                "register_connectors",
                remove_plugins=[p for p in self.pm.get_plugins() if p is not plugin],
            )
            try:
                hook(register=found.append)
            except Exception as exc:
                self.problems.append(
                    PluginProblem(plugin_name, package, f"register_connectors failed: {exc}")
                )
                continue
            for cls in found:
                self._add_connector(cls, plugin_name, package, version)

    def _add_connector(self, cls: object, plugin: str, package: str, version: str) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            self.problems.append(PluginProblem(plugin, package, f"{cls!r} is not a Connector"))
            return
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            self.problems.append(PluginProblem(plugin, package, f"{cls.__name__} has no name"))
            return
        # A placeholder (cls None) only lists an entry point that was not loaded.
        if name in self._connectors and self._connectors[name].cls is not None:
            other = self._connectors[name]
            self.problems.append(
                PluginProblem(
                    plugin,
                    package,
                    f"connector {name!r} is already registered by {other.package}",
                )
            )
            return
        enabled = name not in self._disabled
        self._connectors[name] = ConnectorInfo(
            name,
            plugin,
            package,
            version,
            enabled,
            "" if enabled else "disabled in plugins.toml",
            cls,
        )

    def _collect_expectation_kinds(self) -> dict[str, type[Rule]]:
        from .expectations import Rule, builtin_rules

        kinds: dict[str, type[Rule]] = {}
        # (plugin, package) whose registrations are being made, for the problems.
        current = ["(built-in)", BUILTIN_DISTRIBUTION]

        def register(cls: type[Rule]) -> None:
            kind = getattr(cls, "kind", None)
            if not (isinstance(cls, type) and issubclass(cls, Rule)):
                self.problems.append(
                    PluginProblem(current[0], current[1], f"{cls!r} is not an expectation Rule"))
                return
            if not isinstance(kind, str) or kind in kinds:
                self.problems.append(
                    PluginProblem(
                        current[0], current[1],
                        f"expectation kind {kind!r} refused (duplicate or unnamed)",
                    )
                )
                return
            kinds[kind] = cls

        for rule in builtin_rules():
            register(rule)
        # One plugin at a time, so one that raises is reported and the others still count.
        for plugin_name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            current[:] = [plugin_name, self._origin.get(plugin_name, ("?", "?"))[0]]
            hook = self.pm.subset_hook_caller(
                "register_expectation_kinds",
                remove_plugins=[p for p in self.pm.get_plugins() if p is not plugin],
            )
            try:
                hook(register=register)
            except Exception as exc:
                self.problems.append(PluginProblem(
                    current[0], current[1],
                    f"register_expectation_kinds failed: {type(exc).__name__}: {exc}"))
        return kinds

    def _collect_template_functions(self) -> dict[str, Any]:
        from .template_functions import BUILTIN_FUNCTIONS, TemplateFunction

        functions: dict[str, Any] = {}

        def register(name: str, fn: Any, min_args: int = 1, max_args: int | None = None) -> None:
            if (not isinstance(name, str) or not name.isidentifier() or not callable(fn)
                    or name in functions or name in BUILTIN_FUNCTIONS):
                self.problems.append(PluginProblem(
                    "?", "?", f"template function {name!r} refused (duplicate, unnamed or "
                              "not callable)"))
                return
            functions[name] = TemplateFunction(name, fn, min_args, max_args)

        try:
            self.pm.hook.register_template_functions(register=register)
        except Exception as exc:
            self.problems.append(PluginProblem(
                "?", "?", f"register_template_functions failed: {type(exc).__name__}: {exc}"))
        return functions

    def _check_enabled_are_installed(self) -> None:
        for name, settings in self._settings.items():
            if settings.get("enabled", True) and name not in self._connectors:
                self.problems.append(
                    PluginProblem(
                        name,
                        "?",
                        f"connector {name!r} is enabled in plugins.toml but not installed "
                        f"(available connectors: {', '.join(self.available()) or 'none'})",
                    )
                )

    # -- use ------------------------------------------------------------------------

    def available(self) -> list[str]:
        """Names of the connectors integrations can use."""
        return sorted(n for n, info in self._connectors.items() if info.enabled)

    def listing(self) -> list[ConnectorInfo]:
        """Every discovered connector, enabled or not."""
        return sorted(self._connectors.values(), key=lambda i: i.name)

    def connector_class(self, name: str) -> type[Connector]:
        """The class of an enabled connector; :class:`UnknownConnector` otherwise."""
        info = self._connectors.get(name)
        if info is not None and not info.enabled:
            raise UnknownConnector(
                f"connector {name!r} is {info.why_not}",
                plugin=name,
                available=self.available(),
            )
        if info is None or info.cls is None:
            # A package that failed to load under this name is the likely cause: say so.
            why = next((p for p in self.problems if p.plugin == name), None)
            hint = f": package {why.package} was left out ({why.reason})" if why else ""
            raise UnknownConnector(
                f"unknown connector {name!r}{hint}", plugin=name, available=self.available()
            )
        return info.cls

    def settings_for(self, name: str) -> dict[str, Any]:
        """The ``[connectors.NAME]`` table of ``plugins.toml`` (without ``enabled``)."""
        return {k: v for k, v in self._settings.get(name, {}).items() if k != "enabled"}

    def build(self, name: str, raw_config: Mapping[str, Any]) -> Connector:
        """Validate ``raw_config`` for connector ``name`` and return a ready instance."""
        cls = self.connector_class(name)
        config = cls.parse_config(raw_config)
        settings = self.settings_for(name)
        if self.template_functions:
            settings["template_functions"] = dict(self.template_functions)
        try:
            return cls(config, settings)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"connector {name!r} refused its config: {exc}", field="config"
            ) from None


def _load_order(ep: importlib.metadata.EntryPoint) -> tuple[bool, str, str]:
    """Built-in entry points first, then by package and name."""
    package = ep.dist.metadata["Name"] if ep.dist else "?"
    return package != BUILTIN_DISTRIBUTION, package, ep.name


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (pluggy's validation errors span several)."""
    return " ".join(str(exc).split())
