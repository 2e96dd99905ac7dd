"""A real leadrelay engine for one test: the path every contract check goes through.

:class:`ContractEngine` is the embedded deployment in miniature — a SQLite
ledger in a temporary directory, the in-process broker, a fake clock — whose
connectors are found through the ``leadrelay.connectors`` entry points exactly
as in production. A check submits a lead, runs the due delivery in the test's
thread and reads back the integration object: the same intake, runtime cache,
transport, judging, retry policy and ledger writes a worker uses.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from sqlalchemy import select

from ..app import Leadrelay
from ..clock import FakeClock
from ..connector import LeadEnvelope
from ..delivery import AttemptResult
from ..ledger import Attempt, Delivery, Integration
from ..plugins import Plugins
from ..secrets import SecretBox
from ..settings import Settings

__all__ = ["CONTRACT_RETRY", "ContractEngine", "Delivered", "assert_no_secret", "envelope_for"]

#: The contract's retry policy: one fixed minute, no jitter, so ``Retry-After`` is exact to read.
CONTRACT_RETRY: Mapping[str, Any] = {"max_attempts": 5, "delays": ["1m"], "jitter": 0}


@dataclass(frozen=True)
class Delivered:
    """One attempt run by the engine, and the integration object it left behind."""

    result: AttemptResult
    record: dict[str, Any]
    """The integration object (:meth:`Leadrelay.inspect`) after the attempt."""

    @property
    def attempt(self) -> dict[str, Any]:
        """The attempt just made, as the ledger stored it."""
        attempts: list[dict[str, Any]] = self.record["attempts"]
        return attempts[-1]

    @property
    def outcome(self) -> str:
        """The attempt's outcome (``accepted``, ``rejected``, ``transient``…)."""
        return self.result.outcome.value

    def describe(self) -> str:
        """One line for assertion messages."""
        return f"{self.outcome} ({self.attempt['decided_by']}): {self.result.reason}"


class ContractEngine:
    """A leadrelay engine with one form, for delivering leads to one connector.

    :param home: an empty directory for the ledger.
    :param connector: the connector's name; its ``plugins.toml`` settings carry
        the short timeouts the contract uses.
    :param read_timeout: seconds the transport waits for an answer.
    :param connect_timeout: seconds the transport waits for a connection.
    """

    def __init__(
        self, home: Path, connector: str, *, read_timeout: float = 0.5,
        connect_timeout: float = 2.0, settings: Mapping[str, Any] | None = None,
    ) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.connector = connector
        self.clock = FakeClock()
        table = {"read_timeout": read_timeout, "connect_timeout": connect_timeout,
                 **(settings or {})}
        self.plugins = Plugins({connector: table})
        self.app = Leadrelay(
            Settings(home=home, database_url=f"sqlite:///{home / 'ledger.db'}",
                     broker_url=None, secret_key=SecretBox.generate_key(), plugins_file=None,
                     egress_allow=("127.0.0.1",)),  # the contract suite's CRMs: loopback
            clock=self.clock, plugins=self.plugins,
        )
        account = self.app.manage.create_account("Contract", "owner@contract.test",
                                                 plan="growth")
        self.form_id = self.app.manage.create_form(account.id, "Contract form").id
        self.integration_id: int | None = None

    def integrate(
        self, config: Mapping[str, Any], *, expectations: Mapping[str, Any] | None = None,
        retry: Mapping[str, Any] | None = None,
    ) -> int:
        """Create the form's active integration with the connector (validated like any)."""
        integration = self.app.manage.create_integration(
            self.form_id, name=f"{self.connector} (contract)", connector=self.connector,
            config=config, expectations=expectations, retry=retry or CONTRACT_RETRY,
            active=True,
        )
        self.integration_id = integration.id
        return integration.id

    def deliver(self, fields: Mapping[str, Any]) -> Delivered:
        """Submit a lead and run its one delivery's first attempt."""
        accepted = self.app.submit(self.form_id, dict(fields))
        if len(accepted.delivery_ids) != 1:
            raise AssertionError(
                f"expected one delivery for the lead, got {len(accepted.delivery_ids)}: "
                "call integrate() once first"
            )
        return self._run(accepted.delivery_ids[0])

    def retry(self, delivery: Delivered) -> Delivered:
        """Move the clock to the delivery's next due time and run that attempt."""
        due = delivery.result.next_due_at
        if due is None:
            raise AssertionError(f"delivery is not due again: {delivery.describe()}")
        self.clock.advance(max(0.0, (due - self.clock.now()).total_seconds()))
        return self._run(delivery.result.delivery_id)

    def _run(self, delivery_id: int) -> Delivered:
        result = self.app.deliver(delivery_id)
        if result is None:
            raise AssertionError(f"delivery {delivery_id} was not due")
        return Delivered(result, self.app.inspect(delivery_id))

    def stored(self) -> dict[str, Any]:
        """Every attempt, delivery and integration row of the ledger, as stored."""
        with self.app.ledger.session() as s:
            return {
                "attempts": [_row(a) for a in s.scalars(select(Attempt))],
                "deliveries": [_row(d) for d in s.scalars(select(Delivery))],
                "integrations": [_row(i) for i in s.scalars(select(Integration))],
            }

    def close(self) -> None:
        """Close the engine and its connections."""
        self.app.close()


def envelope_for(fields: Mapping[str, Any], *, idempotency_key: str = "contract-0001-key",
                 delivery_id: int = 1) -> LeadEnvelope:
    """A lead as a connector sees it, for calling ``render`` or ``send`` directly."""
    return LeadEnvelope(
        fields=dict(fields), lead_id=1, delivery_id=delivery_id,
        idempotency_key=idempotency_key, form_id=1, source="form",
        received_at=datetime(2024, 11, 14, 22, 13, 20, tzinfo=UTC),
    )


def assert_no_secret(secrets: Iterable[str], where: str, document: Any) -> None:
    """Fail when any secret, in any common encoding, appears in ``document``.

    :param secrets: the plain secret values.
    :param where: what ``document`` is, for the failure message.
    :param document: text, or anything JSON-serialisable (searched as its JSON text).
    """
    text = document if isinstance(document, str) else json.dumps(
        document, default=str, ensure_ascii=False)
    for secret in secrets:
        forms = {secret, json.dumps(secret)[1:-1], quote(secret, safe=""), quote_plus(secret)}
        if any(form and form in text for form in forms):
            shown = secret[:2] + "…"
            raise AssertionError(f"a secret ({shown}, {len(secret)} chars) appears in {where}")


def _row(obj: Any) -> dict[str, Any]:
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns}
