"""The suite's own instruments do what the scenarios rely on: the forwarder really cuts
the database off and gives it back, the audit log sees every state change, and the
promise checks catch the faults they exist for."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from .forwarder import Forwarder
from .hostile_crm import Received
from .ledger_view import LedgerView, sqlalchemy_url
from .promises import check_promises
from .stack import Stack, _host_port, _through


def _query(url: str) -> int:
    with psycopg.connect(url, connect_timeout=2) as conn:
        return int(conn.execute("select 1").fetchone()[0])  # type: ignore[index]


@pytest.mark.postgres
def test_the_forwarder_cuts_every_connection_refuses_new_ones_and_comes_back(
    scratch_postgres: str,
) -> None:
    with Forwarder(_host_port(scratch_postgres)) as forwarder:
        url = _through(scratch_postgres, forwarder.port)
        # Given a connection through the forwarder
        held = psycopg.connect(url, connect_timeout=2)
        assert held.execute("select 1").fetchone() == (1,)

        # When it is cut
        forwarder.cut()

        # Then the open connection is broken and new ones are refused at once
        with pytest.raises(psycopg.OperationalError):
            held.execute("select 1")
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            _query(url)
        assert time.monotonic() - started < 1.5
        with pytest.raises(ConnectionRefusedError), socket.create_connection(
            ("127.0.0.1", forwarder.port), timeout=1
        ):
            pass

        # And once restored, on the same port, the database answers again
        forwarder.restore()
        assert _query(url) == 1
        assert forwarder.stats.reset >= 1
        [(cut_at, restored_at)] = forwarder.stats.outages
        assert restored_at is not None and restored_at > cut_at
        held.close()


@pytest.mark.postgres
def test_cut_for_restores_by_itself(scratch_postgres: str) -> None:
    with Forwarder(_host_port(scratch_postgres)) as forwarder:
        url = _through(scratch_postgres, forwarder.port)
        forwarder.cut_for(0.5)
        with pytest.raises(psycopg.OperationalError):
            _query(url)
        deadline = time.monotonic() + 5
        while forwarder.is_cut and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _query(url) == 1


def test_the_audit_log_sees_every_state_change_and_the_checks_catch_a_move_back(
    tmp_path: Path,
) -> None:
    # Given the embedded ledger with its audit triggers and one delivered delivery
    stack = Stack("sqlite", tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", None)
    try:
        form, _ = stack.integration("http://127.0.0.1:9/leads")
        [delivery] = stack.submit(form)
        engine = sa.create_engine(sqlalchemy_url(stack.database_url))
        with engine.begin() as conn:
            conn.execute(sa.text(
                "insert into attempts (delivery_id, number, started_at, duration_ms, outcome,"
                " reason, decided_by, exchanges, trace, claim, stale, lane, idempotency_key)"
                " select id, 1, created_at, 1, 'sending', '', '', '[]', '[]', 1, 0, 'worker',"
                " idempotency_key from deliveries where id = :id"), {"id": delivery})
            conn.execute(sa.text("update attempts set outcome = 'accepted'"))
            conn.execute(sa.text("update deliveries set state = 'delivered'"))
        key = stack.ledger.delivery(delivery)["idempotency_key"]
        crm = [Received("POST", "/leads", {"Idempotency-Key": key}, b"", "ok")]

        # Then the promises hold
        findings = check_promises(stack.ledger, crm, max_attempts=3)
        assert (findings.delivered, findings.crm_requests, findings.duplicates) == (1, 1, 0)

        # When a stale writer moves it back, or writes the verdict again
        with engine.begin() as conn:
            conn.execute(sa.text("update deliveries set state = 'pending'"))
            conn.execute(sa.text("update deliveries set state = 'delivered'"))
        log = stack.ledger.state_log(delivery)
        assert [(e["old_state"], e["new_state"]) for e in log][-2:] == [
            ("delivered", "pending"), ("pending", "delivered")]
        with pytest.raises(AssertionError, match="a settled delivery moved again"):
            check_promises(stack.ledger, crm, max_attempts=3)

        # And a second request at the CRM with only one attempt on record is caught
        with engine.begin() as conn:
            conn.execute(sa.text("delete from fault_state_log"))
        with pytest.raises(AssertionError, match="a send without its attempt"):
            check_promises(stack.ledger, crm * 2, max_attempts=3)
        with engine.begin() as conn:
            conn.execute(sa.text("update attempts set outcome = 'rejected'"))
        with pytest.raises(AssertionError, match="written more than once"):
            check_promises(stack.ledger, crm, max_attempts=3)
        engine.dispose()
    finally:
        stack.close()


def test_the_ledger_view_reads_without_holding_the_file(tmp_path: Path) -> None:
    view = LedgerView(f"sqlite:///{tmp_path / 'x.db'}")
    with view.engine.begin() as conn:
        conn.execute(sa.text("create table deliveries (id integer primary key, state text)"))
    assert view.states() == {}
    assert view.settled() is False
    view.close()
