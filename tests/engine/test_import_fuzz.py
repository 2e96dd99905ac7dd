"""Property-based fuzzing of the bulk import: any file an operator can upload — CSV or JSON
Lines, any bytes, delimiters, quotes, encodings, line breaks — is stored and rejected row by
row, or refused with leadrelay's own error; never a crash, and the counts always add up to
what the ledger holds."""

from __future__ import annotations

import io
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.errors import BadInput
from leadrelay.engine.imports import ImportOptions
from leadrelay.engine.ledger import Lead

#: Cells that exercise the reader: separators, quotes, line breaks, NULs, non-ASCII.
CELL = st.text(alphabet=st.sampled_from(list("ab@.éë☃,;\t|\"'\r\n\x00 \ud800")),
               max_size=12)
DELIMITER = st.sampled_from([",", ";", "\t", "|"])
ENCODING = st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "latin-1", "utf-16"])


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """A CSV-ish file: a header, rows of any width, in an encoding (or not encodable)."""
    sep = draw(DELIMITER)
    header = draw(st.lists(st.one_of(st.just("email"), CELL), min_size=1, max_size=4))
    rows = draw(st.lists(st.lists(CELL, max_size=5), max_size=6))
    text = "\n".join(sep.join(cells) for cells in [header, *rows])
    encoding = draw(ENCODING)
    # A lone surrogate kept as bytes (not UTF-8 at all) where the codec can, "?" elsewhere.
    keep = encoding.startswith("utf") and draw(st.booleans())
    return text.encode(encoding, errors="surrogatepass" if keep else "replace")


@st.composite
def jsonl_files(draw: st.DrawFn) -> bytes:
    """JSON Lines: objects, other JSON values, and lines that are not JSON at all."""
    value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | CELL,
                         lambda inner: st.lists(inner, max_size=3)
                         | st.dictionaries(CELL, inner, max_size=3), max_leaves=6)
    lines = draw(st.lists(st.one_of(value.map(json.dumps), CELL), max_size=6))
    return "\n".join(lines).encode("utf-8", errors="surrogatepass")


def stored_by(app: Leadrelay, import_id: int) -> int:
    with app.ledger.session() as s:
        return s.scalar(select(func.count()).select_from(Lead)
                        .where(Lead.import_id == import_id)) or 0


def import_or_refuse(app: Leadrelay, form_id: int, data: bytes, filename: str) -> None:
    """Import ``data``; the property: leadrelay's error, or counts that add up."""
    try:
        prepared = app.imports.open(form_id, io.BytesIO(data), filename=filename,
                                    options=ImportOptions())
    except BadInput as exc:  # refused before a row is stored: one message, nothing written
        assert str(exc).strip()
        return
    try:
        report = prepared.run()
    except BadInput as exc:  # the file turned out bad midway: the import says so
        assert prepared.import_id is not None
        failed = app.imports.get(prepared.import_id)
        assert failed.state == "failed" and failed.error == str(exc)
        assert stored_by(app, failed.id) == failed.stored
        return
    assert report.rows == report.stored + report.duplicates + report.rejected
    assert len(report.rejections) <= report.rejected
    assert stored_by(app, report.id) == report.stored


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.one_of(csv_files(), st.binary(max_size=200)))
def test_any_csv_is_imported_row_by_row_or_refused(
    app: Leadrelay, form_id: int, data: bytes
) -> None:
    import_or_refuse(app, form_id, data, "leads.csv")


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=jsonl_files())
def test_any_json_lines_file_is_imported_row_by_row_or_refused(
    app: Leadrelay, form_id: int, data: bytes
) -> None:
    import_or_refuse(app, form_id, data, "leads.jsonl")
