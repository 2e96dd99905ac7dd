"""The ``webservice_soap`` connector: a lead delivered by a SOAP operation of the CRM's WSDL.

One delivery may take two calls: a login step whose outputs (a session id, an
instance URL) feed the create step. The session is kept on the connector
instance — one per integration — and reused across deliveries until it
expires; a create answered with an invalid-session fault logs in again once.

zeep is used for what it is good at — reading the WSDL, serializing envelopes,
parsing replies — but never for I/O: envelopes are posted through the engine's
:class:`~leadrelay.engine.transport.HttpClient`, so every call is recorded,
redacted, timed and routed like any other connector's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zeep.exceptions import Error as ZeepError
from zeep.wsdl.utils import etree_to_string

from leadrelay.engine.connector import Connector, LeadEnvelope
from leadrelay.engine.errors import ConfigError, RejectedError, TransientError
from leadrelay.engine.expectations import (
    Expectations,
    Rule,
    builtin_rules,
    parse_path,
    resolve_path,
)
from leadrelay.engine.judging import judge_http
from leadrelay.engine.outcome import Outcome, RuleTrace, Verdict
from leadrelay.engine.secrets import Redactor
from leadrelay.engine.transport import HttpClient, Timeouts, Transport
from leadrelay.engine.wire import CrmResponse, RenderedRequest

from .answers import AnswerField, answer_fields, derive, listing, suggestion
from .binding import BDict, Binder, Context, render
from .config import SoapConfig
from .encoded import annotate
from .faults import FaultKind, SoapFaultRule, classify
from .presets import GENERIC_EXPECTATIONS, Plan, plan_for
from .reply import SoapResponse, read_reply
from .templates import (
    BUILTIN_FUNCTIONS,
    DataError,
    DictT,
    TemplateError,
    TemplateFunction,
    check_call,
    compile_template,
    refs,
)
from .verdicts import fault_verdict, login_error, unreadable_verdict
from .wsdl import CLIENTS, FetchOptions, WsdlInvalid, WsdlUnreachable, is_url

if TYPE_CHECKING:
    import zeep

#: Login outputs that are not secrets.
PLAIN_OUTPUTS = frozenset({"endpoint", "ttl"})
#: A session is dropped this long before the CRM would expire it.
SESSION_MARGIN = 60.0
#: A lead whose data cannot fill the operation's types will not fit it later either:
#: the connector declares such a rejection final (not retried).
DATA_DOES_NOT_FIT = "the connector webservice_soap: the lead's data does not fit the operation"


@dataclass(frozen=True)
class Call:
    """One operation of the flow, bound to the WSDL's types."""

    step: str
    name: str
    operation: Any
    arguments: BDict
    headers: BDict | None


@dataclass(frozen=True)
class Prepared:
    """The WSDL-dependent half of an integration: the shared client and the bound calls."""

    client: zeep.Client
    binding: Any
    address: str | None
    create: Call
    login: Call | None
    #: The fields of the create step's result, from the WSDL.
    answer: tuple[AnswerField, ...] = ()
    #: Default expectations derived from that result's type (None: nothing obvious).
    derived: dict[str, Any] | None = None
    #: How a login answer is judged (the operator's, else derived from its type).
    login_expectations: Expectations | None = None


#: The clock of login sessions' lifetimes (tests replace it, not ``time.monotonic`` itself,
#: which also times every request's deadline).
session_clock: Callable[[], float] = time.monotonic


@dataclass(frozen=True)
class LoginSession:
    """The outputs of one login, reused until ``expires_at`` (:data:`session_clock`)."""

    values: Mapping[str, Any]
    endpoint: str | None
    expires_at: float
    secrets: tuple[str, ...]


