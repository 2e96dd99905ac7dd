"""Verdicts on SOAP answers the expectations cannot judge: faults, unreadable bodies, logins.

A fault is judged by its code (see :mod:`.faults`), an answer that is not a
SOAP envelope by its HTTP status, and a failed login becomes the delivery
error that says why. The CRM's own words in a rejection's reason come from the
expectations' ``reason`` paths (:mod:`leadrelay.engine.reasons`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from leadrelay.engine.errors import DeliveryError, RejectedError, ThrottledError, TransientError
from leadrelay.engine.expectations import Expectations
from leadrelay.engine.outcome import Outcome, RuleTrace, Verdict
from leadrelay.engine.transport import retry_after_seconds
from leadrelay.engine.wire import CrmResponse

from .config import FaultPolicy
from .faults import FaultKind, SoapFaultRule, classify, describe
from .reply import SoapResponse


def fault_verdict(response: CrmResponse, expectations: Expectations,
                  policy: FaultPolicy) -> Verdict:
    """The verdict on a SOAP fault.

    Session, throttling and server faults are retried whatever the rules say;
    any other fault is a rejection, unless a ``soap_fault`` rule of the
    expectations looks for faults — then the expectations decide.
    """
    fault: Mapping[str, str] = response.fault or {}
    kind = classify(fault, policy)
    text = describe(fault)
    check = RuleTrace("SOAP fault", False, f"saw {text}", fault.get("code"))
    retry_after = retry_after_seconds(response.headers)
    if kind is FaultKind.SESSION:
        again = " after logging in again" if getattr(response, "relogged", False) else ""
        return Verdict(Outcome.TRANSIENT, f"CRM refused the session{again}: SOAP fault {text}",
                       "SOAP fault (session)", (check,), retry_after=retry_after)
    if kind is FaultKind.THROTTLED:
        return Verdict(Outcome.THROTTLED, f"CRM is rate-limiting: SOAP fault {text}",
                       "SOAP fault (throttled)", (check,), retry_after=retry_after)
    if kind is FaultKind.TRANSIENT:
        return Verdict(Outcome.TRANSIENT, f"CRM failed, worth retrying: SOAP fault {text}",
                       "SOAP fault (server)", (check,), retry_after=retry_after)
    if any(isinstance(r, SoapFaultRule) and r.looks_for_fault for r in expectations.rules):
        verdict = expectations.evaluate(response)
        return dataclasses.replace(verdict, trace=(check, *verdict.trace))
    return Verdict(Outcome.REJECTED, f"CRM refused the lead: SOAP fault {text}",
                   "SOAP fault", (check,))


def unreadable_verdict(response: CrmResponse, problem: str) -> Verdict:
    """The verdict on an answer that is not a SOAP envelope (HTML, truncated, not XML).

    429 is throttled; 408, 5xx or XML cut short is transient; anything else
    (an HTML login page at 200, a JSON error) is a rejection with its reason.
    """
    status = response.status
    reason = f"CRM answered {problem} (HTTP {status})"
    check = RuleTrace("answer is a SOAP envelope", False, f"saw {problem}", status)
    retry_after = retry_after_seconds(response.headers)
    if status == 429:
        return Verdict(Outcome.THROTTLED, reason, "HTTP 429", (check,), retry_after=retry_after)
    if status == 408 or status >= 500 or getattr(response, "truncated", False):
        return Verdict(Outcome.TRANSIENT, reason, "unreadable answer", (check,),
                       retry_after=retry_after)
    return Verdict(Outcome.REJECTED, reason, "unreadable answer", (check,))


def login_error(reply: SoapResponse, policy: FaultPolicy) -> DeliveryError | None:
    """Why a login answer cannot be used, as the delivery error to raise; None when it can.

    A "try later" carries the ``Retry-After`` the CRM sent, as for the create step.
    """
    status = reply.status
    wait = retry_after_seconds(reply.headers)
    if reply.fault:
        kind = classify(reply.fault, policy)
        text = f"login failed: SOAP fault {describe(reply.fault)}"
        if kind is FaultKind.THROTTLED:
            return ThrottledError(text, retry_after=wait)
        if kind in (FaultKind.TRANSIENT, FaultKind.SESSION):
            return TransientError(text, retry_after=wait)
        return RejectedError(text)
    if status == 429:
        return ThrottledError("login: the CRM is rate-limiting (HTTP 429)", retry_after=wait)
    if reply.problem:
        text = f"login: the CRM answered {reply.problem} (HTTP {status})"
        if status >= 500 or status == 408 or reply.truncated:
            return TransientError(text, retry_after=wait)
        return RejectedError(text)
    if status >= 500 or status == 408:
        return TransientError(f"login: the CRM answered HTTP {status}", retry_after=wait)
    if not 200 <= status < 300:
        return RejectedError(f"login: the CRM answered HTTP {status}")
    return None
