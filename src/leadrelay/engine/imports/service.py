"""Bulk imports: a file's rows stored as leads of one form, in batches, without duplicates.

An import reads its file as a stream (:mod:`.reading`), maps each row's columns to
lead fields, validates it like any lead (and against the form's required fields)
(:mod:`.checking`), and stores the rows in batches of :data:`BATCH_ROWS` (:mod:`.storing`):
each batch in one transaction with the import's counts and the last line it settled, so
the counts always match the ledger and an interrupted import resumes after its last batch.

Each imported lead carries an external id — the row's value of the id column, or a
hash of its fields — under the form's unique ``(form, source, external id)``: a row
already in the ledger (the same file run twice, a resumed import, a row repeated in
the file) is counted as a duplicate and not stored again.

``integrate`` says what happens to the leads' deliveries: ``off`` creates none (send
them later with :meth:`Importer.send`), ``on`` creates them due at once, ``throttled``
creates them due one after the other at the import's rate per integration. Either way
they go on the bulk lane, behind live leads (``broker.BULK_QUEUE``).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, cast

from sqlalchemy import Table, bindparam, func, select, update

from ..clock import Clock
from ..errors import BadInput, NotFound
from ..ledger import Delivery, Form, Import, ImportState, Integration, Lead, Ledger
from ..priority import LIVE_WORK, GiveWay
from ..secrets import SecretBox
from ..throttle import Rate, parse_rate
from .checking import Checked, RowChecker
from .reading import ImportFile
from .storing import (
    Pace,
    active_integrations,
    create_deliveries,
    encode_payloads,
    insert_leads,
)

#: Rows stored per transaction: a transaction's fixed cost (its commit, the import's
#: counts) spread over enough rows, and still all an import holds in memory.
BATCH_ROWS = 1000
#: Rows per transaction on SQLite, whose single writer a live lead waits for while a
#: batch holds it: a fifth of a PostgreSQL batch bounds that wait to a few milliseconds.
SQLITE_BATCH_ROWS = 200
#: Rows per transaction on SQLite while live leads come in (a live write in the last
#: :data:`LIVE_WINDOW` seconds): a batch then holds the writer about a millisecond, the
#: import going slower rather than a live lead waiting longer (docs/benchmarks.md,
#: import-live-latency).
SQLITE_LIVE_BATCH_ROWS = 10
LIVE_WINDOW = 1.0
#: Rows read between two pauses for live work (``priority.GiveWay``): a millisecond or so.
PAUSE_ROWS = 20
#: Rejected rows kept with their line and reason on the import (all are counted).
MAX_REJECTIONS = 1000
INTEGRATE_MODES = ("off", "on", "throttled")

#: Called after each batch with the import as it stands.
Progress = Callable[["ImportReport"], None]
#: Announces ``(integration id, delivery id)`` pairs on the bulk lane.
Announce = Callable[[list[tuple[int | None, int]]], None]


@dataclass(frozen=True)
class Integrate:
    """What an import does with its leads' deliveries."""

    mode: str = "on"
    rate: Rate | None = None

    @property
    def text(self) -> str:
        """``off``, ``on`` or ``throttled=RATE``."""
        return f"throttled={self.rate.text}" if self.rate is not None else self.mode


def parse_integrate(value: Any, rate: Any = None) -> Integrate:
    """``off``, ``on``, ``throttled=5/s`` (or ``throttled`` with ``rate``).

    :raises BadInput: another mode, throttled without a rate, a rate of 0 or less.
    """
    text = str(value if value is not None else "on").strip()
    mode, _, given = text.partition("=")
    mode = mode.strip().lower()
    if mode not in INTEGRATE_MODES:
        raise BadInput(
            f"integrate: expected off, on or throttled=RATE (like throttled=5/s), got {text!r}",
            field="integrate",
        )
    if mode != "throttled":
        if given or rate is not None:
            raise BadInput("integrate: a rate goes with throttled only (throttled=5/s)",
                           field="integrate")
        return Integrate(mode)
    given = given.strip() or (str(rate) if rate is not None else "")
    if not given:
        raise BadInput("integrate: throttled needs a rate, like throttled=5/s or "
                       "throttled=300/min", field="integrate")
    return Integrate("throttled", parse_rate(given, field="rate"))


@dataclass(frozen=True)
class ImportOptions:
    """How to read a file and what to do with its leads."""

    integrate: Integrate = field(default_factory=Integrate)
    #: File column → lead field; a column mapped to ``""`` is left out. Columns not
    #: named keep their own name.
    mapping: Mapping[str, str] = field(default_factory=dict)
    #: The column holding each row's own id (dedupe by it instead of by content).
    id_column: str | None = None
    format: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    #: An earlier import of the same file into the same form to carry on.
    resume: int | None = None


