"""The HubSpot Forms connector passes leadrelay's connector contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from leadrelay.engine.testing import ConnectorContract, FakeCrm, Reply

pytest_plugins = ["leadrelay.engine.testing.plugin"]

HUBSPOT = json.loads((Path(__file__).parent / "fixtures" / "hubspot_forms_v3_submit.json")
                     .read_text())


class TestHubSpotFormsContract(ConnectorContract):
    connector_name = "hubspot_forms"
    sample_lead = {"email": "jane.doe@example.com", "firstname": "Jane", "lastname": "Doe",
                   "company": "ACME Corp"}
    success_reply = Reply.from_contract(HUBSPOT["success_response"])
    rejection_reply = Reply.from_contract(HUBSPOT["failure_responses"][0])

    @pytest.fixture
    def connector_config(self, fake_crm: FakeCrm) -> dict[str, Any]:
        return {"portal_id": "62515", "form_guid": "c3a1ef2e-75b6-4a2c-9d0e-1f2b3c4d5e6f",
                "access_token": "pat-na1-6c1f0e8a-3b7d-4e2a-9f5c", "api_base": fake_crm.url}
