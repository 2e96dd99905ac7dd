"""Static-IP pools: the forward proxies a static-IP integration's traffic goes through.

Some CRMs accept traffic only from allow-listed addresses. An integration that
names a pool (``static_ip_pool = "default"``) has every request of its
connector — and every document a library fetches on its session, such as a
WSDL — sent through one proxy of that pool, whose egress address is fixed and
published (``leadrelay static-ips``). The :class:`~leadrelay.engine.transport.Transport`
owns the proxy, so any connector, built-in or third-party, gets the variant
without proxy code.

Pools are declared in ``plugins.toml``::

    [proxies.default]
    proxies = [
      {name = "egress-a", url = "http://relay@10.0.0.5:3128",
       password_env = "LEADRELAY_PROXY_A_PASSWORD", egress_ips = ["203.0.113.10"]},
      {name = "egress-b", url = "http://10.0.0.6:3128", egress_ips = ["203.0.113.11"]},
    ]
    health_check = {interval = "30s", timeout = "2s"}

Credentials are never written in the file: the URL carries at most a user
name, and the password is read from the environment variable ``password_env``
names when the engine starts. Anything shown or stored (attempts, the
``static-ips`` listing, logs, reprs) names a proxy by its ``name`` only.

Failover: the proxies of a pool are tried in the order declared. One that could
not carry a request (refused, unreachable, credentials refused, or its own
502/503 page) is *marked down* and tried last, until a later success through it
or a health check brings it back. Health checks are lazy and driven by the
injected :class:`~leadrelay.engine.clock.Clock`: when a down proxy's check is
due, the next request that needs the pool probes it first — no thread, no sleep.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlsplit

import pydantic

from .clock import Clock, SystemClock
from .egress import EgressPolicy, default_policy, guarded_session
from .errors import ConfigError, RefusedTarget
from .retry import parse_duration
from .runtime import ProxyRoutes

#: The pool an integration runs through when it names a ``<connector>_static_ip`` variant.
DEFAULT_POOL = "default"
#: Connector-name suffix of the static-IP variants (``http_post_static_ip``).
VARIANT_SUFFIX = "_static_ip"

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


# -- the schema of [proxies.<pool>] ------------------------------------------------


def _duration(value: Any) -> float:
    try:
        seconds = parse_duration(value, field="duration")
    except ConfigError:
        raise ValueError(f"expected a duration like '30s' or '2m', got {value!r}") from None
    if seconds <= 0:
        raise ValueError("must be more than zero")
    return seconds


#: A duration in ``plugins.toml`` (``"30s"``, ``"2m"``, a number of seconds), as seconds.
Seconds = Annotated[float, pydantic.BeforeValidator(_duration)]


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=False)


class HealthCheck(_Model):
    """How a proxy marked down is probed to bring it back.

    Without ``url`` the probe is a TCP connect to the proxy; with ``url`` it is a
    GET of that URL through the proxy, which must answer without a proxy error.
    """

    #: Time between two probes of a proxy that is down.
    interval: Seconds = 30.0
    #: How long one probe may take.
    timeout: Seconds = 2.0
    #: A URL fetched through the proxy (a page that answers 2xx/3xx), instead of a TCP connect.
    url: str | None = None

    @pydantic.field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"not an http(s) URL: {url!r}")
        return url


class ProxyConfig(_Model):
    """One forward proxy of a pool, as declared in ``plugins.toml``."""

    #: The proxy's name: what attempts record and ``static-ips`` shows.
    name: str = pydantic.Field(pattern=_NAME)
    #: ``http://[user@]host:port`` (or ``https://``): never a password.
    url: str
    #: The environment variable holding the proxy password, when it needs one.
    password_env: str | None = pydantic.Field(default=None, pattern=_ENV_NAME)
    #: The fixed addresses (or networks) CRM owners allow-list for this proxy.
    egress_ips: tuple[str, ...] = pydantic.Field(min_length=1)

    @pydantic.field_validator("url")
    @classmethod
    def _proxy_url(cls, url: str) -> str:
        check_proxy_url(url)
        return url

    @pydantic.field_validator("egress_ips")
    @classmethod
    def _addresses(cls, ips: tuple[str, ...]) -> tuple[str, ...]:
        for ip in ips:
            try:
                ipaddress.ip_network(ip, strict=True)
            except ValueError:
                raise ValueError(f"{ip!r} is not an IP address or network") from None
        return ips

    @pydantic.field_validator("password_env")
    @classmethod
    def _user_for_password(cls, env: str | None, info: pydantic.ValidationInfo) -> str | None:
        url = info.data.get("url")
        if env and url and not urlsplit(url).username:
            raise ValueError("needs a user name in url (http://user@host:port)")
        return env


class PoolConfig(_Model):
    """One static-IP pool: its proxies, in failover order, and their health check."""

    proxies: tuple[ProxyConfig, ...] = pydantic.Field(min_length=1)
    health_check: HealthCheck = pydantic.Field(default_factory=HealthCheck)

    @pydantic.field_validator("proxies")
    @classmethod
    def _unique(cls, proxies: tuple[ProxyConfig, ...]) -> tuple[ProxyConfig, ...]:
        seen: set[str] = set()
        for p in proxies:
            if p.name in seen:
                raise ValueError(f"two proxies are named {p.name!r}")
            seen.add(p.name)
        return proxies

    @property
    def egress_ips(self) -> list[str]:
        """Every address of the pool, each once, in declaration order."""
        return list(dict.fromkeys(ip for p in self.proxies for ip in p.egress_ips))


def check_proxy_url(url: Any) -> None:
    """Raise ``ValueError`` unless ``url`` is an ``http(s)://[user@]host[:port]`` proxy URL."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("required")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"not a proxy URL {_shown(url)}: use http://host:port (or https://)")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError(f"not a proxy URL {_shown(url)}: bad port") from None
    if not parts.hostname:
        raise ValueError(f"not a proxy URL {_shown(url)}: no host")
    if parts.password is not None:
        raise ValueError(
            "must not carry a password: name an environment variable in password_env"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"not a proxy URL {_shown(url)}: a proxy URL has no path or query")