class SoapConnector(Connector):
    """Calls a SOAP operation per lead, after an optional login step, as the WSDL describes."""

    name = "webservice_soap"
    Config = SoapConfig
    #: Used for operations without a profile of their own; known operations
    #: (Salesforce ``create``, SugarCRM ``set_entry``) judge their result too.
    default_expectations: Mapping[str, Any] = GENERIC_EXPECTATIONS
    config: SoapConfig

    def __init__(self, config: SoapConfig, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(config, settings)
        self.plan: Plan = plan_for(config)
        self._arguments = _compile(self.plan.arguments, "arguments")
        self._headers = _compile(self.plan.headers, "headers") if self.plan.headers else None
        login = self.plan.login
        self._login_arguments = _compile(login.arguments, "login.arguments") if login else None
        self._login_headers = (
            _compile(login.headers, "login.headers") if login and login.headers else None
        )
        self._functions = functions_from(self.settings)
        self._output_paths = (
            {n: parse_path(p) for n, p in login.outputs.items()} if login else {}
        )
        self._check_placeholders()
        kinds = _kinds()
        self._login_rules = (
            _expectations(login.expectations, kinds, "login.expectations")
            if login is not None and login.expectations else None
        )
        self._session_rules = (
            _expectations({"combine": "any", "rules": config.session_expired}, kinds,
                          "session_expired")
            if config.session_expired else None
        )
        self._allowed = frozenset(config.allowed_fields) if config.allowed_fields else None
        self._check_allowed()
        profile = self.plan.profile
        if profile is not None and profile.expectations:
            # The operation's own defaults (Salesforce ``create``: success == true, with
            # the record id as reference) replace the generic ones for this instance.
            self.default_expectations = profile.expectations
        self._prepared: Prepared | None = None
        self._prepare_lock = threading.Lock()
        self._session: LoginSession | None = None
        self._session_lock = threading.Lock()
        self._own_transport: Transport | None = None
        self._auth = {
            "username": config.username,
            "password": config.password.get_secret_value() if config.password else None,
        }
        self._secrets = {k: v.get_secret_value() for k, v in config.secrets.items()}
        #: How many times this instance logged in (tests, metrics).
        self.logins = 0

    # -- configuration time -----------------------------------------------------------

    def _check_placeholders(self) -> None:
        outputs = set(self.plan.login.outputs) if self.plan.login else set()
        places: list[tuple[str, Any, bool]] = [
            ("arguments", self._arguments, True),
            ("headers", self._headers, True),
            ("login.arguments", self._login_arguments, False),
            ("login.headers", self._login_headers, False),
        ]
        for where, node, after_login in places:
            for ref, inside_each in refs(node):
                problem = None
                if ref.namespace == "fn":
                    problem = check_call(ref, self._functions)
                elif ref.namespace == "session":
                    if not after_login:
                        problem = "the login step cannot use its own outputs"
                    elif ref.name not in outputs:
                        known = ", ".join(sorted(outputs)) or "none: there is no login step"
                        problem = f"no login output {ref.name!r} (outputs: {known})"
                elif ref.namespace == "auth" and not getattr(self.config, ref.name):
                    problem = f"'{ref.name}' is not set"
                elif ref.namespace == "secrets" and ref.name not in self.config.secrets:
                    problem = f"no secret {ref.name!r} in 'secrets'"
                elif ref.namespace == "field" and not inside_each:
                    problem = "{field.*} is only available inside $each_field"
                if problem:
                    raise ConfigError(f"config.{where}: {ref.text}: {problem}", field=where)

    def _check_allowed(self) -> None:
        """Mapped field names and ``$any`` names must be ones the CRM publishes."""
        if self._allowed is None:
            return
        names = list(self.config.fields.root) if not self.config.fields.passthrough else []
        names += _any_names(self._arguments)
        unknown = [n for n in names if n not in self._allowed]
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(self._allowed), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"config.fields: {unknown[0]!r} is not in allowed_fields{hint}",
                              field="fields")

    def settle_expectations(
        self, expectations: Mapping[str, Any] | None
    ) -> Mapping[str, Any] | None:
        """An operation without a preset does not leave success to "2xx and no fault".

        Given expectations must name the CRM reference; without any, a default derived
        from the result type (a ``success`` flag, an ``error.number``, a ``status`` beside
        an ``error``) is returned, to be stored and shown; else the integration is
        refused with the result's fields listed and a rule to start from.
        """
        if self.plan.profile is not None:
            return expectations
        prepared = self._prepare(None)
        name = prepared.create.name
        fields = list(prepared.answer)
        if expectations:
            if not expectations.get("reference"):
                raise ConfigError(
                    f"expectations.reference: operation {name} has no preset: say where its "
                    f"answer carries the new record's id (fields: {listing(fields)})",
                    field="expectations.reference")
            return expectations
        if prepared.derived is not None:
            return prepared.derived
        example = json.dumps(suggestion(fields))
        raise ConfigError(
            f"expectations: operation {name} has no preset, and HTTP 200 without a fault does "
            f"not mean the CRM took the lead: give expectations and a reference, e.g. "
            f"{example} (its answer's fields: {listing(fields)})", field="expectations")

    def targets(self) -> list[tuple[str, str]]:
        """The WSDL's URL (not a local path) and the configured endpoint."""
        found = [("config.wsdl", self.config.wsdl)] if is_url(self.config.wsdl) else []
        if self.config.endpoint:
            found.append(("config.endpoint", self.config.endpoint))
        return found

    def check(self, http: HttpClient | None = None) -> None:
        """Load the WSDL and check the service, operations, arguments and headers against it.

        :raises ConfigError: one line naming the operation and the argument.
        """
        try:
            self._prepare(http.session if http else None, http)
        except WsdlUnreachable as exc:
            raise ConfigError(f"config.wsdl: cannot load the WSDL: {exc}", field="wsdl") from None
        except WsdlInvalid as exc:
            raise ConfigError(f"config.wsdl: not a usable WSDL: {exc}", field="wsdl") from None

    def _prepare(self, session: Any, http: HttpClient | None = None) -> Prepared:
        prepared = self._prepared
        if prepared is not None:
            return prepared
        with self._prepare_lock:
            if self._prepared is None:
                self._check_wsdl_location()
                options = self._fetch_options(session, http)
                client = CLIENTS.get(self.config.wsdl, options)
                self._prepared = self._bind(client)
            return self._prepared

    def _check_wsdl_location(self) -> None:
        """A local WSDL must live under one of the ``wsdl_dirs`` of ``plugins.toml``: without
        them, only URLs are accepted (an account must not make the server read its files)."""
        if is_url(self.config.wsdl):
            return
        raw = self.config.wsdl.removeprefix("file://")
        path = Path(raw).expanduser().resolve()
        if not any(path.is_relative_to(d) for d in self._wsdl_dirs()):
            raise ConfigError("config.wsdl: a local WSDL must be in one of the directories "
                              "plugins.toml allows (wsdl_dirs)", field="wsdl")

    def _wsdl_dirs(self) -> tuple[Path, ...]:
        return tuple(Path(d).expanduser().resolve() for d in self.settings.get("wsdl_dirs") or ())

    def _fetch_options(self, session: Any, http: HttpClient | None) -> FetchOptions:
        timeouts = http.transport.timeouts if http is not None else None
        if session is None:
            # Configuration time and dry runs have no attempt client: use one
            # transport of our own, built like the engine's, with our timeouts.
            if self._own_transport is None:
                self._own_transport = Transport(timeouts=self._timeouts())
            session = self._own_transport.session
            timeouts = self._own_transport.timeouts
        timeouts = timeouts or self._timeouts()
        return FetchOptions(session, timeouts.connect,
                            max(self.config.wsdl_timeout, timeouts.read),
                            file_dirs=self._wsdl_dirs())

    def _timeouts(self) -> Timeouts:
        base = Timeouts()
        return Timeouts(connect=self.config.connect_timeout or base.connect,
                        read=self.config.read_timeout or base.read)

    def _bind(self, client: zeep.Client) -> Prepared:
        binding, address = self._port(client)
        create = self._call(binding, "create", self.plan.operation, self._arguments,
                            self._headers, "operation")
        login = None
        if self.plan.login is not None:
            assert self._login_arguments is not None
            login = self._call(binding, "login", self.plan.login.operation,
                               self._login_arguments, self._login_headers, "login.operation")
        address = self.plan.endpoint or address
        if not address:
            raise ConfigError("config.endpoint: the WSDL gives no address; set 'endpoint'",
                              field="endpoint")
        answer = tuple(answer_fields(create.operation))
        login_expectations = self._login_rules
        if login is not None and login_expectations is None:
            derived_login = derive(answer_fields(login.operation))
            if derived_login is not None:
                derived_login.pop("reference", None)  # a login answers a session, not a record
                login_expectations = _expectations(derived_login, _kinds(), "login.expectations")
        return Prepared(client, binding, address, create, login, answer, derive(list(answer)),
                        login_expectations)

    def _port(self, client: zeep.Client) -> tuple[Any, str | None]:
        services = client.wsdl.services
        name = self.config.service or next(iter(services))
        service = services.get(name)
        if service is None:
            raise ConfigError(f"config.service: no service {name!r} in the WSDL "
                              f"(services: {', '.join(services)})", field="service")
        ports = service.ports
        if self.config.port is not None:
            port = ports.get(self.config.port)
            if port is None:
                raise ConfigError(f"config.port: no port {self.config.port!r} in service {name!r} "
                                  f"(ports: {', '.join(ports)})", field="port")
        else:
            # The first SOAP port (a WSDL may also offer HTTP GET/POST bindings).
            port = next((p for p in ports.values() if hasattr(p.binding, "process_reply")), None)
            if port is None:
                raise ConfigError(f"config.service: service {name!r} has no SOAP port",
                                  field="service")
        address = (port.binding_options or {}).get("address")
        return port.binding, address

    def _call(self, binding: Any, step: str, name: str, arguments: DictT,
              headers: DictT | None, field: str) -> Call:
        operations = binding._operations
        operation = operations.get(name)
        if operation is None:
            close = difflib.get_close_matches(name, list(operations), n=3)
            hint = f"did you mean {', '.join(close)}?" if close else (
                f"{len(operations)} operations, e.g. {', '.join(list(operations)[:8])}")
            raise ConfigError(f"config.{field}: no operation {name!r} in the WSDL ({hint})",
                              field=field)
        types = getattr(getattr(binding, "wsdl", None), "types", None)
        try:
            body = operation.input.body
            if body is None:
                if arguments.items or arguments.any:
                    raise TemplateError(f"operation {name}: takes no arguments")
                bound_args = BDict({})
            else:
                bound_args = Binder(f"operation {name}: argument", types).arguments(
                    arguments, body.type)
            bound_headers = None
            if headers is not None:
                header = operation.input.header
                if header is None or not header.type.elements:
                    raise TemplateError(f"operation {name}: declares no SOAP headers")
                bound_headers = Binder(f"operation {name}: header", types).arguments(
                    headers, header.type, required=False)
        except TemplateError as exc:
            where = "login" if step == "login" else "arguments"
            raise ConfigError(f"config.{where}: {exc}", field=where) from None
        return Call(step, name, operation, bound_args, bound_headers)

    # -- delivery time ----------------------------------------------------------------

    def render(self, lead: LeadEnvelope) -> RenderedRequest:
        """The create step's envelope for ``lead``.

        Login outputs show as ``{session.NAME}`` placeholders (a dry run must
        not show a live session id); the URL is the current session's endpoint
        if there is one, else the configured one. No network I/O except loading
        the WSDL once.
        """
        prepared = self._prepare_for_delivery(None)
        session = None
        if self.plan.login is not None:
            values = {n: f"{{session.{n}}}" for n in self.plan.login.outputs}
            current = self._session
            session = LoginSession(values, current.endpoint if current else None, 0.0, ())
        ctx = self._context(lead, session)
        request = self._envelope(prepared, prepared.create, ctx,
                                 self._create_url(prepared, session))
        if not ctx.derived_secrets:
            return request
        # What is computed from a secret (an md5 of a password, a signature) is a secret:
        # a dry run, a preview or a test-send shows where it goes, never its value.
        mask = Redactor(ctx.derived_secrets)
        return dataclasses.replace(request, headers=mask.headers(request.headers),
                                   body=mask.text(request.body_text()).encode())

    def send(self, lead: LeadEnvelope, http: HttpClient) -> CrmResponse:
        """Log in if needed, call the operation, and return its parsed answer.

        :raises TransientError: the WSDL or the login could not be reached.
        :raises RejectedError: the lead's data does not fit, or the login was refused.
        """
        prepared = self._prepare_for_delivery(http)
        fields = self.config.fields.apply(lead.fields, lead.metadata())
        self._check_lead_fields(fields)  # before logging in: nothing is sent for it
        session = self._ensure_session(prepared, http, lead, None) if prepared.login else None
        response = self._create(prepared, lead, fields, session, http)
        if session is not None and self._session_refused(response):
            # The session expired early (or was revoked): log in again, once.
            session = self._ensure_session(prepared, http, lead, stale=session)
            response = self._create(prepared, lead, fields, session, http)
            response.relogged = True
        return response

    def read(self, raw: CrmResponse) -> SoapResponse:
        """Parse a raw answer to the create step (a recorded one, say) as :meth:`send` does."""
        prepared = self._prepare_for_delivery(None)
        call = prepared.create
        return read_reply(raw, operation=call.operation,
                          step=call.name, name=call.name)

    def _prepare_for_delivery(self, http: HttpClient | None) -> Prepared:
        try:
            return self._prepare(http.session if http else None, http)
        except WsdlUnreachable as exc:
            raise TransientError(f"the WSDL could not be loaded: {exc}") from None
        except WsdlInvalid as exc:
            raise RejectedError(f"the WSDL is not usable: {exc}") from None
        except ConfigError as exc:
            # The WSDL changed under a validated integration.
            raise RejectedError(f"the integration no longer fits its WSDL: {exc}") from None

    def _create(self, prepared: Prepared, lead: LeadEnvelope, fields: Mapping[str, Any],
                session: LoginSession | None, http: HttpClient) -> SoapResponse:
        ctx = self._context(lead, session, fields)
        request = self._envelope(prepared, prepared.create, ctx,
                                 self._create_url(prepared, session))
        if ctx.derived_secrets:
            http.add_secrets(*ctx.derived_secrets)
        raw = http.send(request)
        return read_reply(raw, operation=prepared.create.operation,
                          step=prepared.create.name, name=prepared.create.name)

    def _create_url(self, prepared: Prepared, session: LoginSession | None) -> str:
        if session is not None and session.endpoint:
            return session.endpoint
        return prepared.address or ""

    def _context(self, lead: LeadEnvelope, session: LoginSession | None,
                 fields: Mapping[str, Any] | None = None) -> Context:
        return Context(
            fields=(self.config.fields.apply(lead.fields, lead.metadata())
                    if fields is None else fields),
            lead=lead.fields,
            meta={
                "lead_id": lead.lead_id, "delivery_id": lead.delivery_id,
                "idempotency_key": lead.idempotency_key, "form_id": lead.form_id,
                "source": lead.source, "received_at": lead.received_at.isoformat(),
                "attempt": lead.attempt,
                # Made per request, shared by every use in it (a signature and its timestamp).
                "now": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                "nonce": secrets.token_hex(16),
            },
            auth=self._auth,
            secrets=self._secrets,
            session=session.values if session else {},
            functions=self._functions,
        )

    def _envelope(self, prepared: Prepared, call: Call, ctx: Context, url: str) -> RenderedRequest:
        try:
            kwargs = render(call.arguments, ctx)
            if call.headers is not None:
                kwargs["_soapheaders"] = render(call.headers, ctx)
            envelope, headers = prepared.binding._create(
                call.name, (), kwargs, client=prepared.client, options={"address": url}
            )
            if self._encoded(call):
                annotate(envelope, call.operation)
        except DataError as exc:
            raise RejectedError(f"operation {call.name}: argument {exc}",
                                final=DATA_DOES_NOT_FIT) from None
        except (ZeepError, TypeError, ValueError, LookupError, AttributeError) as exc:
            # zeep reports a value it cannot serialize in many ways.
            raise RejectedError(f"operation {call.name}: the lead does not fit the request: "
                                f"{_short(exc)}", final=DATA_DOES_NOT_FIT) from None
        return RenderedRequest("POST", url, dict(headers), etree_to_string(envelope),
                               step=call.step if call.step == "login" else call.name)

    def _encoded(self, call: Call) -> bool:
        if self.config.encoded is not None:
            return self.config.encoded
        return getattr(call.operation, "style", None) == "rpc"

    # -- the login step ---------------------------------------------------------------

    def _ensure_session(self, prepared: Prepared, http: HttpClient, lead: LeadEnvelope,
                        stale: LoginSession | None) -> LoginSession:
        # One login at a time per integration: concurrent deliveries wait for
        # the session the first one gets instead of each logging in.
        with self._session_lock:
            current = self._session
            if (current is not None and current is not stale
                    and current.expires_at > session_clock()):
                http.add_secrets(*current.secrets)
                return current
            self._session = None
            fresh = self._login(prepared, http, lead)
            self._session = fresh
            return fresh

    def _login(self, prepared: Prepared, http: HttpClient, lead: LeadEnvelope) -> LoginSession:
        call, step = prepared.login, self.plan.login
        assert call is not None and step is not None
        ctx = self._context(lead, None, fields={})
        request = self._envelope(prepared, call, ctx, prepared.address or "")
        if ctx.derived_secrets:
            http.add_secrets(*ctx.derived_secrets)  # the md5 of a password is a password
        raw = http.send(request)
        self.logins += 1
        reply = read_reply(raw, operation=call.operation,
                           step="login", name=call.name)
        error = login_error(reply, self.plan.faults)
        if error is not None:
            raise error
        if prepared.login_expectations is not None:
            # Judged like a delivery: a refusal at HTTP 200 is a failed login, not a session.
            verdict = prepared.login_expectations.evaluate(reply)
            if verdict.outcome is not Outcome.ACCEPTED:
                raise RejectedError(f"login ({call.name}) refused: {verdict.reason}")
        values: dict[str, Any] = {}
        for name, path in self._output_paths.items():
            found, value, _why = resolve_path(reply.data, path)
            if not found or value is None or value == "":
                if name == "ttl":
                    continue
                raise RejectedError(f"login ({call.name}) answered without {name} "
                                    f"(at {step.outputs[name]})")
            values[name] = value
        secrets = tuple(str(v) for n, v in values.items() if n not in PLAIN_OUTPUTS)
        # Also redacts the login answer, recorded before its session id was known.
        http.add_secrets(*secrets)
        endpoint = values.get("endpoint")
        if endpoint is not None and not str(endpoint).startswith(("http://", "https://")):
            raise RejectedError(f"login ({call.name}) answered an endpoint that is not a URL")
        ttl = step.session_ttl
        with contextlib.suppress(TypeError, ValueError):
            ttl = float(values.get("ttl", ttl))
        lifetime = ttl - SESSION_MARGIN if ttl > 2 * SESSION_MARGIN else ttl / 2
        return LoginSession(values, str(endpoint) if endpoint else None,
                            session_clock() + lifetime, secrets)

    # -- judging ----------------------------------------------------------------------

    def _fault_kind(self, response: CrmResponse) -> FaultKind:
        assert response.fault is not None
        return classify(response.fault, self.plan.faults)

    def _session_refused(self, response: SoapResponse) -> bool:
        """An invalid-session fault, or an answer the ``session_expired`` rules match."""
        if response.fault:
            return self._fault_kind(response) is FaultKind.SESSION
        return self._expired(response) is not None

    def _expired(self, response: CrmResponse) -> RuleTrace | None:
        """The ``session_expired`` rule that matched ``response``, if any did."""
        if self._session_rules is None or response.fault or getattr(response, "problem", None):
            return None
        verdict = self._session_rules.evaluate(response)
        if verdict.outcome is not Outcome.ACCEPTED:
            return None
        return next((t for t in verdict.trace if t.passed), None)

    def _check_lead_fields(self, fields: Mapping[str, Any]) -> None:
        """With ``allowed_fields``, a lead whose fields go out as names must use known ones."""
        if self._allowed is None or not self.config.fields.passthrough:
            return
        unknown = sorted(n for n, v in fields.items()
                         if n not in self._allowed and v not in (None, ""))
        if unknown:
            raise RejectedError(
                f"field {unknown[0]!r} is not one the CRM accepts (allowed_fields)",
                final="the connector webservice_soap: allowed_fields")

    def judge(self, response: CrmResponse, expectations: Expectations) -> Verdict:
        """SOAP faults and unreadable answers first, then the expectations.

        An invalid-session, ``Server`` or listed transient fault is retried; any
        other fault is a rejection (unless a ``soap_fault`` rule looks for it).
        An HTML page, truncated XML or a non-SOAP body is transient for 408/5xx
        or when cut short, else a rejection. Otherwise the expectations decide —
        this operation's own defaults when the integration declares none.
        """
        if response.fault:
            return fault_verdict(response, expectations, self.plan.faults)
        problem = getattr(response, "problem", None)
        if problem:
            return unreadable_verdict(response, problem)
        expired = self._expired(response)
        if expired is not None:
            again = " after logging in again" if getattr(response, "relogged", False) else ""
            words = expectations.words(response)
            said = f" (CRM said {words})" if words else ""
            return Verdict(Outcome.TRANSIENT,
                           f"CRM refused the session{again}: {expired.rule} {expired.detail}{said}",
                           "session_expired", (expired,))
        return judge_http(response, expectations)

    def close(self) -> None:
        """Forget the session and close the transport used for configuration-time loads."""
        self._session = None
        if self._own_transport is not None:
            self._own_transport.close()
            self._own_transport = None


