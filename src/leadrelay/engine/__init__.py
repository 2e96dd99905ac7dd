"""The leadrelay engine: its public API, grouped.

Connector authors need the *connector contract* group; applications embedding
the engine need *the engine*; everything else is internal.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Names resolve on first use, so a connector importing ``leadrelay.engine.hookspecs``
# does not pay for the ledger, the broker and the migrations.
_WHERE = {
    "Accepted": "intake",
    "BadInput": "errors",
    "Clock": "clock",
    "ConfigError": "errors",
    "Connector": "connector",
    "ConnectorConfig": "connector",
    "CrmResponse": "wire",
    "DeliveryError": "errors",
    "DeliveryFilter": "report",
    "Exchange": "wire",
    "Expectations": "expectations",
    "FakeClock": "clock",
    "FieldMap": "mapping",
    "HttpClient": "transport",
    "LeadEnvelope": "connector",
    "LeadIn": "intake",
    "Leadrelay": "app",
    "LeadrelayError": "errors",
    "NotFound": "errors",
    "Outcome": "outcome",
    "PlanLimitError": "errors",
    "PluginError": "errors",
    "ProxyFailure": "errors",
    "RejectedError": "errors",
    "RenderedRequest": "wire",
    "ResponseMismatch": "errors",
    "RetryPolicy": "retry",
    "Rule": "expectations",
    "RuleTrace": "outcome",
    "Settings": "settings",
    "SystemClock": "clock",
    "ThrottledError": "errors",
    "Timeouts": "transport",
    "TransientError": "errors",
    "Transport": "transport",
    "UnknownConnector": "errors",
    "ValidationError": "errors",
    "Verdict": "outcome",
    "hookimpl": "hookspecs",
}

if TYPE_CHECKING:
    from .app import Leadrelay
    from .clock import Clock, FakeClock, SystemClock
    from .connector import Connector, ConnectorConfig, LeadEnvelope
    from .errors import (
        BadInput,
        ConfigError,
        DeliveryError,
        LeadrelayError,
        NotFound,
        PlanLimitError,
        PluginError,
        ProxyFailure,
        RejectedError,
        ResponseMismatch,
        ThrottledError,
        TransientError,
        UnknownConnector,
        ValidationError,
    )
    from .expectations import Expectations, Rule
    from .hookspecs import hookimpl
    from .intake import Accepted, LeadIn
    from .mapping import FieldMap
    from .outcome import Outcome, RuleTrace, Verdict
    from .report import DeliveryFilter
    from .retry import RetryPolicy
    from .settings import Settings
    from .transport import HttpClient, Timeouts, Transport
    from .wire import CrmResponse, Exchange, RenderedRequest


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [  # noqa: RUF022 - grouped by audience, not alphabetised
    # The engine
    "Accepted",
    "DeliveryFilter",
    "LeadIn",
    "Leadrelay",
    "Settings",
    # The connector contract
    "Connector",
    "ConnectorConfig",
    "CrmResponse",
    "FieldMap",
    "HttpClient",
    "LeadEnvelope",
    "RenderedRequest",
    "hookimpl",
    # Judging and retrying
    "Expectations",
    "Outcome",
    "RetryPolicy",
    "Rule",
    "RuleTrace",
    "Verdict",
    # Plumbing
    "Clock",
    "Exchange",
    "FakeClock",
    "SystemClock",
    "Timeouts",
    "Transport",
    # Errors
    "BadInput",
    "ConfigError",
    "DeliveryError",
    "LeadrelayError",
    "NotFound",
    "PlanLimitError",
    "PluginError",
    "ProxyFailure",
    "RejectedError",
    "ResponseMismatch",
    "ThrottledError",
    "TransientError",
    "UnknownConnector",
    "ValidationError",
]
