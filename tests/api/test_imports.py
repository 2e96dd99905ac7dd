"""``/v1/imports`` through the ASGI client on each ledger backend: a multipart upload and
a streamed body, 202 with the import's id, its progress and report polled; bad input
answers 422 with nothing stored; another account's form or import answers 404."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer

from import_support import ROWS, interrupted_import
from leadrelay.engine.app import Leadrelay

from .conftest import Tenant, add_integration, error_of

CSV = b"\xef\xbb\xbfemail,name\nana@x.test,Ana\nnot-a-row,too,many\nbo@x.test,Bo\n"


def finished(client: TestClient, tenant: Tenant, import_id: int) -> dict[str, Any]:
    """Poll the import until its rows are all read (the upload answered before)."""
    deadline = time.monotonic() + 20
    while True:
        shown = client.get(f"/v1/imports/{import_id}", headers=tenant.headers)
        assert shown.status_code == 200, shown.text
        if shown.json()["state"] != "running" or time.monotonic() > deadline:
            return dict(shown.json())
        time.sleep(0.05)


def test_a_multipart_upload_is_imported_and_its_report_polled(
    client: TestClient, acme: Tenant
) -> None:
    answer = client.post("/v1/imports", headers=acme.headers,
                         params={"form_id": acme.form_id, "integrate": "off"},
                         files={"file": ("export.csv", CSV, "text/csv")})
    assert answer.status_code == 202, answer.text
    report = finished(client, acme, answer.json()["id"])
    assert report["filename"] == "export.csv" and report["encoding"] == "utf-8-sig"
    assert (report["rows"], report["stored"], report["rejected"]) == (3, 2, 1)
    assert report["rejections"] == [
        {"line": 3, "reason": "3 values for the header's 2 columns"}]
    listed = client.get("/v1/imports", headers=acme.headers).json()
    assert [i["id"] for i in listed] == [report["id"]]


def test_a_streamed_body_with_a_mapping_and_send_later(
    client: TestClient, engine: Leadrelay, acme: Tenant, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/crm").respond_with_data("ok")
    add_integration(client, acme, httpserver.url_for("/crm"))
    body = b'{"Mail": "a@x.test"}\n{"Mail": "b@x.test"}\n'
    answer = client.post(
        "/v1/imports", headers={**acme.headers, "Content-Type": "application/x-ndjson"},
        params={"form_id": acme.form_id, "integrate": "off", "map": "Mail=email"},
        content=body,
    )
    assert answer.status_code == 202, answer.text
    report = finished(client, acme, answer.json()["id"])
    assert report["format"] == "jsonl" and report["stored"] == 2
    sent = client.post(f"/v1/imports/{report['id']}/send", headers=acme.headers, json={})
    assert sent.json() == {"import_id": report["id"], "deliveries_created": 2}
    engine.deliver_due()
    again = client.get(f"/v1/imports/{report['id']}", headers=acme.headers).json()
    assert (again["deliveries"], again["delivered"], again["waiting"]) == (2, 2, 0)


def test_bad_input_answers_422_and_stores_nothing(
    client: TestClient, engine: Leadrelay, acme: Tenant
) -> None:
    def refused(content: bytes, **params: Any) -> dict[str, Any]:
        answer = client.post("/v1/imports", headers={**acme.headers,
                                                      "Content-Type": "text/csv"},
                             params={"form_id": acme.form_id, **params}, content=content)
        assert answer.status_code == 422, answer.text
        return error_of(answer)

    assert "it is empty" in refused(b"")["message"]
    assert "looks binary" in refused(b"\x00\x01\x02binary\x00")["message"]
    assert "does not look like a header" in refused(b"a@x.test,A\n")["message"]
    assert "more than 0" in refused(b"email\na@x.test\n", integrate="throttled=0/s")["message"]
    assert "more than 0" in refused(b"email\na@x.test\n",
                                    integrate="throttled=-2/min")["message"]
    assert refused(b"email\na@x.test\n", map="Mail=email")["field"] == "map"
    upload = client.post("/v1/imports", headers=acme.headers, params={"form_id": acme.form_id},
                         files={"other": ("x.csv", b"email\n", "text/csv")})
    assert upload.status_code == 422 and error_of(upload)["field"] == "file"
    assert client.get("/v1/imports", headers=acme.headers).json() == []


def test_another_accounts_form_and_import_answer_404(
    client: TestClient, acme: Tenant, globex: Tenant
) -> None:
    answer = client.post("/v1/imports", headers={**globex.headers, "Content-Type": "text/csv"},
                         params={"form_id": acme.form_id}, content=b"email\na@x.test\n")
    assert answer.status_code == 404 and error_of(answer)["field"] == "form_id"
    mine = client.post("/v1/imports", headers={**acme.headers, "Content-Type": "text/csv"},
                       params={"form_id": acme.form_id, "integrate": "off"},
                       content=b"email\na@x.test\n").json()
    finished(client, acme, mine["id"])
    for method, path, body in (("get", f"/v1/imports/{mine['id']}", None),
                               ("post", f"/v1/imports/{mine['id']}/send", {})):
        assert client.request(method, path, headers=globex.headers, json=body).status_code == 404
    assert client.get("/v1/imports", headers=globex.headers).json() == []


def test_an_interrupted_import_is_resumed_by_uploading_the_file_again(
    client: TestClient, engine: Leadrelay, acme: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an import whose file broke after its first rows were stored
    broken = interrupted_import(engine, acme.form_id, monkeypatch)
    assert broken.state == "failed" and 0 < broken.stored < 35
    # When the same file is uploaded again with resume
    answer = client.post("/v1/imports", headers=acme.headers,
                         params={"form_id": acme.form_id, "integrate": "off",
                                 "resume": broken.id},
                         files={"file": ("big.csv", ROWS, "text/csv")})
    # Then the same import carries on to the end, no row stored twice
    assert answer.status_code == 202, answer.text
    # (running, or already finished: never the old failure)
    assert answer.json()["id"] == broken.id
    assert answer.json()["state"] in ("running", "finished") and answer.json()["error"] is None
    report = finished(client, acme, broken.id)
    assert (report["state"], report["stored"], report["duplicates"]) == ("finished", 35, 0)
    # and a finished import is not resumed again: 422, naming resume
    again = client.post("/v1/imports", headers=acme.headers,
                        params={"form_id": acme.form_id, "resume": broken.id},
                        files={"file": ("big.csv", ROWS, "text/csv")})
    assert again.status_code == 422 and error_of(again)["field"] == "resume"
