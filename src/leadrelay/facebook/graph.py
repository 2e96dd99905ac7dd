"""Reading a lead's answers from the Graph API.

``GET {base}/{version}/{leadgen_id}?fields=…&access_token=…`` answers the lead
(``graph_lead.json`` in the tests' fixtures); an error answers an ``error`` object with
``code`` (190: the token expired or is invalid; 100: unknown object) and ``message``.
Every failure becomes a :class:`GraphFailure` carrying the engine's outcome (so the
engine's retry policy decides what happens next) and a reason that names Graph's error
and never the page access token.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from leadrelay.engine.egress import EgressPolicy
from leadrelay.engine.errors import ConfigError, RefusedTarget, TransientError
from leadrelay.engine.outcome import Outcome
from leadrelay.engine.secrets import Redactor
from leadrelay.engine.transport import Timeouts, Transport
from leadrelay.engine.wire import RenderedRequest

#: Where the Graph API is, and which version is asked for, unless configured otherwise.
DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_VERSION = "v21.0"
#: What a lead read asks for.
FIELDS = "created_time,id,ad_id,form_id,field_data"
#: Graph error codes that mean "slow down" (application, user, page and ad-account limits).
_THROTTLED = frozenset({4, 17, 32, 613, 80001})
_VERSION = re.compile(r"v\d{1,3}\.\d{1,3}")


@dataclass(frozen=True)
class GraphSettings:
    """Where the Graph API is and how long a read may take.

    ``LEADRELAY_FACEBOOK_GRAPH_URL`` (tests point it at a local server),
    ``LEADRELAY_FACEBOOK_GRAPH_VERSION`` (``v21.0``) and
    ``LEADRELAY_FACEBOOK_GRAPH_TIMEOUT`` (seconds to wait for Graph's answer, 10).
    """

    base_url: str = DEFAULT_BASE_URL
    version: str = DEFAULT_VERSION
    timeout: float = 10.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ConfigError("LEADRELAY_FACEBOOK_GRAPH_URL: give an http(s) URL such as "
                              f"{DEFAULT_BASE_URL}", field="LEADRELAY_FACEBOOK_GRAPH_URL")
        if not _VERSION.fullmatch(self.version):
            raise ConfigError("LEADRELAY_FACEBOOK_GRAPH_VERSION: give a version such as "
                              f"{DEFAULT_VERSION}", field="LEADRELAY_FACEBOOK_GRAPH_VERSION")
        if not (isinstance(self.timeout, int | float) and math.isfinite(self.timeout)
                and 0 < self.timeout <= 120):
            raise ConfigError("LEADRELAY_FACEBOOK_GRAPH_TIMEOUT: seconds, more than 0 and at "
                              "most 120", field="LEADRELAY_FACEBOOK_GRAPH_TIMEOUT")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GraphSettings:
        """The settings from the environment (see the class); defaults for what is unset."""
        env = os.environ if env is None else env
        timeout = env.get("LEADRELAY_FACEBOOK_GRAPH_TIMEOUT", "10")
        try:
            seconds = float(timeout)
        except ValueError:
            seconds = math.nan
        return cls(
            base_url=env.get("LEADRELAY_FACEBOOK_GRAPH_URL", DEFAULT_BASE_URL).rstrip("/"),
            version=env.get("LEADRELAY_FACEBOOK_GRAPH_VERSION", DEFAULT_VERSION),
            timeout=seconds,
        )


class GraphFailure(Exception):
    """A read that did not give the lead: the outcome for the retry policy, and why."""

    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


class Graph:
    """Reads leads from the Graph API through one reused session."""

    def __init__(self, settings: GraphSettings, *, egress: EgressPolicy | None = None) -> None:
        """``egress``: where the reads may connect, the engine's policy (``app.egress``);
        :func:`~leadrelay.engine.egress.default_policy` when not given."""
        self.settings = settings
        # The timeout is the wait for Graph's answer; connecting gets as long, at most 5 s.
        self.transport = Transport(timeouts=Timeouts(min(5.0, settings.timeout),
                                                     settings.timeout), egress=egress)

    def lead_url(self, leadgen_id: str, token: str) -> str:
        """The URL that reads ``leadgen_id`` (it carries the token: never shown)."""
        query = urlencode({"fields": FIELDS, "access_token": token})
        return f"{self.settings.base_url.rstrip('/')}/{self.settings.version}/{leadgen_id}?{query}"

    def read_lead(self, leadgen_id: str, token: str) -> dict[str, Any]:
        """The Graph lead ``leadgen_id``, read with the page access token.

        :raises GraphFailure: timeout, refused connection, 5xx (transient); a Graph
            error such as 190 (rejected; throttled for rate limits); an answer that is
            not a JSON object.
        """
        redactor = Redactor([token])
        client = self.transport.client(redactor)
        request = RenderedRequest("GET", self.lead_url(leadgen_id, token),
                                  headers={"Accept": "application/json"}, step="graph")
        try:
            response = client.send(request)
        except TransientError as exc:
            raise GraphFailure(Outcome.TRANSIENT,
                               redactor.text(f"Graph API unreachable: {exc}")) from None
        except RefusedTarget as exc:  # the egress policy refused the Graph API's address
            raise GraphFailure(Outcome.REFUSED_TARGET, redactor.text(str(exc))) from None
        try:
            body = response.json
        except ValueError:
            body = None
        if response.status == 200 and isinstance(body, dict) and "error" not in body:
            return body
        error = body.get("error") if isinstance(body, dict) else None
        detail = _describe(error) if isinstance(error, dict) else _excerpt(response.text)
        reason = redactor.text(f"Graph API answered {response.status}: {detail}")
        code = error.get("code") if isinstance(error, dict) else None
        if response.status >= 500:
            raise GraphFailure(Outcome.TRANSIENT, reason)
        if response.status == 429 or code in _THROTTLED:
            raise GraphFailure(Outcome.THROTTLED, reason)
        raise GraphFailure(Outcome.REJECTED, reason)

    def close(self) -> None:
        """Close pooled connections."""
        self.transport.close()


def _describe(error: Mapping[str, Any]) -> str:
    """``error 190 (OAuthException): Error validating access token: …``."""
    code = error.get("code")
    kind = error.get("type")
    message = _excerpt(str(error.get("message", "")))
    head = f"error {code}" if code is not None else "error"
    if kind:
        head += f" ({kind})"
    return f"{head}: {message}" if message else head


def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    if not text:
        return "an empty answer"
    return text if len(text) <= limit else text[: limit - 1] + "…"
