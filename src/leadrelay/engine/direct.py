"""Sending straight through the urllib3 pool a ``requests`` session already owns.

``requests.Session.request`` costs about twice the CPU of its adapter's own
``urlopen`` (a POST to a loopback keep-alive CRM: ~450 µs against ~290 µs), and the
delivery hot path is CPU-bound (docs/benchmarks.md). :func:`send_direct` hands the
pool exactly what ``HTTPAdapter.send`` would, and says None for anything only
``requests`` can send the same way; :class:`~.transport.HttpClient` then sends through
``requests``. Same connections, TLS, headers, errors: tests/engine/test_transport_direct.py.
"""

from __future__ import annotations

from typing import Any, NamedTuple, cast

import requests
import requests.adapters
import urllib3
from requests.cookies import extract_cookies_to_jar
from requests.models import REDIRECT_STATI
from requests.structures import CaseInsensitiveDict
from requests.utils import check_header_validity, get_encoding_from_headers, requote_uri
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    LocationParseError,
    LocationValueError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.exceptions import HTTPError as _Urllib3HTTPError
from urllib3.exceptions import InvalidHeader as _Urllib3InvalidHeader
from urllib3.exceptions import ProxyError as _Urllib3ProxyError
from urllib3.exceptions import SSLError as _Urllib3SSLError

from .egress import GuardedAdapter
from .reading import read_body
from .wire import RenderedRequest


def send_direct(
    session: requests.Session,
    request: RenderedRequest,
    connect: float,
    read: float,
    pools: dict[tuple[Any, ...], urllib3.HTTPConnectionPool] | None = None,
) -> Answer | None:
    """Send ``request`` through the urllib3 pool of the session's adapter, or return
    None when only ``requests`` can send it exactly as it would.

    ``requests.Session.request`` costs about twice the CPU of the pool's own
    ``urlopen``; a POST through ``HttpClient.send`` to a loopback keep-alive CRM went from
    ~450 to ~290 µs of CPU this way. This hands ``urlopen`` what
    ``HTTPAdapter.send`` would: the same pool (its connections are shared with zeep
    and anything else on the session), the same TLS verification (certifi bundle,
    ``verify=True``), the session's default headers under the request's, the same
    ``Content-Length``, retries and timeouts. Its failures are raised as the
    ``requests`` exceptions ``requests`` raises for them, so ``HttpClient`` maps
    both paths to the same errors. The body is read as on the ``requests`` path,
    by :func:`~.reading.read_body` (bounded, inflated here), which raises
    :class:`~.reading.BrokenAnswer` when it cannot be read whole.

    Anything the session would add or do besides (auth, cookies, hooks, params,
    proxies, a subclassed or wrapped adapter, a URL ``requests`` rewrites) sends
    through ``requests`` instead. A redirect answer, which this never follows either,
    still goes through ``requests``' own redirect bookkeeping.
    """
    url = request.url
    if not (url.startswith(("http://", "https://")) and url.isascii()):
        return None
    if (session.trust_env or session.verify is not True or session.cert is not None
            or session.auth or session.params or session.proxies or session.cookies
            or any(session.hooks.values())):
        return None
    adapter = session.get_adapter(url)
    if (not isinstance(adapter, requests.adapters.HTTPAdapter)
            or type(adapter) not in _PLAIN_ADAPTERS
            or not _ADAPTER_HOOKS.isdisjoint(vars(adapter))):
        return None
    try:
        parsed = urllib3.util.parse_url(url)
    except LocationParseError:
        return None
    if (not parsed.host or parsed.host.startswith(("*", ".")) or parsed.auth is not None
            or parsed.query == "" or parsed.fragment is not None):
        return None
    target = parsed.request_uri
    if "%" in target and requote_uri(target) != target:  # requests unquotes e.g. %7E
        return None

    method = request.method.upper()
    headers: CaseInsensitiveDict[Any] = CaseInsensitiveDict(session.headers)
    headers.update(request.headers)
    for name, value in list(headers.items()):
        if value is None:  # a None header drops the session's default, as in requests
            del headers[name]
        else:
            check_header_validity((name, value))
    body = request.body or None
    if isinstance(body, str):
        body = body.encode("utf-8")  # what requests counts and urllib3 sends for text
    if body is not None:
        headers["Content-Length"] = str(len(body))
    elif method not in ("GET", "HEAD") and headers.get("Content-Length") is None:
        headers["Content-Length"] = "0"

    pool = _pool(adapter, parsed, url, pools)
    try:
        raw = pool.urlopen(
            method,
            target,
            body=body,
            headers=headers,
            redirect=False,
            assert_same_host=False,
            preload_content=False,
            decode_content=False,
            retries=adapter.max_retries,
            timeout=urllib3.Timeout(connect=connect, read=read),
            chunked=False,
        )
    except (OSError, _Urllib3HTTPError) as exc:
        error = _as_requests_error(exc)
        if error is None:
            raise
        raise error from None

    got = read_body(raw)
    sets_cookie = "Set-Cookie" in raw.headers or "Set-Cookie2" in raw.headers
    redirect = raw.status in REDIRECT_STATI and "Location" in raw.headers
    if not (sets_cookie or redirect):
        return Answer(raw.status, dict(raw.headers), got.data,
                      get_encoding_from_headers(raw.headers), got.raw_bytes, got.capped)
    # Rare answers get the rest of Session.send: the session keeps the cookies, and
    # a redirect (never followed) still passes requests' redirect bookkeeping, which
    # rejects a Location it cannot parse. The body is the one read above: requests
    # would read it again, unbounded.
    prepared = _prepared(session, request)
    if sets_cookie:
        extract_cookies_to_jar(session.cookies, prepared, raw)
    response = adapter.build_response(prepared, raw)
    response._content = got.data
    response._content_consumed = True  # type: ignore[attr-defined]
    if redirect:
        next(session.resolve_redirects(
            response, prepared, yield_requests=True, timeout=(connect, read),
            stream=False, verify=True, cert=None, proxies={}), None)
    return Answer(response.status_code, dict(response.headers), got.data,
                  response.encoding, got.raw_bytes, got.capped)


