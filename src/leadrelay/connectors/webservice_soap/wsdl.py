"""Loading WSDLs: one zeep ``Client`` per WSDL per process, fetched through the engine's session.

Building a zeep ``Client`` costs 40 to 500 ms for real CRM WSDLs, building one
message under 1 ms, so the parsed client is the thing to keep. It is cached per
WSDL location in a process-wide :class:`ClientCache` and shared by every
integration, delivery and thread that names the same WSDL: it only serializes
envelopes and parses replies (the connector posts them through the engine's
transport), so it holds no per-integration state.

Every document fetch goes through the ``requests.Session`` of the integration
that first needed the WSDL (so the static-IP proxy and timeouts apply), except
the schemas real WSDLs import by URL — SOAP encoding and WSDL 1.1 — which are
served from the copies in ``schemas/`` (provenance in ``schemas/PROVENANCE.md``):
they load without network, and a CRM's WSDL does not depend on
``schemas.xmlsoap.org`` being up.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import zeep
import zeep.transports
from lxml import etree
from zeep.exceptions import Error as ZeepError

from leadrelay.engine.errors import RefusedTarget

#: Schemas imported by URL that are served from the package, never fetched.
LOCAL_SCHEMAS: dict[str, str] = {
    "http://schemas.xmlsoap.org/soap/encoding/": "soapenc-1.1.xsd",
    "http://schemas.xmlsoap.org/wsdl/": "wsdl-1.1.xsd",
}

#: Clients kept per process; the oldest is dropped beyond this (integrations keep theirs).
MAX_CLIENTS = 64
#: A WSDL or imported schema larger than this is refused (the largest real one seen is 2.2 MB).
MAX_DOCUMENT_BYTES = 20 * 1024 * 1024


class WsdlUnreachable(Exception):
    """A WSDL or an imported schema could not be fetched (network, HTTP status)."""


class WsdlInvalid(Exception):
    """The WSDL was fetched but does not parse as a WSDL zeep can use."""


@dataclass(frozen=True)
class FetchOptions:
    """How documents are fetched: the session to use and its timeouts (seconds)."""

    session: requests.Session | None
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    #: The directories local documents (a WSDL, the schemas it imports) may be read from.
    file_dirs: tuple[Path, ...] = ()


def _local_schema(url: str) -> bytes | None:
    name = LOCAL_SCHEMAS.get(url) or LOCAL_SCHEMAS.get(url.rstrip("/") + "/")
    if name is None:
        return None
    return resources.files(__package__).joinpath("schemas", name).read_bytes()


def is_url(location: str) -> bool:
    """True for an ``http(s)://`` location, False for a file path or ``file://`` URL."""
    return urlsplit(location).scheme in ("http", "https")


class _LoaderTransport(zeep.transports.Transport):
    """A zeep transport that only *loads* documents, through a session it is lent.

    zeep's own ``Transport.__init__`` mounts a ``file://`` adapter on the session
    it is given and rewrites its ``User-Agent``: it is not called, so the
    integration's session is left exactly as the engine built it (and a remote
    WSDL cannot import ``file://`` paths through it).
    """

    def __init__(self, options: FetchOptions, *, allow_files: bool) -> None:
        self.cache = None
        self.load_timeout = options.read_timeout
        self.operation_timeout = options.read_timeout
        self.logger = zeep.transports.logging.getLogger(__name__)
        self._close_session = False
        self.session = options.session
        self._options = options
        self._allow_files = allow_files

    def load(self, url: str) -> bytes:
        """Return the document at ``url``: a packaged schema, a local file, or an HTTP GET."""
        if not url:
            raise WsdlInvalid("an import has no location")
        local = _local_schema(url)
        if local is not None:
            return local
        scheme = urlsplit(url).scheme
        if scheme in ("http", "https"):
            return _well_formed(self._fetch(url), url)
        if not self._allow_files:
            # A WSDL fetched over HTTP must not make us read the server's files.
            raise WsdlInvalid(f"a remote WSDL may not import the local document {url!r}")
        path = url[len("file://"):] if scheme == "file" else url
        resolved = Path(os.path.expanduser(path)).resolve()
        if not any(resolved.is_relative_to(d) for d in self._options.file_dirs):
            raise WsdlInvalid(f"{path} is outside the directories plugins.toml allows "
                              f"(wsdl_dirs)")
        try:
            content = resolved.read_bytes()
        except OSError as exc:
            raise WsdlInvalid(f"cannot read {path}: {exc.strerror or exc}") from None
        return _well_formed(content, path)

    def _fetch(self, url: str) -> bytes:
        session = self.session
        if session is None:
            raise WsdlUnreachable(f"{url}: no HTTP session to fetch it with")
        opts = self._options
        try:
            with session.get(
                url, timeout=(opts.connect_timeout, opts.read_timeout), stream=True,
                allow_redirects=True,
            ) as response:
                if response.status_code != 200:
                    raise WsdlUnreachable(f"{url}: HTTP {response.status_code}")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > MAX_DOCUMENT_BYTES:
                        raise WsdlInvalid(f"{url}: larger than {MAX_DOCUMENT_BYTES} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except RefusedTarget as exc:  # this URL, or a redirect hop, is a refused address
            raise WsdlUnreachable(f"{url}: {exc}") from None
        except requests.exceptions.Timeout:
            raise WsdlUnreachable(f"{url}: no answer within the timeout") from None
        except requests.exceptions.RequestException as exc:
            raise WsdlUnreachable(f"{url}: {type(exc).__name__}") from None

    def get(self, address: str, params: Any, headers: Any) -> Any:
        """Refused: operations are posted by the connector through the engine's transport."""
        raise RuntimeError("the webservice_soap connector sends through the engine transport")

    def post(self, address: str, message: Any, headers: Any) -> Any:
        """Refused: operations are posted by the connector through the engine's transport."""
        raise RuntimeError("the webservice_soap connector sends through the engine transport")


# zeep parses in recover mode when not strict; a document is checked to be
# well-formed first, so a broken WSDL is refused instead of half-read.
_STRICT = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          huge_tree=True, recover=False)


