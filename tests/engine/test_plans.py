"""Plans as configuration, and a cap that holds under concurrent activations.

The races run real transactions at once: on PostgreSQL, threads over a pool of
connections; on SQLite, threads spread over several engines on the same file (each
its own connections and locks, as separate processes would be).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.errors import BadInput, ConfigError, PlanLimitError
from leadrelay.engine.management import describe_plan
from leadrelay.engine.settings import Settings

URL = "http://crm.example/leads"


@pytest.fixture
def settings(tmp_path: Path, database_url: str, make_settings) -> Settings:  # type: ignore[no-untyped-def]
    return make_settings(tmp_path, database_url)  # type: ignore[no-any-return]


@pytest.fixture
def engines(settings: Settings, clock: FakeClock) -> Iterator[list[Leadrelay]]:
    """Four engines on one ledger, sharing the secret key."""
    made = [Leadrelay(settings, clock=clock) for _ in range(4)]
    try:
        yield made
    finally:
        for e in made:
            e.close()


def _integrations(app: Leadrelay, form_id: int, n: int) -> list[int]:
    return [app.manage.create_integration(form_id, name=f"i{k}", connector="http_post",
                                          config={"url": URL}).id for k in range(n)]


def _race(engines: list[Leadrelay], jobs: list[Callable[[Leadrelay], None]]) -> list[str]:
    """Run every job at once, each on one of the engines; what each one raised."""
    barrier = threading.Barrier(len(jobs))
    outcomes: list[str] = [""] * len(jobs)

    def run(index: int) -> None:
        barrier.wait()
        try:
            jobs[index](engines[index % len(engines)])
            outcomes[index] = "ok"
        except PlanLimitError:
            outcomes[index] = "refused"
        except Exception as exc:  # reported by the assertion below
            outcomes[index] = f"error {type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return outcomes


def _active(app: Leadrelay, account_id: int) -> int:
    return int(app.manage.account_status(account_id)["active_integrations"])


def test_twenty_simultaneous_activations_leave_exactly_five_active(
    engines: list[Leadrelay],
) -> None:
    app = engines[0]
    account = app.manage.create_account("Small", "o@small.test", plan="starter")  # 5
    form = app.manage.create_form(account.id, "Contact")
    ids = _integrations(app, form.id, 20)

    outcomes = _race(engines, [lambda e, i=i: e.manage.set_active(i, True) for i in ids])

    assert sorted(outcomes) == ["ok"] * 5 + ["refused"] * 15, outcomes
    assert _active(app, account.id) == 5


def test_activations_over_two_accounts_are_capped_each_on_its_own(
    engines: list[Leadrelay],
) -> None:
    app = engines[0]
    ids: dict[int, list[int]] = {}
    for name in ("Acme", "Globex"):
        account = app.manage.create_account(name, f"o@{name.lower()}.test", plan="starter")
        form = app.manage.create_form(account.id, "Contact")
        ids[account.id] = _integrations(app, form.id, 10)

    jobs = [lambda e, i=i: e.manage.set_active(i, True)
            for pair in zip(*ids.values(), strict=True) for i in pair]
    outcomes = _race(engines, jobs)

    assert sorted(outcomes) == ["ok"] * 10 + ["refused"] * 10, outcomes
    assert [_active(app, a) for a in ids] == [5, 5]


def test_a_deactivation_racing_activations_never_lets_the_cap_be_passed(
    engines: list[Leadrelay],
) -> None:
    app = engines[0]
    account = app.manage.create_account("Small", "o@small.test", plan="starter")
    form = app.manage.create_form(account.id, "Contact")
    on = _integrations(app, form.id, 5)
    for i in on:
        app.manage.set_active(i, True)
    off = _integrations(app, form.id, 10)
    # Given a full account, when one integration is switched off while ten others are
    # switched on
    jobs = [lambda e: e.manage.set_active(on[0], False)]
    jobs += [lambda e, i=i: e.manage.set_active(i, True) for i in off]
    outcomes = _race(engines, jobs)
    # Then at most the one freed place was taken, and never more than five are active
    assert outcomes[0] == "ok"
    taken = outcomes[1:].count("ok")
    assert taken <= 1 and outcomes[1:].count("refused") == 10 - taken, outcomes
    assert _active(app, account.id) == 4 + taken <= 5


def test_a_second_activation_of_an_active_integration_changes_nothing(app: Leadrelay) -> None:
    account = app.manage.create_account("Small", "o@small.test", plan="free")
    form = app.manage.create_form(account.id, "Contact")
    (i,) = _integrations(app, form.id, 1)
    first = app.manage.set_active(i, True)
    again = app.manage.set_active(i, True)  # at the cap, yet not refused: idempotent
    assert again.active and again.revision == first.revision


def test_plans_are_created_and_changed_with_unlimited_allowed(app: Leadrelay) -> None:
    app.manage.create_plan("enterprise", "unlimited")
    app.manage.create_plan("tiny", 0)
    app.manage.update_plan("tiny", 2)
    shown = {p["name"]: p["max_active_integrations"]
             for p in map(describe_plan, app.manage.plans())}
    assert shown["enterprise"] == "unlimited" and shown["tiny"] == 2
    account = app.manage.create_account("Big", "o@big.test", plan="enterprise")
    form = app.manage.create_form(account.id, "Contact")
    for i in _integrations(app, form.id, 30):
        app.manage.set_active(i, True)
    status = app.manage.account_status(account.id)
    assert (status["plan"], status["plan_limit"], status["active_integrations"]) == (
        "enterprise", "unlimited", 30)


@pytest.mark.parametrize(("name", "limit", "message"), [
    ("minus", -1, "max_active_integrations: a whole number from 0"),
    ("half", 2.5, "max_active_integrations: a whole number from 0"),
    ("yes", True, "max_active_integrations: a whole number from 0"),
    ("", 3, "name: required"),
    ("starter", 3, "name: a plan named 'starter' exists"),
])
def test_bad_plans_are_refused_and_nothing_changes(
    app: Leadrelay, name: str, limit: object, message: str
) -> None:
    before = [describe_plan(p) for p in app.manage.plans()]
    with pytest.raises(BadInput, match=message):
        app.manage.create_plan(name, limit)
    with pytest.raises(BadInput, match="name: unknown plan 'platinum'"):
        app.manage.update_plan("platinum", 3)
    with pytest.raises(BadInput, match="max_active_integrations"):
        app.manage.update_plan("starter", -1)
    assert [describe_plan(p) for p in app.manage.plans()] == before


def test_plans_declared_in_a_file_are_created_and_updated(
    tmp_path: Path, settings: Settings, clock: FakeClock
) -> None:
    plans = tmp_path / "plans.toml"
    plans.write_text('[plans]\nstarter = 3\nenterprise = "unlimited"\n')
    app = Leadrelay(settings, clock=clock, plans_file=plans)
    try:
        shown = {p.name: p.max_active_integrations for p in app.manage.plans()}
        assert shown["starter"] == 3 and shown["enterprise"] is None and shown["free"] == 1
        events, _ = app.manage.audit_trail(None)
        assert {(e["actor"], e["action"]) for e in events} == {
            ("plans file", "plan.create"), ("plans file", "plan.update")}
        # When the file changes, the next read applies it
        plans.write_text('[plans]\nstarter = 7\nenterprise = "unlimited"\n')
        import os
        os.utime(plans, (1, 1))  # a new mtime even within the filesystem's resolution
        assert {p.name: p.max_active_integrations for p in app.manage.plans()}["starter"] == 7
    finally:
        app.close()


@pytest.mark.parametrize(("text", "message"), [
    ("[plans]\nfree = -2\n", r"plans.free: a whole number from 0"),
    ("[plans]\nfree = 'lots'\n", r"plans.free: a whole number from 0"),
    ("[plan]\nfree = 1\n", "plan: unknown key"),
    ("[plans\n", "not TOML"),
])
def test_a_bad_plans_file_is_refused_naming_the_key(
    tmp_path: Path, app: Leadrelay, text: str, message: str
) -> None:
    from leadrelay.engine.plans import PlansFile

    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        PlansFile.load(path)


def test_a_downgrade_deactivates_nothing_and_activates_nothing_new(
    app: Leadrelay, clock: FakeClock
) -> None:
    from pytest_httpserver import HTTPServer  # noqa: F401 - leads keep flowing below

    account = app.manage.create_account("Shrinking", "o@s.test", plan="starter")
    form = app.manage.create_form(account.id, "Contact")
    ids = _integrations(app, form.id, 4)
    for i in ids[:3]:
        app.manage.set_active(i, True)
    # When the account moves to a plan allowing one
    app.manage.update_account(account.id, plan="free")
    # Then the three stay active and accounts show says it is over its limit
    status = app.manage.account_status(account.id)
    assert (status["plan"], status["plan_limit"], status["active_integrations"],
            status["over_limit"], status["can_activate"]) == ("free", 1, 3, True, False)
    assert "deactivated" in status["note"] and "2 are deactivated" in status["note"]
    # and an activation is refused, saying why
    with pytest.raises(PlanLimitError, match="over its plan's limit; deactivate 3"):
        app.manage.set_active(ids[3], True)
    # and leads keep going to the three active ones
    accepted = app.submit(form.id, {"email": "a@b.test"})
    assert len(accepted.delivery_ids) == 3
    # Until it is under its limit again
    app.manage.set_active(ids[0], False)
    app.manage.set_active(ids[1], False)
    with pytest.raises(PlanLimitError):
        app.manage.set_active(ids[3], True)
    app.manage.set_active(ids[2], False)
    app.manage.set_active(ids[3], True)
    assert app.manage.account_status(account.id)["active_integrations"] == 1


def test_a_ledger_with_accounts_and_integrations_upgrades_to_unlimited_plans(
    database_url: str, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from leadrelay.engine.ledger import Ledger, Plan
    from leadrelay.engine.ledger.db import MIGRATIONS

    # Given a ledger at revision 0006 with a plan, an account, a form and an integration
    ledger = Ledger(database_url, migrate=False)
    if ledger.dialect == "postgresql":  # the session's database may hold a newer schema
        with ledger.engine.begin() as conn:
            conn.execute(sa.text("drop schema public cascade; create schema public"))
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with ledger.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0006")
        now = datetime.now(UTC).replace(tzinfo=None)
        with ledger.engine.begin() as conn:
            conn.execute(sa.text("insert into plans (id, name, max_active_integrations) "
                                 "values (1, 'free', 1)"))
            conn.execute(sa.text("insert into accounts (id, name, owner_email, plan_id, "
                                 "created_at) values (1, 'A', 'a@a.test', 1, :now)"),
                         {"now": now})
            conn.execute(sa.text("insert into forms (id, account_id, name, created_at, "
                                 "public_key) values (1, 1, 'F', :now, 'fk_x')"), {"now": now})
            conn.execute(sa.text(
                "insert into integrations (id, form_id, name, connector, config, realtime, "
                "realtime_budget, active, revision, created_at, updated_at) values "
                "(1, 1, 'I', 'http_post', '{}', false, 3.0, true, 1, :now, :now)"), {"now": now})
        # When it upgrades to the newest revision
        ledger.migrate()
        # Then its plan keeps its cap, and nothing is archived
        with ledger.session() as s:
            (plan,) = s.scalars(sa.select(Plan))
            assert (plan.max_active_integrations, plan.unlimited) == (1, False)
        with ledger.engine.connect() as conn:
            assert conn.execute(sa.text("select archived_at from integrations")).scalar() is None
    finally:
        ledger.dispose()
