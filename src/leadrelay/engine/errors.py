"""The one error tree of leadrelay.

Every message is safe to show a user: it names what is wrong, never a secret
and never a stack trace. Callers map the tree to exit codes and HTTP statuses:
:class:`BadInput` is a usage error (exit 2, HTTP 4xx), everything else a failure.
"""

from __future__ import annotations

from collections.abc import Iterable


class LeadrelayError(Exception):
    """Base of every error leadrelay raises on purpose."""


# -- input and configuration (never retried) ------------------------------------


class BadInput(LeadrelayError):
    """Something a user gave us is wrong; nothing was changed.

    :param message: one line naming what is wrong.
    :param field: the dotted name of the offending field, when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ConfigError(BadInput):
    """A configuration (integration, connector, ``plugins.toml``, environment) is invalid."""


class NotFound(BadInput):
    """A named object (account, form, integration, delivery) does not exist."""


class ValidationError(BadInput):
    """Submitted data (a lead's payload) is not valid; ``field`` is the path of the
    offending value (``payload.address.city``)."""


class Refused(BadInput):
    """Well-formed, but the object's own settings refuse it: an inactive form, a page
    of an origin the form does not allow."""


class Conflict(BadInput):
    """The request contradicts one made before (an idempotency key reused for
    another request)."""


# -- plugins ----------------------------------------------------------------------


class PluginError(ConfigError):
    """A connector plugin could not be used.

    :param plugin: the plugin (package or connector) concerned.
    :param available: the connector names that *are* usable, for the message.
    """

    def __init__(self, message: str, *, plugin: str, available: Iterable[str] = ()) -> None:
        self.plugin = plugin
        self.available = sorted(available)
        names = ", ".join(self.available) or "none"
        super().__init__(f"{message} (available connectors: {names})", field="connector")


class UnknownConnector(PluginError):
    """An integration names a connector that is not installed or is disabled."""


# -- plans ------------------------------------------------------------------------


class PlanLimitError(LeadrelayError):
    """Activating one more integration would exceed the account's plan."""

    def __init__(self, *, plan: str, limit: int, active: int) -> None:
        self.plan, self.limit, self.active = plan, limit, active
        message = f"plan {plan!r} allows {limit} active integrations and {active} are active"
        if active > limit:
            # A downgrade left the account over its limit: nothing new until it is under.
            message += (f": the account is over its plan's limit; deactivate "
                        f"{active - limit + 1} to activate another")
        super().__init__(message)


# -- delivery ---------------------------------------------------------------------


class DeliveryError(LeadrelayError):
    """A delivery attempt did not succeed. Raised by connectors, caught by the engine."""


class TransientError(DeliveryError):
    """The CRM could not be reached or answered "try later" (timeout, refused, 5xx).

    :param retry_after: seconds the CRM asked us to wait, when it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ThrottledError(TransientError):
    """The CRM is rate-limiting us (HTTP 429)."""


class ProxyFailure(TransientError):
    """The static-IP proxy failed; the CRM was never judged.

    :param proxy: the proxy's name (never its credentials).
    """

    def __init__(self, message: str, *, proxy: str, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.proxy = proxy


class RefusedTarget(DeliveryError):
    """The egress policy refused the address a request would connect to (loopback,
    private, metadata...; see :mod:`.egress`). Nothing was sent; never retried."""


class RejectedError(DeliveryError):
    """The CRM answered and said no (a validation fault, a refused record).

    :param final: when the connector knows retrying cannot help (the lead's data
        does not fit the operation), what declares it so, e.g. ``"the connector
        webservice_soap: the lead does not fit the operation"``; the delivery is
        then not retried.
    """

    def __init__(self, message: str, *, final: str = "") -> None:
        super().__init__(message)
        self.final = final


class ResponseMismatch(RejectedError):
    """The CRM answered, but not the way the integration's expectations require."""
