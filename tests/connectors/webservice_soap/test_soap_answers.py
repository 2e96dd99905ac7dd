"""Derived defaults and allowed field names, on the real WSDLs' types.

No Marketo WSDL was obtained; its ``syncStatus`` shape (``status`` beside ``error``) is
checked on a field list written from Marketo's documented ``SyncStatus`` type only.
"""

from __future__ import annotations

import pytest
from soap_crm import SF_WSDL, WSDL_DIR, make_lead

import leadrelay.connectors.webservice_soap as soap_plugin
from leadrelay.connectors.webservice_soap.answers import AnswerField, derive
from leadrelay.engine.errors import ConfigError, RejectedError
from leadrelay.engine.plugins import Plugins


def test_a_marketo_shaped_sync_status_derives_a_not_failed_rule() -> None:
    fields = [AnswerField("result", "ResultSyncLead", True),
              AnswerField("result.leadId", "int"),
              AnswerField("result.syncStatus", "SyncStatus", True),
              AnswerField("result.syncStatus.leadId", "int"),
              AnswerField("result.syncStatus.status", "LeadSyncStatus"),
              AnswerField("result.syncStatus.error", "string")]

    derived = derive(fields)

    assert derived is not None
    assert derived["rules"][-1] == {"kind": "json_field", "path": "result.syncStatus.status",
                                    "not_equals": "FAILED"}
    assert derived["reason"] == ["result.syncStatus.error"]
    assert derived["reference"] == {"json": "result.syncStatus.leadId"}


def test_nothing_obvious_derives_nothing() -> None:
    assert derive([AnswerField("return", "string")]) is None


@pytest.fixture
def plugins() -> Plugins:
    # Local WSDLs are read from the fixtures only (wsdl_dirs), as in conftest.py.
    return Plugins({"webservice_soap": {"wsdl_dirs": [str(WSDL_DIR)]}},
                   load_entry_points=False, extra_plugins=[soap_plugin])


def partner(**extra: object) -> dict[str, object]:
    return {"preset": "salesforce_partner", "wsdl": str(SF_WSDL), "username": "u",
            "password": "p", "endpoint": "http://127.0.0.1:9/soap", **extra}


def test_allowed_fields_refuse_an_unpublished_name_when_saved(plugins: Plugins) -> None:
    with pytest.raises(ConfigError) as err:
        plugins.build("webservice_soap", partner(
            fields={"LastName": "last_name", "Emial": "email"},
            allowed_fields=["LastName", "Email", "Company"]))
    assert str(err.value) == ("config.fields: 'Emial' is not in allowed_fields; "
                              "did you mean Email?")


def test_allowed_fields_reject_a_lead_field_at_delivery_for_good(plugins: Plugins) -> None:
    from leadrelay.engine.secrets import Redactor
    from leadrelay.engine.transport import Transport

    connector = plugins.build("webservice_soap", partner(
        allowed_fields=["first_name", "last_name", "email"]))
    transport = Transport()
    try:
        with pytest.raises(RejectedError) as err:
            connector.send(make_lead(), transport.client(Redactor()))
    finally:
        connector.close()
        transport.close()
    assert str(err.value) == "field 'company' is not one the CRM accepts (allowed_fields)"
    assert err.value.final == "the connector webservice_soap: allowed_fields"
