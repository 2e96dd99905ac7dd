"""A generic SOAP operation against a real older WSDL (SugarCRM v1), through the whole engine.

No preset: the operator configures login and set_entry by hand. Every SugarCRM v1 answer
is HTTP 200; refusals are an ``error`` object inside it. The connector must not count
them as delivered, must judge the login like a delivery, and must log in again when
the answer says the session expired.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from soap_crm import LEAD_FIELDS, serve
from sugar_v1_crm import PASSWORD, PATH, USER, SugarV1Crm

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.errors import ConfigError

RETRY = {"max_attempts": 3, "delays": ["2m", "5m"], "jitter": 0}
SUGAR_NS = "http://www.sugarcrm.com/sugarcrm"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
SOAP_ENC = "http://schemas.xmlsoap.org/soap/encoding/"


@pytest.fixture
def sugar() -> Iterator[SugarV1Crm]:
    crm = SugarV1Crm()
    server, thread = serve(crm)  # type: ignore[arg-type]
    try:
        yield crm
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def config(crm: SugarV1Crm, **extra: Any) -> dict[str, Any]:
    return {
        "wsdl": crm.url(PATH + "?wsdl"),
        "operation": "set_entry",
        "username": USER, "password": PASSWORD,
        "login": {
            "operation": "login",
            "arguments": {"user_auth": {"user_name": "{auth.username}",
                                        "password": "{auth.password|md5}", "version": "1"},
                          "application_name": "leadrelay"},
            "outputs": {"session_id": "return.id"},
        },
        "arguments": {"session": "{session.session_id}", "module_name": "Leads",
                      "name_value_list": [{"$each_field": {"name": "{field.name}",
                                                           "value": "{field.value}"}}]},
        "session_expired": [{"kind": "json_field", "path": "return.error.number",
                             "equals": "11"}],
        **extra,
    }


def integrate(app: Leadrelay, form_id: int, crm: SugarV1Crm, **kw: Any) -> int:
    cfg = kw.pop("config", None) or config(crm)
    return app.manage.create_integration(form_id, name="Sugar v1", connector="webservice_soap",
                                         config=cfg, active=True, retry=RETRY, **kw).id


def deliver(app: Leadrelay, form_id: int) -> dict[str, Any]:
    delivery_id = app.submit(form_id, LEAD_FIELDS).delivery_ids[0]
    app.deliver_due()
    return app.inspect(delivery_id)


def test_derived_expectations_are_stored_and_shown(app: Leadrelay, form_id: int,
                                                   sugar: SugarV1Crm) -> None:
    from leadrelay.engine.report import describe_integration

    integration_id = integrate(app, form_id, sugar)

    shown = describe_integration(app.manage.get_integration(integration_id))
    assert shown["expectations"] == {
        "combine": "all",
        "rules": [{"kind": "status", "in": ["2xx"]}, {"kind": "soap_fault", "exists": False},
                  {"kind": "json_field", "path": "return.error.number", "in": ["0", 0]}],
        "reference": {"json": "return.id"},
        "reason": ["return.error.name", "return.error.description"],
    }


def test_success_is_delivered_with_the_record_id_and_the_envelope_fits_the_wsdl(
        app: Leadrelay, form_id: int, sugar: SugarV1Crm) -> None:
    integrate(app, form_id, sugar)

    obj = deliver(app, form_id)

    assert obj["delivery"]["state"] == "delivered"
    assert obj["delivery"]["crm_reference"] == "4b1d-0001"
    [login] = sugar.calls("login")
    body = login.xml().find("{http://schemas.xmlsoap.org/soap/envelope/}Body")
    call = body[0]
    assert (call.tag, [c.tag for c in call]) == (f"{{{SUGAR_NS}}}login",
                                                  ["user_auth", "application_name"])
    assert [c.tag for c in call[0]] == ["user_name", "password", "version"]
    assert call[0].get(XSI_TYPE) == "tns:user_auth"
    assert call[0][0].get(XSI_TYPE) == "xsd:string"
    [create] = sugar.calls("set_entry")
    array = create.xml().find(f".//{{{SUGAR_NS}}}set_entry/name_value_list")
    # rpc/encoded: the types the WSDL declares, on the wire, as nusoap servers expect
    assert array.get(XSI_TYPE) == "SOAP-ENC:Array"
    assert array.get(f"{{{SOAP_ENC}}}arrayType") == "tns:name_value[4]"
    assert array.nsmap["tns"] == SUGAR_NS and array.nsmap["SOAP-ENC"] == SOAP_ENC
    assert {i.get(XSI_TYPE) for i in array} == {"tns:name_value"}
    assert {i.findtext("name"): i.findtext("value") for i in array} == LEAD_FIELDS


def test_a_refusal_at_http_200_is_rejected_with_the_crm_words(
        app: Leadrelay, form_id: int, sugar: SugarV1Crm) -> None:
    sugar.set_entry_errors = ["40"]
    integrate(app, form_id, sugar)

    obj = deliver(app, form_id)

    attempt = obj["attempts"][0]
    assert attempt["outcome"] == "rejected"
    assert attempt["decided_by"] == 'json_field return.error.number in ["0", 0]'
    assert attempt["reason"] == ('response mismatch: json_field return.error.number in ["0", 0] '
                                 'saw "40" (CRM said Access Denied: You do not have access)')


def test_a_login_refused_at_200_is_a_failed_login_never_a_session(
        app: Leadrelay, form_id: int, sugar: SugarV1Crm) -> None:
    integrate(app, form_id, sugar, config=config(sugar, password="wrong-password"))

    obj = deliver(app, form_id)

    attempt = obj["attempts"][0]
    assert attempt["outcome"] == "rejected"
    assert attempt["reason"] == (
        'login (login) refused: response mismatch: json_field return.error.number in ["0", 0] '
        'saw "10" (CRM said Invalid Login: Login attempt failed please check the username and '
        'password)')
    assert sugar.calls("set_entry") == []  # never blamed on (nor sent to) the create step
    # the next attempt logs in again: the -1 was not kept as a session
    deliver(app, form_id)
    assert len(sugar.calls("login")) == 2


def test_a_session_expired_at_200_logs_in_again_once(
        app: Leadrelay, form_id: int, sugar: SugarV1Crm) -> None:
    integrate(app, form_id, sugar)
    deliver(app, form_id)
    sugar.expire_sessions()

    obj = deliver(app, form_id)

    assert obj["delivery"]["state"] == "delivered"
    assert [e["step"] for e in obj["attempts"][0]["exchanges"]] == [
        "set_entry", "login", "set_entry"]
    assert len(sugar.calls("login")) == 2


def test_a_session_refused_again_after_login_is_transient(
        app: Leadrelay, form_id: int, sugar: SugarV1Crm) -> None:
    sugar.set_entry_errors = ["11", "11"]
    integrate(app, form_id, sugar)

    obj = deliver(app, form_id)

    attempt = obj["attempts"][0]
    assert attempt["outcome"] == "transient"
    assert attempt["reason"].startswith(
        'CRM refused the session after logging in again: json_field return.error.number == "11"')
    assert len(sugar.calls("login")) == 2  # once per attempt, not in a loop


def test_a_generic_operation_without_an_obvious_verdict_needs_expectations(
        app: Leadrelay, form_id: int, sugar: SugarV1Crm) -> None:
    cfg = config(sugar, operation="get_server_time", arguments={})

    with pytest.raises(ConfigError) as err:
        integrate(app, form_id, sugar, config=cfg)

    message = str(err.value)
    assert message.startswith("expectations: operation get_server_time has no preset")
    assert "return (string)" in message
    assert '"reference": {"json": "return"}' in message
    assert app.manage.integrations(form_id) == []


def test_expectations_without_a_reference_are_refused_naming_the_fields(
        app: Leadrelay, form_id: int, sugar: SugarV1Crm) -> None:
    with pytest.raises(ConfigError) as err:
        integrate(app, form_id, sugar, expectations={
            "rules": [{"kind": "json_field", "path": "return.error.number", "equals": "0"}]})

    assert str(err.value) == (
        "expectations.reference: operation set_entry has no preset: say where its answer "
        "carries the new record's id (fields: return.id (string), return.error.number (string), "
        "return.error.name (string), return.error.description (string))")


def test_the_md5_of_the_password_never_shows(app: Leadrelay, form_id: int,
                                             sugar: SugarV1Crm) -> None:
    import hashlib

    integrate(app, form_id, sugar)
    md5 = hashlib.md5(PASSWORD.encode()).hexdigest()
    obj = deliver(app, form_id)
    sugar.set_entry_errors = ["40", "40", "40"]
    failed = deliver(app, form_id)

    shown = json.dumps([obj, failed])
    assert md5 in sugar.calls("login")[0].body.decode()  # it was sent
    assert md5 not in shown and PASSWORD not in shown
    for session in sugar.sessions:
        assert session not in shown


# -- signed calls: template functions ---------------------------------------------------

SIGNING_KEY = "k3y-0f-the-signature-9f8e"
SIGNED_AUTH = {"user_name": "{auth.username}", "version": "{meta.now}",
               "password": "{hmac_sha256(secrets.signing_key, meta.now, auth.username)}"}


def signed(crm: SugarV1Crm, auth: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    cfg = config(crm, secrets={"signing_key": SIGNING_KEY}, **extra)
    cfg["login"] = {**cfg["login"], "arguments": {**cfg["login"]["arguments"],
                                                  "user_auth": auth or SIGNED_AUTH}}
    return cfg


def test_a_signed_login_is_computed_per_request_and_accepted(
        app: Leadrelay, form_id: int, sugar: SugarV1Crm) -> None:
    sugar.signing_key = SIGNING_KEY
    integrate(app, form_id, sugar, config=signed(sugar))

    obj = deliver(app, form_id)

    assert obj["delivery"]["state"] == "delivered"
    login = sugar.calls("login")[0].xml()
    signature = login.findtext(".//user_auth/password")
    # the signature was sent, and is shown nowhere
    assert len(signature) == 64
    shown = json.dumps(obj)
    assert signature not in shown and SIGNING_KEY not in shown


@pytest.mark.parametrize(("password", "message"), [
    ("{hmac_sha1x(secrets.signing_key, meta.now)}",
     "config.login.arguments: {hmac_sha1x(secrets.signing_key, meta.now)}: unknown function "
     "'hmac_sha1x' (known: base64, hmac_sha1, hmac_sha256, md5, sha1, sha256)"),
    ("{hmac_sha256(secrets.signing_key)}",
     "config.login.arguments: {hmac_sha256(secrets.signing_key)}: hmac_sha256 takes 2 or more "
     "arguments, not 1"),
    ("{hmac_sha256(secrets.unset_key, meta.now)}",
     "config.login.arguments: {secrets.unset_key}: no secret 'unset_key' in 'secrets'"),
])
def test_bad_signature_templates_are_refused(app: Leadrelay, form_id: int, sugar: SugarV1Crm,
                                             password: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        integrate(app, form_id, sugar,
                  config=signed(sugar, {**SIGNED_AUTH, "password": password}))
    assert str(err.value) == message
    assert app.manage.integrations(form_id) == []


def test_hook_register_template_functions(sugar: SugarV1Crm) -> None:
    from soap_crm import make_lead

    import leadrelay.connectors.webservice_soap as soap_plugin
    from leadrelay.engine.hookspecs import hookimpl
    from leadrelay.engine.plugins import Plugins

    class Reverse:
        @hookimpl
        def register_template_functions(self, register: Any) -> None:
            register("reverse", lambda text: text[::-1], min_args=1, max_args=1)

    plugins = Plugins(load_entry_points=False, extra_plugins=[soap_plugin, Reverse()])
    cfg = config(sugar)
    cfg["arguments"] = {**cfg["arguments"], "module_name": "{reverse('sdaeL')}"}
    connector = plugins.build("webservice_soap", cfg)
    try:
        body = connector.render(make_lead()).body_text()
    finally:
        connector.close()
    assert ">Leads</module_name>" in body
    with pytest.raises(ConfigError, match="reverse takes 1 argument, not 2"):
        plugins.build("webservice_soap", {**cfg, "arguments": {
            **cfg["arguments"], "module_name": "{reverse('a', 'b')}"}})


def test_no_surface_shows_the_secret_or_what_is_derived_from_it(
        app: Leadrelay, form_id: int, sugar: SugarV1Crm, caplog: pytest.LogCaptureFixture
) -> None:
    import hashlib
    import logging

    from leadrelay.engine.report import DeliveryFilter, describe_integration

    caplog.set_level(logging.DEBUG)
    md5 = hashlib.md5(PASSWORD.encode()).hexdigest()
    integration_id = integrate(app, form_id, sugar)
    sugar.set_entry_errors = ["40"] * 3
    delivery_id = app.submit(form_id, LEAD_FIELDS).delivery_ids[0]
    for _ in range(3):
        app.deliver_due()
        app.clock.advance(600)  # type: ignore[attr-defined]
    assert app.inspect(delivery_id)["delivery"]["state"] == "not_integrated"

    from fastapi.testclient import TestClient

    from leadrelay.api import create_app

    account_id = app.manage.get_form(form_id).account_id
    key = {"Authorization": f"Bearer {app.keys.create(account_id, name='acme').secret}"}
    with TestClient(create_app(app), raise_server_exceptions=False) as client:
        api = [client.get(path, headers=key) for path in (
            f"/v1/deliveries/{delivery_id}", f"/v1/integrations/{integration_id}")]
    assert [r.status_code for r in api] == [200, 200]
    surfaces = {
        "api": [r.text for r in api],
        "inspect": app.inspect(delivery_id),
        "show": describe_integration(app.manage.get_integration(integration_id)),
        "dry-run": app.replay(DeliveryFilter(state="not_integrated"), dry_run=True),
        "logs": caplog.text,
    }
    login_body = sugar.calls("login")[0].body.decode()
    assert md5 in login_body  # it did go to the CRM
    for name, surface in surfaces.items():
        text = surface if isinstance(surface, str) else json.dumps(surface, default=repr)
        for value in (PASSWORD, md5, *sugar.sessions):
            assert value not in text, f"{name} shows a secret"


def test_a_rendered_request_masks_values_derived_from_secrets(sugar: SugarV1Crm) -> None:
    from soap_crm import make_lead

    import leadrelay.connectors.webservice_soap as soap_plugin
    from leadrelay.engine.plugins import Plugins
    from leadrelay.engine.secrets import MASK

    # Given a create step that carries a hash of the password (dry runs render the create)
    cfg = config(sugar)
    cfg["arguments"] = {**cfg["arguments"], "module_name": "{md5(auth.password, 'Leads')}"}
    connector = Plugins(load_entry_points=False, extra_plugins=[soap_plugin]).build(
        "webservice_soap", cfg)
    try:
        body = connector.render(make_lead()).body_text()
    finally:
        connector.close()

    # Then what a dry run, a preview or a test-send shows has the place, not the value
    import hashlib
    assert hashlib.md5((PASSWORD + "Leads").encode()).hexdigest() not in body
    assert f">{MASK}</module_name>" in body


def test_a_fault_is_rejected_with_its_words(app: Leadrelay, form_id: int,
                                            sugar: SugarV1Crm) -> None:
    sugar.set_entry_errors = ["fault"]
    integrate(app, form_id, sugar)

    attempt = deliver(app, form_id)["attempts"][0]

    assert (attempt["outcome"], attempt["reason"]) == (
        "rejected", "CRM refused the lead: SOAP fault Client: Invalid parameter: name_value_list")
