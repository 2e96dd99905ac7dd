"""Bulk imports on each ledger backend: files read as operators export them (UTF-8 with
or without BOM, cp1252, semicolons, JSON Lines), rows rejected by line, no duplicates on
a re-run or a resume, integration off / on / throttled, and the bad input of issue 17."""

from __future__ import annotations

import io
import itertools
import tracemalloc

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select

from import_support import ROWS, interrupted_import
from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.errors import BadInput, NotFound
from leadrelay.engine.imports import ImportOptions, parse_integrate, service
from leadrelay.engine.imports.reading import MAX_LINE_BYTES
from leadrelay.engine.ledger import Delivery, Lead
from leadrelay.engine.priority import LIVE_WORK


def run(app: Leadrelay, form_id: int, data: bytes, *, filename: str = "leads.csv",
        scope: int | None = None, **options):  # type: ignore[no-untyped-def]
    if "integrate" in options and isinstance(options["integrate"], str):
        options["integrate"] = parse_integrate(options["integrate"])
    prepared = app.imports.open(form_id, io.BytesIO(data), filename=filename,
                                options=ImportOptions(**options), scope=scope)
    return prepared.run()


def leads(app: Leadrelay) -> list[dict]:
    with app.ledger.session() as s:
        return [lead.payload for lead in s.scalars(select(Lead).order_by(Lead.id))]


def count(app: Leadrelay, model) -> int:  # type: ignore[no-untyped-def]
    with app.ledger.session() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def add_crm(app: Leadrelay, form_id: int, url: str, **kw) -> int:  # type: ignore[no-untyped-def]
    return app.manage.create_integration(
        form_id, name=kw.pop("name", "CRM"), connector="http_post",
        config={"url": url, **kw.pop("config", {})}, active=True, **kw,
    ).id


@pytest.mark.parametrize(
    ("data", "encoding", "delimiter"),
    [
        ("email,name\na@x.test,Zoë\n".encode(), "utf-8", ","),
        (b"\xef\xbb\xbf" + "email;name\na@x.test;Zoë\n".encode(), "utf-8-sig", ";"),
        ("email\tname\r\na@x.test\tZoë\r\n".encode("cp1252"), "cp1252", "\t"),
        ('"email"|"name"\n"a@x.test"|"Zoë"\n'.encode("latin-1"), "cp1252", "|"),
    ],
    ids=["utf8-comma", "utf8-bom-semicolon", "cp1252-tab-crlf", "latin1-pipe-quoted"],
)
def test_encoding_and_delimiter_are_detected(
    app: Leadrelay, form_id: int, data: bytes, encoding: str, delimiter: str
) -> None:
    report = run(app, form_id, data, integrate="off")
    assert (report.encoding, report.delimiter) == (encoding, delimiter)
    assert leads(app) == [{"email": "a@x.test", "name": "Zoë"}]
    assert (report.rows, report.stored, report.rejected, report.state) == (1, 1, 0, "finished")


def test_json_lines_and_a_mapping_by_header_name(app: Leadrelay, form_id: int) -> None:
    data = b'{"Mail": "a@x.test", "Nom": "A"}\n\n{"Mail": "b@x.test", "Nom": "B"}\n'
    report = run(app, form_id, data, filename="x.jsonl", integrate="off",
                 mapping={"Mail": "email", "Nom": ""})
    assert report.format == "jsonl"
    assert leads(app) == [{"email": "a@x.test"}, {"email": "b@x.test"}]


def test_bad_rows_are_rejected_by_line_and_the_others_stored(
    app: Leadrelay, form_id: int
) -> None:
    app.manage.update_form(form_id, required_fields=["email"])
    data = (
        b"email,name\n"
        b"a@x.test,A\n"                 # 2: fine
        b",No email\n"                  # 3: required field missing
        b"c@x.test,C,extra\n"           # 4: more values than columns
        b'd@x.test,"multi\nline"\n'     # 5-6: one row over two lines
        b"e@x.test,\xff\xfe\n"          # 7: not UTF-8 (the sample was)
    )
    report = run(app, form_id, data, integrate="off", encoding="utf-8")
    assert report.rows == 5 and report.stored == 2 and report.rejected == 3
    reasons = {r["line"]: r["reason"] for r in report.rejections}
    assert set(reasons) == {3, 4, 7}
    assert "email" in reasons[3] and "required" in reasons[3]
    assert "3 values for the header's 2 columns" in reasons[4]
    assert "not valid utf-8" in reasons[7]
    assert {"email": "d@x.test", "name": "multi\nline"} in leads(app)


