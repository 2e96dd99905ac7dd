"""The ``http_post`` connector: a lead as one form-encoded or JSON POST."""

from leadrelay.engine.hookspecs import hookimpl

from .connector import HttpPostConfig, HttpPostConnector

__all__ = ["HttpPostConfig", "HttpPostConnector", "register_connectors"]


@hookimpl
def register_connectors(register):  # type: ignore[no-untyped-def]
    """Register :class:`HttpPostConnector`."""
    register(HttpPostConnector)