@dataclass(frozen=True)
class ImportReport:
    """Where an import stands: the operator's view (``imports show``)."""

    id: int
    form_id: int
    filename: str
    format: str
    encoding: str | None
    delimiter: str | None
    integrate: str
    state: str
    rows: int
    stored: int
    duplicates: int
    rejected: int
    deliveries: int
    lines_done: int
    rejections: tuple[dict[str, Any], ...]
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    #: Deliveries of its leads delivered so far, and still to go (pending or sending).
    delivered: int = 0
    waiting: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return {
            "id": self.id,
            "form_id": self.form_id,
            "filename": self.filename,
            "format": self.format,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "integrate": self.integrate,
            "state": self.state,
            "rows": self.rows,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "deliveries": self.deliveries,
            "delivered": self.delivered,
            "waiting": self.waiting,
            "lines_done": self.lines_done,
            "rejections": list(self.rejections),
            "error": self.error,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


@dataclass
class _Counts:
    rows: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    deliveries: int = 0
    lines_done: int = 0
    rejections: list[dict[str, Any]] = field(default_factory=list)
    #: Rejections already written to the import (a batch rewrites them only when more
    #: came: up to MAX_REJECTIONS of them at each batch of a file of bad rows otherwise).
    written: int = 0

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.rejections) < MAX_REJECTIONS:
            self.rejections.append({"line": line, "reason": reason[:300]})

    def unwritten(self) -> bool:
        """Whether rejections were kept since they were last written."""
        return len(self.rejections) != self.written


