"""How an import stores its batches on each backend (``imports/storing.py``): the leads
exactly as intake stores them, duplicates skipped by the database whether they come
from the ledger, the same batch, an earlier batch or another import running at the same
time, and deliveries created for the stored leads only, each with its own lead."""

from __future__ import annotations

import io
import threading
from collections import Counter
from typing import cast

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.imports import ImportOptions, ImportReport, parse_integrate, service, storing
from leadrelay.engine.imports.checking import Checked
from leadrelay.engine.imports.reading import SAMPLE_BYTES, ImportFile
from leadrelay.engine.intake import LeadIn
from leadrelay.engine.ledger import Delivery, Lead


def run(app: Leadrelay, form_id: int, data: bytes, integrate: str = "off",
        **options) -> ImportReport:  # type: ignore[no-untyped-def]
    prepared = app.imports.open(form_id, io.BytesIO(data), filename="leads.csv",
                                options=ImportOptions(integrate=parse_integrate(integrate),
                                                      **options))
    return prepared.run()


def raw_leads(app: Leadrelay) -> list[tuple]:  # type: ignore[type-arg]
    """Each lead's columns as the database holds them (payload and time as text)."""
    with app.ledger.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(
            "SELECT form_id, source, CAST(payload AS TEXT), CAST(received_at AS TEXT), "
            "import_id FROM leads ORDER BY id"))]


def test_an_imported_lead_is_stored_as_intake_stores_it(app: Leadrelay, form_id: int) -> None:
    payload = {"name": "Zoë ☃ 𝄞", "email": "a@x.test", "Quote": 'say "hi"\\'}
    app.intake.accept_many([LeadIn(form_id, payload, "import", "by-intake")], integrate=False)
    data = ('name,email,Quote\n"Zoë ☃ 𝄞",a@x.test,"say ""hi""\\"\n').encode()
    report = run(app, form_id, data)
    assert report.stored == 1
    by_intake, by_import = raw_leads(app)
    # Same columns, same text (key order and encoding included), but the import's id
    assert by_import[:4] == by_intake[:4]
    assert (by_intake[4], by_import[4]) == (None, report.id)
    with app.ledger.session() as s:
        stored = s.scalars(select(Lead).order_by(Lead.id)).all()
    assert [lead.payload for lead in stored] == [payload, payload]
    # In the order intake keeps: the file's on SQLite, jsonb's own on PostgreSQL
    assert list(stored[1].payload) == list(stored[0].payload)


def test_duplicates_from_the_ledger_the_batch_and_earlier_batches_are_skipped(
    app: Leadrelay, form_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "BATCH_ROWS", 3)
    run(app, form_id, b"email\nold@x.test\n")
    data = b"email\n" + b"".join(
        f"{e}@x.test\n".encode() for e in ["a", "b", "a", "old", "c", "b", "d", "d", "e"]
    )
    report = run(app, form_id, data)
    assert (report.rows, report.stored, report.duplicates) == (9, 5, 4)
    with app.ledger.session() as s:
        emails = list(s.scalars(select(Lead.payload["email"].as_string()).order_by(Lead.id)))
    assert emails == [f"{e}@x.test" for e in ["old", "a", "b", "c", "d", "e"]]
    assert app.imports.get(report.id).stored == 5


