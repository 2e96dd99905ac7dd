"""SOAP faults: what they mean for a delivery, and the ``soap_fault`` expectation kind.

A fault is not "the CRM answered 500": SOAP 1.1 sends every fault with HTTP
500, the invalid-session fault of an expired login as much as a refused field.
The fault's code decides: an expired session logs in again, a ``Server``
fault is retried, anything else is the CRM saying no to this lead.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

import pydantic

from leadrelay.engine.expectations import Rule
from leadrelay.engine.outcome import RuleTrace
from leadrelay.engine.wire import CrmResponse

from .config import FaultPolicy

#: SOAP 1.1 and 1.2 codes for "the server failed", not the request.
SERVER_CODES = frozenset({"server", "receiver"})


class FaultKind(enum.Enum):
    """What a fault means for the delivery."""

    SESSION = "session"
    """The session is invalid or expired: log in again (once), else retry later."""
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    REJECTED = "rejected"


def _names(fault: Mapping[str, str]) -> set[str]:
    out = {fault.get("code", ""), fault.get("name", ""), fault.get("exception_code", "")}
    return {n.strip().lower() for n in out if n and n.strip()}


def _listed(names: set[str], codes: Iterable[str]) -> bool:
    return any(c.strip().lower() in names for c in codes)


def classify(fault: Mapping[str, str], policy: FaultPolicy) -> FaultKind:
    """The :class:`FaultKind` of ``fault`` under ``policy``."""
    names = _names(fault)
    if _listed(names, policy.session):
        return FaultKind.SESSION
    if _listed(names, policy.rejected):
        return FaultKind.REJECTED
    if _listed(names, policy.throttled):
        return FaultKind.THROTTLED
    if _listed(names, policy.transient):
        return FaultKind.TRANSIENT
    # "Server", "soap:Server", "Server.Busy" (SOAP 1.1 dotted subcodes), "Receiver".
    name = fault.get("name", "").strip().lower()
    if name.split(".")[0] in SERVER_CODES:
        return FaultKind.TRANSIENT
    return FaultKind.REJECTED


def describe(fault: Mapping[str, str]) -> str:
    """``sf:INVALID_FIELD: No such column 'Foo'`` — one line, for reasons."""
    code = fault.get("code") or "(no code)"
    message = " ".join((fault.get("message") or "").split())
    text = f"{code}: {message}" if message else code
    return text if len(text) <= 300 else text[:299] + "…"


class SoapFaultRule(Rule):
    """A SOAP fault in the answer: ``{"kind": "soap_fault", "exists": false}``.

    ``{"kind": "soap_fault", "code": "DUPLICATE_VALUE"}`` passes when the
    answer is a fault with that code (as sent, without prefix, or the detail's
    ``exceptionCode``; any case); ``message_contains`` tests the fault string.
    With neither and no ``exists``, the rule means "a fault is present".

    The ``webservice_soap`` connector rejects a fault by default; an
    integration whose expectations hold a rule like this one that *looks for*
    a fault has its faults judged by the expectations instead (for example
    ``combine: any`` with a duplicate-record fault counted as delivered).
    """

    kind = "soap_fault"
    exists: bool | None = None
    code: str | None = pydantic.Field(None, min_length=1)
    message_contains: str | None = pydantic.Field(None, min_length=1)

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> SoapFaultRule:
        if self.exists is False and (self.code or self.message_contains):
            raise ValueError("'exists: false' cannot go with 'code' or 'message_contains'")
        return self

    @property
    def looks_for_fault(self) -> bool:
        """True when a fault can pass this rule."""
        return self.exists is not False

    def describe(self) -> str:
        """``soap_fault absent``, ``soap_fault code=DUPLICATE_VALUE``, ``soap_fault present``."""
        parts = []
        if self.code:
            parts.append(f"code={self.code}")
        if self.message_contains:
            parts.append(f"message contains {self.message_contains!r}")
        if not parts:
            parts.append("absent" if self.exists is False else "present")
        return "soap_fault " + " ".join(parts)

    def evaluate(self, response: CrmResponse) -> RuleTrace:
        """Pass or fail on ``response.fault`` as set by a SOAP connector."""
        fault = response.fault
        if not fault:
            return self.make_trace(self.exists is False, "saw no SOAP fault")
        seen = describe(fault)
        if self.exists is False:
            return self.make_trace(False, f"saw {seen}", fault.get("code"))
        ok = True
        if self.code:
            ok = self.code.strip().lower() in _names(fault)
        if ok and self.message_contains:
            ok = self.message_contains.lower() in (fault.get("message") or "").lower()
        return self.make_trace(ok, f"saw {seen}", fault.get("code"))