def _pool(
    adapter: requests.adapters.HTTPAdapter,
    parsed: urllib3.util.Url,
    url: str,
    pools: dict[tuple[Any, ...], urllib3.HTTPConnectionPool] | None,
) -> urllib3.HTTPConnectionPool:
    """The adapter's pool for ``url``, TLS-configured as requests configures it.

    Looking it up costs about a sixth of a request (requests rebuilds its TLS context
    key each time), so ``pools`` (the transport's, emptied when it closes) keeps the
    answer per origin.
    """
    key = (id(adapter), parsed.scheme, parsed.host, parsed.port)
    pool = pools.get(key) if pools is not None else None
    if pool is not None and pool.pool is not None:  # not closed
        return pool
    pool_key = requests.PreparedRequest()
    pool_key.url = parsed.url
    try:
        pool = cast(urllib3.HTTPConnectionPool,
                    adapter.get_connection_with_tls_context(pool_key, True))
    except LocationValueError as exc:
        raise requests.exceptions.InvalidURL(exc) from None
    adapter.cert_verify(pool, url, True, None)
    if pools is not None:
        pools[key] = pool
    return pool


def _prepared(session: requests.Session, request: RenderedRequest) -> requests.PreparedRequest:
    """``request`` as ``requests.Session.request`` prepares it."""
    return session.prepare_request(requests.Request(
        request.method.upper(), request.url, headers=dict(request.headers),
        data=request.body or {}))


#: Adapters whose ``send`` adds nothing the pool's ``urlopen`` lacks for a request without
#: proxy (the egress check is in the pool's connections, so the direct path keeps it).
_PLAIN_ADAPTERS = frozenset({requests.adapters.HTTPAdapter, GuardedAdapter})

#: ``HTTPAdapter`` methods whose replacement on the adapter itself (a wrapper that counts
#: or records what is sent) the direct path would bypass: such an adapter sends it all.
_ADAPTER_HOOKS = frozenset({"send", "add_headers", "request_url", "build_response"})


class Answer(NamedTuple):
    """A CRM's answer as both paths give it back."""

    status: int
    headers: dict[str, str]
    body: bytes
    encoding: str | None
    #: Bytes of body read off the wire.
    raw_bytes: int
    #: The answer was larger than the read cap; ``body`` is its beginning.
    capped: bool


def _as_requests_error(exc: OSError | _Urllib3HTTPError) -> Exception | None:
    """The ``requests`` exception ``HTTPAdapter.send`` raises for this ``urlopen`` failure
    (the same class and text), or None where it lets the failure through as it is."""
    if isinstance(exc, (ProtocolError, OSError)):
        return requests.exceptions.ConnectionError(exc)
    if isinstance(exc, MaxRetryError):
        reason = exc.reason
        if isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError):
            return requests.exceptions.ConnectTimeout(exc)
        if isinstance(reason, ResponseError):
            return requests.exceptions.RetryError(exc)
        if isinstance(reason, _Urllib3ProxyError):
            return requests.exceptions.ProxyError(exc)
        if isinstance(reason, _Urllib3SSLError):
            return requests.exceptions.SSLError(exc)
        return requests.exceptions.ConnectionError(exc)
    if isinstance(exc, ClosedPoolError):
        return requests.exceptions.ConnectionError(exc)
    if isinstance(exc, _Urllib3ProxyError):
        return requests.exceptions.ProxyError(exc)
    if isinstance(exc, _Urllib3SSLError):
        return requests.exceptions.SSLError(exc)
    if isinstance(exc, ReadTimeoutError):
        return requests.exceptions.ReadTimeout(exc)
    if isinstance(exc, _Urllib3InvalidHeader):
        return requests.exceptions.InvalidHeader(exc)
    return None
