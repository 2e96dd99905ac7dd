"""Exit codes and one-line errors: bad input is refused, named, and changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.ledger import Delivery, Integration, Lead
from leadrelay.engine.secrets import SecretBox

from .helpers import LEAD, Cli, add_integration


def count(engine: Leadrelay, model: type) -> int:
    with engine.ledger.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize(
    ("lead", "message"),
    [
        ('["not", "an", "object"]', "payload: a lead must be a JSON object, got list"),
        ('"text"', "payload: a lead must be a JSON object, got str"),
        ("null", "payload: a lead must be a JSON object, got null"),
        ('{"first_name": ', "payload: not valid JSON: Expecting value: line 1 column 16"),
        ("   ", "payload: empty: give the lead as a JSON object"),
        (json.dumps({"blob": "x" * 300_000}), "payload: 300011 bytes is over the 256 KB limit"),
        # Issue 10, case 6 and bad input the CLI once called "unexpected" (exit 1).
        ('{"address": {"city": "Pa\\u0000ris"}}',
         "payload.address.city: contains a NUL character"),
        ('{"city": "Montr\\udce9al"}',
         "payload.city: contains a lone surrogate (U+DCE9): not valid Unicode"),
        ('{"n": ' + "9" * 5000 + "}",
         "payload.n: a number of 5000 digits is outside JSON's safe range (±9007199254740991)"),
        ('{"n": ' + "9" * 50_000 + "}", "payload: a number of 50000 digits is too long to read"),
        ('{"n": 1e999}', "payload.n: Infinity is not a JSON number"),
        ('{"n": NaN}', "payload.n: NaN is not a JSON number"),
        ('{"deep": ' + "[" * 100_000 + "]" * 100_000 + "}", "payload: nested too deeply to read"),
        ('{"deep": ' + "[" * 40 + "]" * 40 + "}", "payload.deep[0][0][0][0][0][0][0][0][0][0][0]"),
    ],
)
def test_a_bad_lead_is_refused_and_nothing_is_written(
    cli: Cli, form: int, engine: Leadrelay, lead: str, message: str
) -> None:
    # Given a form with an active integration
    add_integration(cli, form, "https://crm.example/leads")

    # When a bad lead is submitted
    error = cli.error("submit", "--form", str(form), "--json", lead)

    # Then one line names what is wrong (exit 2), and no lead or delivery exists
    assert error.startswith(message)
    assert count(engine, Lead) == 0 and count(engine, Delivery) == 0


def test_a_lead_file_that_is_not_utf8_is_refused(
    cli: Cli, form: int, engine: Leadrelay, tmp_path
) -> None:
    lead = tmp_path / "lead.json"
    lead.write_bytes('{"city": "Montréal"}'.encode("latin-1"))
    assert cli.error("submit", "--form", str(form), "--file", str(lead)) == (
        "payload: not UTF-8 text (byte 15)")
    assert count(engine, Lead) == 0


def test_a_lead_for_an_unknown_form_is_refused(cli: Cli, engine: Leadrelay) -> None:
    assert cli.error("submit", "--form", "999", "--json", json.dumps(LEAD)) == (
        "form 999 does not exist")
    assert count(engine, Lead) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--connector", "nope", "--config", '{"url": "https://crm.example/"}'],
         "unknown connector 'nope' (available connectors: http_post"),
        (["--connector", "http_post", "--config", '{"url": "not a url"}'],
         "config.url: Input should be a valid URL, relative URL without a base"),
        (["--connector", "http_post", "--config", '{"url": "https://crm.example/", "bdy": 1}'],
         "config.bdy: unknown key"),
        (["--connector", "http_post", "--config", '{"url": "https://crm.example/"}',
          "--expectations", '{"rules": [{"kind": "regex", "pattern": "([a-z"}]}'],
         "expectations.rules[0].pattern: invalid regex: "),
        (["--connector", "http_post", "--config", '{"url": "https://crm.example/"}',
          "--expectations", '{"rules": [{"kind": "json_field", "path": "data[0"}]}'],
         "expectations.rules[0].path: invalid path"),
        (["--connector", "http_post", "--config", '{"url": "https://crm.example/"}',
          "--retry", '{"delays": ["soon"]}'],
         "retry.delays[0]: expected a duration like '30s', '2m' or '1h', got 'soon'"),
        # Issue 10, case 2: delays that once left deliveries claimed and resent forever.
        (["--connector", "http_post", "--config", '{"url": "https://crm.example/"}',
          "--retry", '{"delays": [1e14]}'],
         "retry.delays[0]: at most 30d, got 1e+14s"),
        (["--connector", "http_post", "--config", '{"url": "https://crm.example/"}',
          "--retry", '{"delays": ["2m", Infinity]}'],
         "retry.delays[1]: a duration must be a finite number of seconds"),
        (["--connector", "http_post", "--config", '{"url": "https://crm.example/"}',
          "--retry", '{"max_retry_after": NaN}'],
         "retry.max_retry_after: a duration must be a finite number of seconds"),
        # Issue 10, case 5: patterns only a backtracking engine runs.
        (["--connector", "http_post", "--config", '{"url": "https://crm.example/"}',
          "--expectations", '{"rules": [{"kind": "regex", "pattern": "(?<=id=)\\\\d+"}]}'],
         "expectations.rules[0].pattern: lookbehind ((?<=…), (?<!…)) is not supported: "
         "patterns run on a linear-time engine (RE2)"),
        (["--connector", "http_post", "--config", '{"url": "https://crm.example/"}',
          "--expectations", '{"rules": [{"kind": "regex", "pattern": "(\\\\w+) \\\\1"}]}'],
         "expectations.rules[0].pattern: backreferences"),
        (["--connector", "http_post_static_ip", "--config", '{"url": "https://crm.example/"}'],
         "static_ip_pool: no static-IP pool is configured; declare [proxies.default]"),
    ],
)
def test_a_bad_integration_is_refused_and_nothing_is_written(
    cli: Cli, form: int, engine: Leadrelay, args: list[str], message: str
) -> None:
    error = cli.error("integrations", "create", "--form", str(form), "--name", "CRM",
                      "--active", *args)
    assert error.startswith(message), error
    assert count(engine, Integration) == 0


def test_a_bad_update_changes_nothing(cli: Cli, form: int) -> None:
    integration = str(add_integration(cli, form, "https://crm.example/leads"))
    before = cli.json("integrations", "show", integration)
    error = cli.error("integrations", "update", integration, "--name", "New",
                      "--config", '{"url": "ftp://crm.example/"}')
    assert error.startswith("config.url: URL scheme should be 'http' or 'https'")
    assert cli.json("integrations", "show", integration) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inspect", "999"], "delivery 999 does not exist"),
        (["integrations", "show", "999"], "integration 999 does not exist"),
        (["integrations", "activate", "999"], "integration 999 does not exist"),
        (["forms", "create", "--account", "999", "--name", "F"], "account 999 does not exist"),
        (["accounts", "create", "--name", "A", "--owner-email", "nobody"],
         "owner_email: 'nobody' is not an email address"),
        (["accounts", "create", "--name", "A", "--owner-email", "a@b.test", "--plan", "gold"],
         "plan: unknown plan 'gold' (known: free, growth, scale, starter)"),
        (["deliveries", "--since", "2026-02-01", "--until", "2026-01-01"],
         "since: must not be after until"),
    ],
)
def test_unknown_objects_and_bad_values_are_usage_errors(
    cli: Cli, args: list[str], message: str
) -> None:
    assert cli.error(*args) == message


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["inspect", "abc"], "Invalid value for 'DELIVERY_ID': 'abc' is not an id: give a whole "
                             "number"),
        (["deliveries", "--state", "lost"], "Invalid value for '--state': 'lost' is not one of"),
        (["deliveries", "--since", "yesterday"], "Invalid value for '--since': 'yesterday' is"),
        (["integrations", "create", "--form", "1", "--name", "N", "--connector", "http_post",
          "--config", "{url: x}"], "Invalid value for '--config': not valid JSON: Expecting"),
        (["integrations", "create", "--form", "1", "--name", "N", "--connector", "http_post",
          "--config", "@/nonexistent/crm.json"],
         "Invalid value for '--config': cannot read /nonexistent/crm.json: No such file"),
        (["submit", "--json", "{}"], "Missing option '--form'."),
        (["submit", "--form", "1", "--json", "{}", "--file", "-"],
         "give the lead with --json or --file, not both"),
        (["deliveries", "--bogus"], "No such option '--bogus'."),
        (["nonsense"], "No such command 'nonsense'."),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(cli: Cli, args: list[str], start: str) -> None:
    error = cli.error(*args)
    assert error.startswith(start), error
    assert error.endswith("--help')")


@pytest.mark.parametrize(
    ("args", "start"),
    [
        # Ids past 64 bits once reached the database: OverflowError on SQLite,
        # NumericValueOutOfRange on PostgreSQL, both "unexpected" (exit 1).
        (["inspect", "99999999999999999999"], "Invalid value for 'DELIVERY_ID': "
         "99999999999999999999 is not an id: ids are whole numbers from 1 to 9223372036854775807"),
        (["inspect", "0"], "Invalid value for 'DELIVERY_ID': 0 is not an id"),
        (["inspect", "--", "-3"], "Invalid value for 'DELIVERY_ID': -3 is not an id"),
        (["submit", "--form", "99999999999999999999", "--json", "{}"],
         "Invalid value for '--form': 99999999999999999999 is not an id"),
        (["integrations", "show", "9223372036854775808"],
         "Invalid value for 'INTEGRATION_ID': 9223372036854775808 is not an id"),
        (["deliveries", "--integration", "99999999999999999999"],
         "Invalid value for '--integration': 99999999999999999999 is not an id"),
        (["replay", "--limit", "99999999999999999999", "--dry-run"],
         "Invalid value for '--limit': 99999999999999999999 is not in the range"),
        (["integrations", "create", "--form", "1", "--name", "N", "--connector", "http_post",
          "--config", '{"url": ' + "[" * 100_000 + "]" * 100_000 + "}"],
         "Invalid value for '--config': nested too deeply to read"),
    ],
)
def test_out_of_range_ids_and_unreadable_json_are_usage_errors(
    cli: Cli, args: list[str], start: str
) -> None:
    error = cli.error(*args)
    assert error.startswith(start), error


def test_a_biggest_id_is_looked_up_not_refused(cli: Cli) -> None:
    assert cli.error("inspect", "9223372036854775807") == (
        "delivery 9223372036854775807 does not exist")


def test_submit_with_the_broker_down_stores_the_lead_with_one_warning(
    cli: Cli, form: int, engine: Leadrelay, unused_port: int
) -> None:
    # Given an active integration, and LEADRELAY_BROKER_URL naming a Redis that is down
    add_integration(cli, form, "https://crm.example/leads")
    down = {"LEADRELAY_BROKER_URL": f"redis://127.0.0.1:{unused_port}/0"}

    # When a lead is submitted, by the command as its own process (logging as a user sees it)
    result = subprocess.run(
        [sys.executable, "-m", "leadrelay.cli", "submit", "--form", str(form),
         "--json", json.dumps(LEAD)],
        env={**cli.environ(), **down}, capture_output=True, text=True, timeout=120,
    )

    # Then it is stored with its delivery (exit 0), and one line says the sweeper sends it
    assert result.returncode == 0, result.stderr
    accepted = json.loads(result.stdout)
    assert len(accepted["delivery_ids"]) == 1
    assert result.stderr.splitlines() == [
        f"warning: announcing 1 deliveries failed; the sweeper will send them (ConnectionError: "
        f"Error 111 connecting to 127.0.0.1:{unused_port}. Connection refused.)"
    ]
    with engine.ledger.session() as s:
        delivery = s.get(Delivery, accepted["delivery_ids"][0])
        assert delivery is not None and delivery.state == "pending"


def test_a_database_other_than_sqlite_or_postgresql_is_a_config_error(cli: Cli) -> None:
    env = {"LEADRELAY_DATABASE_URL": "mysql://leadrelay:s3cret-pw@127.0.0.1/leadrelay",
           "LEADRELAY_SECRET_KEY": SecretBox.generate_key()}
    error = cli.error("accounts", "list", env=env)
    assert error == ("LEADRELAY_DATABASE_URL must be a sqlite:/// or postgresql:// URL (the "
                     "ledger runs on SQLite or PostgreSQL), got a 'mysql' URL")


def test_worker_and_scheduler_need_a_shared_broker(cli: Cli) -> None:
    for verb in ("worker", "scheduler"):
        assert cli.error(verb).startswith(f"{verb} needs LEADRELAY_BROKER_URL=redis://")


def test_a_shared_database_needs_the_secret_key(cli: Cli) -> None:
    env = {"LEADRELAY_DATABASE_URL": "postgresql://leadrelay@127.0.0.1:1/leadrelay",
           "LEADRELAY_SECRET_KEY": None}
    assert cli.error("accounts", "list", env=env).startswith(
        "LEADRELAY_SECRET_KEY is required with a shared database")


def test_secret_key_prints_a_usable_key(cli: Cli) -> None:
    key = cli("secret-key").stdout.strip()
    SecretBox(key)  # a valid Fernet key
    assert key != cli("secret-key").stdout.strip()


def test_bad_settings_are_usage_errors(cli: Cli) -> None:
    error = cli.error("deliveries", env={"LEADRELAY_BROKER_URL": "amqp://localhost"})
    assert error == ("LEADRELAY_BROKER_URL must be a redis:// URL "
                     "(unset it for the in-process broker)")
    error = cli.error("deliveries", env={"LEADRELAY_PLUGINS_FILE": "/nonexistent.toml"})
    assert error == "LEADRELAY_PLUGINS_FILE: /nonexistent.toml does not exist"


def test_an_unreachable_database_is_a_failure_without_its_password(cli: Cli) -> None:
    # Given a PostgreSQL URL with a password, where nothing listens
    url = "postgresql://leadrelay:s3cret-pw@127.0.0.1:1/leadrelay"

    # When any verb needs the ledger
    env = {"LEADRELAY_DATABASE_URL": url, "LEADRELAY_SECRET_KEY": SecretBox.generate_key()}
    error = cli.error("accounts", "list", code=1, env=env)

    # Then it fails with exit code 1, in one line that does not show the password
    assert error.startswith("database: OperationalError: ")
    assert "s3cret-pw" not in error


def test_bare_group_prints_its_help(cli: Cli) -> None:
    result = cli("integrations", code=2)
    assert "activate" in result.output and "deactivate" in result.output
