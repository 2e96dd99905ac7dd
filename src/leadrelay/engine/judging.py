"""The default judgement of an HTTP answer: "try later" statuses first, then the expectations.

A 429, a 408 or a 5xx says nothing about the lead — the CRM did not judge it —
so they are retried whatever the operator's rules say, without evaluating them.
Every other answer is judged by the integration's
:class:`~leadrelay.engine.expectations.Expectations`.
"""

from __future__ import annotations

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
    return expectations.evaluate(response)
