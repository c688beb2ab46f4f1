"""Streaming reads of S3 Batch Operations completion reports and of CSV manifests.

A report is ``<prefix>/job-<jobId>/manifest.json`` naming one or more headerless results CSVs
(S3 user guide, "Examples: S3 Batch Operations completion reports"). Reports can hold billions of
rows, so nothing here keeps rows: S3 bodies are parsed as they arrive - by pyarrow's streaming CSV
reader in 1 MiB blocks when the AWS SDK for pandas layer provides pyarrow (about half the CPU,
docs/PERFORMANCE.md), else by the csv module over a buffered text stream; quoted fields may hold
commas and newlines - and rows are yielded one at a time. Windows over a results file are in
``byte_window``, the CSV files the pipeline writes in ``csv_upload``, and the manifest-vs-report join
in ``reconciliation``.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import itertools
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, NamedTuple

from batchpipe_core.keys import report_key
from batchpipe_core.observability import logger

try:  # pyarrow comes from ArrowLayer (template.yaml), built by sam build from layers/arrow/
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
except ImportError:  # pragma: no cover - a deployment without the layer; tests force this path
    pa = pc = pacsv = None

REPORT_FORMAT = "Report_CSV_20180820"
SUCCEEDED = "succeeded"
FAILED = "failed"
READ_BUFFER_BYTES = 1 << 20
#: The shortest record a results file can hold: a bucket name (at least 3 characters: S3 User Guide,
#: "Bucket naming rules"), a key (at least 1), the status ("failed", 6), six commas and the newline;
#: the other fields may be empty.
MIN_RESULT_RECORD_BYTES = 17
#: Header of the permanent-failures files (per attempt and per run): one row per object, key decoded.
FAILURE_HEADER = ["bucket", "key", "versionId", "httpStatus", "errorCode", "message"]
#: The header line of a failures file, as csv.writer writes FAILURE_HEADER (no field needs quoting).
FAILURE_HEADER_LINE = (",".join(FAILURE_HEADER) + "\n").encode()
#: pyarrow's block: the unit it reads, parses and converts at a time, so what bounds its memory (a few
#: blocks in flight). One record must fit in a block; a report row is at most a few KiB.
ARROW_BLOCK_BYTES = 1 << 20
#: The block of the full read of a file with failures (``arrow_result_parts`` from
#: ``accounting.tally_results``): each batch's failed rows are classified, decoded, counted by prefix
#: and written by a fixed number of kernels and Python calls, so 4 MiB batches cost a third less CPU
#: than 1 MiB ones (docs/PERFORMANCE.md) for a few MiB more memory in flight.
FULL_READ_BLOCK_BYTES = 4 << 20
#: Whether pyarrow parses blocks on its thread pool. The function has one vCPU at 1,769 MB
#: (docs/PERFORMANCE.md), where threads add coordination but no parallelism.
ARROW_THREADS = False
#: Blocks Arrow's background reader may read ahead of the batches taken from it (``_Pacer``). Left to
#: itself it queues up to 32 (``kDefaultBackgroundMaxQ`` in Arrow's async_generator.h), which from
#: an S3 body that arrives faster than it is parsed is the whole window held in memory: 128 MiB of
#: 4 MiB blocks, every byte of it memory touched for the first time in a fresh function.
READ_AHEAD_BLOCKS = 2
PYARROW, CSV_MODULE = "pyarrow", "csv"
READERS = (PYARROW, CSV_MODULE)
_ARN_PREFIX = "arn:aws:s3:::"


class ReportRow(NamedTuple):
    """One task outcome. Strings are exactly as the report gives them (keys stay URL-encoded)."""

    bucket: str
    key: str
    version_id: str  # "" when the manifest had no version column
    status: str  # "succeeded" | "failed" (lower-cased)
    http_status: int | None
    error_code: str
    message: str

    @property
    def decoded_key(self) -> str:
        return report_key(self.key)

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED


class ManifestRow(NamedTuple):
    """One row of a CSV manifest, as written (URL-encoded key; version "" when there is no column)."""

    bucket: str
    key: str
    version_id: str


@dataclass(frozen=True)
class ResultFile:
    status: str
    bucket: str
    key: str


@dataclass(frozen=True)
class ReportManifest:
    """The parsed ``manifest.json`` of a completion report and where it was read from."""

    bucket: str
    key: str
    results: tuple[ResultFile, ...]
    schema: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def bucket_name(bucket_or_arn: str) -> str:
    """Bucket name from either a name or an ``arn:aws:s3:::name`` (reports and jobs use both)."""
    return bucket_or_arn.removeprefix(_ARN_PREFIX)


def report_manifest_key(prefix: str, job_id: str) -> str:
    """Where S3 writes a job's report manifest: ``<Prefix>/job-<JobId>/manifest.json``."""
    prefix = prefix.strip("/")
    return f"{prefix}/job-{job_id}/manifest.json" if prefix else f"job-{job_id}/manifest.json"


