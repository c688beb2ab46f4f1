"""Windows over an S3 object: the records that start in one stretch of it, read by one streamed GET.

A report too large for one invocation is read by several workers, each over a window
(docs/PERFORMANCE.md, "Fan-out").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any

from batchpipe_core.report import READ_BUFFER_BYTES, ReadOnly


class ByteWindow(ReadOnly):
    """The records of an object that start in one stretch of it: for a report too large for one
    invocation, each worker reads a window (docs/PERFORMANCE.md, "Fan-out").

    It begins at a record boundary (byte 0, or where the previous window ended) and passes bytes on
    up to the end of the ``max_rows``-th record, or of the record in progress once ``max_bytes`` have
    gone by, whichever comes first. A record ends at a newline outside quotes: quotes are counted as
    the bytes pass (RFC 4180: a field's quotes come in pairs, so after an odd count a newline is inside
    a quoted field, as a completion report's ResultMessage may hold one). The next window starts at
    ``consumed``, so the windows of one object tile it exactly, record by record. Whole blocks are
    counted with ``bytes.count`` and ``bytes.split``; only the block where the window ends is walked
    newline by newline.

    Counting newlines costs about a third of a nanosecond a byte (``bytes.count``), as much as a
    third of what parsing costs. When every record is at least ``min_record_bytes`` long and
    ``max_bytes`` cannot hold ``max_rows`` of them, the byte bound alone keeps the window under
    ``max_rows`` records: then only quotes are counted and ``rows`` stays 0.

    A reader of the window may use ``quotes`` and ``rows`` instead of scanning the bytes again
    (``report.count_succeeded_records``): while no quote has passed, ``rows`` (when counted) is the
    number of newlines passed.

    Given ``rest``, the object's bytes from the window's start, a byte-bounded window (rows not
    counted) that ``rest`` leaves under ``max_bytes`` cannot be cut: it is the rest of the object, so
    it counts nothing - no quotes (``quotes`` is None: a reader checks its blocks itself) - and
    passes the bytes on as they come. A file of failures that fits one window is read by Arrow
    alone, without a count of its quotes first (0.3 ns a byte, docs/PERFORMANCE.md).
    """

    def __init__(
        self,
        binary: IO[bytes],
        max_rows: int,
        max_bytes: int | None = None,
        min_record_bytes: int = 1,
        rest: int | None = None,
    ) -> None:
        self._binary = binary
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._pending = b""
        self._cut = False
        self.consumed = 0
        # The window ends at the first record end at or past byte max_bytes - 1: at most that many
        # bytes of whole records, and the one in progress.
        self.counts_rows = max_bytes is None or (max_bytes - 1) // min_record_bytes + 1 > max_rows
        self.rows = 0  # records ended so far, when counted (a last record without a newline is not)
        # No read can reach max_bytes (``read`` cuts once consumed bytes reach it) before the end.
        self.whole = not self.counts_rows and rest is not None and rest < max_bytes
        # quotes passed so far: their parity says whether a quoted field is open
        self.quotes: int | None = None if self.whole else 0

    def read(self, size: int | None = -1) -> bytes:
        if self._cut:
            return b""
        want = READ_BUFFER_BYTES if size is None or size < 0 else max(1, size)
        chunk, self._pending = (self._pending, b"") if self._pending else (self._binary.read(want), b"")
        if len(chunk) > want:
            chunk, self._pending = chunk[:want], chunk[want:]
        if not chunk:
            return b""
        if self.whole:
            self.consumed += len(chunk)
            return chunk
        if self.counts_rows:
            rows, quotes = self._records_in(chunk)
        else:
            rows, quotes = 0, (chunk.count(b'"') if b'"' in chunk else 0)
        over_bytes = self._max_bytes is not None and self.consumed + len(chunk) >= self._max_bytes
        if self.rows + rows < self._max_rows and not over_bytes:
            self.rows += rows
            self.quotes += quotes
            self.consumed += len(chunk)
            return chunk
        return self._cut_in(chunk)

    def _records_in(self, chunk: bytes) -> tuple[int, int]:
        """(newlines outside quotes, quotes) in ``chunk``, given the quotes before it."""
        if b'"' not in chunk:
            return (0 if self.quotes % 2 else chunk.count(b"\n")), 0
        pieces = chunk.split(b'"')
        outside = pieces[self.quotes % 2 :: 2]  # piece i is outside quotes when quotes before it are even
        return sum(piece.count(b"\n") for piece in outside), len(pieces) - 1

    def _cut_in(self, chunk: bytes) -> bytes:
        """The chunk up to the record end where the window stops; the whole chunk if none is in it."""
        byte_limit = None if self._max_bytes is None else self._max_bytes - 1 - self.consumed
        position, quotes = 0, self.quotes
        while True:
            newline = chunk.find(b"\n", position)
            if newline < 0:
                self.quotes = quotes + chunk.count(b'"', position)
                self.consumed += len(chunk)
                return chunk
            quotes += chunk.count(b'"', position, newline)
            if quotes % 2 == 0:
                self.rows += self.counts_rows
                if (self.counts_rows and self.rows >= self._max_rows) or (
                    byte_limit is not None and newline >= byte_limit
                ):
                    self._cut, self._pending = True, b""
                    self.quotes = quotes
                    self.consumed += newline + 1
                    return chunk[: newline + 1]
            position = newline + 1


@dataclass
class Window:
    """An open window of ``bucket/key`` from ``offset``: ``stream`` to read, then ``next_offset``."""

    stream: ByteWindow
    body: Any
    offset: int
    size: int  # the whole object's

    @property
    def end(self) -> int:
        return self.offset + self.stream.consumed

    @property
    def next_offset(self) -> int | None:
        """Where the next window starts, or None when this one reached the object's end."""
        return self.end if self.end < self.size else None

    def close(self) -> None:
        self.body.close()


def open_window(
    s3: Any,
    bucket: str,
    key: str,
    offset: int,
    max_rows: int,
    max_bytes: int | None = None,
    min_record_bytes: int = 1,
) -> Window:
    """A ByteWindow over ``bucket/key`` from ``offset`` (a record boundary), by one streamed GET.

    Byte 0 is read without a Range (an empty object has no byte range to ask for). A ranged GET
    answers with ``ContentRange`` ``bytes <first>-<last>/<size>`` (S3 API reference, GetObject:
    Range and Content-Range, RFC 9110), which gives the whole object's size."""
    ranged = {"Range": f"bytes={offset}-"} if offset else {}
    response = s3.get_object(Bucket=bucket, Key=key, **ranged)
    size = int(response["ContentRange"].rsplit("/", 1)[1]) if offset else int(response["ContentLength"])
    stream = ByteWindow(response["Body"], max_rows, max_bytes, min_record_bytes, rest=size - offset)
    return Window(stream, response["Body"], offset, size)
