"""The default HTTP judgement, driven by answers shaped like real CRM contracts.

The contracts come from ``tests/fixtures/http-contracts/http_contracts.json``
(see its PROVENANCE.md: only bodies marked verbatim-doc are exact strings).
"""

from __future__ import annotations

import json
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from leadrelay.engine.expectations import Expectations, builtin_rules
from leadrelay.engine.judging import STATUS_CHECK, judge_http
from leadrelay.engine.outcome import Outcome
from leadrelay.engine.wire import CrmResponse

CONTRACTS_FILE = Path(__file__).resolve().parents[1] / "fixtures/http-contracts/http_contracts.json"
CONTRACTS = {c["name"]: c for c in json.loads(CONTRACTS_FILE.read_text(encoding="utf-8"))}
KINDS = {rule.kind: rule for rule in builtin_rules()}

# What Web-to-Lead answers, success or not: a page sending the browser to retURL.
# The contract describes it rather than quoting it; this is its shape.
WEB_TO_LEAD_PAGE = (
    b'<html><head><meta http-equiv="Refresh" content="0; URL=https://example.com/thanks">'
    b"</head><body></body></html>"
)


def contract(name: str, failure: int | None = None, *, body: bytes | None = None) -> CrmResponse:
    """The contract's success answer, or its ``failure``-th failure answer, as a response."""
    case = CONTRACTS[name]
    answer = case["success_response"] if failure is None else case["failure_responses"][failure]
    if body is None:
        raw = answer["body"]
        body = raw.encode() if isinstance(raw, str) else json.dumps(raw).encode()
    return CrmResponse(answer["status"], answer.get("headers", {}), body)


def expectations(raw: dict[str, Any] | None) -> Expectations:
    return Expectations.parse(raw, KINDS)


HUBSPOT = {
    "rules": [
        {"kind": "status", "in": [200]},
        {"kind": "json_field", "path": "errors[0].errorType", "exists": False},
    ]
}
DYNAMICS = {
    "rules": [
        {"kind": "status", "in": [204]},
        {"kind": "header", "name": "OData-EntityId", "matches": r"/leads\("},
    ],
    "reference": {"header": "OData-EntityId", "pattern": r"\(([^)]+)\)"},
}
PIPEDRIVE = {
    "rules": [
        {"kind": "json_field", "path": "success", "equals": True},
        {"kind": "json_field", "path": "data.id"},
    ],
    "reference": {"json": "data.id"},
}
ZOHO = {
    "rules": [
        {"kind": "status", "in": [201]},
        {"kind": "json_field", "path": "data[0].code", "equals": "SUCCESS"},
    ],
    "reference": {"json": "data[0].details.id"},
}
SALESFORCE_REST = {
    "rules": [{"kind": "json_field", "path": "success", "equals": True}],
    "reference": {"json": "id"},
}
ODOO = {
    "rules": [
        {"kind": "json_field", "path": "error", "exists": False},
        {"kind": "json_field", "path": "result", "not_equals": False},
    ],
    "reference": {"json": "result"},
}