class Importer:
    """Runs bulk imports and reports on them (see module docstring)."""

    def __init__(
        self,
        ledger: Ledger,
        clock: Clock,
        box: SecretBox,
        announce: Announce,
        queued: Callable[[], bool],
    ) -> None:
        self.ledger = ledger
        self.clock = clock
        self.box = box
        self.announce = announce
        self.queued = queued

    # -- running an import -----------------------------------------------------------

    def open(
        self,
        form_id: int,
        stream: IO[bytes],
        *,
        filename: str = "",
        options: ImportOptions | None = None,
        scope: int | None = None,
    ) -> PreparedImport:
        """Check everything that can be checked before a row is stored: the form (of
        the ``scope`` account), the file's layout and the mapping. Nothing is written.

        :raises NotFound: the form does not exist (or is another account's).
        :raises BadInput: the file, the mapping or the options, naming what is wrong.
        """
        options = options or ImportOptions()
        form, known = self._form(form_id, scope)
        resumed = self._resumable(options.resume, form_id) if options.resume else None
        source = ImportFile(
            stream,
            filename=filename,
            format=options.format or (resumed.format if resumed else None),
            encoding=options.encoding,
            delimiter=options.delimiter,
        )
        mapping = _check_mapping(options, source.layout.header, known)
        return PreparedImport(self, form_id, tuple(form.required_fields or ()), source,
                              filename, options, mapping, resumed)

    def _form(self, form_id: int, scope: int | None) -> tuple[Form, set[str] | None]:
        with self.ledger.session() as s:
            form = s.get(Form, form_id)
            if form is None or (scope is not None and form.account_id != scope):
                raise NotFound(f"form {form_id} does not exist", field="form_id")
            configs = [
                i.config for i in s.scalars(
                    select(Integration).where(Integration.form_id == form_id,
                                              Integration.active.is_(True))
                )
            ]
            s.expunge(form)
        return form, self._known_fields(form, configs)

    def _known_fields(self, form: Form, configs: list[dict[str, Any]]) -> set[str] | None:
        """The fields a lead of the form can use: its required fields and those its
        active integrations send; None when one of them sends every field as it is
        (then any field is the form's)."""
        known = set(form.required_fields or ())
        if not configs:
            return None
        for config in configs:
            fields = self.box.unseal(config).get("fields")
            if not isinstance(fields, Mapping) or not fields:
                return None
            known.update(_sources(fields))
        return known

    def _resumable(self, import_id: int, form_id: int) -> ImportReport:
        with self.ledger.session() as s:
            row = s.get(Import, import_id)
            if row is None or row.form_id != form_id:
                raise NotFound(f"import {import_id} does not exist for form {form_id}",
                               field="resume")
            if row.state == ImportState.FINISHED.value:
                raise BadInput(f"resume: import {import_id} is finished; run the file again "
                               "as a new import (its rows already stored are skipped)",
                               field="resume")
            return _report(row)

    # -- sending an import's leads later ---------------------------------------------

    def send(self, import_id: int, *, rate: Rate | None = None,
             scope: int | None = None) -> int:
        """Create the missing deliveries of an import's leads to their form's active
        integrations (an import with integration off), due at once or at ``rate``, on
        the bulk lane; how many were created."""
        report = self.get(import_id, scope=scope)
        queued = self.queued() and rate is None
        pace = Pace(rate) if rate is not None else None
        with self.ledger.bulk():  # live leads go first for the ledger's writer
            return self._send(import_id, report.form_id, pace, queued)

    def _send(self, import_id: int, form_id: int, pace: Pace | None, queued: bool) -> int:
        created = 0
        last = 0
        while True:
            with self.ledger.transaction() as conn:
                leads = list(conn.scalars(_LEADS_AFTER, {"import_id": import_id, "after": last}))
                if not leads:
                    break
                last = leads[-1]
                targets = active_integrations(conn, form_id)
                have = {(lead, i) for lead, i in conn.execute(_HAVE, {"ids": leads})}
                now = self.clock.now()
                missing = [(lead_id, integration_id)
                           for lead_id in leads for integration_id in targets
                           if (lead_id, integration_id) not in have]
                pairs = create_deliveries(conn, missing, now, queued=queued, pace=pace)
                conn.execute(_COUNT_DELIVERIES, {"i_id": import_id, "n": len(pairs), "now": now})
            created += len(pairs)
            if queued and pairs:
                self.announce(pairs)
        return created

    # -- the operator's view ---------------------------------------------------------

    def get(self, import_id: int, *, scope: int | None = None) -> ImportReport:
        """One import with its counts (``scope``: of that account's forms only)."""
        with self.ledger.session() as s:
            row = s.get(Import, import_id)
            if row is None or (scope is not None and _account(s, row.form_id) != scope):
                raise NotFound(f"import {import_id} does not exist", field="import_id")
            # Its leads' deliveries are only ever created with its count (at import or by
            # send): with none counted there are none to look for, and a big import's
            # progress would otherwise read through all its leads at every batch.
            states: dict[str, int] = {
                state: n for state, n in s.execute(
                    select(Delivery.state, func.count())
                    .join(Lead, Lead.id == Delivery.lead_id)
                    .where(Lead.import_id == import_id)
                    .group_by(Delivery.state)
                )
            } if row.deliveries else {}
            report = _report(row)
        waiting = states.get("pending", 0) + states.get("sending", 0)
        return _replace(report, delivered=states.get("delivered", 0), waiting=waiting)

    def list(self, *, form_id: int | None = None, scope: int | None = None,
             limit: int = 100) -> list[ImportReport]:
        """Imports, newest first (of one form; of the ``scope`` account's forms)."""
        with self.ledger.session() as s:
            q = select(Import).order_by(Import.id.desc()).limit(limit)
            if form_id is not None:
                q = q.where(Import.form_id == form_id)
            if scope is not None:
                q = q.where(Import.form_id.in_(select(Form.id).where(Form.account_id == scope)))
            return [_report(row) for row in s.scalars(q)]


