"""The verdict on one attempt: its outcome, the reason, and the rule trace behind it."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any


class Outcome(enum.StrEnum):
    """How one attempt ended."""

    ACCEPTED = "accepted"
    """The CRM took the lead: the response met the expectations."""
    REJECTED = "rejected"
    """The CRM answered and said no, or did not answer as expected."""
    TRANSIENT = "transient"
    """Timeout, connection error or 5xx: worth trying again."""
    THROTTLED = "throttled"
    """HTTP 429: try again, no sooner than ``Retry-After``."""
    PROXY_ERROR = "proxy_error"
    """The static-IP proxy failed; the CRM was not judged."""
    REFUSED_TARGET = "refused_target"
    """The egress policy refused the CRM's address: nothing was sent; never retried."""

    @property
    def is_success(self) -> bool:
        """True only for :attr:`ACCEPTED`."""
        return self is Outcome.ACCEPTED


@dataclass(frozen=True)
class RuleTrace:
    """What one expectation rule saw and concluded."""

    rule: str
    passed: bool
    detail: str
    seen: Any = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {"rule": self.rule, "passed": self.passed, "detail": self.detail, "seen": self.seen}


@dataclass(frozen=True)
class Verdict:
    """The engine's judgement of one attempt.

    ``decided_by`` names the rule (or transport condition) that settled the
    outcome; ``trace`` lists every rule evaluated, in order. ``final``, set only
    on a rejection, names what declared it final (an expectation rule, the
    connector): the delivery is then not retried, whatever the retry policy says.
    """

    outcome: Outcome
    reason: str
    decided_by: str = ""
    trace: tuple[RuleTrace, ...] = field(default_factory=tuple)
    crm_reference: str | None = None
    retry_after: float | None = None
    final: str = ""

    def redacted(self, text: Callable[[str], str]) -> Verdict:
        """This verdict with ``text`` (a redactor) applied to everything a CRM's
        answer can reach: the reason, what each rule saw, and the CRM reference."""
        trace = tuple(
            RuleTrace(
                t.rule,
                t.passed,
                text(t.detail),
                text(t.seen) if isinstance(t.seen, str) else t.seen,
            )
            for t in self.trace
        )
        reference = text(self.crm_reference) if self.crm_reference else self.crm_reference
        return replace(self, reason=text(self.reason), trace=trace, crm_reference=reference)

    def trace_dicts(self) -> list[dict[str, Any]]:
        """The trace as JSON-ready dicts."""
        return [t.as_dict() for t in self.trace]