def _shown(url: str) -> str:
    """``url`` safe to quote in a message: the userinfo, which may hold a secret, masked."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        parts = parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1])
    return repr(parts.geturl())


def parse_pools(table: Mapping[str, Any] | None) -> dict[str, PoolConfig]:
    """Validate the ``[proxies]`` table of ``plugins.toml``.

    :raises ConfigError: naming the first invalid field, e.g.
        ``proxies.default.proxies[0].url``.
    """
    pools: dict[str, PoolConfig] = {}
    for name, raw in (table or {}).items():
        where = f"proxies.{name}"
        if not re.match(_NAME, name):
            raise ConfigError(
                f"plugins.toml: [{where}]: a pool name is letters, digits, '.', '_' or '-'",
                field=where,
            )
        if not isinstance(raw, Mapping):
            raise ConfigError(f"plugins.toml: [{where}] must be a table", field=where)
        if "proxies" not in raw or raw["proxies"] == []:
            raise ConfigError(
                f"plugins.toml: {where}.proxies: a pool needs at least one proxy",
                field=f"{where}.proxies",
            )
        try:
            pools[name] = PoolConfig.model_validate(dict(raw))
        except pydantic.ValidationError as exc:
            loc, message = _first_error(exc)
            path = where + loc
            raise ConfigError(f"plugins.toml: {path}: {message}", field=path) from None
    return pools


def _first_error(exc: pydantic.ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return loc, "unknown key"
    if err["type"] == "missing":
        return loc, "required"
    if err["type"] == "too_short":
        return loc, "must not be empty"
    if err["type"] == "string_pattern_mismatch":
        if loc.endswith("password_env"):
            return loc, "not an environment variable name"
        return loc, "letters, digits, '.', '_' or '-' only"
    if err["type"] in ("tuple_type", "list_type"):
        return loc, "must be a list"
    if err["type"] in ("model_type", "dict_type"):
        return loc, "must be a table"
    message = str(err["msg"]).removeprefix("Value error, ")
    return loc, message


# -- pools at run time ---------------------------------------------------------------


@dataclass(frozen=True)
class Proxy:
    """One proxy ready for use. ``url`` carries the credentials: it is never shown."""

    name: str
    url: str = field(repr=False)
    host: str
    port: int
    egress_ips: tuple[str, ...]


#: A health probe: ``(proxy, health check) -> None when up, else why it is down``.
Probe = Callable[[Proxy, HealthCheck], "str | None"]


def probe(proxy: Proxy, check: HealthCheck, *, egress: EgressPolicy | None = None
          ) -> str | None:
    """The default health probe: a TCP connect, or a GET of ``check.url`` through the proxy.

    The proxy is the operator's and is connected to as declared; the URL fetched through
    it goes through the egress policy (``egress``, else :func:`~.egress.default_policy`)
    like any CRM's: a refused target is reported, never fetched.
    """
    if check.url is None:
        try:
            with socket.create_connection((proxy.host, proxy.port), timeout=check.timeout):
                return None
        except OSError as exc:
            return exc.strerror or type(exc).__name__
    import requests

    with guarded_session(egress) as s:
        try:
            r = s.get(check.url, proxies={"http": proxy.url, "https": proxy.url},
                      timeout=check.timeout, allow_redirects=False)
        except RefusedTarget as exc:
            return str(exc)
        except requests.RequestException as exc:
            return type(exc).__name__
    return None if r.status_code < 400 else f"health check answered HTTP {r.status_code}"


_PROBE = probe


class ProxyPool:
    """One pool at run time: the :class:`~.transport.ProxyRoute` of its integrations.

    Shared by every integration naming the pool and every worker thread; its
    up/down state is per process.
    """

    def __init__(
        self,
        name: str,
        proxies: Sequence[Proxy],
        health_check: HealthCheck | None = None,
        *,
        clock: Clock | None = None,
        probe: Probe = probe,
    ) -> None:
        if not proxies:
            raise ConfigError(f"static-IP pool {name!r} has no proxy", field=f"proxies.{name}")
        self.name = name
        self.proxies = tuple(proxies)
        self.health_check = health_check or HealthCheck()
        self.clock: Clock = clock or SystemClock()
        self._probe = probe
        self._lock = threading.Lock()
        #: name -> when its next health check is due, for the proxies marked down.
        self._down: dict[str, datetime] = {}
        self._all = [(p.name, p.url) for p in self.proxies]

    @property
    def egress_ips(self) -> list[str]:
        """Every address of the pool, each once."""
        return list(dict.fromkeys(ip for p in self.proxies for ip in p.egress_ips))

    def candidates(self) -> list[tuple[str, str]]:
        """``(name, url)`` to try in order: the proxies that are up, then those marked down."""
        if not self._down:
            return list(self._all)
        now = self.clock.now()
        with self._lock:
            due = [n for n, at in self._down.items() if at <= now]
            for n in due:  # claimed: a concurrent caller does not probe it too
                self._down[n] = now + self._interval
        for n in due:
            if self._probe(self._by_name(n), self.health_check) is None:
                self.mark_up(n)
        down = self._down
        return [c for c in self._all if c[0] not in down] + [c for c in self._all if c[0] in down]

    def secrets(self) -> set[str]:
        """The proxies' passwords (and ``user:password``), for redaction: an echoed
        ``Proxy-Authorization`` must not show them in any form."""
        found: set[str] = set()
        for p in self.proxies:
            parts = urlsplit(p.url)
            if parts.password:
                password = unquote(parts.password)
                found.update((password, f"{unquote(parts.username or '')}:{password}"))
        return found

    def mark_down(self, name: str) -> None:
        """``name`` failed: try it last until its health check passes or it carries a request."""
        with self._lock:
            self._down[name] = self.clock.now() + self._interval

    def mark_up(self, name: str) -> None:
        """``name`` carried a request (or passed its health check): back to its place."""
        if name in self._down:
            with self._lock:
                self._down.pop(name, None)

    def is_down(self, name: str) -> bool:
        """Whether ``name`` is marked down."""
        return name in self._down

    def check(self) -> dict[str, str | None]:
        """Probe every proxy now: ``name -> None`` when up, else why not. Updates the marks."""
        results: dict[str, str | None] = {}
        for p in self.proxies:
            results[p.name] = why = self._probe(p, self.health_check)
            if why is None:
                self.mark_up(p.name)
            else:
                self.mark_down(p.name)
        return results

    @property
    def _interval(self) -> timedelta:
        return timedelta(seconds=self.health_check.interval)

    def _by_name(self, name: str) -> Proxy:
        return next(p for p in self.proxies if p.name == name)

    def __repr__(self) -> str:
        return f"ProxyPool({self.name!r}, proxies={[p.name for p in self.proxies]})"


class StaticIpPools(ProxyRoutes):
    """Every pool of ``plugins.toml``, by name: how the engine finds an integration's route."""

    def __init__(self, pools: Mapping[str, ProxyPool] | None = None) -> None:
        self.pools: dict[str, ProxyPool] = dict(pools or {})

    @classmethod
    def from_config(
        cls,
        table: Mapping[str, Any] | None,
        *,
        clock: Clock | None = None,
        env: Mapping[str, str] | None = None,
        probe: Probe | None = None,
        egress: EgressPolicy | None = None,
    ) -> StaticIpPools:
        """Pools from the ``[proxies]`` table, with passwords read from ``env`` (``os.environ``).

        A health check's ``url`` is checked against ``egress`` (the deployment's policy)
        here, and fetched through it by the default probe.

        :raises ConfigError: an invalid table, a ``password_env`` that is not set, or a
            health-check URL the egress policy refuses.
        """
        env = os.environ if env is None else env
        policy = egress or default_policy()
        if probe is None:
            probe = functools.partial(_PROBE, egress=policy)
        pools = {}
        for name, cfg in parse_pools(table).items():
            if cfg.health_check.url is not None:
                where = f"proxies.{name}.health_check.url"
                try:
                    policy.check_url(cfg.health_check.url, field=where)
                except ConfigError as exc:
                    raise ConfigError(f"plugins.toml: {exc}", field=where) from None
            proxies = [_resolve(p, env, f"proxies.{name}.proxies[{i}]")
                       for i, p in enumerate(cfg.proxies)]
            pools[name] = ProxyPool(name, proxies, cfg.health_check, clock=clock, probe=probe)
        return cls(pools)

    def route(self, pool: str) -> ProxyPool:
        """The pool named ``pool``; :class:`ConfigError` (field ``static_ip_pool``) if none."""
        if not isinstance(pool, str) or not pool:
            raise ConfigError("static_ip_pool: must be the name of a static-IP pool",
                              field="static_ip_pool")
        found = self.pools.get(pool)
        if found is None:
            raise ConfigError(_unknown_pool(pool, self.pools), field="static_ip_pool")
        return found

    def names(self) -> list[str]:
        """The pool names, sorted."""
        return sorted(self.pools)