class PreparedImport:
    """An import whose file and options were checked: :meth:`run` stores its rows."""

    def __init__(
        self,
        importer: Importer,
        form_id: int,
        required: tuple[str, ...],
        source: ImportFile,
        filename: str,
        options: ImportOptions,
        mapping: dict[str, str],
        resumed: ImportReport | None,
    ) -> None:
        self.importer = importer
        self.form_id = form_id
        self.required = required
        self.source = source
        self.filename = filename
        self.options = options
        self.mapping = mapping
        self.resumed = resumed
        self.import_id: int | None = resumed.id if resumed else None
        self._taken_up = False

    @property
    def layout(self) -> Any:
        """How the file is read (format, encoding, delimiter, header)."""
        return self.source.layout

    def start(self) -> int:
        """Record the import (or take up the resumed one: running again, its error
        cleared, so whoever polls it sees it carry on); its id."""
        now = self.importer.clock.now()
        if self.import_id is not None:
            if self.resumed is not None and not self._taken_up:
                with self.importer.ledger.transaction() as conn:
                    conn.execute(update(_IMP).where(_IMP.c.id == self.import_id).values(
                        state=ImportState.RUNNING.value, error=None, finished_at=None,
                        updated_at=now))
                self._taken_up = True
            return self.import_id
        layout = self.source.layout
        with self.importer.ledger.session() as s:
            row = Import(
                form_id=self.form_id, filename=self.filename[:500] or "-",
                format=layout.format, encoding=layout.encoding, delimiter=layout.delimiter,
                integrate=self.options.integrate.mode,
                rate=self.options.integrate.rate.text if self.options.integrate.rate else None,
                state=ImportState.RUNNING.value, rows=0, stored=0, duplicates=0, rejected=0,
                deliveries=0, lines_done=0, rejections=[], created_at=now, updated_at=now,
            )
            s.add(row)
            s.flush()
            self.import_id = row.id
        return row.id

    def run(self, progress: Progress | None = None) -> ImportReport:
        """Store every row (see module docstring); the final report.

        An import is bulk work: its batches take the ledger's writer after any live
        lead waiting for it, and while it parses rows the interpreter hands the GIL over
        more often, so a form's lead is not held back by it (``Ledger.bulk``)."""
        with self.importer.ledger.bulk(cpu_bound=True):
            return self._run(progress)

    def _run(self, progress: Progress | None) -> ImportReport:
        importer = self.importer
        sqlite = importer.ledger.dialect == "sqlite"
        import_id = self.start()
        counts = _Counts()
        skip = 0
        if self.resumed is not None:
            r = self.resumed
            counts = _Counts(r.rows, r.stored, r.duplicates, r.rejected, r.deliveries,
                             r.lines_done, list(r.rejections), len(r.rejections))
            skip = r.lines_done
        integrate = self.options.integrate
        pace = Pace(integrate.rate) if integrate.rate is not None else None
        check = RowChecker(self.mapping, self.options.id_column, self.required).check
        give_way = GiveWay()
        batch: list[Checked] = []
        batch_rows = _batch_rows(sqlite)
        try:
            for row in self.source.rows():
                if row.line <= skip:
                    continue
                counts.rows += 1
                if counts.rows % PAUSE_ROWS == 0:
                    give_way()  # to live leads: they share this process's GIL
                checked = check(row)
                if isinstance(checked, str):
                    counts.reject(row.line, checked)
                    counts.lines_done = row.line
                    continue
                batch.append(checked)
                if len(batch) >= batch_rows:
                    self._store(import_id, batch, counts, integrate, pace)
                    batch = []
                    batch_rows = _batch_rows(sqlite)
                    if progress is not None:
                        progress(importer.get(import_id))
            counts.lines_done = max(counts.lines_done, self.source.lines_read)
            self._store(import_id, batch, counts, integrate, pace, finished=True)
        except BadInput as exc:
            self._fail(import_id, counts, str(exc))
            raise
        except BaseException as exc:
            self._fail(import_id, counts, f"interrupted: {type(exc).__name__}: {exc}"[:500])
            raise
        report = importer.get(import_id)
        if progress is not None:
            progress(report)
        return report

    def _store(
        self,
        import_id: int,
        batch: list[Checked],
        counts: _Counts,
        integrate: Integrate,
        pace: Pace | None,
        *,
        finished: bool = False,
    ) -> None:
        """Store one batch and the import's counts in one transaction (see
        :mod:`.storing`); a row whose external id is already in the ledger, or earlier
        in the batch, is a duplicate."""
        importer = self.importer
        queued = integrate.mode == "on" and importer.queued()
        fresh: dict[str, Checked] = {}
        for checked in batch:
            fresh.setdefault(checked.external_id, checked)
        rows = list(fresh.values())
        encoded = encode_payloads(importer.ledger.engine.dialect, rows)
        pairs: list[tuple[int | None, int]] = []
        with importer.ledger.transaction() as conn:
            now = importer.clock.now()
            if integrate.mode == "off":
                stored = cast(int, insert_leads(conn, self.form_id, import_id, rows, now,
                                                ids=False, encoded=encoded))
            else:
                ids = cast(list[int], insert_leads(conn, self.form_id, import_id, rows, now,
                                                   ids=True, encoded=encoded))
                stored = len(ids)
                targets = active_integrations(conn, self.form_id) if ids else []
                pairs = create_deliveries(
                    conn, [(lead, target) for lead in ids for target in targets], now,
                    queued=queued, pace=pace,
                )
            dupes = len(batch) - stored
            lines = max(counts.lines_done, batch[-1].line if batch else 0)
            values: dict[str, Any] = {
                "rows": counts.rows, "stored": counts.stored + stored,
                "duplicates": counts.duplicates + dupes, "rejected": counts.rejected,
                "deliveries": counts.deliveries + len(pairs), "lines_done": lines,
                "updated_at": now,
            }
            if counts.unwritten():
                values["rejections"] = list(counts.rejections)
            if finished:
                values["state"] = ImportState.FINISHED.value
                values["finished_at"] = now
            conn.execute(update(_IMP).where(_IMP.c.id == import_id).values(**values))
        counts.stored += stored
        counts.duplicates += dupes
        counts.deliveries += len(pairs)
        counts.lines_done = lines
        counts.written = len(counts.rejections)
        if queued and pairs:
            importer.announce(pairs)

    def _fail(self, import_id: int, counts: _Counts, error: str) -> None:
        """Leave the import failed with what it had stored (its counts are the last
        batch's), resumable after its last settled line."""
        try:
            with self.importer.ledger.transaction() as conn:
                conn.execute(
                    update(_IMP).where(_IMP.c.id == import_id).values(
                        state=ImportState.FAILED.value, error=error,
                        updated_at=self.importer.clock.now(),
                    )
                )
        except Exception:  # the ledger is what failed: the import stays running
            pass