def functions_from(settings: Mapping[str, Any]) -> dict[str, TemplateFunction]:
    """The built-in template functions and those plugins registered (handed in ``settings``
    under ``template_functions`` by the engine's plugin loader)."""
    extra = settings.get("template_functions") or {}
    return {**BUILTIN_FUNCTIONS, **{n: f for n, f in extra.items()
                                    if isinstance(f, TemplateFunction)}}


def _kinds() -> dict[str, type[Rule]]:
    """The rule kinds usable inside the connector's own expectations (login, session)."""
    rules: list[type[Rule]] = [*builtin_rules(), SoapFaultRule]
    return {r.kind: r for r in rules}


def _expectations(raw: Mapping[str, Any], kinds: Mapping[str, type[Rule]],
                  where: str) -> Expectations:
    try:
        return Expectations.parse(raw, kinds)
    except ConfigError as exc:
        # "expectations.rules[0]…" of the step becomes "config.login.expectations.rules[0]…".
        text = str(exc).removeprefix("expectations")
        raise ConfigError(f"config.{where}{text}", field=where) from None


def _any_names(node: Any) -> list[str]:
    """Element names written in ``$any`` slots of a template."""
    out: list[str] = []
    if isinstance(node, DictT):
        if isinstance(node.any, Mapping):
            out += list(node.any)
        for child in node.items.values():
            out += _any_names(child)
    elif hasattr(node, "items") and isinstance(node.items, tuple):
        for child in node.items:
            out += _any_names(getattr(child, "template", child))
    return out


def _compile(raw: Mapping[str, Any], where: str) -> DictT:
    try:
        node = compile_template(dict(raw), where)
    except TemplateError as exc:
        raise ConfigError(f"config.{exc}", field=where) from None
    assert isinstance(node, DictT)
    return node


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"