# ---------------------------------------------------------------------------------------- parsing


def text_stream(binary: IO[bytes]) -> io.TextIOWrapper:
    """Decoded text over a byte stream (botocore StreamingBody or a file) without newline translation.

    ``newline=""`` leaves ``\\r\\n`` inside quoted fields intact for the csv module; the buffer turns
    many small reads into few large ones against the HTTP body.
    """
    if not isinstance(binary, io.BufferedIOBase):
        binary = io.BufferedReader(binary, READ_BUFFER_BYTES)  # type: ignore[arg-type]
    return io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")


#: "100".."599" -> int: one dict lookup both recognises the HTTP status column and converts it.
_HTTP_STATUS = {str(code): code for code in range(100, 600)}
_new_tuple = tuple.__new__  # builds a NamedTuple without a Python-level __new__ call per row


def _status_and_code(fifth: str, sixth: str) -> tuple[int | None, str]:
    http_status = _HTTP_STATUS.get(fifth)
    if http_status is not None:
        return http_status, sixth
    http_status = _HTTP_STATUS.get(sixth)
    if http_status is not None:
        return http_status, fifth
    return None, fifth or sixth


def report_row(fields: list[str]) -> ReportRow:
    """A results CSV record as a ReportRow, whichever order the two middle columns come in.

    AWS's ``ReportSchema`` lists ErrorCode before HTTPStatusCode but real reports put the HTTP status
    5th; the status is recognised as the three-digit column, per row, so either order (even mixed
    files) parses. A record with more than 7 fields had an unquoted comma in its message.
    """
    if len(fields) < 7:
        fields = fields + [""] * (7 - len(fields))
    bucket, key, version_id, status, fifth, sixth = fields[:6]
    message = fields[6] if len(fields) == 7 else ",".join(fields[6:])
    http_status, error_code = _status_and_code(fifth, sixth)
    return ReportRow(bucket, key, version_id, status.lower(), http_status, error_code, message)


def parse_result_rows(text: Iterable[str]) -> Iterator[ReportRow]:
    """Rows of one results CSV (no header). Blank lines carry nothing and are skipped.

    The common 7-field record is handled inline: this loop runs once per task of the job.
    """
    for fields in csv.reader(text):
        if len(fields) == 7:
            bucket, key, version_id, status, fifth, sixth, message = fields
            http_status = _HTTP_STATUS.get(fifth)
            if http_status is None:
                http_status, sixth = _status_and_code(fifth, sixth)
            if status != SUCCEEDED and status != FAILED:
                status = status.lower()
            yield _new_tuple(ReportRow, (bucket, key, version_id, status, http_status, sixth, message))
        elif fields:
            yield report_row(fields)


_RESULT_COLUMNS = ("bucket", "key", "version_id", "status", "fifth", "sixth", "message")
_HTTP_STATUS_PATTERN = "^[1-5][0-9][0-9]$"  # exactly the keys of _HTTP_STATUS
_as_report_row = functools.partial(_new_tuple, ReportRow)


