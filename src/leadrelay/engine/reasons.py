"""The CRM's own words for a rejection: read from its answer by path, shown in the reason.

An operator's expectations may name where the answer explains a refusal::

    {"rules": [...], "reason": ["errors[0].message", "errors[0].errorCode"]}

Every path found is shown, in order (``code: message``). Without ``reason``,
:data:`DEFAULT_REASON_PATHS` are tried in order and the first one found is
shown; ``"reason": []`` turns the lookup off. Paths address the same document as
``json_field`` rules: the connector's parsed answer (a SOAP result) or the JSON
body. A short ``text/plain`` answer is its own explanation.

Only rejected answers are read, so an accepted delivery pays nothing for this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .paths import _clip, _json_document, _json_text, parse_path, resolve_path
from .wire import CrmResponse

#: Tried in order when an integration names no reason paths (JSON APIs' usual places).
DEFAULT_REASON_PATHS: tuple[str, ...] = (
    "errors", "error", "detail", "message", "error_description", "description", "title", "msg",
)
#: The CRM's words are cut to this many characters in a reason.
WORDS_LIMIT = 300

_MESSAGE_KEYS = ("message", "description", "detail", "error_description", "msg", "title",
                 "errorMessage", "error_message", "reason")
_CODE_KEYS = ("errorCode", "statusCode", "error_code", "code", "errorType", "type", "number",
              "name")


class ReasonPaths:
    """Parsed reason paths: where one integration's CRM explains a refusal.

    :param paths: the paths as written; None means the defaults.
    """

    __slots__ = ("_parsed", "declared", "paths")

    def __init__(self, paths: Sequence[str] | None) -> None:
        self.declared = paths is not None
        self.paths: tuple[str, ...] = tuple(paths) if paths is not None else DEFAULT_REASON_PATHS
        self._parsed = tuple(parse_path(p) for p in self.paths)

    def words(self, response: CrmResponse) -> str | None:
        """What the CRM said about the refusal, as one short line; None when nothing."""
        if not self._parsed and self.declared:
            return None
        doc, why = _json_document(response)
        if why:
            return _plain_text(response)
        found: list[str] = []
        for path in self._parsed:
            ok, value, _ = resolve_path(doc, path)
            text = _words(value) if ok else None
            if text:
                found.append(text)
                if not self.declared:
                    break  # the defaults: the first place that says something
        if not found:
            return None
        return _clip(": ".join(found), WORDS_LIMIT)


def _words(value: Any, depth: int = 0) -> str | None:
    """A value as the CRM's words: text as it is, an error object as ``code: message``."""
    if value is None or isinstance(value, bool) or depth > 3:
        return None
    if isinstance(value, str):
        text = " ".join(value.split())
        return text or None
    if isinstance(value, int | float):
        return _json_text(value)
    if isinstance(value, list):
        parts = [w for w in (_words(v, depth + 1) for v in value[:5]) if w]
        return "; ".join(parts) or None
    if isinstance(value, Mapping):
        message = next((value[k] for k in _MESSAGE_KEYS if _said(value.get(k))), None)
        code = next((value[k] for k in _CODE_KEYS if _said(value.get(k))), None)
        if message is not None or code is not None:
            said = [w for w in (_words(code, depth + 1), _words(message, depth + 1)) if w]
            return ": ".join(said) or None
        # A map of field → problems (Django REST: {"email": ["already exists."]}).
        pairs = []
        for key, sub in list(value.items())[:5]:
            said_here = _words(sub, depth + 1)
            if said_here:
                pairs.append(f"{key}: {said_here}")
        return "; ".join(pairs) or None
    return None


def _said(value: Any) -> bool:
    return value is not None and not isinstance(value, bool) and value != "" and value != []


def _plain_text(response: CrmResponse) -> str | None:
    ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype != "text/plain" or not response.body.strip():
        return None
    return _clip(" ".join(response.text.split()), WORDS_LIMIT) or None


def with_words(reason: str, words: str | None) -> str:
    """``reason`` followed by the CRM's words, when there are some."""
    return f"{reason} (CRM said {words})" if words else reason