def _unknown_pool(pool: str, known: Iterable[str]) -> str:
    names = ", ".join(sorted(known))
    if not names:
        return (f"static_ip_pool: no static-IP pool is configured; "
                f"declare [proxies.{pool}] in plugins.toml")
    return f"static_ip_pool: pool {pool!r} is not configured in plugins.toml (known: {names})"


def _resolve(cfg: ProxyConfig, env: Mapping[str, str], where: str) -> Proxy:
    parts = urlsplit(cfg.url)
    url = cfg.url
    if cfg.password_env:
        password = env.get(cfg.password_env)
        if not password:
            raise ConfigError(
                f"plugins.toml: {where}.password_env: environment variable "
                f"{cfg.password_env} is not set",
                field=f"{where}.password_env",
            )
        netloc = f"{parts.username}:{quote(password, safe='')}@{parts.netloc.rsplit('@', 1)[1]}"
        url = parts._replace(netloc=netloc).geturl()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Proxy(cfg.name, url, parts.hostname or "", port, cfg.egress_ips)


# -- the <connector>_static_ip names -----------------------------------------------


def static_ip_variant(
    available: Iterable[str], connector: Any, pool: str | None
) -> tuple[Any, str | None]:
    """Resolve a ``<name>_static_ip`` connector name to ``(name, pool or "default")``.

    ``http_post_static_ip`` is ``http_post`` run through a static-IP pool. A
    connector actually installed under a ``*_static_ip`` name keeps its name;
    anything else is returned unchanged.
    """
    names = set(available)
    if (
        isinstance(connector, str)
        and connector.endswith(VARIANT_SUFFIX)
        and connector not in names
        and connector.removesuffix(VARIANT_SUFFIX) in names
    ):
        return connector.removesuffix(VARIANT_SUFFIX), pool if pool is not None else DEFAULT_POOL
    return connector, pool
