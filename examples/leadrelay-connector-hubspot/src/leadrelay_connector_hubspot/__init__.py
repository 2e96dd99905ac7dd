"""The ``hubspot_forms`` leadrelay connector: leads submitted to a HubSpot form (Forms API v3).

Installed beside leadrelay, it is found through its ``leadrelay.connectors``
entry point; the engine needs no change to use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from leadrelay.engine import hookimpl

from .connector import HubSpotFormsConfig, HubSpotFormsConnector

__all__ = ["HubSpotFormsConfig", "HubSpotFormsConnector", "register_connectors"]


@hookimpl
def register_connectors(register: Callable[[type[Any]], None]) -> None:
    """Register :class:`HubSpotFormsConnector`."""
    register(HubSpotFormsConnector)
