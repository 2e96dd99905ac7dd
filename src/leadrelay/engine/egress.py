"""The SSRF guard: which addresses leadrelay may open a connection to.

An integration's URL comes from an account, not from the operator, so by default
leadrelay connects to public addresses only. Loopback, private, link-local,
shared (CGNAT), multicast, unspecified and reserved ranges, IPv6 forms that hide an
IPv4 address (IPv4-mapped, NAT64, 6to4, Teredo) and the cloud metadata services are
refused, in every spelling (``0x7f000001``, ``2130706433``, ``127.1``, ``[::1]``,
a name that resolves there). ``LEADRELAY_EGRESS_ALLOW`` (a comma-separated list of
addresses and networks) lets a deployment reach some of them; the tests and the
embedded demo allow ``127.0.0.1``.

The decision is taken **on the address actually connected to**: a connection
resolves its host once, checks every address, and connects to a checked one —
there is no second lookup an attacker's DNS could answer differently. A connection
is checked when it opens, so a kept-alive connection costs nothing more per request.

How a client uses it (a connector, the Graph API client):

* Send through a ``requests.Session`` with :class:`GuardedAdapter` mounted
  (:func:`guarded_session` builds one). Every connection its pools open — direct,
  through a forward proxy's CONNECT tunnel, on every redirect hop the session
  follows — goes through :meth:`EgressPolicy.connect`. A refused target raises
  :class:`~.errors.RefusedTarget` out of the request call, before any packet is sent
  to it; a delivery records it as the outcome ``refused_target``, never retried.
  The engine's :class:`~.transport.Transport` does this for every integration.
* At configuration time, :meth:`EgressPolicy.check_url` refuses a URL whose host is
  a refused literal, resolves only to refused addresses, or carries credentials
  (:class:`~.errors.ConfigError`, naming the field).
* Anything not on ``requests``: open sockets with :meth:`EgressPolicy.connect`.

Through a forward proxy, the proxy itself is the operator's (``plugins.toml``) and is
not checked. An ``https`` target is tunnelled to the checked address (the TLS
certificate is still verified against the name); a plain ``http`` target is checked
before the request is handed to the proxy, which resolves the name again: the proxy's
own access rules should refuse internal ranges too (docs/security.md).

Messages name the host and the kind of range, never whether a port is open: a
refused target is refused before any connection is attempted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from . import deadline as _deadline
from .errors import ConfigError, RefusedTarget

__all__ = [
    "ENV_VAR",
    "EgressPolicy",
    "GuardedAdapter",
    "Resolver",
    "default_policy",
    "guarded_session",
    "system_resolver",
]

#: The deployment setting: addresses and networks a refused range may still reach.
ENV_VAR = "LEADRELAY_EGRESS_ALLOW"

#: ``host -> addresses`` (IP address strings); injected by tests, ``getaddrinfo`` otherwise.
Resolver = Callable[[str], Sequence[str]]

#: "No timeout given": the socket module's default (what urllib3 passes too).
_DEFAULT_TIMEOUT: Any = getattr(socket, "_GLOBAL_DEFAULT_TIMEOUT")  # noqa: B009

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def system_resolver(host: str) -> list[str]:
    """The addresses ``host`` resolves to, each once, in the resolver's order."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _nets(*cidrs: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


#: Refused ranges, each with the words a message uses for it; the first match names it.
_REFUSED: tuple[tuple[str, tuple[Network, ...]], ...] = (
    ("a cloud metadata address", _nets("169.254.169.254/32", "169.254.170.2/32",
                                       "100.100.100.200/32", "192.0.0.192/32",
                                       "fd00:ec2::254/128")),
    ("an unspecified address", _nets("0.0.0.0/8", "::/128")),
    ("a loopback address", _nets("127.0.0.0/8", "::1/128")),
    ("a private address", _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                "fc00::/7", "fec0::/10")),
    ("a link-local address", _nets("169.254.0.0/16", "fe80::/10")),
    ("a shared (CGNAT) address", _nets("100.64.0.0/10")),
    ("a multicast address", _nets("224.0.0.0/4", "ff00::/8")),
    ("a reserved address", _nets("192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15",
                                 "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4",
                                 "100::/64", "2001:db8::/32", "2001:10::/28",
                                 "2001:20::/28", "3fff::/20", "5f00::/16")),
    ("a Teredo address", _nets("2001::/32")),
)
_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_NAT64 = _nets("64:ff9b::/96", "64:ff9b:1::/48")

