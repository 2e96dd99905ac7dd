"""Bulk imports: ``import FILE``, ``send --import ID``, ``imports list|show``."""

from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING, Any

import click

from .context import pass_engine
from .output import console, print_json, print_table, short_time
from .params import ID

if TYPE_CHECKING:
    from leadrelay.engine.app import Leadrelay
    from leadrelay.engine.imports import ImportReport

#: Rejected rows printed after an import (``imports show`` prints up to 1,000).
SHOWN_REJECTIONS = 10


class _Counting:
    """A binary file that counts the bytes read from it (the progress bar's position)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.read_bytes = 0

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.read_bytes += len(data)
        return data


def _mapping(pairs: tuple[str, ...]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs:
        column, sep, field = pair.partition("=")
        if not sep or not column.strip():
            raise click.UsageError(f"--map {pair!r}: give COLUMN=FIELD (COLUMN= leaves it out)")
        mapping[column.strip()] = field.strip()
    return mapping


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--form", "form_id", type=ID, required=True, metavar="ID",
              help="The form the leads are imported into.")
@click.option("--integrate", default="on", show_default=True, metavar="off|on|throttled=RATE",
              help="off: store the leads without deliveries (send them later with `send "
                   "--import ID`); on: deliver as usual; throttled=RATE (5/s, 300/min): "
                   "deliver at that rate per integration.")
@click.option("--map", "maps", multiple=True, metavar="COLUMN=FIELD",
              help="Import COLUMN as lead field FIELD (repeatable); COLUMN= leaves it out. "
                   "Other columns keep their header names.")
@click.option("--id-column", metavar="COLUMN",
              help="A column holding each row's own id: rows are deduplicated by it "
                   "(by default, by their content).")
@click.option("--format", "file_format", type=click.Choice(["csv", "jsonl"]),
              help="The file's format (detected from its name and content by default).")
@click.option("--encoding", help="The file's encoding (detected: UTF-8 with or without BOM, "
                                 "cp1252/Latin-1).")
@click.option("--delimiter", help="The CSV delimiter (detected: , ; tab or |); 'tab' for tab.")
@click.option("--resume", type=ID, metavar="IMPORT_ID",
              help="Carry on an interrupted import of this file after its last stored line.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_engine
def import_command(
    app: Leadrelay, file: str, form_id: int, integrate: str, maps: tuple[str, ...],
    id_column: str | None, file_format: str | None, encoding: str | None,
    delimiter: str | None, resume: int | None, as_json: bool,
) -> None:
    """Import a CSV (with a header row) or JSON Lines FILE as leads of a form.

    Rows that fail validation are reported by line number and do not stop the import;
    a row already imported into the form (the same file run again) is skipped. Prints
    the import's report; `leadrelay imports show ID` shows it later, with what has been
    delivered since.
    """
    from leadrelay.engine.imports import ImportOptions, parse_integrate

    options = ImportOptions(
        integrate=parse_integrate(integrate), mapping=_mapping(maps), id_column=id_column,
        format=file_format, encoding=encoding, delimiter=delimiter, resume=resume,
    )
    size = os.path.getsize(file)
    with open(file, "rb") as raw:
        stream = _Counting(raw)
        prepared = app.imports.open(form_id, stream, filename=os.path.basename(file),  # type: ignore[arg-type]
                                    options=options)
        report = _run_with_progress(prepared, stream, size)
    if as_json:
        print_json(report.to_dict())
    else:
        _print_report(report, limit=SHOWN_REJECTIONS)


def _run_with_progress(prepared: Any, stream: _Counting, size: int) -> ImportReport:
    """Run the import under a progress bar on a terminal's standard error (rows read,
    stored, rejected, rate, time left)."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    err = console(stderr=True)
    if not err.is_terminal:
        result: ImportReport = prepared.run()
        return result
    columns = (
        TextColumn("[bold]import[/]"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[counts]}"), TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(), TimeRemainingColumn(),
    )
    with Progress(*columns, console=err) as progress:
        task = progress.add_task("import", total=max(size, 1), counts="", rate="")

        def update(report: ImportReport) -> None:
            elapsed = progress.tasks[0].elapsed or 0.0
            rate = f"{report.rows / elapsed:,.0f} rows/s" if elapsed > 0 else ""
            progress.update(
                task, completed=stream.read_bytes, rate=rate,
                counts=(f"{report.rows:,} read · {report.stored:,} stored · "
                        f"{report.duplicates:,} duplicates · {report.rejected:,} rejected"),
            )

        report: ImportReport = prepared.run(update)
        progress.update(task, completed=max(size, 1))
    return report


def _print_report(report: ImportReport, *, limit: int) -> None:
    print_table(
        ["import", "form", "state", "integrate", "rows", "stored", "duplicates", "rejected",
         "deliveries", "delivered"],
        [[report.id, report.form_id, report.state, report.integrate, report.rows,
          report.stored, report.duplicates, report.rejected, report.deliveries,
          report.delivered]],
    )
    if report.error:
        click.echo(f"stopped: {report.error}")
    shown = report.rejections[:limit]
    if shown:
        print_table(["line", "rejected because"], ([r["line"], r["reason"]] for r in shown),
                    flex=("rejected because",))
        more = report.rejected - len(shown)
        if more > 0:
            click.echo(f"... and {more:,} more: leadrelay imports show {report.id} --json")


@click.command("send")
@click.option("--import", "import_id", type=ID, required=True, metavar="IMPORT_ID",
              help="Send the leads of this import (one imported with --integrate off).")
@click.option("--rate", metavar="RATE",
              help="Deliver at this rate per integration (5/s, 300/min) instead of at once.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_engine
def send_command(app: Leadrelay, import_id: int, rate: str | None, as_json: bool) -> None:
    """Create the deliveries of an import's leads to their form's active integrations.

    Leads that already have a delivery to an integration are not sent to it again.
    """
    from leadrelay.engine.throttle import parse_rate

    created = app.imports.send(import_id, rate=parse_rate(rate, field="rate") if rate else None)
    if as_json:
        print_json({"import_id": import_id, "deliveries_created": created})
    else:
        click.echo(f"import {import_id}: {created:,} deliveries created")


@click.group()
def imports() -> None:
    """Bulk imports: their counts, rejected rows and deliveries."""


@imports.command("list")
@click.option("--form", "form_id", type=ID, metavar="ID", help="Only this form's imports.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_engine
def imports_list(app: Leadrelay, form_id: int | None, limit: int, as_json: bool) -> None:
    """List imports, newest first."""
    reports = app.imports.list(form_id=form_id, limit=limit)
    if as_json:
        print_json([r.to_dict() for r in reports])
        return
    print_table(
        ["id", "form", "file", "state", "integrate", "rows", "stored", "duplicates",
         "rejected", "deliveries", "created (UTC)"],
        ([r.id, r.form_id, r.filename, r.state, r.integrate, r.rows, r.stored, r.duplicates,
          r.rejected, r.deliveries, short_time(r.created_at.isoformat())] for r in reports),
        empty="no imports", flex=("file",),
    )


@imports.command("show")
@click.argument("import_id", type=ID)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every rejection kept).")
@pass_engine
def imports_show(app: Leadrelay, import_id: int, as_json: bool) -> None:
    """One import: counts, rejected rows by line, deliveries created and delivered."""
    report = app.imports.get(import_id)
    if as_json:
        print_json(report.to_dict())
        return
    _print_report(report, limit=100)
    click.echo(f"file {report.filename} ({report.format}, {report.encoding}"
               f"{', delimiter ' + repr(report.delimiter) if report.delimiter else ''}); "
               f"{report.waiting:,} deliveries still to go")
