"""Reading an import file as a stream of rows: CSV (header row) or JSON Lines.

Nothing is read whole: the first :data:`SAMPLE_BYTES` decide the format, the encoding
and the delimiter (each unless given), then lines are read one at a time, each at
most :data:`MAX_LINE_BYTES` long, so memory stays flat whatever the file's size and a
file without newlines (a binary, or one huge line) cannot fill it.

What is wrong with the file as a whole (empty, binary, no header, an unknown
encoding) is a :class:`~leadrelay.engine.errors.BadInput` raised before anything is
stored; what is wrong with one row is that row's :attr:`Row.error`, with its line
number, and the rows after it are read on.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, NamedTuple

from ..errors import BadInput

#: Bytes read first to detect the file's format, encoding and delimiter.
SAMPLE_BYTES = 64 * 1024
#: The longest line read (a row longer than that is rejected, the rest read on).
MAX_LINE_BYTES = 1024 * 1024
#: Delimiters detected in a CSV header, in order of preference on a tie.
DELIMITERS = (",", ";", "\t", "|")
FORMATS = ("csv", "jsonl")

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_DATA_LIKE = re.compile(r"^[\d\s.,:/+\-()]+$|@")


class Row(NamedTuple):
    """One row of the file: its first line number, its fields or why it is refused."""

    line: int
    fields: dict[str, Any] | None
    error: str | None = None


@dataclass(frozen=True)
class Layout:
    """How the file is read."""

    format: str
    encoding: str
    delimiter: str | None = None
    header: tuple[str, ...] = ()


class ImportFile:
    """A binary stream read as rows (see module docstring)."""

    def __init__(
        self,
        stream: IO[bytes],
        *,
        filename: str = "",
        format: str | None = None,
        encoding: str | None = None,
        delimiter: str | None = None,
    ) -> None:
        self.stream = stream
        self._sample = stream.read(SAMPLE_BYTES)
        self.layout = _detect(self._sample, filename, format, encoding, delimiter)
        self._lines = self._decoded_lines()
        self._line = 0
        #: Lines that could not be decoded or were too long: line → reason.
        self._bad: dict[int, str] = {}
        if self.layout.format == "csv":
            self._reader = csv.reader(self._lines, delimiter=self.layout.delimiter or ",")
            header = self._read_header()
            self.layout = Layout("csv", self.layout.encoding, self.layout.delimiter, header)

    # -- lines ------------------------------------------------------------------------

    def _raw_lines(self) -> Iterator[bytes]:
        """The file's lines as bytes, each cut at :data:`MAX_LINE_BYTES` (a longer one
        comes as ``None``-marked by an empty line, its excess skipped)."""
        buffer = self._sample
        if self.layout.encoding == "utf-8-sig" and buffer.startswith(codecs.BOM_UTF8):
            buffer = buffer[len(codecs.BOM_UTF8):]
        # Lines are cut at an offset in the buffer: cutting the buffer itself at each line
        # would copy the rest of it every time, a quadratic cost on each chunk read.
        pos = 0
        skipping = False
        while True:
            end = buffer.find(b"\n", pos)
            if end < 0:
                if len(buffer) - pos > MAX_LINE_BYTES:
                    if not skipping:
                        yield b"\x00too-long"
                    skipping, buffer, pos = True, b"", 0
                chunk = self.stream.read(SAMPLE_BYTES)
                if not chunk:
                    if len(buffer) > pos and not skipping:
                        yield buffer[pos:]
                    return
                buffer, pos = buffer[pos:] + chunk, 0
                continue
            line, pos = buffer[pos : end + 1], end + 1
            if skipping:
                skipping = False
                continue
            if len(line) > MAX_LINE_BYTES:
                yield b"\x00too-long"
                continue
            yield line

    def _decoded_lines(self) -> Iterator[str]:
        encoding = self.layout.encoding
        for raw in self._raw_lines():
            self._line += 1
            if raw == b"\x00too-long":
                self._bad[self._line] = f"longer than {MAX_LINE_BYTES // 1024} KiB"
                yield "\n"
                continue
            # A bad line is refused with its row, but read on with its quotes and
            # delimiters: a quoted field it opens or closes ends where it does, so the
            # rows after it are read as they are, not swallowed into its row.
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                self._bad[self._line] = (
                    f"not valid {encoding} (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
                )
                yield raw.decode(encoding, errors="replace")
                continue
            if "\x00" in text:
                self._bad[self._line] = "contains a NUL character"
                yield text.replace("\x00", "")
                continue
            yield text

    # -- rows -------------------------------------------------------------------------

    def _read_header(self) -> tuple[str, ...]:
        try:
            first = next(self._reader)
        except StopIteration:
            raise BadInput("file: it is empty (no header row)", field="file") from None
        except csv.Error as exc:
            raise BadInput(f"file: line 1: {exc}", field="file") from None
        if 1 in self._bad:
            raise BadInput(f"file: line 1 (the header row): {self._bad[1]}", field="file")
        names = tuple(name.strip() for name in first)
        if not any(names):
            raise BadInput("file: the first line is empty: the file needs a header row "
                           "naming its columns", field="file")
        for index, name in enumerate(names, start=1):
            if not name:
                raise BadInput(f"file: the header row has no name for column {index}",
                               field="file")
            if _DATA_LIKE.search(name):
                raise BadInput(
                    f"file: the first row does not look like a header ({name[:40]!r} in "
                    f"column {index}): the file needs a header row naming its columns",
                    field="file",
                )
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise BadInput(f"file: column {name!r} appears twice in the header row",
                               field="file")
            seen.add(name)
        return names

    def rows(self) -> Iterator[Row]:
        """Every data row, in file order (blank lines skipped)."""
        if self.layout.format == "csv":
            yield from self._csv_rows()
        else:
            yield from self._jsonl_rows()

    def _csv_rows(self) -> Iterator[Row]:
        header = self.layout.header
        while True:
            start = self._line + 1
            try:
                values = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Row(start, None, str(exc))
                continue
            bad = self._bad_within(start, self._line) if self._bad else None
            if bad is not None:
                yield Row(start, None, bad)
                continue
            if not values or (len(values) == 1 and not values[0].strip()):
                continue  # a blank line
            if len(values) > len(header):
                yield Row(start, None,
                          f"{len(values)} values for the header's {len(header)} columns")
                continue
            fields = {
                name: value for name, value in zip(header, values, strict=False) if value != ""
            }
            yield Row(start, fields)

    def _jsonl_rows(self) -> Iterator[Row]:
        for text in self._lines:
            line = self._line
            bad = self._bad_within(line, line) if self._bad else None
            if bad is not None:
                yield Row(line, None, bad)
                continue
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except ValueError as exc:
                yield Row(line, None, f"not valid JSON: {str(exc)[:100]}")
                continue
            if not isinstance(value, dict):
                yield Row(line, None, f"a JSON object is expected, got {type(value).__name__}")
                continue
            yield Row(line, value)

    def _bad_within(self, start: int, end: int) -> str | None:
        """Why the first bad line from ``start`` to ``end`` is refused, if one is; those
        lines are forgotten (each is read once: the map stays small on a big file)."""
        bad = None
        for line in range(start, end + 1):
            reason = self._bad.pop(line, None)
            if bad is None:
                bad = reason
        return bad

    @property
    def lines_read(self) -> int:
        """Physical lines read so far."""
        return self._line


def _detect(
    sample: bytes,
    filename: str,
    format: str | None,
    encoding: str | None,
    delimiter: str | None,
) -> Layout:
    if not sample.strip(b" \t\r\n\xef\xbb\xbf"):
        raise BadInput("file: it is empty", field="file")
    if sample.startswith(_UTF16_BOMS):
        raise BadInput("file: UTF-16 files are not supported: save it as UTF-8 (CSV UTF-8)",
                       field="file")
    if format is None:
        format = _format_of(sample, filename)
    elif format not in FORMATS:
        raise BadInput(f"format: expected one of {', '.join(FORMATS)}, got {format!r}",
                       field="format")
    if encoding is None:
        encoding = _encoding_of(sample)
    else:
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            raise BadInput(f"encoding: unknown encoding {encoding!r}", field="encoding") from None
        if encoding == "utf-8" and sample.startswith(codecs.BOM_UTF8):
            encoding = "utf-8-sig"
    if format == "jsonl":
        return Layout("jsonl", encoding)
    if delimiter is None:
        delimiter = _delimiter_of(sample, encoding)
    elif delimiter in ("tab", "\\t"):
        delimiter = "\t"
    elif len(delimiter) != 1 or delimiter in "\r\n\"":
        raise BadInput(f"delimiter: expected one character, got {delimiter!r}",
                       field="delimiter")
    return Layout("csv", encoding, delimiter)


def _format_of(sample: bytes, filename: str) -> str:
    name = filename.lower()
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    return "jsonl" if sample.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def _encoding_of(sample: bytes) -> str:
    """UTF-8 (with or without BOM) when the sample decodes as UTF-8, else cp1252 (the
    Windows superset of Latin-1), else Latin-1. A NUL byte means a binary file."""
    if b"\x00" in sample:
        raise BadInput("file: it looks binary (it contains NUL bytes), not CSV or JSON Lines",
                       field="file")
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 13))
    if controls > max(8, len(sample) // 100):
        raise BadInput("file: it looks binary (control characters), not CSV or JSON Lines",
                       field="file")
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        # The sample may end inside a character: decoding to its last full line is enough.
        cut = sample.rfind(b"\n")
        (sample[: cut + 1] if cut >= 0 and len(sample) == SAMPLE_BYTES else sample).decode(
            "utf-8"
        )
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        sample.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _delimiter_of(sample: bytes, encoding: str) -> str:
    """The delimiter found most often in the header line, outside quotes."""
    first = sample.split(b"\n", 1)[0].decode(encoding, errors="replace")
    unquoted = re.sub(r'"[^"]*"', "", first)
    counts = {d: unquoted.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","