#: Names of cloud metadata services, refused whatever they resolve to.
_METADATA_NAMES = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data",
    "instance-data.ec2.internal", "metadata.azure.internal", "metadata.tencentyun.com",
})

# What inet_aton takes as an IPv4 address besides the dotted quad: 2130706433,
# 0x7f000001, 0177.0.0.1, 127.1.
_LEGACY_V4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$", re.I)


def literal_address(host: str) -> Address | None:
    """``host`` as an IP address when it is one, in any spelling the resolver would take
    (``[::1]``, ``fe80::1%eth0``, ``2130706433``, ``0x7f.1``); None for a name."""
    text = host.strip().strip("[]").split("%", 1)[0].rstrip(".")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _LEGACY_V4.match(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


class EgressPolicy:
    """The deployment's address policy: every range above refused unless ``allow`` has it.

    :param allow: addresses or networks (``"127.0.0.1"``, ``"10.20.0.0/16"``) allowed
        although their range is refused.
    :param resolver: how names resolve (``getaddrinfo``); tests inject their own.
    """

    def __init__(self, allow: Iterable[str | Network] = (), *,
                 resolver: Resolver = system_resolver) -> None:
        self.allow: tuple[Network, ...] = tuple(
            a if isinstance(a, ipaddress.IPv4Network | ipaddress.IPv6Network)
            else ipaddress.ip_network(a) for a in allow)
        self.resolver = resolver
        #: address text -> why refused ("" when allowed): an address is decided once.
        self._decided: dict[str, str] = {}
        self.pool_classes = _pool_classes(self, tunnel=False)
        self.proxied_pool_classes = _pool_classes(self, tunnel=True)

    @classmethod
    def parse(cls, text: str | None, *, resolver: Resolver = system_resolver,
              name: str = ENV_VAR) -> EgressPolicy:
        """The policy a setting like ``"127.0.0.1, 10.20.0.0/16"`` describes.

        :raises ConfigError: an entry that is not an address or network, named.
        """
        allow: list[Network] = []
        for entry in (text or "").split(","):
            entry = entry.strip()
            if not entry:
                continue
            try:
                allow.append(ipaddress.ip_network(entry, strict=True))
            except ValueError:
                raise ConfigError(f"{name}: {entry!r} is not an IP address or network "
                                  f"(like 127.0.0.1 or 10.20.0.0/16)", field=name) from None
        return cls(allow, resolver=resolver)

    def with_resolver(self, resolver: Resolver) -> EgressPolicy:
        """This policy resolving names with ``resolver``."""
        return EgressPolicy(self.allow, resolver=resolver)

    # -- deciding ------------------------------------------------------------------

    def refusal(self, address: str | Address) -> str | None:
        """Why connecting to ``address`` is refused (``"a private address"``), or None."""
        key = str(address)
        why = self._decided.get(key)
        if why is None:
            why = self._decide(ipaddress.ip_address(key.split("%", 1)[0])) or ""
            if len(self._decided) < 4096:
                self._decided[key] = why
        return why or None

    def _decide(self, ip: Address) -> str | None:
        if self._allowed(ip):
            return None
        if isinstance(ip, ipaddress.IPv6Address):
            if ip in _IPV4_MAPPED:
                return "an IPv4-mapped IPv6 address"
            embedded = _embedded_v4(ip)
            if embedded is not None:
                inner = self._decide(embedded)
                if inner is not None:
                    return f"{inner} inside an IPv6 address"
        for words, networks in _REFUSED:
            if any(ip in n for n in networks):
                return words
        return None

    def _allowed(self, ip: Address) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            mapped = ip.ipv4_mapped
            return any(mapped in n or ip in n for n in self.allow)
        return any(ip in n for n in self.allow)

    def addresses(self, host: str) -> list[str]:
        """The addresses of ``host`` a connection may use, in the resolver's order.

        :raises RefusedTarget: ``host`` is a refused address or metadata name, or
            resolves only to refused addresses.
        :raises socket.gaierror: ``host`` does not resolve.
        """
        literal = literal_address(host)
        if literal is not None:
            why = self.refusal(literal)
            if why is not None:
                raise RefusedTarget(_refused(host, why))
            return [str(literal)]
        name = host.strip().rstrip(".").lower()
        if name in _METADATA_NAMES:
            raise RefusedTarget(_refused(host, "a cloud metadata service"))
        resolved = list(self.resolver(name))
        allowed = [a for a in resolved if self.refusal(a) is None]
        if not allowed:
            if not resolved:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            kinds = sorted({self.refusal(a) or "" for a in resolved})
            raise RefusedTarget(
                f"refused target: {host} resolves only to addresses this deployment does "
                f"not connect to ({', '.join(kinds)}; see {ENV_VAR})")
        return allowed

    def check_host(self, host: str) -> None:
        """Raise :class:`RefusedTarget` when ``host`` is refused as a literal or a metadata
        name, or resolves only to refused addresses. A name that does not resolve (yet)
        passes: the connection decides when it is made."""
        with contextlib.suppress(socket.gaierror, UnicodeError):
            self.addresses(host)

    def check_url(self, url: str, *, field: str) -> None:
        """The configuration-time check of a URL an integration sends to.

        :raises ConfigError: ``field`` named, when the URL carries credentials or its host
            is refused (see :meth:`check_host`).
        """
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            raise ConfigError(f"{field}: not a valid URL", field=field) from None
        if parts.username is not None or parts.password is not None:
            raise ConfigError(f"{field}: a URL must not carry credentials (user:password@): "
                              f"use the connector's auth settings", field=field)
        if not host:
            raise ConfigError(f"{field}: the URL has no host", field=field)
        try:
            self.check_host(host)
        except RefusedTarget as exc:
            raise ConfigError(f"{field}: {exc}", field=field) from None

    # -- connecting ----------------------------------------------------------------

    def connect(self, host: str, port: int, timeout: Any = _DEFAULT_TIMEOUT,
                source_address: tuple[str, int] | None = None,
                socket_options: Sequence[tuple[int, int, int | bytes]] | None = None,
                ) -> socket.socket:
        """A TCP connection to ``host``, made to one of the addresses :meth:`addresses`
        allowed (the first that answers): the address checked is the one connected to.

        :raises RefusedTarget: before any packet is sent, when ``host`` is refused.
        :raises OSError: as ``socket.create_connection`` does.
        """
        last: OSError | None = None
        for address in self.addresses(host):
            family, kind, proto, _, sockaddr = socket.getaddrinfo(
                address, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)[0]
            sock = socket.socket(family, kind, proto)
            try:
                for option in socket_options or ():
                    sock.setsockopt(*option)
                if timeout is not _DEFAULT_TIMEOUT:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                last = exc
                sock.close()
        raise last or OSError("no address to connect to")


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a NAT64 or 6to4 address reaches."""
    if any(ip in n for n in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def _refused(host: str, why: str) -> str:
    return (f"refused target: {host} is {why}, which this deployment does not connect to "
            f"(see {ENV_VAR})")


# -- urllib3 connections that connect through the policy ---------------------------


class _GuardedConnection:
    """Mixed into urllib3's connections: the socket is opened by the policy."""

    egress: ClassVar[EgressPolicy]

    def _new_conn(self) -> socket.socket:
        conn: Any = self
        try:
            return self.egress.connect(conn._dns_host, conn.port, conn.timeout,
                                       conn.source_address, conn.socket_options)
        except socket.gaierror as exc:
            raise NameResolutionError(conn.host, conn, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
            ) from exc
        except OSError as exc:
            raise NewConnectionError(conn, f"Failed to establish a new connection: {exc}") \
                from exc


class _TunnelledConnection:
    """Mixed into connections to a forward proxy: the proxy is the operator's and is
    connected to as it is, but a CONNECT tunnel asks for the checked address of the
    target — checked before the proxy is connected to — while TLS still verifies the
    target's name."""

    egress: ClassVar[EgressPolicy]
    _pinned: str | None = None

    def _new_conn(self) -> socket.socket:
        conn: Any = self
        if conn._tunnel_host is not None:
            self._pinned = self.egress.addresses(conn._tunnel_host)[0]
        return super()._new_conn()  # type: ignore[misc]

    def _tunnel(self) -> None:
        conn: Any = self
        name = conn._tunnel_host
        if self._pinned is not None:
            conn._tunnel_host = self._pinned
        try:
            super()._tunnel()  # type: ignore[misc]
        finally:
            conn._tunnel_host = name


def _pool_classes(policy: EgressPolicy, *, tunnel: bool) -> dict[str, type[Any]]:
    """Pool classes (with the attempt deadline's reader, :mod:`.deadline`) whose
    connections open through ``policy``."""
    mixin: type[Any] = _TunnelledConnection if tunnel else _GuardedConnection
    attrs = {"egress": policy}
    http_conn = type("EgressHTTPConnection", (mixin, _deadline.HTTPConnection), attrs)
    https_conn = type("EgressHTTPSConnection", (mixin, _deadline.HTTPSConnection), attrs)
    return {
        "http": type("EgressHTTPConnectionPool", (_deadline.HTTPConnectionPool,),
                     {"ConnectionCls": http_conn}),
        "https": type("EgressHTTPSConnectionPool", (_deadline.HTTPSConnectionPool,),
                      {"ConnectionCls": https_conn}),
    }


def install(manager: urllib3.PoolManager, policy: EgressPolicy, *,
            proxied: bool = False) -> urllib3.PoolManager:
    """Make the pools ``manager`` creates from now on connect through ``policy`` (and
    honour attempts' deadlines). ``proxied``: ``manager`` is a proxy manager."""
    manager.pool_classes_by_scheme = (policy.proxied_pool_classes if proxied
                                      else policy.pool_classes)
    return manager


class GuardedAdapter(requests.adapters.HTTPAdapter):
    """``requests``' adapter whose every connection goes through an :class:`EgressPolicy`:
    direct, tunnelled through a proxy, and on every redirect hop a session follows."""

    def __init__(self, policy: EgressPolicy, **kwargs: Any) -> None:
        self.egress = policy  # before HTTPAdapter.__init__, which builds the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """The adapter's pool manager, its pools guarded."""
        super().init_poolmanager(*args, **kwargs)
        install(self.poolmanager, self.egress)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """The pools to ``proxy``: CONNECT tunnels ask for the checked address."""
        return install(super().proxy_manager_for(proxy, **proxy_kwargs), self.egress,
                       proxied=True)

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Mapping[str, str] | None = None) -> requests.Response:
        """Send ``request``; a plain-HTTP target handed to a forward proxy is checked first."""
        url = request.url or ""
        if proxies and url.startswith("http://") and requests.utils.select_proxy(url, proxies):
            host = urlsplit(url).hostname or ""
            with contextlib.suppress(socket.gaierror):  # the proxy will say it cannot resolve
                self.egress.addresses(host)
        return super().send(request, stream, timeout, verify, cert, proxies)


def guarded_session(policy: EgressPolicy | None = None, **adapter_kwargs: Any
                    ) -> requests.Session:
    """A ``requests.Session`` (no environment proxies or netrc) whose connections all go
    through ``policy`` (:func:`default_policy` when None)."""
    session = requests.Session()
    session.trust_env = False
    adapter = GuardedAdapter(policy or default_policy(), **adapter_kwargs)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


_DEFAULT: dict[str, EgressPolicy] = {}


def default_policy() -> EgressPolicy:
    """The policy of ``LEADRELAY_EGRESS_ALLOW`` in this process's environment, for what is
    built without one (a connector's own session, a test's bare ``Transport()``).

    :raises ConfigError: the variable holds something that is not an address or network.
    """
    text = os.environ.get(ENV_VAR, "")
    policy = _DEFAULT.get(text)
    if policy is None:
        policy = _DEFAULT[text] = EgressPolicy.parse(text)
    return policy