def _batch_rows(sqlite: bool) -> int:
    """Rows for the next batch: fewer on SQLite while live leads come in (see
    :data:`SQLITE_LIVE_BATCH_ROWS`)."""
    if not sqlite:
        return BATCH_ROWS
    live = LIVE_WORK.within(LIVE_WINDOW)
    return min(BATCH_ROWS, SQLITE_LIVE_BATCH_ROWS if live else SQLITE_BATCH_ROWS)


def _check_mapping(
    options: ImportOptions, header: tuple[str, ...], known: set[str] | None
) -> dict[str, str]:
    mapping = {str(k).strip(): str(v).strip() for k, v in options.mapping.items()}
    for column, target in mapping.items():
        if header and column not in header:
            raise BadInput(
                f"map: column {column!r} is not in the file's header "
                f"(columns: {', '.join(header)[:300]})",
                field="map",
            )
        if target and known is not None and target not in known:
            raise BadInput(
                f"map: {column!r} → {target!r}: the form has no field {target!r} "
                f"(its fields: {', '.join(sorted(known))[:300]})",
                field="map",
            )
    if options.id_column is not None and header and options.id_column not in header:
        raise BadInput(f"id_column: column {options.id_column!r} is not in the file's header",
                       field="id_column")
    return mapping


def _sources(fields: Mapping[str, Any]) -> Iterable[str]:
    """The lead fields a connector's field map reads."""
    for crm_field, spec in fields.items():
        if isinstance(spec, str):
            yield spec
        elif isinstance(spec, Mapping):
            if "from" in spec:
                yield str(spec["from"])
            elif "template" in spec:
                for _, name, _, _ in string.Formatter().parse(str(spec["template"])):
                    if name:
                        yield name
            elif "const" not in spec:
                yield crm_field


def _account(s: Any, form_id: int) -> int | None:
    form = s.get(Form, form_id)
    return form.account_id if form is not None else None


def _report(row: Import) -> ImportReport:
    return ImportReport(
        id=row.id, form_id=row.form_id, filename=row.filename, format=row.format,
        encoding=row.encoding, delimiter=row.delimiter,
        integrate=f"throttled={row.rate}" if row.rate else row.integrate, state=row.state,
        rows=row.rows, stored=row.stored, duplicates=row.duplicates, rejected=row.rejected,
        deliveries=row.deliveries, lines_done=row.lines_done,
        rejections=tuple(row.rejections or ()), error=row.error, created_at=row.created_at,
        finished_at=row.finished_at,
    )


def _replace(report: ImportReport, **changes: Any) -> ImportReport:
    from dataclasses import replace

    return replace(report, **changes)


_IMP = cast(Table, Import.__table__)
_L = cast(Table, Lead.__table__)
_D = cast(Table, Delivery.__table__)
_LEADS_AFTER = (
    select(_L.c.id)
    .where(_L.c.import_id == bindparam("import_id"), _L.c.id > bindparam("after"))
    .order_by(_L.c.id)
    .limit(BATCH_ROWS)
)
_HAVE = select(_D.c.lead_id, _D.c.integration_id).where(
    _D.c.lead_id.in_(bindparam("ids", expanding=True))
)
_COUNT_DELIVERIES = (
    update(_IMP)
    .where(_IMP.c.id == bindparam("i_id"))
    .values(deliveries=_IMP.c.deliveries + bindparam("n"),
            updated_at=bindparam("now", type_=_IMP.c.updated_at.type))
)
