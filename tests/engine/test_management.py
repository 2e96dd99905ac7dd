"""Setting things up: bad configuration is refused whole, naming the field; plans cap activation."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.errors import BadInput, ConfigError, PlanLimitError, UnknownConnector
from leadrelay.engine.ledger import Integration


def integrations(app: Leadrelay) -> int:
    with app.ledger.session() as s:
        return s.scalar(select(func.count()).select_from(Integration))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"connector": "carrier_pigeon"}, UnknownConnector,
         r"unknown connector .carrier_pigeon. \(available connectors: http_post"),
        ({"config": {"url": "not a url"}}, ConfigError, "config.url: Input should be a valid URL"),
        ({"config": {"url": "ftp://crm.example/leads"}}, ConfigError, "config.url: URL scheme"),
        ({"config": {"url": "http://crm.example", "colour": "red"}}, ConfigError,
         "config.colour: unknown key"),
        ({"config": {"url": "http://crm.example", "body": "xml"}}, ConfigError, "config.body"),
        ({"expectations": {"rules": [{"kind": "regex", "pattern": "(["}]}}, ConfigError,
         r"expectations.rules\[0\].pattern"),
        ({"expectations": {"rules": [{"kind": "json_field", "path": "a..b", "exists": True}]}},
         ConfigError, r"expectations.rules\[0\].path"),
        ({"retry": {"delays": ["soon"]}}, ConfigError, r"retry.delays\[0\]"),
        ({"name": ""}, BadInput, "name: required"),
        ({"realtime_budget": 0}, ConfigError, "realtime_budget"),
    ],
)
def test_bad_integrations_are_refused_and_nothing_is_written(
    app: Leadrelay, form_id: int, kwargs: dict, error: type[Exception], message: str
) -> None:
    base = {"name": "CRM", "connector": "http_post", "config": {"url": "http://crm.example/x"}}
    with pytest.raises(error, match=message):
        app.manage.create_integration(form_id, **{**base, **kwargs})
    assert integrations(app) == 0


def test_an_update_that_does_not_validate_changes_nothing(app: Leadrelay, form_id: int) -> None:
    integration = app.manage.create_integration(
        form_id, name="CRM", connector="http_post", config={"url": "http://crm.example/x"}
    )
    with pytest.raises(ConfigError):
        app.manage.update_integration(integration.id, config={"url": "nope"})
    after = app.manage.get_integration(integration.id)
    assert after.revision == 1 and after.config == integration.config


def test_an_update_bumps_the_revision_and_keeps_secrets_sealed(
    app: Leadrelay, form_id: int
) -> None:
    integration = app.manage.create_integration(
        form_id, name="CRM", connector="http_post",
        config={"url": "http://crm.example/x", "auth": {"type": "bearer", "token": "s3cr3t-tok"}},
    )
    assert "s3cr3t-tok" not in str(integration.config)
    updated = app.manage.update_integration(integration.id, retry={"max_attempts": 5})
    assert updated.revision == 2
    assert app.box.unseal(updated.config)["auth"]["token"] == "s3cr3t-tok"


def test_bad_accounts_and_forms_are_refused(app: Leadrelay) -> None:
    with pytest.raises(BadInput, match="owner_email: 'nobody' is not an email address"):
        app.manage.create_account("Acme", "nobody")
    with pytest.raises(BadInput, match="plan: unknown plan 'platinum'"):
        app.manage.create_account("Acme", "a@b.test", plan="platinum")
    with pytest.raises(BadInput, match="account 42 does not exist"):
        app.manage.create_form(42, "Contact")
    assert app.manage.accounts() == []


def test_the_plan_caps_active_integrations_only(app: Leadrelay) -> None:
    account = app.manage.create_account("Small", "o@small.test", plan="free")  # 1 active
    form = app.manage.create_form(account.id, "Contact")
    make = lambda n: app.manage.create_integration(  # noqa: E731
        form.id, name=n, connector="http_post", config={"url": "http://crm.example/x"})
    first, second = make("a"), make("b")  # inactive ones don't count

    app.manage.set_active(first.id, True)
    with pytest.raises(PlanLimitError, match="plan 'free' allows 1 active integrations and 1"):
        app.manage.set_active(second.id, True)

    app.manage.set_active(first.id, False)
    app.manage.set_active(second.id, True)
    assert [i.active for i in app.manage.integrations(form.id)] == [False, True]


def test_the_cap_holds_under_concurrent_activations(app: Leadrelay) -> None:
    account = app.manage.create_account("Small", "o@small.test", plan="starter")  # 5 active
    form = app.manage.create_form(account.id, "Contact")
    ids = [
        app.manage.create_integration(form.id, name=f"i{n}", connector="http_post",
                                      config={"url": "http://crm.example/x"}).id
        for n in range(12)
    ]
    barrier = threading.Barrier(len(ids))
    refused: list[int] = []

    def activate(integration_id: int) -> None:
        barrier.wait()
        try:
            app.manage.set_active(integration_id, True)
        except PlanLimitError:
            refused.append(integration_id)

    threads = [threading.Thread(target=activate, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    active = [i for i in app.manage.integrations(form.id) if i.active]
    assert len(active) == 5 and len(refused) == 7
