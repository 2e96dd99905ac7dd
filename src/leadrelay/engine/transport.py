"""The one place HTTP sessions are built and every request is recorded.

A :class:`Transport` belongs to one integration: it owns one reused
``requests.Session`` (``trust_env`` off: no per-request scan of proxy and netrc
variables), the timeouts, and — for static-IP variants — the proxy route.
An :class:`HttpClient` is a per-attempt view of it that records each exchange,
redacts secrets and turns network failures into the engine's error tree, so no
raw ``requests`` exception reaches a connector's caller.

Requests that go through no proxy skip ``requests.Session.request`` and go straight
to the urllib3 connection pool the session's adapter owns (see
:mod:`.direct`): the same connections, TLS settings, headers and
errors, for about two thirds of the CPU per request.

Every attempt has a deadline, ``connect + read`` timeouts from its first request
(:mod:`.limits`, enforced on the socket by :mod:`.deadline`), and every answer is read
within bounds by :mod:`.reading`, on both paths.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import requests
import requests.adapters

from . import deadline as _deadline
from .deadline import Deadline
from .direct import Answer, send_direct
from .egress import EgressPolicy, GuardedAdapter, default_policy
from .errors import ProxyFailure, RefusedTarget, TransientError
from .limits import MAX_CONNECT_TIMEOUT, MAX_READ_TIMEOUT
from .reading import ACCEPT_ENCODING, BrokenAnswer, read_body
from .secrets import Redactor
from .wire import BODY_LIMIT, CrmResponse, Exchange, RenderedRequest

__all__ = [
    "MAX_CONNECT_TIMEOUT",
    "MAX_READ_TIMEOUT",
    "HttpClient",
    "ProxyRoute",
    "ProxyUnavailable",
    "RenderedRequest",
    "Timeouts",
    "Transport",
    "retry_after_seconds",
]


@dataclass(frozen=True)
class Timeouts:
    """Separate connect and read timeouts, in seconds; an attempt's deadline is their sum."""

    connect: float = 5.0
    read: float = 30.0

    @property
    def deadline(self) -> float:
        """Seconds an attempt may take in all (see :mod:`.limits`)."""
        return self.connect + self.read


class ProxyRoute(Protocol):
    """Where static-IP traffic goes: the proxies to try, in order."""

    def candidates(self) -> list[tuple[str, str]]:
        """``(name, url)`` pairs to try in order; ``url`` may carry credentials."""
        ...

    def mark_down(self, name: str) -> None:
        """Tell the route a proxy just failed, so the next attempt tries another first."""
        ...

    def mark_up(self, name: str) -> None:
        """Tell the route a proxy just carried a request, so one marked down comes back."""
        ...


class ProxyUnavailable(ProxyFailure):
    """This proxy could not carry the request: refused, unreachable, credentials refused,
    or it answered its own 502/503 (it could not reach the CRM). Nothing reached the CRM,
    so the next proxy of the pool is tried in the same attempt.
    """


_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


class _RoutedAdapter(GuardedAdapter):
    """Sends what a library sends on the session itself (zeep fetching a WSDL or an XSD)
    through the proxy route too: a static-IP integration never egresses directly.
    """

    def __init__(self, route: ProxyRoute, policy: EgressPolicy, **kwargs: Any) -> None:
        super().__init__(policy, **kwargs)
        self.route = route

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """The pool of connections to ``proxy``, with ``TCP_NODELAY`` like direct ones.

        urllib3 turns Nagle's algorithm back *on* for proxy connections and sends a
        request's head and body in two writes: the body then waits for the proxy's
        delayed ACK, ~40 ms per POST (measured: 22 deliveries/s through proxy.py).
        """
        proxy_kwargs.setdefault("socket_options", _NODELAY)
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Mapping[str, str] | None = None) -> requests.Response:
        if proxies and any(proxies.values()):  # HttpClient chose the proxy itself
            return super().send(request, stream, timeout, verify, cert, proxies)
        failure: requests.exceptions.ProxyError | None = None
        for name, url in self.route.candidates():
            try:
                response = super().send(request, stream, timeout, verify, cert,
                                        {"http": url, "https": url})
            except requests.exceptions.ProxyError as exc:
                self.route.mark_down(name)
                failure = exc
                continue
            self.route.mark_up(name)
            return response
        raise failure or requests.exceptions.ProxyError(
            "no proxy of the static-IP pool is available", request=request)


