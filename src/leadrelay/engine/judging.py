"""The default judgement of an HTTP answer: "try later" statuses first, then the expectations.

A 429, a 408 or a 5xx says nothing about the lead — the CRM did not judge it —
so they are retried whatever the operator's rules say, without evaluating them.
Every other answer is judged by the integration's
:class:`~leadrelay.engine.expectations.Expectations`; a rejected redirect or
401/403 is then named for what it is, so the operator knows what to fix.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import urljoin

from .expectations import Expectations
from .outcome import Outcome, RuleTrace, Verdict
from .transport import retry_after_seconds
from .wire import CrmResponse

#: The trace entry of a "try later" verdict: the status check that decided it.
STATUS_CHECK = "HTTP status is not 408, 429 or 5xx"


def judge_http(response: CrmResponse, expectations: Expectations) -> Verdict:
    """Judge an HTTP answer.

    429 is :attr:`~Outcome.THROTTLED` and 408 or 5xx :attr:`~Outcome.TRANSIENT`,
    both with the ``Retry-After`` the CRM sent; anything else is decided by
    ``expectations``, whose trace then lists the operator's rules only. A
    "try later" verdict's trace holds the one status check that decided it.
    """
    status = response.status
    if status == 429 or status == 408 or 500 <= status <= 599:
        retry_after = retry_after_seconds(response.headers)
        wait = "" if retry_after is None else f", retry after {retry_after:g}s"
        check = RuleTrace(STATUS_CHECK, False, f"saw {status}{wait}", status)
        if status == 429:
            reason = f"CRM is rate-limiting (HTTP 429){wait}"
            return Verdict(Outcome.THROTTLED, reason, "HTTP 429", (check,),
                           retry_after=retry_after)
        reason = f"CRM answered HTTP {status}, worth retrying{wait}"
        decided_by = "HTTP 408" if status == 408 else "HTTP 5xx"
        return Verdict(Outcome.TRANSIENT, reason, decided_by, (check,), retry_after=retry_after)
    verdict = expectations.evaluate(response)
    if verdict.outcome is Outcome.REJECTED and (300 <= status <= 399 or status in (401, 403)):
        return named(verdict, response)
    return verdict


def named(verdict: Verdict, response: CrmResponse) -> Verdict:
    """A rejected redirect or authentication failure, said so in the reason.

    ``CRM redirected to https://crm.example/api/leads/ (HTTP 301), not followed — check
    the URL``; ``authentication failed (HTTP 401) — check the credentials``. The rule
    that decided (``decided_by``, the trace) and the CRM's own words stay.
    """
    status = response.status
    said = verdict.reason.partition(" (CRM said ")[2]
    words = f" (CRM said {said}" if said else ""
    if 300 <= status <= 399:
        location = response.headers.get("Location")
        where = f" to {urljoin(response.url, location)}" if location else ""
        reason = f"CRM redirected{where} (HTTP {status}), not followed — check the URL"
    elif status == 401:
        reason = f"authentication failed (HTTP 401) — check the credentials{words}"
    elif status == 403:
        reason = (f"authentication failed or not allowed (HTTP 403) — check the credentials "
                  f"and what they may do{words}")
    else:
        return verdict
    return dataclasses.replace(verdict, reason=reason)
