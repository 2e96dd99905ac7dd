"""Per-integration runtime objects, built once and reused across deliveries.

For each integration a worker keeps its connector instance, its transport (one
``requests.Session``), its parsed expectations and retry policy. They are
rebuilt only when the integration's ``revision`` changes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from .connector import Connector
from .egress import EgressPolicy
from .errors import ConfigError
from .expectations import Expectations
from .ledger.models import Integration
from .limits import MAX_CONNECT_TIMEOUT, MAX_READ_TIMEOUT
from .plugins import Plugins
from .retry import RetryPolicy, parse_duration
from .secrets import Redactor, SecretBox, install_log_filter, remember, secret_values
from .transport import ProxyRoute, Timeouts, Transport


@dataclass
class IntegrationRuntime:
    """Everything needed to deliver to one integration."""

    integration_id: int
    revision: int
    connector: Connector
    transport: Transport
    expectations: Expectations
    policy: RetryPolicy
    redactor: Redactor

    def close(self) -> None:
        """Release the connector and the transport's connections."""
        self.connector.close()
        self.transport.close()


class ProxyRoutes:
    """Finds the proxy route for a static-IP pool name.

    This base knows no pool (a ``plugins.toml`` without ``[proxies]``);
    :class:`~leadrelay.engine.proxies.StaticIpPools` knows the configured ones.
    """

    def route(self, pool: str) -> ProxyRoute:
        """The route for ``pool``; :class:`ConfigError` when it is not configured."""
        raise ConfigError(
            f"static-IP pool {pool!r} is not configured in plugins.toml", field="static_ip_pool"
        )


class RuntimeCache:
    """Thread-safe cache of :class:`IntegrationRuntime` keyed by (integration, revision).

    Their redactors also redact this process's log records (:class:`~.secrets.SecretLogFilter`
    on the request-logging libraries' loggers)."""

    def __init__(self, plugins: Plugins, box: SecretBox, routes: ProxyRoutes | None = None,
                 *, egress: EgressPolicy | None = None):
        self.plugins = plugins
        self.box = box
        self.routes = routes or ProxyRoutes()
        #: Where the integrations' transports may connect (:mod:`.egress`).
        self.egress = egress
        install_log_filter()
        self._items: dict[int, IntegrationRuntime] = {}
        self._lock = threading.Lock()

    def get(self, integration: Integration) -> IntegrationRuntime:
        """The runtime for ``integration``, built on first use or after a change."""
        current = self._items.get(integration.id)
        if current is not None and current.revision == integration.revision:
            return current
        with self._lock:
            current = self._items.get(integration.id)
            if current is not None and current.revision == integration.revision:
                return current
            fresh = build_runtime(integration, self.plugins, self.box, self.routes,
                                  egress=self.egress)
            self._items[integration.id] = fresh
        if current is not None:
            current.close()
        return fresh

    def close(self) -> None:
        """Close every runtime."""
        with self._lock:
            items, self._items = list(self._items.values()), {}
        for item in items:
            item.close()


def build_runtime(
    integration: Integration, plugins: Plugins, box: SecretBox, routes: ProxyRoutes,
    *, egress: EgressPolicy | None = None,
) -> IntegrationRuntime:
    """Build the runtime of one integration from its ledger row."""
    connector = plugins.build(integration.connector, box.unseal(integration.config))
    expectations = Expectations.parse(
        integration.expectations, plugins.expectation_kinds, default=connector.default_expectations
    )
    settings = plugins.settings_for(integration.connector)
    route = routes.route(integration.static_ip_pool) if integration.static_ip_pool else None
    transport = Transport(
        timeouts=timeouts_from(settings, connector.config),
        proxy_route=route,
        egress=egress,
    )
    secrets = secret_values(connector.config)
    proxy_secrets = getattr(route, "secrets", None)
    if proxy_secrets is not None:
        secrets |= proxy_secrets()
    return IntegrationRuntime(
        integration_id=integration.id,
        revision=integration.revision,
        connector=connector,
        transport=transport,
        expectations=expectations,
        policy=RetryPolicy.parse(integration.retry_policy),
        redactor=remember(Redactor(secrets)),
    )


def timeouts_from(settings: dict[str, Any], config: Any) -> Timeouts:
    """Connect/read timeouts: the integration's config wins over ``plugins.toml``.

    Their sum is each attempt's deadline; each is more than 0 and at most its maximum
    (:mod:`.limits`), which is what bounds every attempt, and so the lease.

    :raises ConfigError: a timeout that is not such a duration, naming it.
    """
    base = Timeouts()
    return Timeouts(
        connect=_timeout(settings, config, "connect_timeout", base.connect, MAX_CONNECT_TIMEOUT),
        read=_timeout(settings, config, "read_timeout", base.read, MAX_READ_TIMEOUT),
    )


def _timeout(settings: dict[str, Any], config: Any, name: str, default: float,
             maximum: float) -> float:
    value = getattr(config, name, None)
    if value is None:
        value = settings.get(name)
    if value is None:
        return default
    seconds = parse_duration(value, field=name)
    if not 0 < seconds <= maximum:  # NaN fails this too
        raise ConfigError(
            f"{name}: must be more than 0 and at most {maximum:g} seconds, got {value!r}",
            field=name,
        )
    return seconds