def default_reader() -> str:
    """pyarrow's reader when the layer provides it, else the csv module (logged once per process)."""
    if pacsv is not None:
        return PYARROW
    _warn_csv_fallback()
    return CSV_MODULE


@functools.cache
def _warn_csv_fallback() -> None:
    logger.warning(
        "pyarrow is not importable (AWS SDK for pandas layer missing?): reading completion reports "
        "with the csv module, about twice the CPU per row"
    )


def read_result_rows(binary: IO[bytes], reader: str | None = None) -> Iterator[ReportRow]:
    """Rows of one results CSV from its bytes (an S3 StreamingBody or a file), one block at a time."""
    if (reader or default_reader()) == PYARROW:
        yield from arrow_result_rows(binary)
    else:
        with text_stream(binary) as text:
            yield from parse_result_rows(text)


def arrow_result_rows(binary: IO[bytes], block_bytes: int = ARROW_BLOCK_BYTES) -> Iterator[ReportRow]:
    """The rows of ``parse_result_rows``, parsed by pyarrow's streaming reader one record batch at a time."""
    for part in arrow_result_parts(binary, block_bytes):
        yield from batch_rows(part) if isinstance(part, pa.RecordBatch) else part


def arrow_result_parts(binary: IO[bytes], block_bytes: int = ARROW_BLOCK_BYTES) -> Iterator[Any]:
    """One results CSV as pyarrow record batches and, between them, lists of ReportRows, in file order.

    Every column is read as a string (keys and versions must stay exactly as written) and quoted
    values may hold newlines. A record that is not 7 fields wide (an unquoted comma in a message, a
    short row) cannot go into a batch: pyarrow hands its text to ``set_aside`` and it is parsed like
    the csv path does, into a list yielded after the batch it was read with.
    """
    odd_records: list[str] = []

    def set_aside(row: Any) -> str:
        odd_records.append(row.text)
        return "skip"

    batches = _open_arrow(binary, block_bytes, set_aside)
    if batches is None:
        return
    with batches:
        for batch in batches:
            if batch.num_rows:
                yield batch
            if odd_records:
                yield _odd_rows(odd_records)
    if odd_records:
        yield _odd_rows(odd_records)


def count_successes(binary: IO[bytes], block_bytes: int = ARROW_BLOCK_BYTES) -> int | None:
    """The number of records of one results CSV when every one is a plain ``succeeded`` row, else
    None (the caller then reads the rows with ``arrow_result_parts``).

    A report's manifest.json names each results file's ``TaskExecutionStatus`` (S3 User Guide,
    "Completion reports"), so nearly all of a healthy report's bytes are in files of successes, which
    only need counting: Arrow still parses every record (and the stream wrapper still checks UTF-8), but
    converts only the status column. A record of another status or width ends the count early.
    """
    odd: list[bool] = []

    def refuse(row: Any) -> str:
        odd.append(True)
        return "skip"

    batches = _open_arrow(binary, block_bytes, refuse, include=["status"])
    if batches is None:
        return 0
    rows = 0
    with batches:
        for batch in batches:
            if odd or not _all_succeeded(batch.column(0)):
                return None
            rows += batch.num_rows
    return None if odd else rows


