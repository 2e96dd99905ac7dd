"""Reading a CRM's answer within bounds: at most :data:`~.wire.READ_CAP` bytes read, at
most as many inflated, whatever the answer claims or contains.

Both paths of the transport (direct and through ``requests`` for proxies) hand the
urllib3 response, unread and undecoded, to :func:`read_body`, so the same answer gives
the same bytes either way. An answer larger than the cap is read up to the cap and its
connection is closed (the rest is never read, so the connection cannot be reused). A
compressed answer is inflated here, with ``zlib``'s ``max_length``: a gzip bomb stops
inflating at the cap. Only what can be inflated so (gzip and deflate) is asked for
(:data:`ACCEPT_ENCODING`); any other encoding is left as it came.

The deadline of the attempt is enforced under this, on the socket (:mod:`.deadline`).
"""

from __future__ import annotations

import http.client
import zlib
from typing import NamedTuple

import urllib3
from urllib3.exceptions import ProtocolError, ReadTimeoutError, SSLError

from .wire import READ_CAP

#: The ``Accept-Encoding`` every request sends: only what :func:`inflate` decodes with
#: bounded memory (requests would add ``br`` and ``zstd`` when those libraries are present).
ACCEPT_ENCODING = "gzip, deflate"
#: Reads of an answer of unknown length (chunked, or ending at close) are this large.
_CHUNK = 64 * 1024
_GZIP = zlib.MAX_WBITS | 16
_DECODABLE = frozenset({"gzip", "x-gzip", "deflate"})


class Body(NamedTuple):
    """An answer's body as read: decoded, capped, and what it took on the wire."""

    data: bytes
    #: Bytes of body read off the wire (before inflating).
    raw_bytes: int
    #: The answer was larger than the read cap (on the wire or inflated): ``data`` is
    #: its first :data:`~.wire.READ_CAP` bytes.
    capped: bool


class BrokenAnswer(Exception):
    """The answer's body could not be read whole: cut short, reset, timed out, or
    undecodable. The message is short and safe to record."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def read_body(raw: urllib3.BaseHTTPResponse, cap: int = READ_CAP) -> Body:
    """Read ``raw``'s body (opened with ``preload_content=False, decode_content=False``)
    up to ``cap`` bytes, inflate it up to ``cap`` bytes, and release the connection.

    A body of known length within the cap is read in one call; others in chunks.

    :raises BrokenAnswer: the body could not be read (its connection is discarded).
    """
    length = raw.length_remaining
    try:
        if length is not None and length <= cap:
            data = raw.read(decode_content=False)
            capped = False
        elif length is not None:
            data = raw.read(cap, decode_content=False)
            capped = True
        else:
            data, capped = _read_unknown(raw, cap)
    except ReadTimeoutError:
        _discard(raw)
        raise BrokenAnswer("timed out reading the answer", timed_out=True) from None
    except ProtocolError as exc:
        _discard(raw)
        raise BrokenAnswer(_broken(raw, exc)) from None
    except (SSLError, OSError, http.client.HTTPException) as exc:
        _discard(raw)
        raise BrokenAnswer(f"the answer could not be read: {type(exc).__name__}") from None
    if capped:
        _discard(raw)  # the rest stays unread: this connection cannot carry another request
    else:
        raw.release_conn()
    raw_bytes = len(data)
    encoding = raw.headers.get("Content-Encoding")
    if encoding and data:
        data, over = inflate(data, encoding, cap)
        capped = capped or over
    return Body(data, raw_bytes, capped)


def _read_unknown(raw: urllib3.BaseHTTPResponse, cap: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while size <= cap:  # each pass reads at least one byte or ends the loop
        piece = raw.read(min(_CHUNK, cap + 1 - size), decode_content=False)
        if not piece:
            return b"".join(chunks), False
        chunks.append(piece)
        size += len(piece)
    return b"".join(chunks)[:cap], True


def _discard(raw: urllib3.BaseHTTPResponse) -> None:
    raw.close()  # closes the connection too
    raw.release_conn()  # hands the (closed) connection's slot back to its pool


def _broken(raw: urllib3.BaseHTTPResponse, exc: ProtocolError) -> str:
    cause = next((a for a in exc.args if isinstance(a, BaseException)), None)
    if isinstance(cause, http.client.IncompleteRead):
        # urllib3 counts what it read and what was left; http.client keeps the bytes.
        partial = cause.partial
        received = partial if isinstance(partial, int) else len(partial)
        left = cause.expected
        if isinstance(left, int) and left > 0:
            return (f"answer cut short: the connection closed after {received} of "
                    f"{received + left} bytes")
    elif isinstance(cause, ConnectionResetError):
        return "connection reset while reading the answer"
    elif raw.chunked:
        return "answer cut short: a chunked body ended without its last chunk"
    return "answer cut short: the connection closed before the whole body"


def inflate(data: bytes, content_encoding: str, cap: int = READ_CAP) -> tuple[bytes, bool]:
    """``data`` decoded as its ``Content-Encoding`` says, at most ``cap`` bytes of it;
    whether more would have come. Encodings other than gzip and deflate (and
    ``identity``) leave ``data`` as it is, as urllib3 does without their libraries.

    :raises BrokenAnswer: the data is not what its encoding says.
    """
    codings = [c.strip() for c in content_encoding.lower().split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings or not _DECODABLE.issuperset(codings):
        return data, False
    over = False
    for coding in reversed(codings):  # the last one listed was applied last
        data, stage_over = _inflate_one(data, coding, cap)
        over = over or stage_over
    return data, over


def _inflate_one(data: bytes, coding: str, cap: int) -> tuple[bytes, bool]:
    if coding == "deflate":
        # Servers send both zlib-wrapped deflate (what the RFC says) and raw deflate.
        try:
            return _inflate_members(data, zlib.MAX_WBITS, cap, members=False)
        except zlib.error:
            pass
        try:
            return _inflate_members(data, -zlib.MAX_WBITS, cap, members=False)
        except zlib.error:
            raise BrokenAnswer("the answer is not valid deflate data") from None
    try:
        return _inflate_members(data, _GZIP, cap, members=True)
    except zlib.error:
        raise BrokenAnswer("the answer is not valid gzip data") from None


def _inflate_members(data: bytes, wbits: int, cap: int, *, members: bool) -> tuple[bytes, bool]:
    """Inflate ``data`` (and, for gzip, the members that follow the first) to at most
    ``cap`` bytes. Garbage after the first member is ignored, as urllib3 does."""
    out: list[bytes] = []
    size = 0
    first = True
    while data:  # each pass consumes a whole member (at least its header) or ends
        stream = zlib.decompressobj(wbits)
        try:
            piece = stream.decompress(data, cap + 1 - size)
        except zlib.error:
            if first:
                raise
            break
        out.append(piece)
        size += len(piece)
        if size > cap:
            return b"".join(out)[:cap], True
        if not (members and stream.eof):
            break
        data = stream.unused_data
        first = False
    return b"".join(out), False

