"""Secrets: encrypted at rest, redacted wherever they are shown.

A connector declares secrets as ``pydantic.SecretStr`` fields of its config.
In the ledger, each secret value is stored as ``{"$secret": "<Fernet token>"}``
under the key ``LEADRELAY_SECRET_KEY``. When shown (CLI, API, attempts),
secrets become :data:`MASK`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import html
import json
import logging
import re
import weakref
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus
from xml.sax.saxutils import escape as xml_escape

import pydantic
from cryptography.fernet import Fernet, InvalidToken

from .errors import ConfigError

MASK = "[REDACTED]"
_SECRET_TAG = "$secret"
_FINGERPRINT_TAG = "$fingerprint"

#: Headers whose values are always redacted, whatever the config says.
SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
)


class SecretBox:
    """Encrypts and decrypts secret values with one Fernet key."""

    def __init__(self, key: str | bytes) -> None:
        try:
            self._fernet = Fernet(key)
            self._mac_key = hashlib.sha256(b"leadrelay fingerprint\0" + (
                key.encode() if isinstance(key, str) else key)).digest()
        except (ValueError, TypeError):
            raise ConfigError(
                "LEADRELAY_SECRET_KEY is not a valid key (32 url-safe base64-encoded bytes)",
                field="LEADRELAY_SECRET_KEY",
            ) from None

    @staticmethod
    def generate_key() -> str:
        """A new random key, for first start of the embedded deployment."""
        return Fernet.generate_key().decode()

    def seal(self, config: pydantic.BaseModel) -> dict[str, Any]:
        """The config as a JSON-ready dict with every secret encrypted."""
        return _walk(config, lambda s: {_SECRET_TAG: self._fernet.encrypt(s.encode()).decode()})

    def unseal(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """A stored config with its secrets decrypted, ready for validation."""
        return _unwalk(stored, self._decrypt)

    def fingerprinted(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """A sealed config with each secret replaced by ``{"$fingerprint": ...}``, a keyed
        hash of its value: two configs' secrets compare equal or not, and neither can be
        recovered from it (config history)."""
        def mark(token: str) -> dict[str, str]:
            value = self._decrypt(token).encode()
            digest = hmac.new(self._mac_key, value, hashlib.sha256).hexdigest()[:32]
            return {_FINGERPRINT_TAG: digest}

        return _unwalk(stored, mark)

    def _decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                "a stored secret cannot be decrypted: LEADRELAY_SECRET_KEY changed",
                field="LEADRELAY_SECRET_KEY",
            ) from None


def redacted(config: pydantic.BaseModel) -> dict[str, Any]:
    """The config as a JSON-ready dict with every secret shown as :data:`MASK`."""
    return _walk(config, lambda _s: MASK)


def redact_stored(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A sealed (stored) config with its encrypted secrets shown as :data:`MASK`, and the
    credentials of any URL in it (accepted before they were refused) masked."""
    shown = _unwalk(stored, lambda _token: MASK)
    return _mask_urls(shown)


def _mask_urls(value: Any) -> Any:
    """``value`` with :func:`mask_userinfo` applied to every string in it."""
    if isinstance(value, str):
        return mask_userinfo(value)
    if isinstance(value, Mapping):
        return {k: _mask_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_urls(v) for v in value]
    return value


def is_fingerprint(value: Any) -> bool:
    """Whether ``value`` is a secret's fingerprint (see :meth:`SecretBox.fingerprinted`)."""
    return isinstance(value, Mapping) and set(value) == {_FINGERPRINT_TAG}


def mask_fingerprints(value: Any) -> Any:
    """``value`` (a fingerprinted config) with every fingerprint shown as :data:`MASK`."""
    if is_fingerprint(value):
        return MASK
    if isinstance(value, Mapping):
        return {k: mask_fingerprints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_fingerprints(v) for v in value]
    return value


def secret_values(config: pydantic.BaseModel) -> set[str]:
    """Every secret string in ``config``, for redaction of what goes on the wire, and
    ``user:password`` of each model with a user name beside a secret password (what
    HTTP basic auth encodes)."""
    found: set[str] = set()

    def collect(s: str) -> str:
        if s:
            found.add(s)
        return s

    _walk(config, collect)
    found.update(_credential_pairs(config))
    return found