@pytest.mark.parametrize(
    ("response", "raw", "outcome", "reason", "reference"),
    [
        pytest.param(
            contract("salesforce_web_to_lead", body=WEB_TO_LEAD_PAGE), None,
            Outcome.ACCEPTED, "response matched all 1 rules", None,
            id="salesforce-web-to-lead-200-html",
        ),
        pytest.param(
            # The contract's point: its failures look exactly like its successes.
            contract("salesforce_web_to_lead", 0, body=WEB_TO_LEAD_PAGE), None,
            Outcome.ACCEPTED, "response matched all 1 rules", None,
            id="salesforce-web-to-lead-failure-is-indistinguishable",
        ),
        pytest.param(
            contract("hubspot_forms_v3_submit"), HUBSPOT,
            Outcome.ACCEPTED, "response matched all 2 rules", None, id="hubspot-200",
        ),
        pytest.param(
            contract("hubspot_forms_v3_submit", 0), HUBSPOT,
            Outcome.REJECTED, "response mismatch: status in [200] saw 400 (CRM said "
            "INVALID_EMAIL: Error in 'fields.email'. Invalid email address)", None,
            id="hubspot-400",
        ),
        pytest.param(
            contract("dynamics365_webapi_create_lead"), DYNAMICS,
            Outcome.ACCEPTED, "response matched all 2 rules",
            "7eb682f1-ca75-e511-80d4-00155d2a68d1", id="dynamics-204-entity-id",
        ),
        pytest.param(
            contract("dynamics365_webapi_create_lead", 0), DYNAMICS,
            Outcome.REJECTED, "response mismatch: status in [204] saw 404 (CRM said "
            "0x8006088a: Resource not found for the segment 'Account'.)", None,
            id="dynamics-404",
        ),
        pytest.param(
            contract("pipedrive_add_lead"), PIPEDRIVE,
            Outcome.ACCEPTED, "response matched all 2 rules",
            "adf21080-0e10-11eb-879b-05d71fb426ec", id="pipedrive-201",
        ),
        pytest.param(
            contract("pipedrive_add_lead", 1), PIPEDRIVE,
            Outcome.REJECTED, "authentication failed or not allowed (HTTP 403) — check the "
            "credentials and what they may do (CRM said Couldn't add the deal. Open deals limit "
            "reached.)", None,
            id="pipedrive-403-limit",
        ),
        pytest.param(
            contract("zoho_crm_api_insert_leads"), ZOHO,
            Outcome.ACCEPTED, "response matched all 2 rules", "554023000000527002",
            id="zoho-201",
        ),
        pytest.param(
            contract("zoho_crm_api_insert_leads", 1), {**ZOHO, "rules": ZOHO["rules"][1:]},
            Outcome.REJECTED,
            'response mismatch: json_field data[0].code == "SUCCESS" saw "DUPLICATE_DATA"', None,
            id="zoho-400-duplicate",
        ),
        pytest.param(
            contract("zoho_crm_api_insert_leads", 3), {**ZOHO, "rules": ZOHO["rules"][1:]},
            Outcome.REJECTED,
            "authentication failed (HTTP 401) — check the credentials (CRM said invalid oauth "
            "token)", None, id="zoho-401-flat-object",
        ),
        pytest.param(
            contract("salesforce_rest_create_lead"), SALESFORCE_REST,
            Outcome.ACCEPTED, "response matched all 1 rules", "001D000000IqhSLIAZ",
            id="salesforce-rest-201",
        ),
        pytest.param(
            contract("salesforce_rest_create_lead", 0), SALESFORCE_REST,
            Outcome.REJECTED,
            "response mismatch: json_field success == true saw $ is a list, not an object",
            None, id="salesforce-rest-400-error-array",
        ),
        pytest.param(
            contract("odoo_jsonrpc_create_crm_lead"), ODOO,
            Outcome.ACCEPTED, "response matched all 2 rules", "42", id="odoo-200-result",
        ),
        pytest.param(
            contract("odoo_jsonrpc_create_crm_lead", 1), ODOO,
            Outcome.REJECTED, "response mismatch: json_field result != false saw false", None,
            id="odoo-200-authenticate-false",
        ),
    ],
)
def test_real_contract_answers(
    response: CrmResponse,
    raw: dict[str, Any] | None,
    outcome: Outcome,
    reason: str,
    reference: str | None,
) -> None:
    verdict = judge_http(response, expectations(raw))
    assert (verdict.outcome, verdict.reason, verdict.crm_reference) == (outcome, reason, reference)


def test_odoo_error_inside_http_200_is_rejected_naming_it() -> None:
    # Given Odoo's JSON-RPC error, which arrives with HTTP 200
    response = contract("odoo_jsonrpc_create_crm_lead", 0)
    assert response.status == 200

    # When it is judged
    verdict = judge_http(response, expectations(ODOO))

    # Then the "no error" rule rejects it and the trace shows what the error was
    assert verdict.outcome is Outcome.REJECTED
    assert verdict.decided_by == "json_field error absent"
    assert verdict.reason.startswith('response mismatch: json_field error absent saw {"code": 200')
    assert "Odoo Server Error" in verdict.trace[0].seen


def test_hubspot_error_type_is_in_the_trace() -> None:
    # Given HubSpot's 400 for an invalid email
    verdict = judge_http(contract("hubspot_forms_v3_submit", 0), expectations(HUBSPOT))

    # Then the status decides, and the errorType rule shows the CRM's reason too
    assert verdict.decided_by == "status in [200]"
    assert verdict.trace[1].detail == 'saw "INVALID_EMAIL"'


