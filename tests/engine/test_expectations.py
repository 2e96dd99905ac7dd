"""Expectations: each rule kind, combining, the CRM reference, and refusing bad config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from leadrelay.engine.errors import ConfigError
from leadrelay.engine.expectations import (
    DEFAULT_EXPECTATIONS,
    Expectations,
    Rule,
    builtin_rules,
    parse_path,
    resolve_path,
)
from leadrelay.engine.hookspecs import hookimpl
from leadrelay.engine.outcome import Outcome, RuleTrace
from leadrelay.engine.plugins import Plugins
from leadrelay.engine.wire import CrmResponse

SOAP = Path(__file__).resolve().parents[1] / "fixtures" / "soap-responses"
KINDS = {rule.kind: rule for rule in builtin_rules()}
SF = {"sf": "urn:partner.soap.sforce.com"}


def expect(*rules: dict[str, Any], combine: str = "all", **extra: Any) -> Expectations:
    return Expectations.parse({"combine": combine, "rules": list(rules), **extra}, KINDS)


def json_response(status: int, body: Any, **headers: str) -> CrmResponse:
    return CrmResponse(status, {"Content-Type": "application/json", **headers},
                       json.dumps(body).encode())


def one(rule: dict[str, Any], response: CrmResponse) -> RuleTrace:
    """The trace of a single rule evaluated against ``response``."""
    (trace,) = expect(rule).evaluate(response).trace
    return trace


# -- status ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "status", "passed"),
    [
        ({"in": ["2xx"]}, 204, True),
        ({"in": ["2xx"]}, 302, False),
        ({"in": [200, 201]}, 201, True),
        ({"in": ["200"]}, 200, True),
        ({"in": ["200-299"]}, 299, True),
        ({"in": ["200-299"]}, 300, False),
        ({"in": ["2XX", "3xx"]}, 302, True),
        ({"not_in": ["4xx", "5xx"]}, 302, True),
        ({"not_in": ["4xx", "5xx"]}, 404, False),
        ({"in": ["2xx"], "not_in": [204]}, 204, False),
        ({"in": ["2xx"], "not_in": [204]}, 200, True),
    ],
)
def test_status_rule(spec: dict[str, Any], status: int, passed: bool) -> None:
    trace = one({"kind": "status", **spec}, CrmResponse(status))
    assert (trace.passed, trace.seen, trace.detail) == (passed, status, f"saw {status}")


def test_status_rule_describes_itself_as_written() -> None:
    trace = one({"kind": "status", "in": [201, "2XX"], "not_in": ["200-202"]}, CrmResponse(200))
    assert trace.rule == "status in [201, 2xx] not in [200-202]"


# -- body text ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "body", "passed"),
    [
        ({"kind": "body_contains", "value": "inlineMessage"}, '{"inlineMessage": "Thanks"}', True),
        ({"kind": "body_contains", "value": "INLINEMESSAGE"}, '{"inlineMessage": "x"}', False),
        ({"kind": "body_contains", "value": "INLINEMESSAGE", "ignore_case": True},
         '{"inlineMessage": "x"}', True),
        ({"kind": "body_not_contains", "value": "error"}, '{"status": "error"}', False),
        ({"kind": "body_not_contains", "value": "Error", "ignore_case": True}, "<p>ok</p>", True),
        ({"kind": "regex", "pattern": r'"success":\s*true'}, '{"success": true}', True),
        ({"kind": "regex", "pattern": r'"success":\s*true'}, '{"success": false}', False),
        ({"kind": "regex", "pattern": r"(?i)server error", "negate": True}, "Odoo Server Error",
         False),
        ({"kind": "regex", "pattern": "error", "negate": True}, "all good", True),
    ],
)
def test_body_text_rules(rule: dict[str, Any], body: str, passed: bool) -> None:
    assert one(rule, CrmResponse(200, {}, body.encode())).passed is passed


def test_body_rule_shows_where_it_matched() -> None:
    # Given a HubSpot-shaped 400 whose body names the error type
    body = b'{"status":"error","errors":[{"errorType":"INVALID_EMAIL"}]}'

    # When a body_not_contains rule finds it
    trace = one({"kind": "body_not_contains", "value": "INVALID_EMAIL"}, CrmResponse(400, {}, body))

    # Then the trace says what it saw, and where
    assert trace.rule == 'body does not contain "INVALID_EMAIL"'
    assert not trace.passed
    assert trace.detail == "saw a match at character 42"
    assert "INVALID_EMAIL" in trace.seen


def test_body_is_decoded_with_its_declared_charset() -> None:
    # Given a body in ISO-8859-1, as a proxy or an old CRM may send it
    response = CrmResponse(200, {}, "Nom: Cécile".encode("latin-1"), encoding="ISO-8859-1")

    # When / Then the text rule matches the decoded text
    assert one({"kind": "body_contains", "value": "Cécile"}, response).passed


# -- json_field -----------------------------------------------------------------------

ZOHO = {"data": [{"code": "SUCCESS", "details": {"id": "554023000000527002"}}]}


@pytest.mark.parametrize(
    ("spec", "body", "passed", "detail"),
    [
        ({"path": "data[0].code", "equals": "SUCCESS"}, ZOHO, True, 'saw "SUCCESS"'),
        ({"path": "$.data[0].code", "equals": "SUCCESS"}, ZOHO, True, 'saw "SUCCESS"'),
        ({"path": "$['data'][-1][\"code\"]", "in": ["SUCCESS", "DUPLICATE_DATA"]}, ZOHO, True,
         'saw "SUCCESS"'),
        ({"path": "data[0].code", "not_equals": "SUCCESS"}, ZOHO, False, 'saw "SUCCESS"'),
        ({"path": "data[0].details.id"}, ZOHO, True, 'saw "554023000000527002"'),
        ({"path": "data[1].code"}, ZOHO, False, "saw no item [1] in $.data (1 items)"),
        ({"path": "data[0].nope", "exists": False}, ZOHO, True, 'saw no key "nope" in $.data[0]'),
        ({"path": "data[0].code", "exists": False}, ZOHO, False, 'saw "SUCCESS"'),
        ({"path": "success", "equals": True}, {"success": True}, True, "saw true"),
        ({"path": "success", "equals": True}, {"success": 1}, False, "saw 1"),
        ({"path": "count", "equals": 1}, {"count": 1.0}, True, "saw 1.0"),
        ({"path": "id", "equals": "42"}, {"id": 42}, False, "saw 42"),
        ({"path": "organization_id", "equals": None}, {"organization_id": None}, True, "saw null"),
        ({"path": '["odd key"].v', "equals": 1}, {"odd key": {"v": 1}}, True, "saw 1"),
        ({"path": "$", "exists": True}, [], True, "saw []"),
        ({"path": "data.id"}, {"data": None}, False, "saw $.data is null, not an object"),
    ],
)
def test_json_field_rule(spec: dict[str, Any], body: Any, passed: bool, detail: str) -> None:
    trace = one({"kind": "json_field", **spec}, json_response(200, body))
    assert (trace.passed, trace.detail) == (passed, detail)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"<html><body>Thanks!</body></html>", 'saw a body that is not JSON: "<html><body>Thanks!'),
        (b"", "saw an empty body, not JSON"),
        (b'{"data": [{"code": "SUCC', 'saw a body that is not JSON: "{\\"data\\": [{\\"code'),
    ],
)
def test_json_field_on_a_body_that_is_not_json_fails_without_raising(
    body: bytes, detail: str
) -> None:
    rule = {"kind": "json_field", "path": "success", "equals": True}
    trace = one(rule, CrmResponse(200, {}, body))
    assert not trace.passed
    assert trace.detail.startswith(detail)


def test_json_field_reads_what_the_connector_parsed_before_the_body() -> None:
    # Given a SOAP answer a connector parsed into plain data
    body = (SOAP / "sf_partner_create_record_error.xml").read_bytes()
    response = CrmResponse(200, {}, body, data=[{"id": None, "success": False}])

    # When a json_field rule looks at the result
    trace = one({"kind": "json_field", "path": "[0].success", "equals": True}, response)

    # Then it judged the parsed data, not the (XML) body
    assert (trace.passed, trace.detail) == (False, "saw false")


# -- header ---------------------------------------------------------------------------

DYNAMICS_ID = "https://org.crm.dynamics.com/api/data/v9.2/leads(7eb682f1-ca75-e511-80d4-00155d2a68d1)"


@pytest.mark.parametrize(
    ("spec", "passed", "detail"),
    [
        ({"name": "odata-entityid"}, True, f'saw "{DYNAMICS_ID[:58]}…'),
        ({"name": "OData-Version", "equals": "4.0"}, True, 'saw "4.0"'),
        ({"name": "OData-Version", "equals": "4.01"}, False, 'saw "4.0"'),
        ({"name": "OData-EntityId", "matches": r"/leads\([0-9a-f-]{36}\)$"}, True, "saw"),
        ({"name": "OData-EntityId", "matches": r"/accounts\("}, False, "saw"),
        ({"name": "Location"}, False, "saw no such header"),
    ],
)
def test_header_rule(spec: dict[str, Any], passed: bool, detail: str) -> None:
    response = CrmResponse(204, {"OData-Version": "4.0", "OData-EntityId": DYNAMICS_ID})
    trace = one({"kind": "header", **spec}, response)
    assert trace.passed is passed
    assert trace.detail.startswith(detail)


# -- xml_element (real Salesforce Partner API answers) ------------------------------------

SF_SUCCESS = {"kind": "xml_element", "xpath": "//sf:result/sf:success", "namespaces": SF,
              "equals": "true"}


def soap(name: str, status: int = 200) -> CrmResponse:
    return CrmResponse(status, {"Content-Type": "text/xml; charset=utf-8"},
                       (SOAP / name).read_bytes())


def test_salesforce_soap_create_success_is_accepted_with_its_id() -> None:
    # Given the Partner API's answer to a successful create
    response = soap("sf_partner_create_success.xml")
    expectations = expect(SF_SUCCESS, reference={"xpath": "//sf:result/sf:id", "namespaces": SF})

    # When it is judged
    verdict = expectations.evaluate(response)

    # Then it is accepted and the new record's id captured
    assert verdict.outcome is Outcome.ACCEPTED
    assert verdict.crm_reference == "001R0000029IyDPIA0"
    assert verdict.trace[0].detail == 'saw "true"'


def test_salesforce_soap_record_error_at_http_200_is_rejected() -> None:
    # Given Salesforce refusing the record inside an HTTP 200 without a SOAP fault
    response = soap("sf_partner_create_record_error.xml")
    expectations = expect({"kind": "status", "in": ["2xx"]}, SF_SUCCESS,
                          reference={"xpath": "//sf:result/sf:id", "namespaces": SF})

    # When it is judged
    verdict = expectations.evaluate(response)

    # Then the success flag decides: rejected, no reference
    assert verdict.outcome is Outcome.REJECTED
    assert verdict.decided_by == 'xml_element //sf:result/sf:success == "true"'
    assert verdict.reason == (
        'response mismatch: xml_element //sf:result/sf:success == "true" saw "false"'
    )
    assert verdict.crm_reference is None
    assert [t.passed for t in verdict.trace] == [True, False]


@pytest.mark.parametrize(
    ("rule", "fixture", "passed"),
    [
        ({"xpath": "//sf:errors/sf:statusCode", "namespaces": SF, "exists": False},
         "sf_partner_create_success.xml", True),
        ({"xpath": "//sf:errors/sf:statusCode", "namespaces": SF, "exists": False},
         "sf_partner_create_record_error.xml", False),
        ({"xpath": "count(//sf:errors)", "namespaces": SF, "equals": "0"},
         "sf_partner_create_success.xml", True),
        ({"xpath": "boolean(//sf:errors)", "namespaces": SF, "equals": "true"},
         "sf_partner_create_record_error.xml", True),
        ({"xpath": "//sf:limitInfo/sf:type/text()", "namespaces": SF, "equals": "API REQUESTS"},
         "sf_partner_create_record_error.xml", True),
        ({"xpath": "//*[local-name()='success']"}, "sf_partner_create_success.xml", True),
    ],
)
def test_xml_element_rule(rule: dict[str, Any], fixture: str, passed: bool) -> None:
    assert one({"kind": "xml_element", **rule}, soap(fixture)).passed is passed


def test_xml_element_equals_needs_every_match_to_agree() -> None:
    # Given a create of two records where the second one failed
    body = (b'<Envelope xmlns="urn:partner.soap.sforce.com"><result><success>true</success>'
            b"</result><result><success>false</success></result></Envelope>")

    # When the success flags are checked
    trace = one(SF_SUCCESS, CrmResponse(200, {}, body))

    # Then one failed record fails the rule
    assert (trace.passed, trace.detail) == (False, 'saw ["true", "false"]')


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "saw an empty body, not XML"),
        (b"<!DOCTYPE html><html><body>Bad gateway<br></body></html>", "saw a body that is not XML"),
        ((SOAP / "sf_partner_create_success.xml").read_bytes()[:150], "saw a body that is not XML"),
        (b'{"success": true}', "saw a body that is not XML"),
        (b"<html><body>ok</body></html>", "saw no match in a <html> document"),
    ],
)
def test_xml_element_on_a_body_that_is_not_the_expected_xml_fails_without_raising(
    body: bytes, detail: str
) -> None:
    trace = one(SF_SUCCESS, CrmResponse(200, {"Content-Type": "text/html"}, body))
    assert not trace.passed
    assert trace.detail.startswith(detail)


def test_xml_parsing_resolves_no_external_entity(tmp_path: Path) -> None:
    # Given a body whose DTD pulls in a local file through an external entity
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    body = (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
            "<r><v>&x;</v></r>").encode()

    # When an XPath reads the element that references it
    trace = one({"kind": "xml_element", "xpath": "/r/v", "equals": "TOP-SECRET"},
                CrmResponse(200, {}, body))

    # Then the file was never read into the document
    assert not trace.passed
    assert "TOP-SECRET" not in json.dumps(trace.seen)


# -- combining ------------------------------------------------------------------------

PIPEDRIVE_403 = {"success": False, "error": "Couldn't add the deal. Open deals limit reached.",
                 "error_info": "Please check developers.pipedrive.com"}


def test_all_is_decided_by_the_first_failing_rule_and_traces_every_rule() -> None:
    # Given three rules of which the second and third fail
    expectations = expect(
        {"kind": "body_contains", "value": "success"},
        {"kind": "json_field", "path": "success", "equals": True},
        {"kind": "json_field", "path": "data.id"},
    )

    # When Pipedrive's documented 403 is judged
    verdict = expectations.evaluate(json_response(403, PIPEDRIVE_403))

    # Then the first failure decides, and the trace still shows every rule
    assert verdict.outcome is Outcome.REJECTED
    assert verdict.reason == ("response mismatch: json_field success == true saw false "
                              "(CRM said Couldn't add the deal. Open deals limit reached.)")
    assert verdict.decided_by == "json_field success == true"
    assert [(t.passed, t.detail) for t in verdict.trace] == [
        (True, "saw a match at character 2"),
        (False, "saw false"),
        (False, 'saw no key "data" in $'),
    ]


def test_all_passing_is_accepted_and_decided_by_the_last_rule() -> None:
    expectations = expect({"kind": "status", "in": [201]}, {"kind": "json_field", "path": "id"})
    response = json_response(201, {"id": "001D000000IqhSLIAZ", "errors": [], "success": True})
    verdict = expectations.evaluate(response)
    assert (verdict.outcome, verdict.decided_by) == (Outcome.ACCEPTED, "json_field id exists")
    assert verdict.reason == "response matched all 2 rules"


def test_any_is_decided_by_the_first_passing_rule() -> None:
    # Given HubSpot's "inlineMessage or redirectUri"
    expectations = expect(
        {"kind": "json_field", "path": "inlineMessage"},
        {"kind": "json_field", "path": "redirectUri"},
        combine="any",
    )

    # When the redirect variant of its success answer is judged
    verdict = expectations.evaluate(json_response(200, {"redirectUri": "https://example.com/t"}))

    # Then the second rule decides; the first is in the trace as failed
    assert verdict.outcome is Outcome.ACCEPTED
    assert verdict.decided_by == "json_field redirectUri exists"
    assert [t.passed for t in verdict.trace] == [False, True]


def test_any_with_no_passing_rule_is_rejected_with_every_reason() -> None:
    expectations = expect(
        {"kind": "json_field", "path": "inlineMessage"},
        {"kind": "json_field", "path": "redirectUri"},
        combine="any",
    )
    verdict = expectations.evaluate(json_response(400, {"status": "error"}))
    assert verdict.outcome is Outcome.REJECTED
    assert verdict.decided_by == "combine any: no rule passed"
    assert verdict.reason == (
        'response mismatch: no rule passed (json_field inlineMessage exists saw no key '
        '"inlineMessage" in $; json_field redirectUri exists saw no key "redirectUri" in $)'
    )


# -- the CRM reference ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "response", "expected"),
    [
        ({"json": "data[0].details.id"}, json_response(201, ZOHO), "554023000000527002"),
        ({"json": "result"}, json_response(200, {"jsonrpc": "2.0", "id": 2, "result": 42}), "42"),
        ({"json": "data"}, json_response(201, ZOHO), None),  # a list is not an id
        ({"json": "nope"}, json_response(201, ZOHO), None),
        ({"header": "OData-EntityId", "pattern": r"\(([^)]+)\)"},
         CrmResponse(204, {"OData-EntityId": DYNAMICS_ID}), "7eb682f1-ca75-e511-80d4-00155d2a68d1"),
        ({"header": "Location"}, CrmResponse(201, {"Location": " /leads/7 "}), "/leads/7"),
        ({"header": "Location"}, CrmResponse(201), None),
        ({"regex": r"<id>(\w+)</id>"}, soap("sf_partner_create_success.xml"), "001R0000029IyDPIA0"),
        ({"regex": r"\d{18}"}, CrmResponse(200, {}, b"created 554023000000527002"),
         "554023000000527002"),
        ({"xpath": "//sf:id", "namespaces": SF}, CrmResponse(200, {}, b"<not xml"), None),
    ],
)
def test_reference_is_captured_from_an_accepted_answer(
    reference: dict[str, Any], response: CrmResponse, expected: str | None
) -> None:
    verdict = expect({"kind": "status", "not_in": ["4xx"]}, reference=reference).evaluate(response)
    assert verdict.outcome is Outcome.ACCEPTED
    assert verdict.crm_reference == expected


# -- plugin kinds ---------------------------------------------------------------------


class SoapFaultRule(Rule):
    """A plugin's kind: no SOAP fault was parsed by the connector."""

    kind: ClassVar[str] = "no_soap_fault"

    def evaluate(self, response: CrmResponse) -> RuleTrace:
        if response.fault:
            return self.make_trace(False, f"saw fault {response.fault['code']}", response.fault)
        return self.make_trace(True, "saw no fault")