def test_integration_on_creates_deliveries_for_the_stored_leads_only(
    app: Leadrelay, form_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("A", "B"):
        app.manage.create_integration(form_id, name=name, connector="http_post",
                                      config={"url": f"http://127.0.0.1:9/{name}"},
                                      active=True)
    monkeypatch.setattr(service, "BATCH_ROWS", 4)
    run(app, form_id, b"email\nc@x.test\n", integrate="off")  # in the ledger already
    data = b"email\n" + b"".join(
        f"{e}@x.test\n".encode() for e in ["a", "b", "a", "c", "d", "e", "b", "f"]
    )
    report = run(app, form_id, data, integrate="on")
    assert (report.stored, report.duplicates, report.deliveries) == (5, 3, 10)
    with app.ledger.session() as s:
        rows = s.execute(select(Lead.payload["email"].as_string(), Delivery.integration_id)
                         .join(Delivery, Delivery.lead_id == Lead.id)
                         .where(Lead.import_id == report.id)).all()
    per_lead = Counter(email for email, _ in rows)
    assert per_lead == {f"{e}@x.test": 2 for e in ["a", "b", "d", "e", "f"]}
    assert len(set(rows)) == 10  # each lead once to each integration


def test_batches_split_into_statements_keep_each_delivery_with_its_lead_and_integration(
    app: Leadrelay, form_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite inserts a batch in statements of at most SQLITE_STATEMENT_ROWS rows, then
    # finds their ids: with three a statement, every id must still land on its own row
    monkeypatch.setattr(storing, "SQLITE_STATEMENT_ROWS", 3)
    targets = [app.manage.create_integration(form_id, name=name, connector="http_post",
                                             config={"url": f"http://127.0.0.1:9/{name}"},
                                             active=True).id for name in ("A", "B")]
    rows = [Checked(line=n + 2, external_id=f"e{n}", payload={"email": f"{n}@x.test"},
                    canonical=None) for n in range(7)]
    with app.ledger.transaction() as conn:
        now = app.clock.now()
        lead_ids = storing.insert_leads(conn, form_id, None, rows, now, ids=True)  # type: ignore[arg-type]
        pairs = [(lead, target) for lead in cast(list[int], lead_ids) for target in targets]
        created = storing.create_deliveries(conn, pairs, now, queued=True)
        again = storing.insert_leads(conn, form_id, None, rows[:4], now, ids=True)  # type: ignore[arg-type]
    assert again == []  # all in the ledger already
    with app.ledger.session() as s:
        emails = dict(s.execute(select(Lead.id, Lead.payload["email"].as_string())).all())
        stored = {d.id: (d.lead_id, d.integration_id) for d in s.scalars(select(Delivery))}
    assert [emails[i] for i in cast(list[int], lead_ids)] == [f"{n}@x.test" for n in range(7)]
    assert [(stored[d][1], d) for _, d in created] == created
    assert [stored[d] for _, d in created] == pairs


def test_two_imports_of_the_same_rows_at_once_store_each_row_once(
    app: Leadrelay, form_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "BATCH_ROWS", 50)
    data = b"email\n" + b"".join(f"u{i}@x.test\n".encode() for i in range(600))
    prepared = [
        app.imports.open(form_id, io.BytesIO(data), filename="same.csv",
                         options=ImportOptions(integrate=parse_integrate("off")))
        for _ in range(2)
    ]
    reports: list[ImportReport] = []
    errors: list[BaseException] = []

    def go(one) -> None:  # type: ignore[no-untyped-def]
        try:
            reports.append(one.run())
        except BaseException as exc:  # pragma: no cover - shown by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(one,)) for one in prepared]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sum(r.stored for r in reports) == 600
    assert all(r.stored + r.duplicates == 600 for r in reports)
    with app.ledger.session() as s:
        assert s.scalar(select(sa.func.count()).select_from(Lead)) == 600


def test_lines_are_read_whole_across_the_chunks_of_a_big_file() -> None:
    lines = [f"u{i}@x.test,{'n' * (i % 97)},\"two\r\nlines {i}\"" for i in range(4000)]
    text = "email,name,note\r\n" + "\r\n".join(lines) + "\r\n"
    assert len(text) > 4 * SAMPLE_BYTES
    rows = list(ImportFile(io.BytesIO(text.encode()), filename="big.csv").rows())
    assert len(rows) == 4000
    assert rows[1234].fields == {"email": "u1234@x.test", "name": "n" * (1234 % 97),
                                 "note": "two\r\nlines 1234"}
    assert rows[1234].line == 2 + 2 * 1234  # each row takes two lines
    assert all(row.error is None for row in rows)


def test_an_imported_leads_delivery_is_created_as_intake_creates_it(
    app: Leadrelay, form_id: int
) -> None:
    app.manage.create_integration(form_id, name="A", connector="http_post",
                                  config={"url": "http://127.0.0.1:9/a"}, active=True)
    app.intake.accept_many([LeadIn(form_id, {"email": "i@x.test"})], integrate=True,
                           queued=False)
    report = run(app, form_id, b"email\na@x.test\n", integrate="on")
    assert report.deliveries == 1
    with app.ledger.engine.connect() as conn:
        by_intake, by_import = [tuple(row) for row in conn.execute(sa.text(
            "SELECT integration_id, state, attempts_count, total_attempts, replays, claims, "
            "in_doubt, CAST(next_due_at AS TEXT), lease_until, crm_reference, last_outcome, "
            "last_reason, CAST(created_at AS TEXT), finished_at, length(idempotency_key) "
            "FROM deliveries ORDER BY id"))]
    assert by_import == by_intake


def test_a_bad_line_inside_a_row_rejects_that_row_only() -> None:
    # Line 3 closes the quote line 2 opened: the rows after it are read as they are
    data = (b'email,note\na@x.test,"one\nbad \xff line"\nb@x.test,\xfe\nc@x.test,fine\n'
            b'd@x.test,"two\nlines"\ne@x.test,"nul \x00 inside\n"\nf@x.test,last\n')
    rows = list(ImportFile(io.BytesIO(data), filename="x.csv", encoding="utf-8").rows())
    assert [(r.line, r.error is not None) for r in rows] == [
        (2, True), (4, True), (5, False), (6, False), (8, True), (10, False)]
    assert rows[0].error is not None and "byte 0xff" in rows[0].error
    assert rows[2].fields == {"email": "c@x.test", "note": "fine"}
    assert rows[3].fields == {"email": "d@x.test", "note": "two\nlines"}
    assert rows[4].error == "contains a NUL character"
    assert rows[5].fields == {"email": "f@x.test", "note": "last"}
    lines = b'{"a": 1}\n{"a": "\xff"}\n{"a": 3}\n\xfe\n{"a": 5}\n'
    found = list(ImportFile(io.BytesIO(lines), filename="x.jsonl", encoding="utf-8").rows())
    assert [(r.line, r.error is None) for r in found] == [
        (1, True), (2, False), (3, True), (4, False), (5, True)]
