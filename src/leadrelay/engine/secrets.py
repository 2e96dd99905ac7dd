"""Secrets: encrypted at rest, redacted wherever they are shown.

A connector declares secrets as ``pydantic.SecretStr`` fields of its config.
In the ledger, each secret value is stored as ``{"$secret": "<Fernet token>"}``
under the key ``LEADRELAY_SECRET_KEY``. When shown (CLI, API, attempts),
secrets become :data:`MASK`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from typing import Any

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
    """A sealed (stored) config with its encrypted secrets shown as :data:`MASK`."""
    return _unwalk(stored, lambda _token: MASK)


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
    """Every secret string in ``config``, for redaction of what goes on the wire."""
    found: set[str] = set()

    def collect(s: str) -> str:
        if s:
            found.add(s)
        return s

    _walk(config, collect)
    return found


class Redactor:
    """Removes known secret values (and sensitive headers) from recorded text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        values = sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in values)) if values else None
        self._values = values

    def extend(self, secrets: Iterable[str]) -> Redactor:
        """A redactor that also masks ``secrets`` (a session id learnt at login)."""
        return Redactor([*self._values, *secrets])

    def text(self, value: str) -> str:
        """``value`` with every known secret replaced by :data:`MASK`."""
        if self._pattern is None or not value:
            return value
        return self._pattern.sub(MASK, value)

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Headers with sensitive ones masked and secrets removed from the rest."""
        return {
            k: MASK if k.lower() in SENSITIVE_HEADERS else self.text(str(v))
            for k, v in headers.items()
        }


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