def _well_formed(content: bytes, where: str) -> bytes:
    try:
        etree.fromstring(content, _STRICT)
    except etree.XMLSyntaxError as exc:
        name = where.rsplit("/", 1)[-1] or where
        raise WsdlInvalid(f"{name} is not well-formed XML ({_short(str(exc))})") from None
    return content


def _cache_key(location: str) -> tuple[str, ...]:
    if is_url(location):
        return ("url", location)
    path = Path(location[len("file://"):] if location.startswith("file://") else location)
    path = path.expanduser().resolve()
    try:
        stat = path.stat()
    except OSError:
        # Not cached under a stale key: load() reports the missing file.
        return ("file", str(path), "missing")
    # An uploaded WSDL replaced in place is reloaded, not served stale.
    return ("file", str(path), str(stat.st_mtime_ns), str(stat.st_size))


def _settings() -> zeep.Settings:
    # strict=False: real CRM WSDLs and replies bend the schema (missing
    # required elements in answers); zeep still validates what we *send*.
    # forbid_external stays off: zeep applies it to schema imports too, and
    # every fetch goes through _LoaderTransport.load anyway.
    return zeep.Settings(strict=False, forbid_entities=True)


def build_client(location: str, options: FetchOptions) -> zeep.Client:
    """Parse the WSDL at ``location`` (URL or path) into a zeep ``Client``. Not cached.

    :raises WsdlUnreachable: a document could not be fetched.
    :raises WsdlInvalid: it was fetched but is not a usable WSDL.
    """
    transport = _LoaderTransport(options, allow_files=not is_url(location))
    if not is_url(location):
        path = location[len("file://"):] if location.startswith("file://") else location
        if not Path(path).expanduser().is_file():
            raise WsdlInvalid(f"{path}: no such file")
    try:
        client = zeep.Client(location, transport=transport, settings=_settings())
    except (WsdlUnreachable, WsdlInvalid):
        raise
    except (ZeepError, ValueError, LookupError, TypeError, AttributeError, AssertionError,
            UnicodeError, SyntaxError) as exc:
        # zeep reports a broken document through many exception types; the
        # message is enough for a one-line config error.
        raise WsdlInvalid(_short(exc)) from None
    if not client.wsdl.services:
        raise WsdlInvalid("it declares no service")
    # The cached client outlives the integration that lent the session.
    transport.session = None
    return client


def _short(exc: object) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


class ClientCache:
    """Process-wide zeep clients, one per WSDL, built at most once even under concurrency.

    A lock per WSDL serializes construction, so two threads delivering for the
    same new integration build it once, while different WSDLs build in parallel.
    Failures are not cached: the next delivery tries again.
    """

    def __init__(self) -> None:
        self._clients: dict[tuple[str, ...], zeep.Client] = {}
        self._locks: dict[tuple[str, ...], threading.Lock] = {}
        self._guard = threading.Lock()
        #: How many clients were built, for tests and benchmarks.
        self.builds = 0

    def get(self, location: str, options: FetchOptions) -> zeep.Client:
        """The client for ``location``, built with ``options`` on first use."""
        key = _cache_key(location)
        client = self._clients.get(key)
        if client is not None:
            return client
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            client = self._clients.get(key)
            if client is None:
                client = build_client(location, options)
                self.builds += 1
                with self._guard:
                    self._clients[key] = client
                    while len(self._clients) > MAX_CLIENTS:
                        oldest = next(iter(self._clients))
                        del self._clients[oldest]
                        self._locks.pop(oldest, None)
        return client

    def clear(self) -> None:
        """Forget every client and reset the build count (tests)."""
        with self._guard:
            self._clients.clear()
            self._locks.clear()
            self.builds = 0


#: The process's clients.
CLIENTS = ClientCache()
