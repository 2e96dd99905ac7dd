"""The connector base class: what a CRM connector is to the engine.

A connector is a class with a ``name``, registered through the
``register_connectors`` hook (see :mod:`leadrelay.engine.hookspecs`). The
engine makes one instance per integration and keeps it for as long as the
integration's configuration is unchanged, so anything costly (a zeep
``Client``, a parsed template) is built once and reused across deliveries and
threads.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import pydantic

from .errors import ConfigError

if TYPE_CHECKING:
    from .expectations import Expectations
    from .outcome import Verdict
    from .transport import HttpClient
    from .wire import CrmResponse, RenderedRequest


class ConnectorConfig(pydantic.BaseModel):
    """Base for a connector's integration config.

    Unknown keys are refused. Declare secrets as ``pydantic.SecretStr``: the
    engine encrypts them at rest, redacts them from every attempt and output,
    and never shows them back.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class LeadEnvelope:
    """One lead as a connector sees it, for one delivery."""

    fields: Mapping[str, Any]
    lead_id: int
    delivery_id: int
    idempotency_key: str
    form_id: int
    source: str
    received_at: datetime
    attempt: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: The id the lead's source gave it (an external system's ``external_id``), if any.
    external_id: str | None = None

    def metadata(self) -> dict[str, Any]:
        """What the engine knows of this lead and delivery beyond its fields, by the
        names a field map's ``meta`` uses (see :data:`~.mapping.META_FIELDS`). Each is
        the same on every attempt of the delivery but ``attempt``."""
        return {
            "lead_id": self.lead_id,
            "delivery_id": self.delivery_id,
            "idempotency_key": self.idempotency_key,
            "external_id": self.external_id,
            "form_id": self.form_id,
            "source": self.source,
            "received_at": self.received_at.isoformat(),
            "attempt": self.attempt,
        }


class Connector(abc.ABC):
    """Sends a rendered lead to one CRM and judges its answer.

    Subclasses set :attr:`name` and :attr:`Config`, and implement :meth:`render`
    and :meth:`send`. :meth:`judge` has a default that fits HTTP APIs.
    """

    #: The name integrations use to pick this connector (``connector = "..."``).
    name: ClassVar[str]
    #: The pydantic model of this connector's integration config.
    Config: ClassVar[type[ConnectorConfig]] = ConnectorConfig
    #: Expectations used when an integration declares none. An instance may
    #: replace them from its config (a SOAP operation's own defaults).
    default_expectations: Mapping[str, Any] = {
        "combine": "all",
        "rules": [{"kind": "status", "in": ["2xx"]}],
    }
    #: Capability flag: the connector sends the delivery's idempotency key.
    supports_idempotency_key: ClassVar[bool] = False

    def __init__(self, config: ConnectorConfig, settings: Mapping[str, Any] | None = None):
        self.config = config
        self.settings: Mapping[str, Any] = settings or {}

    # -- configuration time ---------------------------------------------------------

    @classmethod
    def parse_config(cls, raw: Mapping[str, Any]) -> ConnectorConfig:
        """Validate a raw integration config; raise :class:`ConfigError` naming the field."""
        if not isinstance(raw, Mapping):
            raise ConfigError("config must be an object", field="config")
        try:
            return cls.Config.model_validate(dict(raw))
        except pydantic.ValidationError as exc:
            message = _first_error(exc, prefix="config")
            raise ConfigError(message, field=message.split(":", 1)[0]) from None

    def check(self, http: HttpClient | None = None) -> None:
        """Deeper checks at configuration time (reach a WSDL, find an operation).

        :param http: the integration's client (its proxy route and timeouts), for
            any fetch the check needs.

        Raise :class:`ConfigError` naming what is wrong. The default does nothing.
        """

    def settle_expectations(
        self, expectations: Mapping[str, Any] | None
    ) -> Mapping[str, Any] | None:
        """The expectations to store for an integration saved with ``expectations``.

        Called after :meth:`check`. The default keeps them as given (None: the
        connector's defaults apply). A connector may refuse to leave success to a
        generic default (raise :class:`ConfigError` saying what to write) or return
        defaults it derived from the CRM's contract, stored so the operator sees them.
        """
        return expectations

    def targets(self) -> list[tuple[str, str]]:
        """``(field, URL)`` of each address the integration's config sends to, which the
        engine checks against the egress policy on create and update (:mod:`.egress`):
        a literal or resolving host in a refused range, or inline credentials, are
        refused there. Connections are checked again when made, whatever this says.
        The default names none."""
        return []

    # -- delivery time --------------------------------------------------------------

    @abc.abstractmethod
    def render(self, lead: LeadEnvelope) -> RenderedRequest:
        """Build the request that would deliver ``lead``, without sending it.

        Used by :meth:`send` and by dry runs. Must not perform network I/O
        other than loading cached metadata (a WSDL).
        """

    @abc.abstractmethod
    def send(self, lead: LeadEnvelope, http: HttpClient) -> CrmResponse:
        """Deliver ``lead`` through ``http`` and return the CRM's final answer.

        Every request goes through ``http`` so it is recorded, redacted, timed,
        sent through the static-IP proxy when the integration uses one, and its
        network failures become :class:`~leadrelay.engine.errors.TransientError`.
        Raise :class:`~leadrelay.engine.errors.DeliveryError` subclasses for
        failures found before the final answer (a failed login step).
        """

    def judge(self, response: CrmResponse, expectations: Expectations) -> Verdict:
        """Decide the outcome of ``response``. The default suits HTTP APIs:
        429 is throttled, 5xx transient, anything else judged by ``expectations``.
        """
        from .judging import judge_http

        return judge_http(response, expectations)

    def close(self) -> None:
        """Release what the instance holds. Called when its integration changes."""


def _first_error(exc: pydantic.ValidationError, *, prefix: str) -> str:
    """One line naming the first invalid field of a pydantic error."""
    err = exc.errors()[0]
    loc = prefix
    for part in err["loc"]:
        loc += f"[{part}]" if isinstance(part, int) else f".{part}"
    if err["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    if err["type"] == "missing":
        return f"{loc}: required"
    message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return f"{loc}: {message}"
