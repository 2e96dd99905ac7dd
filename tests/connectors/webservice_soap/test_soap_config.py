"""Bad configurations are refused at configuration time, in one line naming what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from soap_crm import SF_WSDL, SUGAR_WSDL, SoapCrm

from leadrelay.connectors.webservice_soap import SoapConnector
from leadrelay.engine.errors import ConfigError
from leadrelay.engine.plugins import Plugins

SF_BASE = {"wsdl": str(SF_WSDL), "endpoint": "http://sf.test/"}
SUGAR_BASE = {"wsdl": str(SUGAR_WSDL), "endpoint": "http://crm.test/soap.php"}


def refused(plugins: Plugins, config: dict[str, Any]) -> str:
    """The one-line message a config is refused with (at build or at check)."""
    with pytest.raises(ConfigError) as info:
        connector = plugins.build("webservice_soap", config)
        try:
            connector.check()
        finally:
            connector.close()
    message = str(info.value)
    assert "\n" not in message
    assert "Traceback" not in message
    return message


# -- at build (no WSDL needed) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"wsdl": str(SF_WSDL)}, "config: give 'operation' (or a 'preset')"),
        ({"operation": "create"}, "config.wsdl: required"),
        ({**SF_BASE, "operation": "create", "colour": "red"}, "config.colour: unknown key"),
        ({**SF_BASE, "preset": "hubspot"}, "config.preset: Input should be"),
        ({"preset": "salesforce_partner", "wsdl": str(SF_WSDL), "username": "u"},
         "config: preset salesforce_partner needs 'username' and 'password'"),
        ({**SF_BASE, "operation": "create", "endpoint": "ftp://x"},
         "config.endpoint: must be an http:// or https:// URL"),
        ({**SF_BASE, "operation": "create", "arguments": {"a": "{unclosed"}},
         "config.arguments: arguments.a: unbalanced braces"),
        ({**SF_BASE, "operation": "create", "arguments": {"a": "{meta.colour}"}},
         "config.arguments: arguments.a: unknown {meta.colour}"),
        ({**SF_BASE, "operation": "create", "arguments": {"a": "{x|rot13}"}},
         "config.arguments: arguments.a: unknown filter 'rot13'"),
        ({**SF_BASE, "operation": "create", "arguments": {"a": {"$each_field": "x"}}},
         "config.arguments: arguments.a: $each_field is only allowed as a list item"),
        ({**SF_BASE, "operation": "create", "arguments": {"a": {"$any": "fields"}}},
         'config.arguments: arguments.a.$any: must be "$fields" or an object'),
        ({**SF_BASE, "operation": "create", "arguments": {"a": "{session.id}"}},
         "config.arguments: {session.id}: no login output 'id' (outputs: none"),
        ({**SF_BASE, "operation": "create", "arguments": {"a": "{auth.password}"}},
         "config.arguments: {auth.password}: 'password' is not set"),
        ({**SF_BASE, "operation": "create", "arguments": {"a": "{secrets.token}"}},
         "config.arguments: {secrets.token}: no secret 'token' in 'secrets'"),
        ({**SF_BASE, "operation": "create", "arguments": {"a": "{field.name}"}},
         "config.arguments: {field.name}: {field.*} is only available inside $each_field"),
        ({**SF_BASE, "operation": "create", "fields": {"Email": {"transform": "shout"}}},
         "config.fields.Email.transform: unknown transform 'shout'"),
        ({**SF_BASE, "operation": "create",
          "login": {"operation": "login", "outputs": {"sid": "result..x"}}},
         "config.login.outputs: output sid: invalid path"),
        ({**SF_BASE, "operation": "create",
          "login": {"operation": "login", "outputs": {"sid": "result.sessionId"},
                    "arguments": {"username": "{session.sid}"}}},
         "config.login.arguments: {session.sid}: the login step cannot use its own outputs"),
    ],
)
def test_refused_at_build(plugins: Plugins, config: dict[str, Any], message: str) -> None:
    assert refused(plugins, config).startswith(message)


# -- at check (against the WSDL) -------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({**SF_BASE, "operation": "createLead"},
         "config.operation: no operation 'createLead' in the WSDL (did you mean create"),
        ({**SF_BASE, "operation": "create", "arguments": {"sObject": []}},
         "config.arguments: operation create: argument sObject: no such element in create "
         "(it has: sObjects)"),
        ({**SF_BASE, "operation": "create", "arguments": {"sObjects": [{"type": "Lead",
                                                                        "Colour": "red"}]}},
         "config.arguments: operation create: argument sObjects.0.Colour: no such element in "
         "sObject (it has: type, fieldsToNull, Id; put other fields under $any)"),
        ({**SF_BASE, "operation": "create", "arguments": {"sObjects": [{"$any": "$fields"}]}},
         "config.arguments: operation create: argument sObjects.0.type: is required and not "
         "mapped"),
        ({**SF_BASE, "operation": "login", "arguments": {"username": ["a", "b"],
                                                         "password": "x"}},
         "config.arguments: operation login: argument username: takes one xsd:string, "
         "not a list"),
        ({**SF_BASE, "operation": "login", "arguments": {"username": {"first": "a"},
                                                         "password": "x"}},
         "config.arguments: operation login: argument username: takes a single xsd:string, "
         "not an object"),
        ({**SF_BASE, "operation": "create", "arguments": {"sObjects": "Lead"}},
         "config.arguments: operation create: argument sObjects: takes an object (sObject), "
         "not a single value"),
        ({**SF_BASE, "operation": "login", "arguments": {"username": "u", "password": "p",
                                                         "$any": "$fields"}},
         "config.arguments: operation login: argument $any: login has no xsd:any slot"),
        ({**SF_BASE, "operation": "query", "arguments": {"queryString": "x"},
          "headers": {"QueryOptions": {"batchSize": "lots"}}},
         "config.arguments: operation query: header QueryOptions.batchSize: 'lots' is not a "
         "valid xsd:int"),
        ({**SF_BASE, "operation": "query", "arguments": {"queryString": "x"},
          "headers": {"SessionHeadr": {"sessionId": "x"}}},
         "config.arguments: operation query: header SessionHeadr: no such element"),
        ({**SF_BASE, "operation": "create", "service": "Nope"},
         "config.service: no service 'Nope' in the WSDL (services: SforceService)"),
        ({**SF_BASE, "operation": "create", "port": "Nope"},
         "config.port: no port 'Nope' in service 'SforceService' (ports: Soap)"),
        ({**SUGAR_BASE, "operation": "set_entry", "arguments": {
            "session": "s", "module_name": "Leads", "name_value_list": {"name": "a"}}},
         "config.arguments: operation set_entry: argument name_value_list: takes a list "
         "(name_value_list)"),
        ({**SUGAR_BASE, "operation": "set_entry", "arguments": {"session": "s",
                                                                "module_name": "Leads"}},
         "config.arguments: operation set_entry: argument name_value_list: is required"),
        ({**SUGAR_BASE, "operation": "set_entry", "arguments": {
            "session": "s", "module_name": "Leads", "name_value_list": [{"nom": "a"}]}},
         "config.arguments: operation set_entry: argument name_value_list.0.nom: no such element "
         "in name_value (it has: name, value)"),
        ({"preset": "salesforce_partner", "wsdl": str(SF_WSDL), "username": "u",
          "password": "p", "login": {"operation": "loginn", "outputs": {"session_id": "x"}}},
         "config.login.operation: no operation 'loginn' in the WSDL (did you mean login"),
        ({"preset": "sugarcrm_v4_1", "wsdl": str(SUGAR_WSDL), "username": "u", "password": "p"},
         None),  # valid: the WSDL's address is used
    ],
)
def test_refused_at_check(plugins: Plugins, config: dict[str, Any], message: str | None) -> None:
    if message is None:
        connector = plugins.build("webservice_soap", config)
        connector.check()
        return
    assert refused(plugins, config).startswith(message)


def test_wsdl_that_does_not_parse(plugins: Plugins, tmp_path: Path) -> None:
    broken = tmp_path / "broken.wsdl"
    broken.write_text("<definitions><types></definitions>")
    assert refused(plugins, {"wsdl": str(broken), "operation": "create"}).startswith(
        "config.wsdl: not a usable WSDL: broken.wsdl is not well-formed XML")
    not_wsdl = tmp_path / "not.wsdl"
    not_wsdl.write_text("<html><body>hello</body></html>")
    assert refused(plugins, {"wsdl": str(not_wsdl), "operation": "create"}).startswith(
        "config.wsdl: not a usable WSDL")
    assert refused(plugins, {"wsdl": str(tmp_path / "missing.wsdl"), "operation": "x"}) == (
        f"config.wsdl: not a usable WSDL: {tmp_path / 'missing.wsdl'}: no such file")


def test_wsdl_url_that_fails(plugins: Plugins, soap_crm: SoapCrm, unused_port: int) -> None:
    assert refused(plugins, {"wsdl": soap_crm.url("/nothing.wsdl"), "operation": "x"}) == (
        f"config.wsdl: cannot load the WSDL: {soap_crm.url('/nothing.wsdl')}: HTTP 404")
    assert refused(plugins, {"wsdl": soap_crm.url("/broken.wsdl"), "operation": "x"}).startswith(
        "config.wsdl: not a usable WSDL: broken.wsdl is not well-formed XML")
    url = f"http://127.0.0.1:{unused_port}/x.wsdl"
    assert refused(plugins, {"wsdl": url, "operation": "x"}) == (
        f"config.wsdl: cannot load the WSDL: {url}: ConnectionError")


def test_a_valid_config_round_trips_through_the_engines_management(plugins: Plugins) -> None:
    # Given a valid Salesforce config, what is stored redacts the password
    from leadrelay.engine.secrets import redacted

    connector = plugins.build("webservice_soap", {
        "preset": "salesforce_partner", "wsdl": str(SF_WSDL), "username": "u",
        "password": "hunter2", "secrets": {"token": "t0k"}})
    assert isinstance(connector, SoapConnector)
    connector.check()
    shown = redacted(connector.config)
    assert "hunter2" not in repr(shown)
    assert "t0k" not in repr(shown)
    assert shown["preset"] == "salesforce_partner"


def test_plugins_toml_can_confine_uploaded_wsdls(tmp_path: Path) -> None:
    # Given plugins.toml allowing local WSDLs from one directory only
    import leadrelay.connectors.webservice_soap as soap_plugin

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "partner.wsdl").write_bytes(SF_WSDL.read_bytes())
    plugins = Plugins({"webservice_soap": {"wsdl_dirs": [str(uploads)]}},
                      load_entry_points=False, extra_plugins=[soap_plugin])

    # Then a WSDL there is fine, and any other path refused
    plugins.build("webservice_soap", {"wsdl": str(uploads / "partner.wsdl"),
                                      "operation": "create"}).check()
    assert refused(plugins, {"wsdl": str(SF_WSDL), "operation": "create"}) == (
        "config.wsdl: a local WSDL must be in one of the directories plugins.toml allows "
        "(wsdl_dirs)")
    assert refused(plugins, {"wsdl": str(uploads / ".." / ".." / "x.wsdl"),
                             "operation": "create"}).startswith("config.wsdl: a local WSDL")
