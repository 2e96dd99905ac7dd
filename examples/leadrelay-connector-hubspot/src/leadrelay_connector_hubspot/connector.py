"""HubSpot Forms API v3: one JSON submission per lead to a form of a HubSpot portal.

``POST {api_base}/submissions/v3/integration/submit/{portal_id}/{form_guid}``
with ``{"submittedAt", "fields": [{"objectTypeId", "name", "value"}], "context"}``.
With an ``access_token`` (a private app's token) the authenticated variant
``…/integration/secure/submit/…`` is used, with a bearer token: higher rate
limits, and fields need not be on the form.

HubSpot answers 200 with ``inlineMessage`` or ``redirectUri`` when it took the
submission, and 400 with ``{"status": "error", "errors": [{"errorType", "message"}]}``
when it did not; the connector adds the ``errorType`` values to the reason.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import pydantic
from leadrelay.engine import (
    Connector,
    ConnectorConfig,
    CrmResponse,
    Expectations,
    FieldMap,
    HttpClient,
    LeadEnvelope,
    Outcome,
    RenderedRequest,
    Verdict,
)

API_BASE = "https://api.hsforms.com"
#: HubSpot's object type for contacts, where form fields land by default.
CONTACT = "0-1"
#: Lead fields that go to the submission's ``context``, not to its fields.
CONTEXT_FIELDS = {"hutk": "hutk", "ip_address": "ipAddress", "page_uri": "pageUri",
                  "page_name": "pageName"}
_GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class HubSpotFormsConfig(ConnectorConfig):
    """A ``hubspot_forms`` integration's config. Unknown keys are refused."""

    #: The HubSpot account (``portalId``), digits only.
    portal_id: str = pydantic.Field(pattern=r"^[0-9]+$")
    #: The form's GUID, from the form's embed code.
    form_guid: str = pydantic.Field(pattern=_GUID)
    #: A private app's token: submits through the authenticated endpoint. A secret.
    access_token: pydantic.SecretStr | None = None
    #: HubSpot property → lead field (a FieldMap); empty sends the lead's fields as they are.
    fields: FieldMap = pydantic.Field(default_factory=FieldMap)
    #: The object the fields belong to (``0-1``: contacts).
    object_type_id: str = pydantic.Field(CONTACT, pattern=r"^[0-9]+-[0-9]+$")
    #: Shown in HubSpot as the page the form was submitted on.
    page_uri: str | None = None
    page_name: str | None = None
    #: Where the Forms API lives; tests point it at a local server.
    api_base: pydantic.HttpUrl = pydantic.HttpUrl(API_BASE)


class HubSpotFormsConnector(Connector):
    """Submits each lead to one HubSpot form."""

    name = "hubspot_forms"
    Config = HubSpotFormsConfig
    # The Forms API has no idempotency key: the contract's key check is skipped.
    supports_idempotency_key = False
    #: "Status 200 AND JSON has key inlineMessage or redirectUri" (HubSpot's contract).
    default_expectations: Mapping[str, Any] = {
        "combine": "all",
        "rules": [
            {"kind": "status", "in": [200]},
            {"kind": "regex", "pattern": r'"(inlineMessage|redirectUri)"\s*:'},
        ],
    }
    config: HubSpotFormsConfig

    def __init__(self, config: HubSpotFormsConfig,
                 settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(config, settings)
        secure = "secure/" if config.access_token else ""
        self._url = (f"{str(config.api_base).rstrip('/')}/submissions/v3/integration/{secure}"
                     f"submit/{config.portal_id}/{config.form_guid}")
        self._headers = {"Content-Type": "application/json"}
        if config.access_token is not None:
            self._headers["Authorization"] = f"Bearer {config.access_token.get_secret_value()}"

    def render(self, lead: LeadEnvelope) -> RenderedRequest:
        """The submission for ``lead``: its mapped fields, and its context."""
        context: dict[str, str] = {}
        for source, key in CONTEXT_FIELDS.items():
            if lead.fields.get(source):
                context[key] = str(lead.fields[source])
        if self.config.page_uri:
            context.setdefault("pageUri", self.config.page_uri)
        if self.config.page_name:
            context.setdefault("pageName", self.config.page_name)
        fields = self.config.fields.apply(
            {k: v for k, v in lead.fields.items() if k not in CONTEXT_FIELDS}
            if self.config.fields.passthrough else lead.fields,
            lead.metadata(),
        )
        body: dict[str, Any] = {
            "submittedAt": str(int(lead.received_at.timestamp() * 1000)),
            "fields": [
                {"objectTypeId": self.config.object_type_id, "name": name, "value": _value(v)}
                for name, v in fields.items() if v is not None
            ],
        }
        if context:
            body["context"] = context
        return RenderedRequest("POST", self._url, dict(self._headers),
                               json.dumps(body, separators=(",", ":")).encode())

    def send(self, lead: LeadEnvelope, http: HttpClient) -> CrmResponse:
        """Submit the lead."""
        return http.send(self.render(lead))

    def judge(self, response: CrmResponse, expectations: Expectations) -> Verdict:
        """The default judgement, with HubSpot's ``errorType`` values added to a rejection."""
        verdict = super().judge(response, expectations)
        if verdict.outcome is not Outcome.REJECTED:
            return verdict
        said = _errors(response)
        return dataclasses.replace(verdict, reason=f"{verdict.reason} (HubSpot said {said})"
                                   ) if said else verdict


def _value(value: Any) -> str:
    """A form value as HubSpot wants it: text, ``;`` between the options of a multi-select."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ";".join(_value(v) for v in value)
    return str(value)


def _errors(response: CrmResponse) -> str:
    """``INVALID_EMAIL: Error in 'fields.email'…`` from a HubSpot error body, or ``""``."""
    try:
        errors = response.json.get("errors")
    except (ValueError, AttributeError):
        return ""
    if not isinstance(errors, list):
        return ""
    said = [f"{e.get('errorType', '?')}: {e.get('message', '')}".strip(": ")
            for e in errors if isinstance(e, dict)]
    return "; ".join(said)[:300]
