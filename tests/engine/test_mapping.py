"""Field mapping: lead fields to CRM field names, with transforms, defaults and requirements."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from leadrelay.engine.connector import Connector, ConnectorConfig, LeadEnvelope
from leadrelay.engine.errors import ConfigError, RejectedError
from leadrelay.engine.mapping import FieldMap
from leadrelay.engine.transport import HttpClient
from leadrelay.engine.wire import CrmResponse, RenderedRequest

LEAD = {
    "first_name": "Jane",
    "last_name": "Doe",
    "email": "  Jane.Doe@Example.COM ",
    "company": "ACME Corp",
    "phone": "+1 (415) 555-0100",
    "employees": "250",
    "consent": "on",
    "interests": ["crm", "api"],
    "utm": {"source": "newsletter"},
    "blank": "   ",
}


class WebToLeadConfig(ConnectorConfig):
    url: str
    fields: FieldMap = FieldMap()


class WebToLead(Connector):
    """A connector as a plugin writes one, to check the map inside a real config."""

    name = "web_to_lead_test"
    Config = WebToLeadConfig

    def render(self, lead: LeadEnvelope) -> RenderedRequest:
        raise NotImplementedError

    def send(self, lead: LeadEnvelope, http: HttpClient) -> CrmResponse:
        raise NotImplementedError


def mapped(spec: Any, fields: dict[str, Any] = LEAD) -> dict[str, Any]:
    return FieldMap.model_validate(spec).apply(fields)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"last_name": "last_name"}, {"last_name": "Doe"}),
        ({"LastName": "last_name", "Company": "company"},
         {"LastName": "Doe", "Company": "ACME Corp"}),
        ({"Email": {"from": "email", "transform": ["strip", "lower"]}},
         {"Email": "jane.doe@example.com"}),
        ({"email": {"transform": "strip"}}, {"email": "Jane.Doe@Example.COM"}),  # from = own name
        ({"LeadSource": {"const": "Web"}}, {"LeadSource": "Web"}),
        ({"Opt_In": {"const": None}}, {"Opt_In": None}),
        ({"Name": {"template": "{first_name} {last_name}"}}, {"Name": "Jane Doe"}),
        ({"Name": {"template": "{title} {last_name}"}}, {"Name": "Doe"}),
        ({"Note": {"template": "{{lead}} from {company}"}}, {"Note": "{lead} from ACME Corp"}),
        ({"Fax": "fax"}, {}),
        ({"Fax": {"from": "fax", "default": ""}}, {"Fax": ""}),
        ({"Notes": "blank"}, {}),
        ({"Notes": {"from": "blank", "default": "none"}}, {"Notes": "none"}),
        ({"Phone": {"from": "phone", "transform": "digits", "default": "n/a"}},
         {"Phone": "+14155550100"}),
        ({"Tags": {"from": "interests", "transform": "upper"}}, {"Tags": ["crm", "api"]}),
        ({"Tracking": {"from": "utm", "transform": "str"}}, {"Tracking": {"source": "newsletter"}}),
    ],
)
def test_apply(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    assert mapped(spec) == expected


@pytest.mark.parametrize(
    ("transform", "value", "expected"),
    [
        ("strip", "  a b  ", "a b"),
        ("lower", "ÉCOLE", "école"),
        ("upper", "fr", "FR"),
        ("title", "jane doe", "Jane Doe"),
        ("lower", 42, 42),  # text transforms leave numbers alone
        ("digits", "+1 (415) 555-0100", "+14155550100"),
        ("digits", "06 12 34 56 78", "0612345678"),
        ("digits", "\uff10\uff16\uff11\uff12", "0612"),  # full-width, from a phone keyboard
        ("digits", 4155550100, "4155550100"),
        ("str", 250, "250"),
        ("str", True, "true"),
        ("int", " 250 ", 250),
        ("int", "250.0", 250),
        ("int", 3.0, 3),
        ("float", "2.5", 2.5),
        ("float", 2, 2.0),
        ("bool", "yes", True),
        ("bool", "ON", True),
        ("bool", "1", True),
        ("bool", "true", True),
        ("bool", "no", False),
        ("bool", "maybe", False),
        ("bool", 0, False),
        ("truncate:5", "Jane Doe", "Jane "),
        (["strip", "truncate:3"], "  Jane", "Jan"),
        (["digits", "int"], "ext. 42", 42),
    ],
)
def test_transforms(transform: str | list[str], value: Any, expected: Any) -> None:
    result = mapped({"X": {"from": "x", "transform": transform}}, {"x": value})["X"]
    assert result == expected and type(result) is type(expected)


def test_a_value_emptied_by_its_transforms_counts_as_missing() -> None:
    # Given a phone field holding no digits at all
    fields = {"phone": "n/a"}

    # When it is mapped through "digits", with and without a default
    spec = {"from": "phone", "transform": "digits"}
    with_default = mapped({"Phone": {**spec, "default": "0"}}, fields)
    without = mapped({"Phone": spec}, fields)

    # Then the default stands in, or the field is left out
    assert (with_default, without) == ({"Phone": "0"}, {})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"Email": {"from": "email", "required": True}},
         "CRM field 'Email' is required but lead field 'email' is missing or empty"),
        ({"Company": {"from": "blank", "required": True}},
         "CRM field 'Company' is required but lead field 'blank' is missing or empty"),
        ({"Name": {"template": "{first_name} {last_name}", "required": True}},
         "CRM field 'Name' is required but its template rendered empty"),
    ],
)
def test_a_required_field_missing_rejects_the_lead(spec: dict[str, Any], message: str) -> None:
    # Given a lead without the field the CRM requires
    fields = {"blank": "  ", "phone": "1"}

    # When / Then it is rejected, naming the lead field and the CRM field
    with pytest.raises(RejectedError) as caught:
        mapped(spec, fields)
    assert str(caught.value) == message


def test_a_transform_that_cannot_apply_rejects_the_lead() -> None:
    with pytest.raises(RejectedError) as caught:
        mapped({"NumberOfEmployees": {"from": "employees", "transform": "int"}},
               {"employees": "about 250"})
    assert str(caught.value) == (
        "lead field 'employees' for CRM field 'NumberOfEmployees': cannot apply int to 'about 250'"
    )


@pytest.mark.parametrize("value", ["3.7", float("nan"), "inf"])
def test_int_never_truncates_or_invents(value: Any) -> None:
    with pytest.raises(RejectedError):
        mapped({"N": {"from": "n", "transform": "int"}}, {"n": value})


@pytest.mark.parametrize("spec", [None, {}])
def test_an_empty_map_sends_the_lead_as_it_is(spec: Any) -> None:
    field_map = FieldMap.model_validate(spec)
    assert field_map.passthrough
    assert field_map.apply(LEAD) == LEAD
    assert field_map.apply(LEAD) is not LEAD


def test_the_default_of_a_connector_config_is_the_pass_through_map() -> None:
    config = WebToLead.parse_config({"url": "https://webto.salesforce.com/servlet/servlet.WebToLead"})
    assert isinstance(config, WebToLeadConfig)
    assert config.fields.passthrough


def test_the_map_keeps_its_order_and_sends_only_what_it_names() -> None:
    result = mapped({"company": "company", "last_name": "last_name", "email": "email"})
    assert list(result) == ["company", "last_name", "email"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"Email": {"from": "email", "transform": "shout"}},
         "config.fields.Email.transform: unknown transform 'shout' (known: bool, digits, float, "
         "int, lower, str, strip, title, truncate:N, upper)"),
        ({"Email": {"from": "email", "transform": ["strip", "truncate"]}},
         "config.fields.Email.transform: truncate needs a length of at least 1, like truncate:80, "
         "not 'truncate'"),
        ({"Email": {"from": "email", "transform": "truncate:0"}},
         "config.fields.Email.transform: truncate needs a length of at least 1, like truncate:80, "
         "not 'truncate:0'"),
        ({"Email": {"from": "email", "transform": 3}},
         "config.fields.Email.transform: give a transform name or a list of them"),
        ({"Email": {"from": "email", "colour": "red"}}, "config.fields.Email.colour: unknown key"),
        ({"Email": {"from": "email", "const": "x"}},
         "config.fields.Email: give one of from, meta, const, template (got from and const)"),
        ({"Source": {"const": "Web", "default": "Other"}},
         "config.fields.Source: 'default' has no use with 'const'"),
        ({"Name": {"template": "{first_name"}},
         "config.fields.Name.template: invalid template: expected '}' before end of string"),
        ({"Name": {"template": "{first_name!r}"}},
         "config.fields.Name.template: invalid template: placeholder {first_name!r} must be a "
         "lead field name"),
        ({"Name": {"template": "Lead {}"}},
         "config.fields.Name.template: invalid template: placeholder {} must be a lead field name"),
        ({"Email": ""}, "config.fields.Email.from: String should have at least 1 character"),
        ({"Email": 5},
         "config.fields.Email: give a lead field name or an object with from, const or template"),
        ({"": "email"}, "config.fields: CRM field names must not be empty"),
        (["email"], "config.fields: give an object mapping CRM field names to lead fields"),
    ],
)
def test_bad_field_maps_are_refused_naming_the_field(fields: Any, message: str) -> None:
    # Given a connector config whose field map is wrong
    raw = {"url": "https://webto.salesforce.com/servlet/servlet.WebToLead", "fields": fields}

    # When / Then the connector refuses it in one line naming the field
    with pytest.raises(ConfigError) as caught:
        WebToLead.parse_config(raw)
    assert str(caught.value) == message


def test_a_dumped_map_validates_back_to_the_same_map() -> None:
    # Given a map using every kind of spec
    raw = {
        "LastName": "last_name",
        "Email": {"from": "email", "transform": ["strip", "lower"], "required": True},
        "Country": {"from": "country", "transform": "upper", "default": "FR"},
        "Description": {"from": "message", "transform": ["strip", "truncate:255"]},
        "LeadSource": {"const": "Web"},
        "Name": {"template": "{first_name} {last_name}"},
    }
    field_map = FieldMap.model_validate(raw)

    # When it is dumped (as a config is stored) and validated again
    dumped = field_map.model_dump(mode="json")
    again = FieldMap.model_validate(dumped)

    # Then it is the operator's raw form, and the same map
    assert dumped == {**raw, "Country": {**raw["Country"], "transform": ["upper"]}}
    assert again == field_map
    assert again.apply(LEAD) == field_map.apply(LEAD)


def test_the_json_schema_admits_the_string_shorthand() -> None:
    schema = WebToLeadConfig.model_json_schema()
    spec = schema["$defs"]["FieldSpec"]
    assert {"type": "string", "description": "the lead field to copy"} in spec["anyOf"]


def test_a_field_map_is_immutable() -> None:
    field_map = FieldMap.model_validate({"Email": "email"})
    with pytest.raises(pydantic.ValidationError):
        field_map.root = {}  # type: ignore[misc]


META = {"lead_id": 7, "delivery_id": 9, "idempotency_key": "lr-9-abc", "external_id": "ext-1",
        "form_id": 3, "source": "external", "received_at": "2026-12-03T10:00:00+00:00",
        "attempt": 2}


def test_meta_fields_map_the_engines_facts_of_the_lead() -> None:
    spec = {"external_id": {"meta": "idempotency_key"},
            "ref": {"meta": "external_id", "required": True},
            "Note": {"template": "lead {meta.lead_id} from {meta.source}: {first_name}"},
            "at": {"meta": "received_at"}}
    assert FieldMap.model_validate(spec).apply(LEAD, META) == {
        "external_id": "lr-9-abc", "ref": "ext-1", "Note": "lead 7 from external: Jane",
        "at": "2026-12-03T10:00:00+00:00"}


def test_a_required_meta_field_the_lead_lacks_rejects_it_naming_it() -> None:
    fmap = FieldMap.model_validate({"ref": {"meta": "external_id", "required": True}})
    with pytest.raises(RejectedError,
                       match=r"^CRM field 'ref' is required but the lead has no 'external_id'$"):
        fmap.apply(LEAD, {**META, "external_id": None})


@pytest.mark.parametrize(("spec", "message"), [
    ({"x": {"meta": "secret"}}, "unknown meta field 'secret'"),
    ({"x": {"meta": "lead_id", "from": "email"}}, "give one of from, meta, const, template"),
    ({"x": {"template": "{meta.nope}"}}, "unknown meta field {meta.nope}"),
])
def test_an_unknown_meta_field_is_refused_naming_the_known_ones(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(pydantic.ValidationError, match=message) as refused:
        FieldMap.model_validate(spec)
    assert "idempotency_key" in str(refused.value) or "give one of" in message


def test_the_envelope_gives_the_meta_fields_by_the_names_the_map_knows() -> None:
    from datetime import UTC, datetime

    from leadrelay.engine.mapping import META_FIELDS

    envelope = LeadEnvelope(fields={}, lead_id=1, delivery_id=2, idempotency_key="k",
                            form_id=3, source="form",
                            received_at=datetime(2026, 12, 3, tzinfo=UTC), external_id="e")
    assert tuple(envelope.metadata()) == META_FIELDS
