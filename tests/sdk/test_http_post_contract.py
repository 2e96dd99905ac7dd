"""The built-in ``http_post`` connector passes the connector contract, adopted as a third party
would.

The CRM is Pipedrive's Leads API, with its documented success and 403 bodies
(tests/fixtures/http-contracts).
"""

from __future__ import annotations

from typing import Any

import pytest

from crm_contracts import contracts
from leadrelay.engine.testing import ConnectorContract, FakeCrm, Reply

pytest_plugins = ["leadrelay.engine.testing.plugin"]

PIPEDRIVE = contracts()["pipedrive_add_lead"]


class TestHttpPostContract(ConnectorContract):
    connector_name = "http_post"
    sample_lead = {"first_name": "Jane", "last_name": "Doe", "company": "ACME Corp",
                   "email": "jane.doe@example.com"}
    success_reply = Reply.from_contract(PIPEDRIVE["success_response"])
    rejection_reply = Reply.from_contract(PIPEDRIVE["failure_responses"][1])

    @pytest.fixture
    def connector_config(self, fake_crm: FakeCrm) -> dict[str, Any]:
        return {
            "url": fake_crm.url_for("/api/v1/leads"),
            "body": "json",
            "fields": {"title": {"template": "{first_name} {last_name} - {company}"},
                       "person_id": {"const": 123}},
            "secret_query": {"api_token": "9c1b7e2f44d0a6b3e8f5"},
            "secret_headers": {"x-api-token": "9c1b7e2f44d0a6b3e8f5"},
        }