class BrokenRule(Rule):
    kind: ClassVar[str] = "broken"
    threshold: int = 3

    def evaluate(self, response: CrmResponse) -> RuleTrace:
        raise KeyError("threshold_of_doom")


class KindsPlugin:
    @hookimpl
    def register_expectation_kinds(self, register: Any) -> None:
        register(SoapFaultRule)
        register(BrokenRule)


def test_a_plugin_kind_is_usable_once_registered() -> None:
    # Given a plugin that registers an expectation kind through the hook
    plugins = Plugins(load_entry_points=False, extra_plugins=[KindsPlugin()])

    # When expectations use it beside a built-in kind
    expectations = Expectations.parse(
        {"rules": [{"kind": "status", "in": [500]}, {"kind": "no_soap_fault"}]},
        plugins.expectation_kinds,
    )
    verdict = expectations.evaluate(
        CrmResponse(500, fault={"code": "sf:INVALID_SESSION_ID", "message": "Invalid Session ID"})
    )

    # Then it judged, and its trace is like any other rule's
    assert verdict.reason == "response mismatch: no_soap_fault saw fault sf:INVALID_SESSION_ID"
    assert set(KINDS) < set(plugins.expectation_kinds)


def test_a_plugin_rule_that_raises_fails_its_check_instead_of_crashing() -> None:
    # Given a plugin rule with a bug
    kinds = {**KINDS, "broken": BrokenRule}
    expectations = Expectations.parse(
        {"combine": "any", "rules": [{"kind": "broken", "threshold": 5},
                                     {"kind": "status", "in": [200]}]},
        kinds,
    )

    # When a response is judged
    verdict = expectations.evaluate(CrmResponse(200))

    # Then the broken rule is a failed trace entry naming it, and judging went on
    assert verdict.outcome is Outcome.ACCEPTED
    assert verdict.trace[0] == RuleTrace(
        "broken threshold=5", False, "saw the rule raise KeyError: 'threshold_of_doom'"
    )


