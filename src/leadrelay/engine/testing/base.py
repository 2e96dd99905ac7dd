"""What every contract check stands on: the adopter's declarations, shared fixtures, helpers.

:class:`ContractBase` is what an adopting test class fills in (fsspec's abstract
test classes: the base declares what it needs, the subclass provides it); the
checks live in :mod:`.checks_setup` and :mod:`.checks_delivery`, and
:class:`~.contract.ConnectorContract` puts them together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ..connector import Connector, LeadEnvelope
from ..errors import UnknownConnector
from ..plugins import LOAD_PLUGINS_ENV, Plugins
from ..retry import RetryPolicy
from ..secrets import Redactor, secret_values
from ..transport import HttpClient, Timeouts, Transport
from .fake_crm import FakeCrm, Reply
from .harness import ContractEngine, Delivered, assert_no_secret
from .requirements import REQUIRES_ATTRIBUTE, Requirements

__all__ = [
    "POLICY_DELAY", "SURPRISES", "THROTTLE_FLOOR", "ContractBase", "Script", "envelope_of",
    "wait_of",
]

#: The wait the contract's retry policy gives a transient failure without ``Retry-After``.
POLICY_DELAY = 60.0

#: The least wait after a 429 without ``Retry-After``: the retry policy's ``floor``. A 429
#: is not counted against the policy, so its wait is the floor, not the policy's delay.
THROTTLE_FLOOR = RetryPolicy().floor

#: Scripts a fake CRM (``lambda crm: crm.hang()``).
Script = Callable[[FakeCrm], object]

#: Answers no connector may let a raw exception escape from (``send`` then ``judge``).
SURPRISES: dict[str, Script] = {
    "refused": lambda crm: crm.refuse_connections(),
    "hung": lambda crm: crm.hang(),
    "dropped": lambda crm: crm.drop_connection(),
    "empty-200": lambda crm: crm.reply(Reply(200, b"")),
    "html-200": lambda crm: crm.reply(
        Reply(200, "<html><body>Maintenance</body></html>", {"Content-Type": "text/html"})),
    "binary-200": lambda crm: crm.reply(
        Reply(200, bytes(range(256)), {"Content-Type": "application/octet-stream"})),
    "null-json-200": lambda crm: crm.reply(
        Reply(200, b"null", {"Content-Type": "application/json"})),
    "truncated-json-400": lambda crm: crm.reply(
        Reply(400, b'{"status": "error", "errors": [', {"Content-Type": "application/json"})),
    "broken-xml-500": lambda crm: crm.reply(
        Reply(500, b"<soap:Envelope><soap:Body><soap:Fault>", {"Content-Type": "text/xml"})),
    "latin1-as-utf8-200": lambda crm: crm.reply(
        Reply(200, '{"message": "d\u00e9j\u00e0"}'.encode("latin-1"),
              {"Content-Type": "application/json; charset=utf-8"})),
    "unknown-charset-200": lambda crm: crm.reply(
        Reply(200, b"ok", {"Content-Type": "text/plain; charset=x-no-such-charset"})),
    "redirect-302": lambda crm: crm.reply(
        Reply(302, b"", {"Location": "http://127.0.0.1:9/elsewhere"})),
}


class ContractBase:
    """The declarations and fixtures every check uses. Adopt :class:`ConnectorContract`.

    Provide :attr:`connector_name`, :attr:`sample_lead`, :attr:`success_reply`,
    :attr:`rejection_reply` and the :meth:`connector_config` fixture; override
    :meth:`answer_success` / :meth:`answer_rejection` when one scripted reply is
    not enough (a login step, a WSDL to serve).
    """

    #: The connector's registered name (``Connector.name``).
    connector_name: ClassVar[str]
    #: A lead's fields, as a form would submit them, that the connector can send.
    sample_lead: ClassVar[Mapping[str, Any]]
    #: What the CRM answers when it accepts the lead.
    success_reply: ClassVar[Reply]
    #: What the CRM answers when it refuses the lead (None with ``rejection=False``).
    rejection_reply: ClassVar[Reply | None] = None
    #: What the connector can do; every flag defaults to True.
    requirements: ClassVar[Requirements] = Requirements()
    #: Seconds the transport waits for an answer during the checks (``plugins.toml``).
    read_timeout: ClassVar[float] = 0.5

    # -- what an adopter provides ---------------------------------------------------------

    @pytest.fixture
    def connector_config(self, fake_crm: FakeCrm) -> Mapping[str, Any]:
        """A valid integration config whose CRM is ``fake_crm``. Override this fixture.

        Give every secret a realistic value (at least 8 characters) and leave
        timeouts out: the contract sets them in ``plugins.toml`` settings.
        """
        pytest.fail(f"{type(self).__name__}: override the connector_config fixture with a "
                    "valid config pointing at fake_crm.url", pytrace=False)

    def answer_success(self, crm: FakeCrm) -> None:
        """Script ``crm`` to accept the lead. The default replies :attr:`success_reply`."""
        crm.reply(self.success_reply)

    def answer_rejection(self, crm: FakeCrm) -> None:
        """Script ``crm`` to refuse the lead. The default replies :attr:`rejection_reply`."""
        if self.rejection_reply is None:
            pytest.fail(f"{type(self).__name__}: set rejection_reply, or declare "
                        "requirements = Requirements(rejection=False)", pytrace=False)
        crm.reply(self.rejection_reply)

    # -- fixtures the checks share --------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _contract_declared(
        self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Fail clearly on an incomplete adoption; skip the checks a flag opts out of.

        ``LEADRELAY_LOAD_PLUGINS`` is unset for every check: the contract is about
        the connector being found, whatever the shell running the tests says.
        """
        monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)
        for attr, kind in (("connector_name", str), ("sample_lead", Mapping),
                           ("success_reply", Reply)):
            if not isinstance(getattr(self, attr, None), kind):
                pytest.fail(f"{type(self).__name__}: set {attr} (a {kind.__name__}) to adopt "
                            "the connector contract", pytrace=False)
        for flag in sorted(getattr(request.function, REQUIRES_ATTRIBUTE, ())):
            self.require(flag)

    def require(self, flag: str) -> None:
        """Skip the running check unless the connector has capability ``flag``."""
        if not getattr(self.requirements, flag):
            pytest.skip(f"{self.connector_name} opts out: Requirements({flag}=False)")

    @pytest.fixture
    def contract_engine(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[ContractEngine]:
        """A real engine whose connectors come from the installed entry points."""
        monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)
        engine = ContractEngine(tmp_path / "leadrelay", self.connector_name,
                                read_timeout=self.read_timeout)
        try:
            yield engine
        finally:
            engine.close()

    @pytest.fixture
    def contract_secrets(self, connector_config: Mapping[str, Any]) -> frozenset[str]:
        """The secret values of the sample config."""
        config = self.connector_class().parse_config(connector_config)
        return frozenset(secret_values(config))

    @pytest.fixture
    def contract_connector(
        self, connector_config: Mapping[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[tuple[Connector, HttpClient]]:
        """The connector built from its entry point, and a recording client for one attempt."""
        monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)
        plugins = Plugins({self.connector_name: {"read_timeout": self.read_timeout}})
        connector = plugins.build(self.connector_name, connector_config)
        transport = Transport(timeouts=Timeouts(connect=2.0, read=self.read_timeout))
        try:
            yield connector, transport.client(Redactor(secret_values(connector.config)))
        finally:
            connector.close()
            transport.close()

    def connector_class(self) -> type[Connector]:
        """The connector's class, as the engine finds it through the entry points."""
        plugins = Plugins()
        try:
            return plugins.connector_class(self.connector_name)
        except UnknownConnector as exc:
            problems = "; ".join(f"{p.package}: {p.reason}" for p in plugins.problems)
            pytest.fail(f"{exc}; plugin problems: {problems or 'none'}", pytrace=False)

    def deliver(self, engine: ContractEngine, secrets: frozenset[str],
                fields: Mapping[str, Any] | None = None) -> Delivered:
        """Deliver a lead through ``engine`` and check what every attempt must satisfy."""
        delivered = engine.deliver(self.sample_lead if fields is None else fields)
        self.check_attempt(delivered, secrets)
        return delivered

    def check_attempt(self, delivered: Delivered, secrets: frozenset[str]) -> None:
        """What holds for every attempt: judged without a connector crash, logged, no secret."""
        attempt = delivered.attempt
        assert attempt["decided_by"] != "connector error", (
            f"the connector raised an unexpected exception ({delivered.result.reason}); "
            "raise DeliveryError subclasses (TransientError, RejectedError…) instead")
        assert attempt["exchanges"], (
            "the attempt recorded no exchange: send every request through the HttpClient "
            "(http.send, or http.recording for a library doing its own I/O)")
        assert_no_secret(secrets, f"the integration object after a {delivered.outcome} attempt",
                         delivered.record)


def wait_of(engine: ContractEngine, delivered: Delivered) -> float:
    """Seconds from now until the delivery's next attempt."""
    due = delivered.result.next_due_at
    assert due is not None, f"the delivery is not retried: {delivered.describe()}"
    return (due - engine.clock.now()).total_seconds()


def envelope_of(delivered: Delivered) -> LeadEnvelope:
    """The envelope the engine handed the connector for ``delivered``'s first attempt."""
    lead, delivery = delivered.record["lead"], delivered.record["delivery"]
    return LeadEnvelope(
        fields=lead["payload"], lead_id=lead["id"], delivery_id=delivery["id"],
        idempotency_key=delivery["idempotency_key"], form_id=lead["form_id"],
        source=lead["source"], received_at=datetime.fromisoformat(lead["received_at"]),
        attempt=1,
    )

