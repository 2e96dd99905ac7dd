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


@hookspec
def register_template_functions(register: Callable[..., None]) -> None:
    """Register functions a connector's request templates may call (a broadcast).

    ``register(name, fn, min_args=1, max_args=None)``: ``fn(*texts) -> str`` becomes
    callable as ``{name(arg, ...)}`` in the templates of connectors that support them
    (``webservice_soap``), next to the built-in ``hmac_sha1``, ``md5``, ``base64``…
    Arguments are placeholders or quoted text, rendered as text; a result computed
    from a secret is redacted like the secret. A name already taken is refused.
    The engine hands the registered functions to every connector in its settings,
    under ``template_functions``. The return value is ignored.
    """
