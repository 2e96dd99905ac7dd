"""The leadrelay engine: its public API, grouped.

Connector authors need the *connector contract* group; applications embedding
the engine need *the engine*; everything else is internal.
"""

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

__all__ = [
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
]
