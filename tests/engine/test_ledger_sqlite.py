"""The embedded ledger's ways with SQLite: WAL checkpoints in a thread of their own
rather than in a writer's commit, and reads that never wait for the writer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from leadrelay.engine.ledger import checkpoints
from leadrelay.engine.ledger.checkpoints import Checkpointer
from leadrelay.engine.ledger.db import Ledger
from leadrelay.engine.priority import BULK


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A ledger with a table of notes to write to."""
    one = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    with one.transaction() as conn:
        conn.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    try:
        yield one
    finally:
        one.dispose()


def _note(conn: Connection, body: str) -> None:
    conn.execute(text("INSERT INTO notes (body) VALUES (:body)"), {"body": body})


def _notes(ledger: Ledger) -> int:
    with ledger.reading() as s:
        return int(s.scalar(text("SELECT count(*) FROM notes")) or 0)


def test_commits_leave_the_wal_to_the_checkpointer(ledger: Ledger) -> None:
    assert ledger.checkpoints is not None and ledger.checkpoints.running
    with ledger.transaction() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        for n in range(50):
            _note(conn, f"note {n} " + "x" * 500)
    done = ledger.checkpoints.checkpoint()
    assert done.log_pages > 0  # the commits left their pages in the log...
    assert done.copied_pages == done.log_pages  # ...for the checkpoint to copy them all
    assert _notes(ledger) == 50


def test_a_log_written_while_it_was_copied_is_started_over_all_the_same(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a transaction writing while a checkpoint copies the log (as an import's
    # batches do, one after the other): its frames come after what the copy saw
    monkeypatch.setattr(checkpoints, "RESTART_PAGES", 1)
    checkpointer = ledger.checkpoints
    assert checkpointer is not None
    checkpointer.stop()  # this test runs the checkpoints itself
    with ledger.transaction() as conn:
        for n in range(40):
            _note(conn, f"before {n} " + "x" * 500)
    copied = threading.Event()

    def writing() -> None:
        with ledger.transaction() as conn:
            _note(conn, "begun before the copy")
            assert copied.wait(10)
            for n in range(40):
                _note(conn, f"during {n} " + "x" * 500)

    @contextmanager
    def hold() -> Iterator[object]:
        copied.set()  # the first pass is done: the writer commits, then we hold it
        with ledger.writer(BULK):
            yield None

    writer = threading.Thread(target=writing, daemon=True)
    with ledger.transaction() as conn:  # the writer begins while the log is not copied
        _note(conn, "first")
    writer.start()
    # When the checkpoint runs: a first pass, then a second with the writer held
    Checkpointer(ledger.engine, hold=hold).checkpoint()
    writer.join(10)
    with ledger.transaction() as conn:  # the next writer
        _note(conn, "next")
    # Then the log was started over: it holds the next writer's pages only
    left = Checkpointer(ledger.engine).checkpoint()
    assert 0 < left.log_pages < 10
    assert _notes(ledger) == 83


def test_the_checkpointer_stops_with_the_ledger(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    checkpoints = ledger.checkpoints
    assert checkpoints is not None and checkpoints.running
    ledger.dispose()
    assert not checkpoints.running


def test_an_in_memory_ledger_has_no_checkpointer() -> None:
    ledger = Ledger("sqlite://")
    try:
        assert ledger.checkpoints is None
    finally:
        ledger.dispose()


def test_a_read_does_not_wait_for_a_writer_and_sees_the_last_commit(ledger: Ledger) -> None:
    # Given a write transaction left open in another thread
    writing, finish = threading.Event(), threading.Event()

    def write() -> None:
        with ledger.transaction() as conn:
            _note(conn, "uncommitted")
            writing.set()
            assert finish.wait(10)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert writing.wait(10)
    # When a read runs meanwhile: it ends, and sees what was committed, not the rest
    counted: list[int] = []
    reader = threading.Thread(target=lambda: counted.append(_notes(ledger)), daemon=True)
    reader.start()
    reader.join(5)
    finish.set()
    writer.join(10)
    assert counted == [0]
    assert _notes(ledger) == 1