def _credential_pairs(value: Any) -> Iterable[str]:
    if isinstance(value, pydantic.RootModel):
        yield from _credential_pairs(value.root)
    elif isinstance(value, pydantic.BaseModel):
        user = getattr(value, "username", None) or getattr(value, "user", None)
        password = getattr(value, "password", None)
        if isinstance(user, str) and isinstance(password, pydantic.SecretStr):
            yield f"{user}:{password.get_secret_value()}"
        for name in type(value).model_fields:
            yield from _credential_pairs(getattr(value, name))
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _credential_pairs(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _credential_pairs(v)


def derived_forms(secret: str) -> set[str]:
    """The forms a secret takes on the wire and in answers that echo it: raw,
    percent-encoded (either case of hex), base64 (standard and URL-safe, padded or not),
    JSON-escaped, XML/HTML-escaped, hex, and its MD5/SHA-1/SHA-256 hex digests."""
    raw = secret.encode("utf-8", "surrogatepass")
    forms = {secret}
    for encoded in (quote(secret, safe=""), quote(secret), quote_plus(secret)):
        forms.add(encoded)
        forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded))
    for b64 in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        forms.update((b64, b64.rstrip("=")))
    forms.add(json.dumps(secret)[1:-1])
    forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    forms.add(xml_escape(secret))
    forms.add(xml_escape(secret, {'"': "&quot;", "'": "&apos;"}))
    forms.add(html.escape(secret))
    forms.update((raw.hex(), raw.hex().upper()))
    for digest in (hashlib.md5, hashlib.sha1, hashlib.sha256):
        hexed = digest(raw, usedforsecurity=False).hexdigest()
        forms.update((hexed, hexed.upper()))
    return {f for f in forms if len(f) >= 3}


#: ``scheme://user:password@`` (or ``user@``) in a URL: the userinfo is masked.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@?#\[\]\"'<>]+@")


def mask_userinfo(text: str) -> str:
    """``text`` with the credentials of every URL in it masked (``http://[REDACTED]@host``)."""
    if "@" not in text or "://" not in text:
        return text
    return _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)


class Redactor:
    """Removes known secret values, in each of their :func:`derived_forms`, the
    credentials of URLs, and sensitive headers from recorded text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 3})
        self._pattern = _pattern_of(tuple(self._secrets))

    def extend(self, secrets: Iterable[str]) -> Redactor:
        """A redactor that also masks ``secrets`` (a session id learnt at login, a
        signature a connector computed from a secret)."""
        return Redactor([*self._secrets, *secrets])

    def text(self, value: str) -> str:
        """``value`` with every known secret (in every form) replaced by :data:`MASK`,
        and URL credentials masked."""
        if not value:
            return value
        if self._pattern is not None:
            value = self._pattern.sub(MASK, value)
        return mask_userinfo(value)

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Headers with sensitive ones masked and secrets removed from the rest."""
        return {
            k: MASK if k.lower() in SENSITIVE_HEADERS else self.text(str(v))
            for k, v in headers.items()
        }