def test_empty_204_body_fails_a_rule_that_wants_json_without_crashing() -> None:
    # Given Dynamics' success: 204, no body, the id only in a header
    response = contract("dynamics365_webapi_create_lead")

    # When an operator wrongly expects a JSON id
    verdict = judge_http(response, expectations({"rules": [{"kind": "json_field", "path": "id"}]}))

    # Then it is rejected with a reason that says why
    assert verdict.reason == "response mismatch: json_field id exists saw an empty body, not JSON"


def test_matching_survives_a_proxy_changing_content_type_and_charset() -> None:
    # Given Zoho's success relayed by a static-IP proxy that relabelled the body
    body = json.dumps(CONTRACTS["zoho_crm_api_insert_leads"]["success_response"]["body"])
    response = CrmResponse(201, {"Content-Type": "text/plain; charset=ISO-8859-1",
                                 "Via": "1.1 egress-proxy"}, body.encode("latin-1"),
                           encoding="ISO-8859-1", proxy="egress-1")

    # When / Then it is judged on its content, not its label
    verdict = judge_http(response, expectations(ZOHO))
    assert (verdict.outcome, verdict.crm_reference) == (Outcome.ACCEPTED, "554023000000527002")


# -- statuses that mean "try later" --------------------------------------------------------


def test_429_is_throttled_with_retry_after_and_no_rule_evaluated() -> None:
    # Given HubSpot rate-limiting us, asking for 10 seconds
    body = b'{"status": "error", "message": "You have reached your secondly limit."}'
    response = CrmResponse(429, {"Retry-After": "10", "Content-Type": "application/json"}, body)

    # When it is judged with expectations that would accept any status
    accept_all = expectations({"rules": [{"kind": "status", "in": ["100-599"]}]})
    verdict = judge_http(response, accept_all)

    # Then it is throttled, and the trace holds only the status check
    assert verdict.outcome is Outcome.THROTTLED
    assert (verdict.decided_by, verdict.retry_after) == ("HTTP 429", 10.0)
    assert verdict.reason == "CRM is rate-limiting (HTTP 429), retry after 10s"
    assert [t.as_dict() for t in verdict.trace] == [
        {"rule": STATUS_CHECK, "passed": False, "detail": "saw 429, retry after 10s", "seen": 429}
    ]


@pytest.mark.parametrize(
    ("status", "headers", "decided_by", "retry_after"),
    [
        (500, {}, "HTTP 5xx", None),
        (503, {"Retry-After": "120"}, "HTTP 5xx", 120.0),
        (599, {}, "HTTP 5xx", None),
        (408, {}, "HTTP 408", None),
    ],
)
def test_5xx_and_408_are_transient(
    status: int, headers: dict[str, str], decided_by: str, retry_after: float | None
) -> None:
    verdict = judge_http(CrmResponse(status, headers), expectations({"rules": [
        {"kind": "status", "in": ["4xx", "5xx"]}]}))
    assert (verdict.outcome, verdict.decided_by, verdict.retry_after) == (
        Outcome.TRANSIENT, decided_by, retry_after)
    assert verdict.trace[0].seen == status


def test_retry_after_as_an_http_date() -> None:
    # Given a 503 asking us to come back in about a minute, as a date
    when = formatdate(time.time() + 60, usegmt=True)

    # When it is judged
    verdict = judge_http(CrmResponse(503, {"Retry-After": when}), expectations(None))

    # Then the wait is that many seconds from now
    assert verdict.retry_after is not None and 55 <= verdict.retry_after <= 60


@pytest.mark.parametrize("status", [400, 404, 499, 600, 302])
def test_other_statuses_go_to_the_expectations(status: int) -> None:
    # Given / When a status that is not a "try later" one is judged
    verdict = judge_http(CrmResponse(status), expectations(None))

    # Then the expectations decide, and the trace is theirs alone
    assert (verdict.outcome, verdict.decided_by) == (Outcome.REJECTED, "status in [2xx]")
    assert [t.as_dict() for t in verdict.trace] == [
        {"rule": "status in [2xx]", "passed": False, "detail": f"saw {status}", "seen": status}
    ]
