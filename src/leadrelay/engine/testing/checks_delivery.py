"""The contract's checks of deliveries: outcomes, robustness, secrets, idempotency."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import pytest

from ..connector import Connector
from ..errors import DeliveryError
from ..expectations import Expectations
from ..outcome import Verdict
from ..plugins import Plugins
from ..transport import HttpClient
from .base import POLICY_DELAY, SURPRISES, THROTTLE_FLOOR, ContractBase, Script, wait_of
from .fake_crm import FakeCrm, Reply, http_date
from .harness import ContractEngine, assert_no_secret, envelope_for
from .requirements import requires

__all__ = ["DeliveryChecks"]


class DeliveryChecks(ContractBase):
    """What the engine makes of every kind of answer, and what it keeps."""

    # -- outcomes -------------------------------------------------------------------------

    def test_a_success_is_accepted(
        self, fake_crm: FakeCrm, contract_engine: ContractEngine,
        connector_config: Mapping[str, Any], contract_secrets: frozenset[str],
    ) -> None:
        # Given a CRM that accepts the lead
        self.answer_success(fake_crm)
        contract_engine.integrate(connector_config)

        # When the engine delivers a lead
        delivered = self.deliver(contract_engine, contract_secrets)

        # Then the delivery is done, with the CRM's answer logged
        assert delivered.outcome == "accepted", delivered.describe()
        assert delivered.result.state.value == "delivered"
        final = delivered.attempt["exchanges"][-1]
        assert final["response"]["status"] == self.success_reply.status

    @requires.rejection
    def test_a_rejection_is_rejected(
        self, fake_crm: FakeCrm, contract_engine: ContractEngine,
        connector_config: Mapping[str, Any], contract_secrets: frozenset[str],
    ) -> None:
        # Given a CRM that refuses the lead
        self.answer_rejection(fake_crm)
        contract_engine.integrate(connector_config)

        # When the engine delivers a lead
        delivered = self.deliver(contract_engine, contract_secrets)

        # Then the attempt is rejected, with a reason and the rule that decided it
        assert delivered.outcome == "rejected", delivered.describe()
        assert delivered.result.reason
        assert any(not rule["passed"] for rule in delivered.attempt["trace"]), (
            "a rejection's trace names the rule that failed")

    @requires.server_errors
    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    def test_a_server_error_is_transient(
        self, status: int, fake_crm: FakeCrm, contract_engine: ContractEngine,
        connector_config: Mapping[str, Any], contract_secrets: frozenset[str],
    ) -> None:
        # Given a CRM answering a plain-text 5xx, as a load balancer does
        contract_engine.integrate(connector_config)
        fake_crm.server_error(status)

        # When the engine delivers a lead
        delivered = self.deliver(contract_engine, contract_secrets)

        # Then the attempt is transient, retried after the policy's delay
        assert delivered.outcome == "transient", delivered.describe()
        assert delivered.result.state.value == "pending"
        assert wait_of(contract_engine, delivered) == pytest.approx(POLICY_DELAY)

    @requires.throttling
    def test_a_429_is_throttled(
        self, fake_crm: FakeCrm, contract_engine: ContractEngine,
        connector_config: Mapping[str, Any], contract_secrets: frozenset[str],
    ) -> None:
        # Given a CRM that rate-limits without saying for how long
        contract_engine.integrate(connector_config)
        fake_crm.throttle(retry_after=None)

        # When the engine delivers a lead
        delivered = self.deliver(contract_engine, contract_secrets)

        # Then the attempt is throttled and retried, no sooner than the policy's floor
        assert delivered.outcome == "throttled", delivered.describe()
        assert delivered.result.state.value == "pending"
        assert wait_of(contract_engine, delivered) >= THROTTLE_FLOOR

    @requires.retry_after
    @pytest.mark.parametrize(
        ("status", "retry_after", "seconds"),
        [(429, "600", 600.0), (429, "http-date", 900.0), (503, "300", 300.0),
         (503, "http-date", 900.0)],
        ids=["429-seconds", "429-date", "503-seconds", "503-date"],
    )
    def test_retry_after_is_honoured(
        self, status: int, retry_after: str, seconds: float, fake_crm: FakeCrm,
        contract_engine: ContractEngine, connector_config: Mapping[str, Any],
        contract_secrets: frozenset[str],
    ) -> None:
        self.require("throttling" if status == 429 else "server_errors")
        # Given a CRM asking to come back later, in seconds or as an HTTP date
        contract_engine.integrate(connector_config)
        value = http_date(seconds) if retry_after == "http-date" else retry_after
        if status == 429:
            fake_crm.throttle(retry_after=value)
        else:
            fake_crm.server_error(status, retry_after=value)

        # When the engine delivers a lead
        delivered = self.deliver(contract_engine, contract_secrets)

        # Then the next attempt is due when the CRM said, and not a moment sooner
        expected = "throttled" if status == 429 else "transient"
        assert delivered.outcome == expected, delivered.describe()
        wait = wait_of(contract_engine, delivered)
        assert wait == pytest.approx(seconds, abs=5), "Retry-After was not honoured"
        contract_engine.clock.advance(wait - 1)
        assert contract_engine.app.deliver_due() == []

    @requires.timeouts
    def test_a_crm_that_never_answers_times_out(
        self, fake_crm: FakeCrm, contract_engine: ContractEngine,
        connector_config: Mapping[str, Any], contract_secrets: frozenset[str],
    ) -> None:
        # Given a CRM that accepts the connection and never answers
        contract_engine.integrate(connector_config)
        fake_crm.hang()

        # When the engine delivers a lead
        started = time.monotonic()
        delivered = self.deliver(contract_engine, contract_secrets)
        elapsed = time.monotonic() - started

        # Then the read timeout cuts it off, and the attempt is transient
        assert delivered.outcome == "transient", delivered.describe()
        assert elapsed < self.read_timeout + 5, (
            f"the attempt took {elapsed:.1f}s: the transport's read timeout was not applied")
        final = delivered.attempt["exchanges"][-1]
        assert final["response"] is None and final["error"], final

    @requires.connection_errors
    @pytest.mark.parametrize("failure", ["refused", "dropped"])
    def test_a_connection_failure_is_transient(
        self, failure: str, fake_crm: FakeCrm, contract_engine: ContractEngine,
        connector_config: Mapping[str, Any], contract_secrets: frozenset[str],
    ) -> None:
        # Given a CRM that refuses connections, or drops them without answering
        contract_engine.integrate(connector_config)
        if failure == "refused":
            fake_crm.refuse_connections()
        else:
            fake_crm.drop_connection()

        # When the engine delivers a lead
        delivered = self.deliver(contract_engine, contract_secrets)

        # Then the attempt is transient, with the failure logged
        assert delivered.outcome == "transient", delivered.describe()
        assert delivered.result.state.value == "pending"
        assert delivered.attempt["exchanges"][-1]["error"]

    # -- robustness -----------------------------------------------------------------------

    @pytest.mark.parametrize("surprise", sorted(SURPRISES))
    def test_no_raw_exception_escapes(
        self, surprise: str, fake_crm: FakeCrm,
        contract_connector: tuple[Connector, HttpClient], contract_secrets: frozenset[str],
    ) -> None:
        # Given a CRM that does something surprising
        connector, http = contract_connector
        expectations = Expectations.parse(None, Plugins().expectation_kinds,
                                          default=type(connector).default_expectations)
        SURPRISES[surprise](fake_crm)

        # When the connector sends a lead and judges the answer
        verdict: Verdict | None = None
        try:
            response = connector.send(envelope_for(self.sample_lead), http)
            verdict = connector.judge(response, expectations)
        except DeliveryError:
            pass  # the engine's error tree is how a connector reports a failure
        except Exception as exc:
            # Then nothing but the engine's error tree escapes (no requests/zeep/lxml error)
            pytest.fail(f"{type(exc).__module__}.{type(exc).__qualname__} escaped the "
                        f"connector on a {surprise} CRM: {exc}", pytrace=False)
        assert verdict is None or isinstance(verdict, Verdict)
        # and what was recorded carries no secret
        assert_no_secret(contract_secrets, "the recorded exchanges",
                         [e.as_dict() for e in http.exchanges])

    # -- secrets --------------------------------------------------------------------------

    @requires.secrets
    def test_no_secret_in_any_attempt_record(
        self, fake_crm: FakeCrm, contract_engine: ContractEngine,
        connector_config: Mapping[str, Any], contract_secrets: frozenset[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        # Given an integration whose CRM answers in every way, once echoing the secrets back
        caplog.set_level(logging.DEBUG, logger="leadrelay")
        contract_engine.integrate(connector_config)
        echo = " ".join(sorted(contract_secrets))
        # The newest script wins among equally specific ones: catch-alls first, then
        # the adopter's own answers, which may be specific to a path.
        scripts: list[Script] = [
            lambda crm: crm.reply(Reply(400, f"invalid credentials: {echo}", {"X-Echo": echo})),
            lambda crm: crm.server_error(503),
            lambda crm: crm.throttle(retry_after=30),
        ]
        if self.requirements.rejection:
            scripts.append(self.answer_rejection)
        scripts.append(self.answer_success)

        # When the engine delivers one lead per answer
        ids = []
        for script in scripts:
            script(fake_crm)
            ids.append(self.deliver(contract_engine, contract_secrets).result.delivery_id)

        # Then no attempt, delivery, integration, listing or engine log shows a secret
        assert_no_secret(contract_secrets, "the ledger", contract_engine.stored())
        for delivery_id in ids:
            assert_no_secret(contract_secrets, f"delivery {delivery_id}",
                             contract_engine.app.inspect(delivery_id))
        assert_no_secret(contract_secrets, "the delivery listing",
                         contract_engine.app.deliveries())
        logged = [r.getMessage() for r in caplog.records
                  if r.name.startswith("leadrelay") or r.levelno >= logging.WARNING]
        assert_no_secret(contract_secrets, "the engine's log", logged)

    # -- idempotency ----------------------------------------------------------------------

    def test_sends_the_idempotency_key(
        self, fake_crm: FakeCrm, contract_engine: ContractEngine,
        connector_config: Mapping[str, Any], contract_secrets: frozenset[str],
    ) -> None:
        if not self.connector_class().supports_idempotency_key:
            pytest.skip(f"{self.connector_name} does not declare supports_idempotency_key")
        self.require("server_errors")
        # Given a CRM that fails the first request, then accepts
        self.answer_success(fake_crm)
        fake_crm.server_error(503, times=1)
        contract_engine.integrate(connector_config)

        # When the engine delivers a lead, and retries it
        first = self.deliver(contract_engine, contract_secrets)
        second = contract_engine.retry(first)
        self.check_attempt(second, contract_secrets)

        # Then both requests carried the delivery's one idempotency key
        assert second.outcome == "accepted", second.describe()
        key = second.record["delivery"]["idempotency_key"]
        final = fake_crm.last
        sent = fake_crm.requests_to(final.path, final.method)
        assert len(sent) >= 2, "the retry did not reach the CRM"
        for request in sent[-2:]:
            assert request.contains(key), "the idempotency key was not sent"


