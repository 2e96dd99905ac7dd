"""The connector contract: the hooks a leadrelay plugin may implement.

Plugins are modules or objects registered under the entry-point group
``leadrelay.connectors`` and marked with :data:`hookimpl`. Hooks may gain
arguments in later versions, never lose them; an implementation may accept
any subset of the arguments below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .connector import Connector
    from .expectations import Rule

PROJECT = "leadrelay"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Mark a plugin's hook implementations with ``@hookimpl``.
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_connectors(register: Callable[[type[Connector]], None]) -> None:
    """Register the connector classes this plugin provides.

    Called once per plugin when the engine loads its plugins.

    :param register: call it once per :class:`~leadrelay.engine.connector.Connector`
        subclass. Each class's ``name`` must be unique across all plugins; a
        duplicate is refused and reported with the plugin that tried it.

    The return value is ignored.
    """


@hookspec
def register_expectation_kinds(register: Callable[[type[Rule]], None]) -> None:
    """Register extra response-expectation kinds (a broadcast to every plugin).

    Built-in kinds (``status``, ``body_contains``, ``json_field``…) are
    registered the same way by the engine itself.

    :param register: call it once per :class:`~leadrelay.engine.expectations.Rule`
        subclass; its ``kind`` becomes usable in any integration's expectations.

    The return value is ignored.
    """
