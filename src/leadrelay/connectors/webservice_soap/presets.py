"""Known CRM flows, and the effective plan of one integration (its config over its preset).

A preset is plain data: the same templates, login step, fault codes and
per-operation expectations an operator could write by hand for a generic
WSDL. :func:`plan_for` merges the integration's own settings over it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .config import FaultPolicy, LoginStep, SoapConfig
from .wsdl import is_url

#: Expectations for any operation without its own: a 2xx answer that is not a SOAP fault.
GENERIC_EXPECTATIONS: Mapping[str, Any] = {
    "combine": "all",
    "rules": [{"kind": "status", "in": ["2xx"]}, {"kind": "soap_fault", "exists": False}],
}


@dataclass(frozen=True)
class OperationProfile:
    """What a known operation's answer means.

    :param expectations: its default expectations (raw form), with the reference and
        the ``reason`` paths where the answer explains a refusal.
    """

    expectations: Mapping[str, Any]


def _sf_save_result() -> OperationProfile:
    # Salesforce answers HTTP 200 with success=false for a refused record:
    # "no fault" is not success, the flag is.
    return OperationProfile(
        {
            "combine": "all",
            "rules": [
                {"kind": "status", "in": ["2xx"]},
                {"kind": "soap_fault", "exists": False},
                {"kind": "json_field", "path": "result[0].success", "equals": True},
            ],
            "reference": {"json": "result[0].id"},
            "reason": ["result[0].errors[0].statusCode", "result[0].errors[0].message",
                       "result[0].errors[0].fields"],
        },
    )


def _sugar_set_entry() -> OperationProfile:
    return OperationProfile(
        {
            "combine": "all",
            "rules": [
                {"kind": "status", "in": ["2xx"]},
                {"kind": "soap_fault", "exists": False},
                {"kind": "json_field", "path": "return.id", "not_equals": None},
                {"kind": "json_field", "path": "return.id", "not_equals": ""},
            ],
            "reference": {"json": "return.id"},
        },
    )


@dataclass(frozen=True)
class Preset:
    """A known CRM's flow."""

    name: str
    operation: str
    record_type: str
    arguments: Mapping[str, Any]
    headers: Mapping[str, Any]
    login: Mapping[str, Any]
    faults: FaultPolicy
    profiles: Mapping[str, OperationProfile] = field(default_factory=dict)


def _salesforce_partner(record_type: str) -> Preset:
    return Preset(
        name="salesforce_partner",
        operation="create",
        record_type=record_type,
        # Id is left out rather than sent as xsi:nil; every mapped field goes
        # into the sObject's xsd:any slot as <LastName>…</LastName>.
        arguments={"sObjects": [{"type": record_type, "Id": "$skip", "$any": "$fields"}]},
        headers={"SessionHeader": {"sessionId": "{session.session_id}"}},
        login={
            "operation": "login",
            "arguments": {"username": "{auth.username}", "password": "{auth.password}"},
            "outputs": {
                "session_id": "result.sessionId",
                "endpoint": "result.serverUrl",
                "ttl": "result.userInfo.sessionSecondsValid",
            },
        },
        faults=FaultPolicy(
            session=["INVALID_SESSION_ID"],
            throttled=["REQUEST_LIMIT_EXCEEDED"],
            transient=["SERVER_UNAVAILABLE", "UNKNOWN_EXCEPTION", "INVALID_QUERY_LOCATOR"],
        ),
        profiles={op: _sf_save_result() for op in ("create", "update", "upsert")},
    )


def _sugarcrm_v4_1(record_type: str) -> Preset:
    return Preset(
        name="sugarcrm_v4_1",
        operation="set_entry",
        record_type=record_type,
        arguments={
            "session": "{session.session_id}",
            "module_name": record_type,
            "name_value_list": [
                {"$each_field": {"name": "{field.name}", "value": "{field.value}"}},
            ],
        },
        headers={},
        login={
            "operation": "login",
            # SugarCRM wants the md5 hex of the password; zeep refuses an empty
            # name_value_list, so one real option is sent.
            "arguments": {
                "user_auth": {"user_name": "{auth.username}", "password": "{auth.password|md5}"},
                "application_name": "leadrelay",
                "name_value_list": [{"name": "notifyonsave", "value": "true"}],
            },
            "outputs": {"session_id": "return.id"},
        },
        # SugarCRM/SuiteCRM error 11: "Invalid Session ID".
        faults=FaultPolicy(session=["11"]),
        profiles={"set_entry": _sugar_set_entry()},
    )


def preset(name: str, record_type: str | None) -> Preset:
    """The preset called ``name`` for ``record_type`` (its default when None)."""
    if name == "salesforce_partner":
        return _salesforce_partner(record_type or "Lead")
    if name == "sugarcrm_v4_1":
        return _sugarcrm_v4_1(record_type or "Leads")
    raise KeyError(name)


@dataclass(frozen=True)
class Plan:
    """The effective description of one integration's calls."""

    operation: str
    arguments: Mapping[str, Any]
    headers: Mapping[str, Any]
    login: LoginStep | None
    faults: FaultPolicy
    endpoint: str | None
    profile: OperationProfile | None


def plan_for(config: SoapConfig) -> Plan:
    """Merge ``config`` over its preset (if any) into the :class:`Plan`."""
    if config.preset is None:
        return Plan(
            operation=config.operation or "",
            arguments=dict(config.arguments or {}),
            headers=dict(config.headers or {}),
            login=config.login,
            faults=config.faults,
            endpoint=config.endpoint,
            profile=None,
        )
    p = preset(config.preset, config.record_type)
    operation = config.operation or p.operation
    login = config.login or LoginStep.model_validate(p.login)
    faults = FaultPolicy(
        session=[*p.faults.session, *config.faults.session],
        transient=[*p.faults.transient, *config.faults.transient],
        throttled=[*p.faults.throttled, *config.faults.throttled],
        rejected=[*p.faults.rejected, *config.faults.rejected],
    )
    endpoint = config.endpoint
    if endpoint is None and p.name == "sugarcrm_v4_1" and is_url(config.wsdl):
        # SugarCRM serves its WSDL at soap.php?wsdl and answers at soap.php,
        # while the WSDL's own soap:address is often http://localhost/….
        parts = urlsplit(config.wsdl)
        endpoint = urlunsplit(parts._replace(query="", fragment=""))
    return Plan(
        operation=operation,
        arguments={**(p.arguments if operation == p.operation else {}), **(config.arguments or {})},
        headers={**p.headers, **(config.headers or {})},
        login=login,
        faults=faults,
        endpoint=endpoint,
        profile=p.profiles.get(operation),
    )