@functools.lru_cache(maxsize=256)
def _pattern_of(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    """The compiled pattern masking every derived form of ``secrets``, built once per set:
    a connector extends its redactor on every attempt (a SOAP session id, a signature),
    and building the pattern costs about a millisecond (docs/benchmarks.md, ``soap``)."""
    forms = {f for s in secrets for f in derived_forms(s)}
    # One branch per character (a trie), so each position of a text costs one step per
    # character matched, not one per form: ~30 forms per secret stay cheap. The longest
    # form that matches is masked whole.
    return re.compile(_trie_pattern(forms)) if forms else None


def _trie_pattern(words: Iterable[str]) -> str:
    """A regular expression matching any of ``words``, longest first, as a trie."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def pattern(node: dict[str, Any]) -> str:
        ends = "" in node
        branches = [re.escape(ch) + pattern(child) for ch, child in node.items() if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if ends:
            return ("(?:" + body + ")?") if len(branches) == 1 else body + "?"
        return body

    return pattern(trie)


#: The redactors of the integrations this process runs (registered by the runtimes),
#: which :class:`SecretLogFilter` applies to log records.
_LIVE: weakref.WeakSet[Redactor] = weakref.WeakSet()


def remember(redactor: Redactor) -> Redactor:
    """Have log records redacted with ``redactor`` for as long as it is in use."""
    _LIVE.add(redactor)
    return redactor


#: The request line urllib3 logs at DEBUG: its target's query string (a secret query
#: parameter) is masked whatever the secrets.
_URLLIB3_REQUEST = '%s://%s:%s "%s %s %s" %s %s'


class SecretLogFilter(logging.Filter):
    """Redacts log records: every live integration's secrets in every form, URL
    credentials, and the query string of urllib3's request lines (DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record``'s message redacted; never drops a record."""
        if record.msg == _URLLIB3_REQUEST and isinstance(record.args, tuple) \
                and len(record.args) == 8:
            args = list(record.args)
            target = str(args[4])
            if "?" in target:
                args[4] = target.split("?", 1)[0] + "?" + MASK
            record.args = tuple(args)
        message = record.getMessage()
        redacted = mask_userinfo(message)
        for redactor in list(_LIVE):
            redacted = redactor.text(redacted)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


#: Loggers of the libraries that log requests (URLs, bodies) at DEBUG.
_REQUEST_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.poolmanager",
                    "urllib3.util.retry", "requests", "zeep.transports", "zeep.wsdl.utils",
                    "zeep.loader", "zeep.xsd.schema", "zeep.wsdl.wsdl")


def install_log_filter(*handlers: logging.Handler) -> SecretLogFilter:
    """Put the :class:`SecretLogFilter` on the request-logging libraries' loggers and on
    ``handlers`` (the process's own log handlers: every record they write is redacted)."""
    found = next((f for f in logging.getLogger(_REQUEST_LOGGERS[0]).filters
                  if isinstance(f, SecretLogFilter)), None)
    log_filter = found or SecretLogFilter()
    for name in _REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if log_filter not in logger.filters:
            logger.addFilter(log_filter)
    for handler in handlers:
        if log_filter not in handler.filters:
            handler.addFilter(log_filter)
    return log_filter


def _walk(model: pydantic.BaseModel, on_secret: Any) -> dict[str, Any]:
    def conv(value: Any) -> Any:
        if isinstance(value, pydantic.SecretStr):
            return on_secret(value.get_secret_value())
        if isinstance(value, pydantic.RootModel):
            return conv(value.root)
        if isinstance(value, pydantic.BaseModel):
            # Keyed like pydantic's JSON dump (by alias), so _merge can line them up.
            return {
                info.serialization_alias or info.alias or name: conv(getattr(value, name))
                for name, info in type(value).model_fields.items()
                if name in value.model_fields_set or getattr(value, name) is not None
            }
        if isinstance(value, Mapping):
            return {k: conv(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [conv(v) for v in value]
        return value

    result = conv(model)
    # Round-trip through pydantic's JSON mode for enums, URLs, dates.
    plain = model.model_dump(mode="json", exclude_none=True)
    return _merge(plain, result)


def _merge(plain: Any, converted: Any) -> Any:
    """Take secrets from ``converted`` and everything else from pydantic's JSON dump."""
    if isinstance(converted, dict) and isinstance(plain, dict):
        if _SECRET_TAG in converted and len(converted) == 1:
            return converted
        return {k: _merge(plain.get(k), v) for k, v in converted.items() if k in plain}
    if isinstance(converted, list) and isinstance(plain, list):
        return [_merge(p, c) for p, c in zip(plain, converted, strict=False)]
    if isinstance(plain, str) and plain == "**********":
        return converted
    return plain


def _unwalk(stored: Any, on_token: Any) -> Any:
    if isinstance(stored, Mapping):
        if set(stored) == {_SECRET_TAG}:
            return on_token(stored[_SECRET_TAG])
        return {k: _unwalk(v, on_token) for k, v in stored.items()}
    if isinstance(stored, list):
        return [_unwalk(v, on_token) for v in stored]
    return stored
