"""The ``http_post`` connector: a lead as one form-encoded or JSON POST."""

from collections.abc import Callable

from leadrelay.engine.connector import Connector
from leadrelay.engine.hookspecs import hookimpl

from .connector import HttpPostConfig, HttpPostConnector

__all__ = ["HttpPostConfig", "HttpPostConnector", "register_connectors"]


@hookimpl
def register_connectors(register: Callable[[type[Connector]], None]) -> None:
    """Register :class:`HttpPostConnector`."""
    register(HttpPostConnector)