def count_succeeded_records(
    binary: IO[bytes], block_bytes: int = ARROW_BLOCK_BYTES, reader: str | None = None
) -> int | None:
    """The number of records of a results CSV the report's manifest.json lists as ``succeeded``, by
    counting record ends where the bytes allow it and with ``count_successes`` (Arrow; with
    ``reader`` ``csv``, ``count_successes_csv``) from the first stretch they do not; None when that
    count refuses (the caller then reads the rows).

    S3 writes one set of results files per task status and names each file's status in manifest.json
    (S3 User Guide, "Examples: S3 Batch Operations completion reports",
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/batch-ops-examples-reports.html), so a
    succeeded file's records need counting, not parsing. In bytes with no ``"`` no field is quoted, so
    no newline is inside a field, and with no ``\r`` every record ends with one ``\n``: the records
    are the newlines (``bytes.count``, ~0.31 ns a byte against ~0.7 for Arrow's tokenizer). Each
    block read is checked for ``"``, ``\r`` and bytes past ASCII (one ``memchr``-speed pass each,
    ~0.04 ns a byte; the ``"`` check and the newline count are the window's own when ``binary`` is a
    ``byte_window.ByteWindow`` that made them, so they are not made twice). From the first block that
    has any, the rest - from the last record end before it - goes to ``count_successes``, which
    parses (quoted fields, CRLF) and checks UTF-8 as before. So does a last record without a
    newline, and a record longer than ``block_bytes``.

    What the count assumes, because checking it costs as much as Arrow's parse (docs/PERFORMANCE.md):
    - every record's status is ``succeeded``, as the file's manifest.json entry says: a search for
      ``,failed,`` costs 0.31-0.44 ns a byte (``re`` or ``bytes.find``), as much as the count. One
      record per block (the first that starts in it) is checked, which sends a file labelled wrongly
      as a whole to Arrow for nothing; a lone record of another status is counted as a success here,
      and caught by the merge where DescribeJob gave S3's own ``NumberOfTasksFailed`` (optional):
      the failures read must equal it, else the attempt is joined (``fanout._complete_report_adds_up``).
    - no line is blank (Arrow skips blank lines; finding ``\n\n`` costs 0.33-0.85 ns a byte). A
      blank line is counted as a record: more records than the job's objects, which a Complete
      job's merge does not accept (``fanout.merge_parts``): the attempt is joined and its totals
      come from the rows (tests/unit/test_process_report.py).
    """
    rest = count_successes if (reader or default_reader()) == PYARROW else count_successes_csv
    fused = getattr(binary, "quotes", None) == 0  # a ByteWindow counts quotes (and maybe newlines)
    counts_rows = fused and getattr(binary, "counts_rows", False)
    rows = 0
    pending = b""  # the record in progress: what follows the last newline read
    while chunk := binary.read(READ_BUFFER_BYTES):
        if fused:
            quoted = binary.quotes  # type: ignore[attr-defined]
            newlines = binary.rows - rows if counts_rows else None  # type: ignore[attr-defined]
        else:
            quoted, newlines = b'"' in chunk, None
        if quoted or b"\r" in chunk or not chunk.isascii() or not _first_record_succeeded(chunk):
            return _counted_by(rest, rows, pending + chunk, binary, block_bytes)
        if newlines is None:
            newlines = chunk.count(b"\n")
        if newlines:
            rows += newlines
            pending = chunk[chunk.rfind(b"\n") + 1 :]
        else:
            pending += chunk
            if len(pending) > block_bytes:
                return _counted_by(rest, rows, pending, binary, block_bytes)
    return _counted_by(rest, rows, pending, binary, block_bytes) if pending else rows


def _first_record_succeeded(chunk: bytes) -> bool:
    """Whether the first record that starts and ends in ``chunk`` (if any) has the status ``succeeded``:
    a sample, one per block, that catches a file of other records labelled as successes."""
    start = chunk.find(b"\n") + 1
    end = chunk.find(b"\n", start) if start else -1
    if end < 0:
        return True
    fields = chunk[start:end].split(b",", 4)
    return len(fields) == 5 and fields[3] == b"succeeded"


def _counted_by(
    count: Callable[[IO[bytes], int], int | None], rows: int, head: bytes, binary: IO[bytes], block_bytes: int
) -> int | None:
    """``rows`` plus ``count`` of ``head`` and the rest of ``binary`` (``head`` starts a record)."""
    if rows and head.startswith(codecs.BOM_UTF8):
        return None  # both readers skip the mark at the start of what they read; here it is inside a file
    more = count(_Prepended(head, binary), block_bytes)
    return None if more is None else rows + more