def test_a_rerun_of_the_same_file_stores_nothing_twice(app: Leadrelay, form_id: int) -> None:
    data = b"email,name\na@x.test,A\nb@x.test,B\na@x.test,A\n"
    first = run(app, form_id, data, integrate="off")
    again = run(app, form_id, data, integrate="off")
    assert (first.stored, first.duplicates) == (2, 1)
    assert (again.stored, again.duplicates) == (0, 3)
    assert count(app, Lead) == 2


def test_an_id_column_dedupes_by_id_even_when_the_row_changed(
    app: Leadrelay, form_id: int
) -> None:
    run(app, form_id, b"id,email\n7,a@x.test\n", integrate="off", id_column="id")
    report = run(app, form_id, b"id,email\n7,new@x.test\n8,\n", integrate="off",
                 id_column="id")
    assert (report.stored, report.duplicates) == (1, 1)
    assert count(app, Lead) == 2


def test_an_interrupted_import_resumes_without_duplicates(
    app: Leadrelay, form_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = interrupted_import(app, form_id, monkeypatch)
    assert broken.state == "failed" and "disk gone" in (broken.error or "")
    assert broken.stored == count(app, Lead) > 0  # the counts match the ledger

    # Taken up, it is running again, its error gone, before its first row is read
    taken_up = app.imports.open(form_id, io.BytesIO(ROWS), filename="big.csv",
                                options=ImportOptions(integrate=parse_integrate("off"),
                                                      resume=broken.id))
    assert taken_up.start() == broken.id
    shown = app.imports.get(broken.id)
    assert (shown.state, shown.error) == ("running", None)
    resumed = taken_up.run()
    assert resumed.id == broken.id and resumed.state == "finished"
    assert resumed.stored == count(app, Lead) == 35
    assert resumed.duplicates == 0


def test_integration_off_then_send_creates_the_deliveries(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/crm").respond_with_data("ok")
    add_crm(app, form_id, httpserver.url_for("/crm"))
    report = run(app, form_id, b"email\na@x.test\nb@x.test\n", integrate="off")
    assert report.deliveries == 0 and count(app, Delivery) == 0

    assert app.imports.send(report.id) == 2
    assert app.imports.send(report.id) == 0  # sent once
    app.deliver_due()
    shown = app.imports.get(report.id)
    assert (shown.deliveries, shown.delivered, shown.waiting) == (2, 2, 0)


def test_integration_on_delivers_as_usual(
    app: Leadrelay, form_id: int, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/crm").respond_with_data("ok")
    add_crm(app, form_id, httpserver.url_for("/crm"))
    report = run(app, form_id, b"email\na@x.test\nb@x.test\n", integrate="on")
    assert report.deliveries == 2
    assert len(app.deliver_due()) == 2
    assert app.imports.get(report.id).delivered == 2


def test_throttled_spreads_the_deliveries_at_the_rate_per_integration(
    app: Leadrelay, form_id: int, clock: FakeClock
) -> None:
    add_crm(app, form_id, "http://127.0.0.1:9/a", name="A")
    add_crm(app, form_id, "http://127.0.0.1:9/b", name="B")
    data = b"email\n" + b"".join(f"u{i}@x.test\n".encode() for i in range(10))
    report = run(app, form_id, data, integrate="throttled=2/s")
    assert report.integrate == "throttled=2/s" and report.deliveries == 20
    with app.ledger.session() as s:
        rows = list(s.execute(select(Delivery.integration_id, Delivery.next_due_at,
                                     Delivery.queued_for)))
    for integration_id in {i for i, _, _ in rows}:
        due = sorted(d for i, d, _ in rows if i == integration_id)
        gaps = {round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(due)}
        assert gaps == {0.5}
        assert due[0] == clock.now()
    assert all(q is None for _, _, q in rows)  # the sweeper announces each when due


def test_while_live_leads_come_in_an_import_stores_smaller_batches_on_sqlite(
    app: Leadrelay, form_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "SQLITE_BATCH_ROWS", 20)
    monkeypatch.setattr(service, "SQLITE_LIVE_BATCH_ROWS", 5)
    monkeypatch.setattr(service, "LIVE_WINDOW", 0.0)  # only live work in flight counts

    def batches(rows: int) -> list[int]:
        data = b"email\n" + b"".join(f"{rows}-{i}@x.test\n".encode() for i in range(rows))
        stored: list[int] = []
        app.imports.open(form_id, io.BytesIO(data), filename="leads.csv",
                         options=ImportOptions(integrate=parse_integrate("off"))
                         ).run(lambda report: stored.append(report.stored))
        return [b - a for a, b in itertools.pairwise([0, *stored])]

    quiet = batches(45)
    with LIVE_WORK.running():  # a live lead being written meanwhile
        busy = batches(12)
    if app.ledger.dialect == "sqlite":
        assert (quiet, busy) == ([20, 20, 5], [5, 5, 2])
    else:  # no single writer to wait for: batches of one size
        assert (quiet, busy) == ([45], [12])


def test_memory_stays_flat_whatever_the_file_size(
    app: Leadrelay, form_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of one size throughout, whatever live work an earlier test left behind
    monkeypatch.setattr(service, "LIVE_WINDOW", 0.0)

    def peak(rows: int) -> int:
        data = b"email,name\n" + b"".join(
            f"user{i}-{rows}@x.test,Name {i}\n".encode() for i in range(rows)
        )
        stream = io.BytesIO(data)
        prepared = app.imports.open(form_id, stream, filename="m.csv",
                                    options=ImportOptions(integrate=parse_integrate("off")))
        tracemalloc.start()
        try:
            prepared.run()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(2_000), peak(8_000)
    assert large < small * 1.5  # four times the rows, about the same peak


# -- bad input: one clear message, nothing stored -------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "it is empty"),
        (b"\n\r\n", "it is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "looks binary"),
        (b"jane@x.test,Jane\nbob@x.test,Bob\n", "does not look like a header"),
        (b"email,,name\na,b,c\n", "no name for column 2"),
        (b"email,email\na,b\n", "appears twice"),
        (b"\xff\xfee\x00m\x00", "UTF-16"),
    ],
    ids=["empty", "blank-lines", "binary", "no-header", "unnamed-column", "duplicate-column",
         "utf16"],
)
def test_a_file_that_cannot_be_imported_is_refused_before_anything_is_stored(
    app: Leadrelay, form_id: int, data: bytes, message: str
) -> None:
    with pytest.raises(BadInput, match=message):
        run(app, form_id, data, integrate="off")
    assert app.imports.list() == [] and count(app, Lead) == 0


@pytest.mark.parametrize(
    ("integrate", "message"),
    [("throttled=0/s", "more than 0"), ("throttled=-5/s", "more than 0"),
     ("throttled", "needs a rate"), ("throttled=fast", "like '5/s'"), ("sometimes", "off, on")],
)
def test_a_bad_integrate_mode_or_rate_is_refused(integrate: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        parse_integrate(integrate)


def test_a_mapping_to_a_field_the_form_does_not_have_is_refused(
    app: Leadrelay, form_id: int
) -> None:
    add_crm(app, form_id, "http://127.0.0.1:9/", config={"fields": {"Email": "email"}})
    with pytest.raises(BadInput, match="the form has no field 'emial'"):
        run(app, form_id, b"Mail\na@x.test\n", mapping={"Mail": "emial"})
    with pytest.raises(BadInput, match="column 'Courriel' is not in the file's header"):
        run(app, form_id, b"Mail\na@x.test\n", mapping={"Courriel": "email"})
    assert count(app, Lead) == 0 and app.imports.list() == []


def test_an_import_into_another_accounts_form_is_not_found(
    app: Leadrelay, form_id: int
) -> None:
    other = app.manage.create_account("Other", "o@other.test")
    with pytest.raises(NotFound):
        run(app, form_id, b"email\na@x.test\n", scope=other.id)
    report = run(app, form_id, b"email\na@x.test\n", integrate="off")
    with pytest.raises(NotFound):
        app.imports.get(report.id, scope=other.id)
    assert app.imports.list(scope=other.id) == []


def test_a_line_longer_than_the_limit_is_rejected_and_the_rest_read(
    app: Leadrelay, form_id: int
) -> None:
    data = b"email,note\na@x.test,short\nb@x.test," + b"x" * (MAX_LINE_BYTES + 10) + (
        b"\nc@x.test,after\n")
    report = run(app, form_id, data, integrate="off")
    assert (report.stored, report.rejected) == (2, 1)
    assert report.rejections[0]["line"] == 3 and "longer than" in report.rejections[0]["reason"]
