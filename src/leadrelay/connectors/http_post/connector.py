"""HTTP POST to a CRM's lead endpoint: field mapping, auth, headers, idempotency key."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

import pydantic

from leadrelay.engine.connector import Connector, ConnectorConfig, LeadEnvelope
from leadrelay.engine.headers import check_headers, header_name_problem, header_value_problem
from leadrelay.engine.limits import MAX_CONNECT_TIMEOUT, MAX_READ_TIMEOUT
from leadrelay.engine.mapping import FieldMap
from leadrelay.engine.transport import HttpClient
from leadrelay.engine.wire import CrmResponse, RenderedRequest

#: Timeouts, bounded so that every attempt ends by a known deadline (engine/limits.py).
ConnectSeconds = Annotated[float, pydantic.Field(gt=0, le=MAX_CONNECT_TIMEOUT)]
ReadSeconds = Annotated[float, pydantic.Field(gt=0, le=MAX_READ_TIMEOUT)]


class BasicAuth(ConnectorConfig):
    """HTTP Basic authentication."""

    type: Literal["basic"]
    username: str
    password: pydantic.SecretStr


class BearerAuth(ConnectorConfig):
    """A bearer token in the ``Authorization`` header."""

    type: Literal["bearer"]
    token: pydantic.SecretStr

    @pydantic.field_validator("token")
    @classmethod
    def _header_safe(cls, token: pydantic.SecretStr) -> pydantic.SecretStr:
        # The token goes into the Authorization header as it is.
        problem = header_value_problem(token)
        if problem is not None:
            raise ValueError(problem.replace("its value", "the token"))
        return token


class HttpPostConfig(ConnectorConfig):
    """An ``http_post`` integration's config."""

    url: pydantic.HttpUrl
    #: ``form`` (application/x-www-form-urlencoded) or ``json``.
    body: Literal["form", "json"] = "form"
    #: Lead field → CRM field mapping; empty sends the lead's fields as they are.
    fields: FieldMap = pydantic.Field(default_factory=FieldMap)
    headers: dict[str, str] = pydantic.Field(default_factory=dict)
    #: Headers carrying secrets (an API key): encrypted at rest, redacted in attempts.
    secret_headers: dict[str, pydantic.SecretStr] = pydantic.Field(default_factory=dict)
    #: Query parameters carrying secrets (Pipedrive's ``api_token``).
    secret_query: dict[str, pydantic.SecretStr] = pydantic.Field(default_factory=dict)
    auth: Annotated[BasicAuth | BearerAuth, pydantic.Field(discriminator="type")] | None = None
    connect_timeout: ConnectSeconds | None = None
    read_timeout: ReadSeconds | None = None
    #: Send the delivery's idempotency key, so a CRM that honours it never creates twice.
    idempotency_key: bool = True
    idempotency_header: str = "Idempotency-Key"

    @pydantic.field_validator("url")
    @classmethod
    def _http_only(cls, url: pydantic.HttpUrl) -> pydantic.HttpUrl:
        if not url.host:
            raise ValueError("URL has no host")
        return url

    @pydantic.field_validator("headers", "secret_headers")
    @classmethod
    def _valid_headers(cls, headers: dict[str, Any]) -> dict[str, Any]:
        # A line break would add headers of the config's own to every request.
        check_headers(headers)
        return headers

    @pydantic.field_validator("idempotency_header")
    @classmethod
    def _valid_header_name(cls, name: str) -> str:
        problem = header_name_problem(name)
        if problem is not None:
            raise ValueError(problem)
        return name


class HttpPostConnector(Connector):
    """POSTs each lead to ``config.url``; any 2xx is success unless expectations say more."""

    name = "http_post"
    Config = HttpPostConfig
    supports_idempotency_key = True
    config: HttpPostConfig

    def __init__(self, config: HttpPostConfig, settings: dict | None = None) -> None:
        super().__init__(config, settings)
        self._url = _with_query(
            str(config.url), {k: v.get_secret_value() for k, v in config.secret_query.items()}
        )
        headers = dict(config.headers)
        headers.update({k: v.get_secret_value() for k, v in config.secret_headers.items()})
        auth = config.auth
        if isinstance(auth, BasicAuth):
            import base64

            raw = f"{auth.username}:{auth.password.get_secret_value()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        elif isinstance(auth, BearerAuth):
            headers["Authorization"] = "Bearer " + auth.token.get_secret_value()
        headers.setdefault(
            "Content-Type",
            "application/json" if config.body == "json" else "application/x-www-form-urlencoded",
        )
        self._headers = headers

    def targets(self) -> list[tuple[str, str]]:
        """The CRM's URL."""
        return [("config.url", str(self.config.url))]

    def render(self, lead: LeadEnvelope) -> RenderedRequest:
        """The POST for ``lead``: mapped fields, encoded as configured."""
        fields = self.config.fields.apply(lead.fields, lead.metadata())
        if self.config.body == "json":
            body = json.dumps(fields, separators=(",", ":"), default=str).encode()
        else:
            body = urlencode(_form_pairs(fields)).encode()
        headers = dict(self._headers)
        if self.config.idempotency_key:
            headers[self.config.idempotency_header] = lead.idempotency_key
        return RenderedRequest("POST", self._url, headers, body)

    def send(self, lead: LeadEnvelope, http: HttpClient) -> CrmResponse:
        """POST the rendered lead."""
        return http.send(self.render(lead))


def _form_pairs(fields: dict) -> list[tuple[str, str]]:
    """Form encoding: lists repeat the key, None is left out, booleans are true/false."""
    pairs: list[tuple[str, str]] = []
    for key, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            if isinstance(item, bool):
                item = "true" if item else "false"
            elif isinstance(item, dict):
                item = json.dumps(item, separators=(",", ":"))
            pairs.append((key, str(item)))
    return pairs


def _with_query(url: str, extra: dict[str, str]) -> str:
    if not extra:
        return url
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(extra)) if q)
    return urlunsplit(parts._replace(query=query))
