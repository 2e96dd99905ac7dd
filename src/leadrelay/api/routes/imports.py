"""Bulk imports of the calling account's forms: upload, progress and report, send later.

``POST /v1/imports`` takes the file as a multipart upload (field ``file``) or as the
request body itself (``text/csv``, ``application/x-ndjson``, …), streamed to a temporary
file as it arrives, so memory stays flat whatever its size. What is wrong with the file
as a whole or with the options answers 422 before anything is stored; otherwise the
import is recorded and answered 202 with its id, and its rows are stored in the
background: ``GET /v1/imports/{id}`` shows its progress and report.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from leadrelay.engine.errors import BadInput

from ..deps import Account, Engine
from ..errors import RESPONSES
from ..models import IdPath, IdQuery

router = APIRouter(prefix="/imports", tags=["imports"], responses=RESPONSES)
_CHUNK = 1024 * 1024


class Rejection(BaseModel):
    """A row refused: its first line in the file and why."""

    line: int
    reason: str


class ImportOut(BaseModel):
    """An import: how its file was read, its counts, its rejected rows, its deliveries."""

    id: int
    form_id: int
    filename: str
    format: str
    encoding: str | None
    delimiter: str | None
    integrate: str = Field(description="off, on or throttled=RATE")
    state: str = Field(description="running, finished or failed")
    rows: int
    stored: int
    duplicates: int = Field(description="Rows already in the ledger: not stored again")
    rejected: int
    deliveries: int = Field(description="Deliveries created for its leads")
    delivered: int = Field(description="Of those, delivered so far")
    waiting: int = Field(description="Of those, still pending or sending")
    lines_done: int
    rejections: list[Rejection] = Field(description="The first 1,000 rejected rows")
    error: str | None
    created_at: str
    finished_at: str | None


class SendIn(BaseModel):
    """Send an import's leads now, or at ``rate`` per integration."""

    model_config = ConfigDict(extra="forbid")

    rate: str | None = Field(default=None, description="5/s, 300/min; none: at once")


class SendOut(BaseModel):
    """Deliveries created for an import's leads by a send."""

    import_id: int
    deliveries_created: int


_UPLOAD = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"],
                           "properties": {"file": {"type": "string", "format": "binary"}}},
            },
            "text/csv": {"schema": {"type": "string", "format": "binary"}},
            "application/x-ndjson": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=ImportOut,
             openapi_extra=_UPLOAD)
async def create_import(
    request: Request,
    engine: Engine,
    account: Account,
    form_id: Annotated[int, Query(ge=1, le=2**63 - 1, description="The form to import into")],
    integrate: Annotated[str, Query(description="off, on or throttled=RATE")] = "on",
    map: Annotated[list[str] | None, Query(description="COLUMN=FIELD, repeatable")] = None,
    id_column: str | None = None,
    format: Literal["csv", "jsonl"] | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    filename: Annotated[str | None, Query(max_length=500)] = None,
    resume: Annotated[int | None, Query(
        ge=1, le=2**63 - 1, description="An interrupted import of the same file into the "
        "same form to carry on from its last stored row (failed, or running when its "
        "process stopped)")] = None,
) -> dict[str, Any]:
    """Import a CSV (header row) or JSON Lines file into a form; 202 with the import,
    whose rows are stored in the background (poll ``GET /v1/imports/{id}``). With
    ``resume``, the same file carries an interrupted import on, under its id."""
    from leadrelay.engine.imports import ImportOptions, parse_integrate

    mapping: dict[str, str] = {}
    for pair in map or ():
        column, sep, field = pair.partition("=")
        if not sep or not column.strip():
            raise BadInput(f"map: {pair[:60]!r}: give COLUMN=FIELD", field="map")
        mapping[column.strip()] = field.strip()
    options = ImportOptions(
        integrate=parse_integrate(integrate), mapping=mapping, id_column=id_column,
        format=format, encoding=encoding, delimiter=delimiter, resume=resume,
    )
    path, given_name = await _spool(request)
    try:
        prepared, import_id = await run_in_threadpool(
            _prepare, engine, form_id, path, filename or given_name or "upload", options,
            account,
        )
    except BaseException:
        _remove(path)
        raise
    threading.Thread(target=_run, args=(prepared, path), name=f"import-{import_id}",
                     daemon=True).start()
    report = await run_in_threadpool(engine.imports.get, import_id, scope=account)
    return report.to_dict()


async def _spool(request: Request) -> tuple[str, str | None]:
    """The upload, written to a temporary file as it arrives: its path and given name."""
    fd, path = tempfile.mkstemp(prefix="leadrelay-import-")
    name: str | None = None
    try:
        with os.fdopen(fd, "wb") as out:
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                form = await request.form(max_files=1, max_fields=5)
                upload = form.get("file")
                if upload is None or isinstance(upload, str):
                    raise BadInput("file: give the file in a multipart field named 'file'",
                                   field="file")
                name = upload.filename
                while chunk := await upload.read(_CHUNK):
                    out.write(chunk)
                await form.close()
            else:
                async for chunk in request.stream():
                    out.write(chunk)
    except BaseException:
        _remove(path)
        raise
    return path, name


def _prepare(engine: Any, form_id: int, path: str, filename: str, options: Any,
             account: int) -> tuple[Any, int]:
    stream = open(path, "rb")  # noqa: SIM115 - closed by _run, or below on failure
    try:
        prepared = engine.imports.open(form_id, stream, filename=os.path.basename(filename),
                                       options=options, scope=account)
        return prepared, prepared.start()
    except BaseException:
        stream.close()
        raise


def _run(prepared: Any, path: str) -> None:
    """Store the rows in the background; the import's row records how it ended."""
    try:
        with contextlib.suppress(Exception):  # recorded on the import (failed, its error)
            prepared.run()
    finally:
        prepared.source.stream.close()
        _remove(path)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@router.get("", response_model=list[ImportOut])
def list_imports(engine: Engine, account: Account, form_id: IdQuery = None) -> list[Any]:
    """The account's imports, newest first (of one form with ``form_id``)."""
    return [r.to_dict() for r in engine.imports.list(form_id=form_id, scope=account)]


@router.get("/{import_id}", response_model=ImportOut)
def show_import(import_id: IdPath, engine: Engine, account: Account) -> dict[str, Any]:
    """One import: progress, counts, rejected rows, deliveries created and delivered."""
    return engine.imports.get(import_id, scope=account).to_dict()


@router.post("/{import_id}/send", response_model=SendOut)
def send_import(import_id: IdPath, body: SendIn, engine: Engine,
                account: Account) -> dict[str, Any]:
    """Create the deliveries of an import's leads (imported with integration off) to
    their form's active integrations, at once or at ``rate`` per integration."""
    from leadrelay.engine.throttle import parse_rate

    rate = parse_rate(body.rate, field="rate") if body.rate else None
    created = engine.imports.send(import_id, rate=rate, scope=account)
    return {"import_id": import_id, "deliveries_created": created}