# -- parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        {"combine": "any", "rules": [{"kind": "status", "in": [200, "2xx", "200-299"]},
                                     {"kind": "status", "not_in": ["4xx"]}]},
        {"combine": "all", "rules": [{"kind": "body_contains", "value": "ok", "ignore_case": True},
                                     {"kind": "body_not_contains", "value": "error"},
                                     {"kind": "regex", "pattern": "a[bc]", "negate": True}]},
        {"combine": "all", "rules": [{"kind": "json_field", "path": "$.a[0]", "equals": None},
                                     {"kind": "json_field", "path": "b", "in": [1, "x", True]},
                                     {"kind": "json_field", "path": "c", "exists": False}],
         "reference": {"json": "data[0].details.id"}},
        {"combine": "all", "rules": [{"kind": "header", "name": "X", "matches": "^a"},
                                     {"kind": "xml_element", "namespaces": SF,
                                      "xpath": "//sf:success", "equals": "true"}],
         "reference": {"header": "OData-EntityId", "pattern": r"\(([^)]+)\)"}},
    ],
)
def test_to_dict_round_trips_through_parse(raw: dict[str, Any]) -> None:
    parsed = Expectations.parse(raw, KINDS)
    assert parsed.to_dict() == raw
    assert Expectations.parse(parsed.to_dict(), KINDS) == parsed


