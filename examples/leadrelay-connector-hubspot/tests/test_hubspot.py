"""What is particular to HubSpot Forms v3: the submission's shape, and HubSpot's answers.

The bodies are HubSpot's documented ones (tests/fixtures, see PROVENANCE.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from leadrelay.engine import ConfigError
from leadrelay.engine.testing import ContractEngine, FakeCrm, Reply, envelope_for

from leadrelay_connector_hubspot import HubSpotFormsConnector

pytest_plugins = ["leadrelay.engine.testing.plugin"]

HUBSPOT = json.loads((Path(__file__).parent / "fixtures" / "hubspot_forms_v3_submit.json")
                     .read_text())
PORTAL, FORM = "62515", "c3a1ef2e-75b6-4a2c-9d0e-1f2b3c4d5e6f"
LEAD = {"email": "jane.doe@example.com", "firstname": "Jane", "lastname": "Doe",
        "company": "ACME Corp"}


def connector(**config: Any) -> HubSpotFormsConnector:
    raw = {"portal_id": PORTAL, "form_guid": FORM, **config}
    return HubSpotFormsConnector(HubSpotFormsConnector.parse_config(raw))


@pytest.fixture
def engine(tmp_path: Path, fake_crm: FakeCrm) -> Iterator[ContractEngine]:
    """A real engine with one HubSpot integration whose API is ``fake_crm``."""
    engine = ContractEngine(tmp_path, "hubspot_forms")
    engine.integrate({"portal_id": PORTAL, "form_guid": FORM, "api_base": fake_crm.url})
    try:
        yield engine
    finally:
        engine.close()


def test_the_submission_has_the_documented_shape() -> None:
    # Given HubSpot's documented request, as a lead with the visitor's context
    example = HUBSPOT["request_example"]["body"]
    fields = {f["name"]: f["value"] for f in example["fields"]}
    lead = {**fields, "hutk": "a1b2c3", "ip_address": example["context"]["ipAddress"]}
    received = datetime.fromtimestamp(int(example["submittedAt"]) / 1000, UTC)

    # When the connector renders it
    envelope = envelope_for(lead)
    rendered = connector(page_uri=example["context"]["pageUri"],
                         page_name=example["context"]["pageName"]).render(
        type(envelope)(**{**envelope.__dict__, "received_at": received}))

    # Then it is the documented body, posted to the form's public endpoint
    assert rendered.method == "POST"
    assert rendered.url == (f"https://api.hsforms.com/submissions/v3/integration/submit/"
                            f"{PORTAL}/{FORM}")
    body = json.loads(rendered.body or b"")
    assert body["submittedAt"] == example["submittedAt"]
    assert body["fields"] == example["fields"]
    assert body["context"] == {**example["context"], "hutk": "a1b2c3"}
    assert rendered.headers == {"Content-Type": "application/json"}


def test_a_token_uses_the_authenticated_endpoint() -> None:
    # When a connector with a private app token renders a lead
    rendered = connector(access_token="pat-na1-0000-secret").render(envelope_for(LEAD))

    # Then it posts to the secure endpoint with the bearer token
    assert "/integration/secure/submit/" in rendered.url
    assert rendered.headers["Authorization"] == "Bearer pat-na1-0000-secret"


def test_values_are_sent_as_hubspot_text() -> None:
    # Given a lead with a multi-select, a checkbox, a number and an empty field
    lead = {"email": "a@b.example", "interests": ["crm", "api"], "consent": True,
            "employees": 42, "phone": None}

    # When it is rendered
    body = json.loads(connector().render(envelope_for(lead)).body or b"")

    # Then every value is text, options are ;-joined, and the empty field is left out
    assert {f["name"]: f["value"] for f in body["fields"]} == {
        "email": "a@b.example", "interests": "crm;api", "consent": "true", "employees": "42"}


@pytest.mark.parametrize("key", ["inlineMessage", "redirectUri"])
def test_either_documented_success_is_accepted(
    key: str, engine: ContractEngine, fake_crm: FakeCrm
) -> None:
    # Given HubSpot answering with an inline message, or a redirect
    shape = HUBSPOT["success_response"]
    body = shape["body"] if key == "inlineMessage" else shape["body_alternative"]
    fake_crm.reply(Reply(200, body, shape["headers"]))

    # When a lead is delivered, then it is accepted
    assert engine.deliver(LEAD).outcome == "accepted"


def test_a_validation_error_names_hubspots_error_type(
    engine: ContractEngine, fake_crm: FakeCrm
) -> None:
    # Given HubSpot refusing the email address
    fake_crm.reply(Reply.from_contract(HUBSPOT["failure_responses"][0]))

    # When a lead is delivered
    delivered = engine.deliver(LEAD)

    # Then it is rejected, and the reason carries HubSpot's errorType
    assert delivered.outcome == "rejected"
    assert "HubSpot said INVALID_EMAIL: Error in 'fields.email'. Invalid email address" in (
        delivered.result.reason)


def test_a_200_without_hubspots_keys_is_not_success(
    engine: ContractEngine, fake_crm: FakeCrm
) -> None:
    # Given a 200 that is not HubSpot's answer (a captive portal, a proxy page)
    fake_crm.reply(Reply(200, "<html>Welcome</html>", {"Content-Type": "text/html"}))

    # When a lead is delivered, then it is rejected by the body rule
    delivered = engine.deliver(LEAD)
    assert delivered.outcome == "rejected"
    assert "inlineMessage" in delivered.result.reason


@pytest.mark.parametrize(
    ("config", "field"),
    [({"portal_id": "abc"}, "portal_id"), ({"form_guid": "not-a-guid"}, "form_guid"),
     ({"object_type_id": "contacts"}, "object_type_id")],
)
def test_a_bad_config_names_the_field(config: dict[str, Any], field: str) -> None:
    # When a config has a malformed value, then the error names the field
    with pytest.raises(ConfigError, match=f"config.{field}"):
        connector(**config)