def count_successes_csv(binary: IO[bytes], block_bytes: int = 0) -> int | None:
    """``count_successes`` with the csv module (no pyarrow): the number of records when every one is
    a plain ``succeeded`` record of 7 fields, else None. Blank lines carry nothing and are skipped."""
    rows = 0
    with text_stream(binary) as text:
        for fields in csv.reader(text):
            if fields:
                if len(fields) != 7 or fields[3] != SUCCEEDED:
                    return None
                rows += 1
    return rows


class ReadOnly(io.RawIOBase):
    """A raw byte stream defined by its ``read``: ``readinto`` (what ``io.BufferedReader`` calls)
    copies a read into the caller's buffer."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Prepended(ReadOnly):
    """``head``, then the rest of ``binary``, in reads as full as asked: Arrow takes each read as a
    block, and a record may span at most two (a short read - the head, a network body's - would
    make a block smaller than the record that straddles it)."""

    def __init__(self, head: bytes, binary: IO[bytes]) -> None:
        self._head, self._binary = head, binary

    def read(self, size: int | None = -1) -> bytes:
        wanted = -1 if size is None or size < 0 else max(1, size)
        parts = [self._head[:wanted] if wanted >= 0 else self._head]
        self._head = self._head[len(parts[0]) :]
        got = len(parts[0])
        while wanted < 0 or got < wanted:
            chunk = self._binary.read(wanted - got if wanted >= 0 else READ_BUFFER_BYTES)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)


def _all_succeeded(status: Any) -> bool:
    """Whether every value of a string array is ``succeeded``: its offsets step by 9 from 0 and its
    bytes are ``succeeded`` repeated, two memory comparisons against a template where a comparison
    kernel looks at each value (a fifth of the count's CPU)."""
    rows = len(status)
    if not rows:
        return True
    if status.offset or status.null_count:  # not how the reader builds a column; compared value by value
        return bool(pc.all(pc.equal(status, SUCCEEDED)).as_py())
    offsets, data = _succeeded_template(rows)
    _, status_offsets, status_data = status.buffers()
    offset_bytes, data_bytes = 4 * (rows + 1), len(SUCCEEDED) * rows
    return (
        status_offsets.size >= offset_bytes
        and status_offsets.slice(0, offset_bytes).equals(offsets.slice(0, offset_bytes))
        and status_data is not None
        and status_data.size >= data_bytes
        and status_data.slice(0, data_bytes).equals(data.slice(0, data_bytes))
    )


_templates: list[Any] = []


def _succeeded_template(rows: int) -> tuple[Any, Any]:
    """(int32 offsets 0, 9, 18, ..., ``succeeded`` repeated) for at least ``rows`` values, grown by
    doubling and kept for the process: a batch is at most a block's records."""
    if not _templates or len(_templates[1]) < len(SUCCEEDED) * rows:
        size = max(rows, 2 * len(_templates[1]) // len(SUCCEEDED) if _templates else 8192)
        offsets = pa.array(range(0, len(SUCCEEDED) * (size + 1), len(SUCCEEDED)), pa.int32()).buffers()[1]
        _templates[:] = [offsets, pa.py_buffer(SUCCEEDED.encode() * size)]
    return _templates[0], _templates[1]


def _open_arrow(
    binary: IO[bytes], block_bytes: int, on_invalid: Callable[[Any], str], include: Sequence[str] = ()
) -> Any:
    """pyarrow's streaming reader over a results CSV (None when it has no bytes): every column read
    as a string (keys and versions stay exactly as written), quoted values may hold newlines, and a
    record that is not 7 fields wide goes to ``on_invalid``; read as ``open_paced_csv`` reads."""
    return open_paced_csv(
        binary,
        read_options=pacsv.ReadOptions(
            column_names=_RESULT_COLUMNS, block_size=block_bytes, use_threads=ARROW_THREADS
        ),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(_RESULT_COLUMNS, pa.string()),
            check_utf8=False,  # _CarriageReturnsKept checks it, for less
            include_columns=list(include),
        ),
    )


def open_paced_csv(binary: IO[bytes], **options: Any) -> Any:
    """``pyarrow.csv.open_csv(binary, **options)`` over ``binary`` as ``_CarriageReturnsKept`` reads it
    (every CRLF in one buffer, UTF-8 checked), its reads held to ``READ_AHEAD_BLOCKS`` ahead of the
    batches taken (``_PacedBatches``); use it in a ``with``. None when the stream has no bytes (or a
    BOM alone: no rows); otherwise raises what ``open_csv`` raises, with no read left held."""
    pacer = _Pacer(READ_AHEAD_BLOCKS)
    try:
        reader = pacsv.open_csv(_CarriageReturnsKept(binary, pacer), **options)
    except BaseException as error:
        pacer.finish()  # no batch will be taken: let any read Arrow started go
        if isinstance(error, pa.ArrowInvalid) and str(error).startswith("Empty CSV file"):
            return None
        raise
    return _PacedBatches(reader, pacer)


class _Pacer:
    """Holds the reads of Arrow's background reader to ``ahead`` blocks past the batches taken.

    Arrow's streaming CSV reader reads its stream on an I/O thread and queues up to 32 blocks
    before any is parsed; a block is parsed when its batch is asked for (on Arrow's threads, even
    with ``use_threads`` off: 1-2 ms of the 49 MiB failure file's 50 on the asking thread). Here a
    read waits while ``ahead`` blocks are read and not yet taken as batches, so the blocks in memory
    stay a few, each freed (and its memory used again) once its batch is taken. A block holds whole
    records (a record must fit in one: ``ARROW_BLOCK_BYTES``), so the batch asked for never needs a
    block the wait holds back; even so no wait is unbounded: a read waits at most ``asking_seconds``
    while a batch is being asked for and ``idle_seconds`` otherwise before it goes ahead, so a
    reader that stops taking batches without closing slows the reads but never stops them."""

    def __init__(self, ahead: int, asking_seconds: float = 0.05, idle_seconds: float = 0.5) -> None:
        self._ahead = ahead
        self._timeouts = (idle_seconds, asking_seconds)
        self._changed = threading.Condition()
        self._reads = 0
        self._taken = 0
        self._asking = False
        self._finished = False

    def before_read(self) -> None:
        with self._changed:
            while not self._finished and self._reads - self._taken >= self._ahead:
                state = (self._taken, self._asking)
                if not self._changed.wait(self._timeouts[self._asking]) and state == (
                    self._taken,
                    self._asking,
                ):
                    break  # nothing moved: read anyway
            self._reads += 1

    def asking(self) -> None:
        with self._changed:
            self._asking = True
            self._changed.notify_all()

    def taken(self) -> None:
        with self._changed:
            self._asking = False
            self._taken += 1
            self._changed.notify_all()

    def finish(self) -> None:
        with self._changed:
            self._finished = True
            self._changed.notify_all()


class _PacedBatches:
    """Arrow's record batch reader, its batches counted as taken for the ``_Pacer`` of its stream; a
    context manager that closes the reader and lets any held read go."""

    def __init__(self, reader: Any, pacer: _Pacer) -> None:
        self._reader, self._pacer = reader, pacer

    def __iter__(self) -> _PacedBatches:
        return self

    def __next__(self) -> Any:
        self._pacer.asking()
        try:
            return self._reader.read_next_batch()
        finally:
            self._pacer.taken()

    def __enter__(self) -> _PacedBatches:
        return self

    def __exit__(self, *_: Any) -> None:
        self._pacer.finish()
        self._reader.close()


class _CarriageReturnsKept(io.RawIOBase):
    """A byte stream whose reads never end with ``\r`` while more follows (apache/arrow#51368), and
    that raises UnicodeDecodeError where the bytes are not UTF-8.

    Arrow's CSV reader drops the ``\n`` of a quoted ``\r\n`` when one read ends between the two
    (pyarrow 26 included; tests/unit/test_report_readers.py reproduces it): a ResultMessage would
    silently lose a byte. Holding a trailing ``\r`` back for the next read keeps every CRLF in one
    buffer.

    UTF-8 is checked here rather than by Arrow's converter (``check_utf8=False``): Arrow validates
    every string value, about a quarter of the parse (docs/PERFORMANCE.md), while a report is nearly
    all ASCII (keys are URL-encoded) and ``bytes.isascii`` over a block is a fraction of that; only a
    block with other bytes goes through an incremental decoder, which carries a character split
    between two blocks. One Python call per block: nothing per row.
    """

    def __init__(self, binary: IO[bytes], pacer: _Pacer) -> None:
        self._binary = binary
        self._pacer = pacer
        self._held = b""
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._partial_character = False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        self._pacer.before_read()
        while True:
            if size is None or size < 0:
                chunk = self._binary.read()
            else:
                chunk = self._binary.read(max(1, size - len(self._held)))
            self._check_utf8(chunk)
            data, self._held = self._held + chunk, b""
            if not chunk or not data.endswith(b"\r"):
                return data
            data, self._held = data[:-1], b"\r"
            if data:
                return data

    def _check_utf8(self, chunk: bytes) -> None:
        if not chunk:
            self._utf8.decode(b"", final=True)  # the stream must not end inside a character
        elif self._partial_character or not chunk.isascii():
            self._utf8.decode(chunk)
            self._partial_character = bool(self._utf8.getstate()[0])


def batch_rows(batch: Any) -> Iterator[ReportRow]:
    """One record batch as ReportRows; a column that holds one value throughout is not converted per row."""
    rows = batch.num_rows
    bucket, key, version_id, status, fifth, sixth, message = batch.columns
    http_statuses, error_codes = status_and_code_arrays(fifth, sixth)
    columns = zip(
        _python_values(bucket, rows),
        key.to_pylist(),
        _python_values(version_id, rows),
        _python_values(pc.utf8_lower(status), rows),
        _python_values(http_statuses, rows),
        _python_values(error_codes, rows),
        _python_values(message, rows),
        strict=False,  # constant columns are endless repeats; the key list sets the length
    )
    return map(_as_report_row, columns)


def status_and_code_arrays(fifth: Any, sixth: Any) -> tuple[Any, Any]:
    """(HTTP status as int16, null when none; error code) of a batch's 5th and 6th columns.

    The rule of ``_status_and_code``, decided for the whole batch when it can be: the 5th column when
    it holds an HTTP status in every row (real reports), the 6th when it does and the 5th never does
    (the ``ReportSchema`` order); per row only when a batch mixes both orders. Deciding over any
    subset of rows gives each row the same answer, so a filtered batch may be passed.
    """
    fifth_is_status = pc.match_substring_regex(fifth, _HTTP_STATUS_PATTERN)
    if pc.all(fifth_is_status).as_py():
        return pc.cast(fifth, pa.int16()), sixth
    if (
        pc.all(pc.match_substring_regex(sixth, _HTTP_STATUS_PATTERN)).as_py()
        and not pc.any(fifth_is_status).as_py()
    ):
        return pc.cast(sixth, pa.int16()), fifth
    pairs = list(map(_status_and_code, fifth.to_pylist(), sixth.to_pylist()))
    return pa.array([p[0] for p in pairs], pa.int16()), pa.array([p[1] for p in pairs], pa.string())


def _python_values(column: Any, rows: int) -> Iterable:
    """A column's values: one value repeated when it is the same in every row (bucket, status, the
    message of successes), else a list. Comparing in Arrow costs far less than a str per row."""
    first = column[0].as_py()
    if first is not None and column.null_count == 0 and pc.all(pc.equal(column, first)).as_py():
        return itertools.repeat(first, rows)
    return column.to_pylist()


def _odd_rows(records: list[str]) -> Iterator[ReportRow]:
    """Records pyarrow set aside, parsed as the csv path would (``records`` is emptied)."""
    taken = records[:]
    records.clear()
    for text in taken:
        for fields in csv.reader(io.StringIO(text, newline="")):
            if fields:
                yield report_row(fields)


def parse_manifest_rows(text: Iterable[str]) -> Iterator[ManifestRow]:
    """Rows of a ``S3BatchOperations_CSV_20180820`` manifest with fields Bucket,Key[,VersionId]."""
    for number, fields in enumerate(csv.reader(text), start=1):
        width = len(fields)
        if width == 3:
            yield _new_tuple(ManifestRow, fields)
        elif width == 2:
            yield _new_tuple(ManifestRow, (fields[0], fields[1], ""))
        elif width:
            raise ValueError(f"manifest row {number} has {width} fields; expected Bucket,Key[,VersionId]")


def parse_report_manifest(document: dict[str, Any], bucket: str, key: str) -> ReportManifest:
    """Validates the report format so a future format change fails loudly instead of miscounting."""
    report_format = document.get("Format")
    if report_format != REPORT_FORMAT:
        raise ValueError(f"s3://{bucket}/{key}: report format {report_format!r}, expected {REPORT_FORMAT}")
    results = tuple(
        ResultFile(
            status=str(result.get("TaskExecutionStatus", "")).lower(),
            bucket=bucket_name(result.get("Bucket") or bucket),
            key=result["Key"],
        )
        for result in document.get("Results", [])
    )
    return ReportManifest(bucket=bucket, key=key, results=results, schema=document.get("ReportSchema", ""))


# ------------------------------------------------------------------------------------ byte windows
# ------------------------------------------------------------------------------------ S3 reading


def read_report_manifest(s3: Any, bucket: str, prefix: str, job_id: str) -> ReportManifest | None:
    """The job's report manifest, or None when S3 wrote no report (no task was ever invoked)."""
    bucket = bucket_name(bucket)
    key = report_manifest_key(prefix, job_id)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return parse_report_manifest(json.loads(body), bucket, key)


def iter_report_rows(s3: Any, manifest: ReportManifest, reader: str | None = None) -> Iterator[ReportRow]:
    """Every row of every results file, one S3 stream open at a time (``reader``: one of READERS)."""
    reader = reader or default_reader()
    for result in manifest.results:
        body = s3.get_object(Bucket=result.bucket, Key=result.key)["Body"]
        try:
            yield from read_result_rows(body, reader)
        finally:
            body.close()


def iter_report_parts(s3: Any, manifest: ReportManifest, reader: str | None = None) -> Iterator[Any]:
    """Every results file's content in order, as pyarrow record batches (reader ``pyarrow``) and
    iterables of ReportRows (records pyarrow set aside; whole files with the csv module).

    For callers that can work on a batch at a time (``accounting.tally_parts``): no row becomes a
    Python object unless the caller asks.
    """
    reader = reader or default_reader()
    for result in manifest.results:
        body = s3.get_object(Bucket=result.bucket, Key=result.key)["Body"]
        try:
            if reader == PYARROW:
                yield from arrow_result_parts(body)
            else:
                yield read_result_rows(body, CSV_MODULE)
        finally:
            body.close()


def iter_manifest_rows(s3: Any, bucket: str, key: str) -> Iterator[ManifestRow]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with text_stream(body) as text:
        yield from parse_manifest_rows(text)


def manifest_field_count(s3: Any, bucket: str, key: str) -> int:
    """2 or 3: whether a manifest has a VersionId column, from its first record (one ranged GET).

    64 KiB holds any first record: an encoded 1,024-byte key is at most ~3 KiB.
    """
    head = s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-65535")["Body"].read()
    for fields in csv.reader(io.StringIO(head.decode("utf-8-sig", errors="replace"), newline="")):
        if fields:
            if len(fields) not in (2, 3):
                raise ValueError(
                    f"s3://{bucket}/{key}: {len(fields)} fields; expected Bucket,Key[,VersionId]"
                )
            return len(fields)
    raise ValueError(f"s3://{bucket}/{key}: empty manifest")