class Transport:
    """One integration's HTTP machinery: a reused session, timeouts, optional proxy route,
    and the egress policy every connection of its session opens through (:mod:`.egress`;
    :func:`~.egress.default_policy` when none is given)."""

    def __init__(
        self,
        *,
        timeouts: Timeouts | None = None,
        proxy_route: ProxyRoute | None = None,
        pool_size: int = 16,
        egress: EgressPolicy | None = None,
    ) -> None:
        self.timeouts = timeouts or Timeouts()
        #: Where this transport's connections may go.
        self.egress = egress or default_policy()
        #: Seconds each attempt may take in all (see :mod:`.limits`).
        self.deadline_seconds = self.timeouts.deadline
        self.proxy_route = proxy_route
        self.session = requests.Session()
        self.session.trust_env = False
        # Only what reading.inflate decodes within the read cap (requests would offer
        # br and zstd as soon as their libraries are installed).
        self.session.headers["Accept-Encoding"] = ACCEPT_ENCODING
        #: Connection pools of the direct path, per origin (direct.py).
        self.pools: dict[tuple[Any, ...], Any] = {}
        adapter = (
            GuardedAdapter(self.egress, pool_connections=4, pool_maxsize=pool_size)
            if proxy_route is None
            else _RoutedAdapter(proxy_route, self.egress, pool_connections=4,
                                pool_maxsize=pool_size)
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def client(self, redactor: Redactor | None = None) -> HttpClient:
        """A recording client for one attempt."""
        return HttpClient(self, redactor or Redactor())

    def close(self) -> None:
        """Close pooled connections."""
        self.pools.clear()
        self.session.close()


class HttpClient:
    """Sends requests for one attempt and keeps the :class:`Exchange` of each.

    The attempt's :class:`~.deadline.Deadline` (the transport's ``connect + read``)
    starts with its first request and is shared by every request after it (a SOAP
    login, then the create): each one's timeouts are clipped to the time left, and its
    answer is read within it (:mod:`.deadline`). Past it, the attempt fails as
    :class:`TransientError` saying it timed out.
    """

    def __init__(self, transport: Transport, redactor: Redactor) -> None:
        self.transport = transport
        self.redactor = redactor
        self.exchanges: list[Exchange] = []
        #: The attempt's deadline, set when its first request starts (:meth:`start`).
        self.deadline: Deadline | None = None

    @property
    def session(self) -> requests.Session:
        """The integration's session, for libraries that need one (zeep's ``Transport``)."""
        return self.transport.session

    def start(self) -> Deadline:
        """The attempt's deadline, started now unless a request started it already."""
        deadline = self.deadline
        if deadline is None:
            deadline = self.deadline = Deadline(self.transport.deadline_seconds)
        return deadline

    def add_secrets(self, *values: str) -> None:
        """Redact these values too (a session id learnt at login), in what is already
        recorded — the login answer that carried it — and in everything after."""
        self.redactor = self.redactor.extend(v for v in values if v)
        for exchange in self.exchanges:
            self._redact(exchange)

    def _redact(self, exchange: Exchange) -> None:
        redact = self.redactor
        exchange.url = redact.text(exchange.url)
        exchange.request_headers = redact.headers(exchange.request_headers)
        exchange.request_body = redact.text(exchange.request_body)
        exchange.response_headers = redact.headers(exchange.response_headers)
        exchange.response_body = redact.text(exchange.response_body)

    def send(self, request: RenderedRequest, *, timeout: Timeouts | None = None) -> CrmResponse:
        """Send ``request``; return the response whatever its status.

        ``timeout`` replaces the transport's per-request timeouts, never the attempt's
        deadline. Through a static-IP route, a proxy that could not carry the request
        (:class:`ProxyUnavailable`) is marked down and the next one is tried;
        any other proxy failure may have reached the CRM, so it ends the attempt.

        :raises RefusedTarget: the egress policy refused the CRM's address; nothing sent.
        :raises ProxyFailure: the proxies failed (every one, when each was unavailable).
        :raises TransientError: timeout (the attempt's deadline included), connection
            failure, or an answer that could not be read whole.
        """
        deadline = self.deadline or self.start()
        previous, _deadline.active.deadline = _deadline.active.deadline, deadline
        try:
            t = timeout or self.transport.timeouts
            route = self.transport.proxy_route
            if route is None:
                return self._send_via(request, t, deadline, proxy=None)
            failures: list[ProxyUnavailable] = []
            for name, url in route.candidates():
                try:
                    response = self._send_via(request, t, deadline, proxy=(name, url))
                except ProxyUnavailable as exc:
                    route.mark_down(name)
                    failures.append(exc)
                    continue
                route.mark_up(name)
                return response
            if not failures:
                raise ProxyFailure("no proxy of the static-IP pool is available", proxy="-")
            last = failures[-1]
            raise ProxyFailure("; ".join(map(str, failures)), proxy=last.proxy,
                               retry_after=last.retry_after)
        finally:
            _deadline.active.deadline = previous

    def _send_via(
        self, request: RenderedRequest, t: Timeouts, deadline: Deadline,
        proxy: tuple[str, str] | None,
    ) -> CrmResponse:
        proxy_name = proxy[0] if proxy else None
        exchange = Exchange(
            step=request.step,
            method=request.method,
            url=self.redactor.text(request.url),
            request_headers=self.redactor.headers(request.headers),
            request_body=self.redactor.text(request.body_text()),
            proxy=proxy_name,
        )
        self.exchanges.append(exchange)
        left = deadline.at - time.monotonic()
        if left <= 0:  # an earlier request of the attempt used it all
            exchange.error = _late(proxy_name, deadline)
            raise TransientError(exchange.error)
        connect = t.connect if t.connect < left else left
        read = t.read if t.read < left else left
        started = time.perf_counter()
        try:
            answer = (
                send_direct(self.session, request, connect, read, self.transport.pools)
                if proxy is None
                else None
            )
            if answer is None:
                answer = self._send_requests(request, connect, read, proxy)
        except RefusedTarget as exc:
            exchange.error = str(exc)
            raise
        except BrokenAnswer as exc:
            if exc.timed_out:
                # Through a proxy too: the CRM may have the lead, as for a read timeout.
                exchange.error = (_late(proxy_name, deadline) if deadline.passed() else
                                  _blame(proxy_name, f"timed out: the answer stalled for "
                                                     f"{t.read:g}s"))
                raise TransientError(exchange.error) from None
            exchange.error = _blame(proxy_name, str(exc))
            raise _transport_error(exchange.error, proxy_name) from None
        except requests.exceptions.ProxyError as exc:
            # Connecting to the proxy, or its CONNECT tunnel, failed: nothing was sent.
            if deadline.passed():
                exchange.error = _late(proxy_name, deadline)
                raise TransientError(exchange.error) from None
            exchange.error = f"proxy {proxy_name} failed: {_why(exc)}"
            raise ProxyUnavailable(exchange.error, proxy=proxy_name or "-") from None
        except requests.exceptions.ConnectTimeout:
            if deadline.passed():  # no other proxy is tried past the deadline
                exchange.error = _late(proxy_name, deadline)
                raise TransientError(exchange.error) from None
            exchange.error = _blame(proxy_name, f"connect timed out after {t.connect:g}s")
            if proxy_name is not None:
                raise ProxyUnavailable(exchange.error, proxy=proxy_name) from None
            raise TransientError(exchange.error) from None
        except requests.exceptions.ReadTimeout:
            # Through a proxy too: the CRM may be slow and may have the lead, so it
            # is judged like a slow CRM without proxy, never tried on another proxy.
            exchange.error = (_late(proxy_name, deadline) if deadline.passed() else
                              _blame(proxy_name, f"no answer within {t.read:g}s"))
            raise TransientError(exchange.error) from None
        except requests.exceptions.ConnectionError as exc:
            exchange.error = _blame(proxy_name, f"connection failed: {_why(exc)}")
            raise _transport_error(exchange.error, proxy_name) from None
        except requests.exceptions.RequestException as exc:
            exchange.error = f"request failed: {_why(exc)}"
            raise TransientError(exchange.error) from None
        finally:
            exchange.duration_ms = (time.perf_counter() - started) * 1000
        status, headers, body, encoding, raw_bytes, capped = answer
        exchange.status = status
        exchange.response_headers = self.redactor.headers(headers)
        exchange.response_body = self.redactor.text(_decode(body[:BODY_LIMIT], encoding))
        exchange.response_truncated = capped or len(body) > BODY_LIMIT
        exchange.response_bytes = raw_bytes
        exchange.response_capped = capped
        response = CrmResponse(
            status,
            headers,
            body,
            encoding=encoding,
            url=request.url,
            proxy=proxy_name,
            capped=capped,
        )
        if proxy is not None:
            _raise_for_proxy_page(response, proxy_name or "-", exchange)
        return response

    def _send_requests(
        self, request: RenderedRequest, connect: float, read: float,
        proxy: tuple[str, str] | None,
    ) -> Answer:
        """Send through ``requests.Session.request`` (proxies, and what only requests
        sends the same way), its body read like the direct path's."""
        proxies = {"http": proxy[1], "https": proxy[1]} if proxy else None
        raw = self.session.request(
            request.method,
            request.url,
            headers=dict(request.headers),
            data=request.body,
            timeout=(connect, read),
            proxies=proxies,
            allow_redirects=False,
            stream=True,  # the body is read by read_body, within the read cap
        )
        body = read_body(raw.raw)
        return Answer(raw.status_code, dict(raw.headers), body.data, raw.encoding,
                      body.raw_bytes, body.capped)


def _decode(body: bytes, encoding: str | None) -> str:
    """Text for the record; a charset Python does not know falls back to UTF-8."""
    try:
        return body.decode(encoding or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), or None."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


# Proxy software whose name marks its *own* error pages (``Server`` header, or the
# page itself). A CRM's 502 relayed through the proxy keeps the CRM's headers and
# body, so it is still the CRM's answer.
_PROXY_PAGE_MARKERS = ("tinyproxy", "proxy.py", "squid")
# Headers only a proxy's own answer carries: proxy.py sends ``Proxy-agent`` (and no
# ``Server``) on its 502 page, squid ``X-Squid-Error`` on each of its error pages.
_PROXY_PAGE_HEADERS = ("Proxy-agent", "X-Squid-Error")


def _raise_for_proxy_page(response: CrmResponse, proxy: str, exchange: Exchange) -> None:
    status = response.status
    if status == 407:  # the proxy refused our credentials: it cannot carry anything
        exchange.error = f"proxy {proxy} refused our credentials (HTTP 407)"
        raise ProxyUnavailable(exchange.error, proxy=proxy)
    if status not in (502, 503, 504) or not _generated_by_proxy(response):
        return
    exchange.error = f"proxy {proxy} answered {status} itself: it got no answer from the CRM"
    retry_after = retry_after_seconds(response.headers)
    if status == 504:
        # A gateway timeout: the CRM may have the request. Not resent on another proxy.
        raise ProxyFailure(exchange.error, proxy=proxy, retry_after=retry_after)
    raise ProxyUnavailable(exchange.error, proxy=proxy, retry_after=retry_after)


def _generated_by_proxy(response: CrmResponse) -> bool:
    headers = response.headers
    if any(h in headers for h in _PROXY_PAGE_HEADERS):
        return True
    server = headers.get("Server", "").lower()
    if any(m in server for m in _PROXY_PAGE_MARKERS):
        return True
    text = response.text[:2048].lower()
    return "Via" not in headers and any(m in text for m in _PROXY_PAGE_MARKERS)


def _blame(proxy: str | None, message: str) -> str:
    return f"proxy {proxy}: {message}" if proxy else message


def _late(proxy: str | None, deadline: Deadline) -> str:
    return _blame(proxy, f"timed out: no whole answer within the attempt's deadline "
                         f"({deadline.seconds:g}s)")


def _transport_error(message: str, proxy: str | None) -> TransientError:
    # Through a proxy, the connection we lost is the proxy's: the proxy, not the
    # CRM, is what we talk to. It may have forwarded the request, so this is not
    # a ProxyUnavailable: the attempt ends here instead of trying the next proxy.
    if proxy is not None:
        return ProxyFailure(message, proxy=proxy)
    return TransientError(message)


_TUNNEL = re.compile(r"Tunnel connection failed: \d{3}[\w ]*")


def _why(exc: BaseException) -> str:
    """A short, secret-free cause: the innermost reason without URLs or credentials."""
    text = str(exc)
    tunnel = _TUNNEL.search(text)
    if tunnel:
        return tunnel.group(0).lower()
    for marker in ("Connection refused", "Name or service not known", "timed out",
                   "Connection reset", "Remote end closed", "Tunnel connection failed",
                   "Cannot connect to proxy"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__
