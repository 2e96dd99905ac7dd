"""The one place HTTP sessions are built and every request is recorded.

A :class:`Transport` belongs to one integration: it owns one reused
``requests.Session`` (``trust_env`` off: no per-request scan of proxy and netrc
variables), the timeouts, and — for static-IP variants — the proxy route.
An :class:`HttpClient` is a per-attempt view of it that records each exchange,
redacts secrets and turns network failures into the engine's error tree, so no
raw ``requests`` exception reaches a connector's caller.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol

import requests
import requests.adapters

from .errors import ProxyFailure, TransientError
from .secrets import Redactor
from .wire import BODY_LIMIT, CrmResponse, Exchange, RenderedRequest


@dataclass(frozen=True)
class Timeouts:
    """Separate connect and read timeouts, in seconds."""

    connect: float = 5.0
    read: float = 30.0


class ProxyRoute(Protocol):
    """Where static-IP traffic goes: the proxies to try, in order."""

    def candidates(self) -> list[tuple[str, str]]:
        """``(name, url)`` pairs to try in order; ``url`` may carry credentials."""
        ...

    def mark_down(self, name: str) -> None:
        """Tell the route a proxy just failed, so the next attempt tries another first."""
        ...


class Transport:
    """One integration's HTTP machinery: a reused session, timeouts, optional proxy route."""

    def __init__(
        self,
        *,
        timeouts: Timeouts | None = None,
        proxy_route: ProxyRoute | None = None,
        pool_size: int = 16,
    ) -> None:
        self.timeouts = timeouts or Timeouts()
        self.proxy_route = proxy_route
        self.session = requests.Session()
        self.session.trust_env = False
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def client(self, redactor: Redactor | None = None) -> HttpClient:
        """A recording client for one attempt."""
        return HttpClient(self, redactor or Redactor())

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()


class HttpClient:
    """Sends requests for one attempt and keeps the :class:`Exchange` of each."""

    def __init__(self, transport: Transport, redactor: Redactor) -> None:
        self.transport = transport
        self.redactor = redactor
        self.exchanges: list[Exchange] = []

    @property
    def session(self) -> requests.Session:
        """The integration's session, for libraries that need one (zeep's ``Transport``)."""
        return self.transport.session

    def add_secrets(self, *values: str) -> None:
        """Redact these values too from now on (a session id learnt at login)."""
        self.redactor = self.redactor.extend(v for v in values if v)

    def send(self, request: RenderedRequest, *, timeout: Timeouts | None = None) -> CrmResponse:
        """Send ``request``; return the response whatever its status.

        :raises ProxyFailure: every proxy of the route failed.
        :raises TransientError: timeout or connection failure reaching the CRM.
        """
        t = timeout or self.transport.timeouts
        route = self.transport.proxy_route
        if route is None:
            return self._send_via(request, t, proxy=None)
        failures: list[str] = []
        for name, url in route.candidates():
            try:
                return self._send_via(request, t, proxy=(name, url))
            except ProxyFailure as exc:
                route.mark_down(name)
                failures.append(str(exc))
        if not failures:
            raise ProxyFailure("no proxy of the static-IP pool is available", proxy="-")
        raise ProxyFailure("; ".join(failures), proxy=failures and name or "-")

    def _send_via(
        self, request: RenderedRequest, t: Timeouts, proxy: tuple[str, str] | None
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
        proxies = {"http": proxy[1], "https": proxy[1]} if proxy else None
        started = time.perf_counter()
        try:
            raw = self.session.request(
                request.method,
                request.url,
                headers=dict(request.headers),
                data=request.body,
                timeout=(t.connect, t.read),
                proxies=proxies,
                allow_redirects=False,
            )
            body = raw.content
        except requests.exceptions.ProxyError as exc:
            exchange.error = f"proxy {proxy_name} failed: {_why(exc)}"
            raise ProxyFailure(exchange.error, proxy=proxy_name or "-") from None
        except requests.exceptions.ConnectTimeout:
            exchange.error = _blame(proxy_name, f"connect timed out after {t.connect:g}s")
            raise _transport_error(exchange.error, proxy_name) from None
        except requests.exceptions.ReadTimeout:
            exchange.error = f"no answer within {t.read:g}s"
            raise TransientError(exchange.error) from None
        except requests.exceptions.ConnectionError as exc:
            exchange.error = _blame(proxy_name, f"connection failed: {_why(exc)}")
            raise _transport_error(exchange.error, proxy_name) from None
        except requests.exceptions.RequestException as exc:
            exchange.error = f"request failed: {_why(exc)}"
            raise TransientError(exchange.error) from None
        finally:
            exchange.duration_ms = (time.perf_counter() - started) * 1000
        headers = dict(raw.headers)
        exchange.status = raw.status_code
        exchange.response_headers = self.redactor.headers(headers)
        exchange.response_body = self.redactor.text(
            body[:BODY_LIMIT].decode(raw.encoding or "utf-8", errors="replace")
        )
        exchange.response_truncated = len(body) > BODY_LIMIT
        response = CrmResponse(
            raw.status_code,
            headers,
            body,
            encoding=raw.encoding,
            url=request.url,
            proxy=proxy_name,
        )
        if proxy is not None:
            _raise_for_proxy_page(response, proxy_name or "-", exchange)
        return response

    @contextmanager
    def recording(self, request: RenderedRequest) -> Iterator[Exchange]:
        """Record an exchange performed by other means (a library doing its own I/O)."""
        exchange = Exchange(
            step=request.step,
            method=request.method,
            url=self.redactor.text(request.url),
            request_headers=self.redactor.headers(request.headers),
            request_body=self.redactor.text(request.body_text()),
        )
        self.exchanges.append(exchange)
        started = time.perf_counter()
        try:
            yield exchange
        finally:
            exchange.duration_ms = (time.perf_counter() - started) * 1000


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


# Headers a proxy adds to its *own* error pages. A CRM's 502 relayed through
# the proxy carries none of these, so it is still the CRM's answer.
_PROXY_PAGE_MARKERS = ("tinyproxy", "proxy.py", "squid")


def _raise_for_proxy_page(response: CrmResponse, proxy: str, exchange: Exchange) -> None:
    if response.status not in (502, 503, 504):
        return
    server = response.headers.get("Server", "").lower()
    via = response.headers.get("Via")
    text = response.text[:2048].lower()
    generated = any(m in server for m in _PROXY_PAGE_MARKERS) or (
        via is None and any(m in text for m in _PROXY_PAGE_MARKERS)
    )
    if generated:
        exchange.error = f"proxy {proxy} answered {response.status} itself"
        raise ProxyFailure(exchange.error, proxy=proxy)


def _blame(proxy: str | None, message: str) -> str:
    return f"proxy {proxy}: {message}" if proxy else message


def _transport_error(message: str, proxy: str | None) -> TransientError:
    # Through a proxy, a refused or timed-out connect is the proxy's failure:
    # the proxy, not the CRM, is what we tried to reach.
    if proxy is not None:
        return ProxyFailure(message, proxy=proxy)
    return TransientError(message)


def _why(exc: BaseException) -> str:
    """A short, secret-free cause: the innermost reason without URLs or credentials."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out",
                   "Connection reset", "Remote end closed", "Tunnel connection failed",
                   "Cannot connect to proxy"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__