def test_to_dict_normalises_what_was_given() -> None:
    raw = {"rules": [{"kind": "status", "in": ["2XX", "201", " 200 - 204 "]}]}
    parsed = Expectations.parse(raw, KINDS)
    assert parsed.to_dict() == {"combine": "all",
                                "rules": [{"kind": "status", "in": ["2xx", 201, "200-204"]}]}


@pytest.mark.parametrize("raw", [None, {}])
def test_no_expectations_use_the_default(raw: dict[str, Any] | None) -> None:
    default = {"rules": [{"kind": "status", "in": [204]}]}
    assert Expectations.parse(raw, KINDS, default=default).to_dict() == {
        "combine": "all", "rules": [{"kind": "status", "in": [204]}]}
    assert Expectations.parse(raw, KINDS).to_dict() == DEFAULT_EXPECTATIONS


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ({"rules": [{"kind": "status", "in": [200]}, {"kind": "regex", "pattern": "ok"},
                    {"kind": "regex", "pattern": "[a-"}]},
         "expectations.rules[2].pattern",
         "invalid regex: unterminated character set at position 0"),
        ({"rules": [{"kind": "json_field", "path": "data[0.code"}]},
         "expectations.rules[0].path", "invalid path: unexpected '[' at position 4"),
        ({"rules": [{"kind": "json_field", "path": "data..code"}]},
         "expectations.rules[0].path", "invalid path: expected a key after '.' at position 4"),
        ({"rules": [{"kind": "json_field", "path": ""}]},
         "expectations.rules[0].path", "invalid path: empty"),
        ({"rules": [{"kind": "xml_element", "xpath": "//sf:success["}]},
         "expectations.rules[0].xpath", "invalid XPath: Invalid expression"),
        ({"rules": [{"kind": "xml_element", "xpath": "//sf:success"}]},
         "expectations.rules[0].xpath",
         "invalid XPath: Undefined namespace prefix (map it in 'namespaces')"),
        ({"rules": [{"kind": "foo"}]}, "expectations.rules[0].kind",
         "unknown kind 'foo' (known: body_contains, body_not_contains, header, json_field, "
         "regex, status, xml_element)"),
        ({"rules": [{"in": [200]}]}, "expectations.rules[0].kind", "required"),
        ({"rules": [{"kind": "status", "in": [200], "colour": "red"}]},
         "expectations.rules[0].colour", "unknown key"),
        ({"rules": [{"kind": "body_contains"}]}, "expectations.rules[0].value", "required"),
        ({"combine": "most", "rules": [{"kind": "status", "in": [200]}]},
         "expectations.combine", "must be 'all' or 'any', not 'most'"),
        ({"combine": "any"}, "expectations.rules", "give a non-empty list of rules"),
        ({"rules": []}, "expectations.rules", "give a non-empty list of rules"),
        ({"rules": ["status"]}, "expectations.rules[0]", "must be an object with a 'kind'"),
        ({"rules": [{"kind": "status", "in": [200]}], "extra": 1}, "expectations.extra",
         "unknown key"),
        ({"rules": [{"kind": "status", "in": ["7xx"]}]}, "expectations.rules[0].in",
         "'7xx' is not a status: give 100-599, a class like '2xx' or a range like '200-299'"),
        ({"rules": [{"kind": "status"}]}, "expectations.rules[0]", "give 'in' or 'not_in'"),
        ({"rules": [{"kind": "json_field", "path": "a", "equals": 1, "exists": True}]},
         "expectations.rules[0]",
         "give at most one of equals, not_equals, in, exists (got equals, exists)"),
        ({"rules": [{"kind": "json_field", "path": "a", "in": "SUCCESS"}]},
         "expectations.rules[0].in", "give a non-empty list of values"),
        ({"rules": [{"kind": "status", "in": [200]}], "reference": {"json": "a", "regex": "b"}},
         "expectations.reference", "give exactly one of json, header, xpath, regex"),
        ({"rules": [{"kind": "status", "in": [200]}], "reference": {"header": "X", "pattern": "("}},
         "expectations.reference.pattern",
         "invalid regex: missing ), unterminated subpattern at position 0"),
        ({"rules": [{"kind": "status", "in": [200]}], "reference": {"json": "a b"}},
         "expectations.reference.json", "invalid path: unexpected ' ' at position 1"),
        ("status 2xx", "expectations", "must be an object"),
    ],
)
def test_bad_expectations_are_refused_naming_the_field(raw: Any, field: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Expectations.parse(raw, KINDS)
    assert str(caught.value) == f"{field}: {message}"
    assert caught.value.field == field


# -- paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("$", ()),
        ("success", ("success",)),
        ("$.data[0].code", ("data", 0, "code")),
        ("$[0]", (0,)),
        ("data[-1]", ("data", -1)),
        ("""a["odd key"]['it\\'s'].b""", ("a", "odd key", "it's", "b")),
        ("@odata.context", ("@odata", "context")),
    ],
)
def test_parse_path(path: str, parts: tuple[str | int, ...]) -> None:
    assert parse_path(path) == parts


@pytest.mark.parametrize("path", [".a", "a.", "a[", "a[x]", "a]", "a b", "a.[0]", '["open'])
def test_parse_path_refuses_what_is_not_a_path(path: str) -> None:
    with pytest.raises(ValueError, match="invalid path"):
        parse_path(path)


def test_resolve_path_never_raises_on_a_surprising_document() -> None:
    assert resolve_path([{"errorCode": "INVALID_FIELD"}], ("success",)) == (
        False, None, "saw $ is a list, not an object")
    assert resolve_path({"a": "text"}, ("a", 0)) == (False, None, "saw $.a is a string, not a list")
