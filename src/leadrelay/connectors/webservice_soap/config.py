"""The ``webservice_soap`` integration config, validated by pydantic.

Everything that can be checked without the WSDL is checked here (template
syntax, URLs, a preset's required credentials); what needs the WSDL — the
service, the operation, whether the mapping fits its types — is checked by
:meth:`SoapConnector.check <leadrelay.connectors.webservice_soap.connector.SoapConnector.check>`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import pydantic
from pydantic_core import PydanticCustomError

from leadrelay.engine.connector import ConnectorConfig
from leadrelay.engine.expectations import parse_path
from leadrelay.engine.limits import MAX_CONNECT_TIMEOUT, MAX_READ_TIMEOUT
from leadrelay.engine.mapping import FieldMap

from .templates import TemplateError, compile_template

_T = TypeVar("_T")
Seconds = Annotated[float, pydantic.Field(gt=0, le=300)]
#: Timeouts of the SOAP calls, bounded so that every attempt ends by a known deadline
#: (engine/limits.py).
ConnectSeconds = Annotated[float, pydantic.Field(gt=0, le=MAX_CONNECT_TIMEOUT)]
ReadSeconds = Annotated[float, pydantic.Field(gt=0, le=MAX_READ_TIMEOUT)]

#: Presets for CRMs whose flow is known: login, then create, with their outputs and faults.
PRESETS = ("salesforce_partner", "sugarcrm_v4_1")


def _invalid(message: str) -> PydanticCustomError:
    # Shown to the user as given, without pydantic's "Value error, " prefix.
    return PydanticCustomError("invalid", message)


def _check_template(value: _T, where: str) -> _T:
    try:
        compile_template(value, where)
    except TemplateError as exc:
        raise _invalid(str(exc)) from None
    return value


def _check_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid("must be an http:// or https:// URL")
    return value


class FaultPolicy(ConnectorConfig):
    """How SOAP faults map to outcomes, beyond the built-in rule.

    Each list holds fault codes, matched case-insensitively against the fault's
    code as sent (``sf:INVALID_SESSION_ID``), without its prefix
    (``INVALID_SESSION_ID``), or the ``exceptionCode`` in its detail. Built-in
    rule: a SOAP ``Server``/``Receiver`` fault is transient, every other fault
    is a rejection. The lists add to (never remove) the preset's.
    """

    #: "The session expired or is invalid": log in again once, then retry later.
    session: list[str] = pydantic.Field(default_factory=list)
    #: Worth retrying later (the CRM is busy or down).
    transient: list[str] = pydantic.Field(default_factory=list)
    #: Retry later and slower: the CRM is rate-limiting us.
    throttled: list[str] = pydantic.Field(default_factory=list)
    #: A rejection even when it is a ``Server`` fault.
    rejected: list[str] = pydantic.Field(default_factory=list)


class LoginStep(ConnectorConfig):
    """A call made before the create step, whose outputs the create step uses.

    ``outputs`` names values of the login answer by path (the same paths as
    the ``json_field`` expectation, into the parsed answer): they become
    ``{session.NAME}`` placeholders. Two names are special: ``endpoint`` (where
    the create step is sent, e.g. Salesforce's ``serverUrl``) and ``ttl``
    (seconds the session lives, overriding ``session_ttl``; optional in the answer).
    Every other output is treated as a secret: redacted from every attempt.
    """

    operation: str = pydantic.Field(min_length=1)
    arguments: dict[str, Any] = pydantic.Field(default_factory=dict)
    headers: dict[str, Any] = pydantic.Field(default_factory=dict)
    outputs: dict[str, str] = pydantic.Field(min_length=1)
    #: What a good login answer looks like, judged like a delivery's (same rules,
    #: ``reason`` paths for the CRM's words). A login answered at HTTP 200 with a
    #: refusal (a ``-1`` session id, ``error.number`` 10) is a failed login, never a session.
    #: None: derived from the login answer's type when it has an obvious error object.
    expectations: dict[str, Any] | None = None
    #: Seconds a session is reused for before logging in again.
    session_ttl: Annotated[float, pydantic.Field(gt=0, le=7 * 86400)] = 3600.0

    @pydantic.field_validator("arguments")
    @classmethod
    def _arguments(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_template(value, "login.arguments")

    @pydantic.field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_template(value, "login.headers")

    @pydantic.field_validator("outputs")
    @classmethod
    def _outputs(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            if not name.isidentifier():
                raise _invalid(f"output name {name!r} must be an identifier")
            try:
                parse_path(path)
            except ValueError as exc:
                raise _invalid(f"output {name}: {exc}") from None
        return value


class SoapConfig(ConnectorConfig):
    """A ``webservice_soap`` integration's config.

    With a ``preset`` the operation, arguments, headers, login step and fault
    codes of a known CRM are filled in; whatever the integration sets itself
    wins (``arguments`` and ``headers`` are merged key by key).
    """

    #: A known CRM flow: ``salesforce_partner`` or ``sugarcrm_v4_1``.
    preset: Literal["salesforce_partner", "sugarcrm_v4_1"] | None = None
    #: The WSDL: an ``http(s)://`` URL (fetched through the integration's HTTP
    #: client) or the path of an uploaded file.
    wsdl: str = pydantic.Field(min_length=1)
    #: The service and port to use; default: the WSDL's first.
    service: str | None = None
    port: str | None = None
    #: Where calls are sent, instead of the WSDL's ``soap:address`` (real WSDLs
    #: often say ``localhost``). A login step's ``endpoint`` output wins for the create step.
    endpoint: str | None = None
    #: The operation that delivers the lead (``create``, ``set_entry``).
    operation: str | None = None
    #: The operation's arguments as a template (see :mod:`.templates`).
    arguments: dict[str, Any] | None = None
    #: SOAP headers as a template, by header part name (``SessionHeader``).
    headers: dict[str, Any] | None = None
    #: Lead field → CRM field mapping; empty sends the lead's fields as they are.
    fields: FieldMap = pydantic.Field(default_factory=FieldMap)
    #: A preset's record kind: Salesforce sObject type (``Lead``) or SugarCRM module (``Leads``).
    record_type: str | None = pydantic.Field(None, min_length=1)
    username: str | None = None
    password: pydantic.SecretStr | None = None
    #: Other secrets templates may use as ``{secrets.NAME}`` (tokens, API keys).
    secrets: dict[str, pydantic.SecretStr] = pydantic.Field(default_factory=dict)
    login: LoginStep | None = None
    #: Rules of which any passing on an answer to the create step means "the session
    #: expired" even without a fault (SugarCRM: ``error.number == 11`` at HTTP 200): the
    #: connector logs in again, once per attempt, as for an invalid-session fault.
    session_expired: list[dict[str, Any]] | None = None
    #: The field names the CRM accepts where names are data (Partner ``$any`` fields,
    #: ``$each_field`` names): a mapped field outside it is refused when the integration
    #: is saved, and a lead field outside it when it is delivered.
    allowed_fields: list[str] | None = None
    faults: FaultPolicy = pydantic.Field(default_factory=FaultPolicy)
    #: Send SOAP-encoded type markup (``xsi:type``, ``SOAP-ENC:arrayType``), as older nusoap
    #: servers need; None: for rpc-style operations (rpc/encoded in practice).
    encoded: bool | None = None
    connect_timeout: ConnectSeconds | None = None
    read_timeout: ReadSeconds | None = None
    #: Read timeout for fetching the WSDL and its imports.
    wsdl_timeout: Seconds = 30.0

    @pydantic.field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return _check_url(value)

    @pydantic.field_validator("wsdl")
    @classmethod
    def _wsdl(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme and scheme not in ("http", "https", "file") and len(scheme) > 1:
            raise _invalid("must be an http(s):// URL or a file path")
        if scheme in ("http", "https"):
            _check_url(value)
        return value

    @pydantic.field_validator("arguments")
    @classmethod
    def _arguments(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _check_template(value, "arguments")

    @pydantic.field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _check_template(value, "headers")

    @pydantic.model_validator(mode="after")
    def _complete(self) -> SoapConfig:
        if self.preset is None and not self.operation:
            raise _invalid("give 'operation' (or a 'preset')")
        if self.preset is not None and self.login is None and (
            not self.username or self.password is None
        ):
            raise _invalid(f"preset {self.preset} needs 'username' and 'password'")
        return self
