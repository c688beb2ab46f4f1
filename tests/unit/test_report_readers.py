"""The two results-CSV readers - pyarrow's streaming reader and the csv-module fallback - agree.

ProcessReport reads reports with pyarrow when the AWS SDK for pandas layer provides it; these tests
pin what only that path has to get right: records pyarrow cannot put in a batch, the HTTP-status
column decided per batch, block boundaries inside quoted values, bounded memory, and the fallback.
"""

from __future__ import annotations

import csv
import functools
import io
import threading
import time
import tracemalloc
from collections import Counter

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpipe_core import accounting, report
from batchpipe_core.accounting import tally_parts, tally_results
from batchpipe_core.classification import BY_ERROR_CODE, Disposition
from batchpipe_core.report import (
    CSV_MODULE,
    PYARROW,
    ReportRow,
    arrow_result_parts,
    arrow_result_rows,
    count_successes,
    default_reader,
    read_result_rows,
)


def both(data: bytes, **arrow_options) -> tuple[list[ReportRow], list[ReportRow]]:
    arrow = list(arrow_result_rows(io.BytesIO(data), **arrow_options))
    fallback = list(read_result_rows(io.BytesIO(data), CSV_MODULE))
    return arrow, fallback


def csv_bytes(records: list[list[str]]) -> bytes:
    text = io.StringIO(newline="")
    csv.writer(text, lineterminator="\r\n").writerows(records)  # so a lone \r gets quoted too
    return text.getvalue().encode()


# A field as a report may hold it: anything printable, with the characters CSV must quote.
FIELD = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00\ufeff")
    | st.sampled_from([",", '"', "\n", "\r", " "]),
    max_size=12,
)
STATUS = st.sampled_from(["succeeded", "failed", "Failed", "SUCCEEDED"])
HTTP = st.sampled_from(["200", "404", "503", "100", "599", "", "600", "20", "abc"])


@st.composite
def records(draw):
    record = [draw(FIELD), draw(FIELD), draw(FIELD), draw(STATUS), draw(HTTP), draw(FIELD), draw(FIELD)]
    if draw(st.booleans()):  # the ReportSchema order: error code 5th, HTTP status 6th
        record[4], record[5] = record[5], record[4]
    return record


@settings(max_examples=150, deadline=None)
@given(st.lists(records(), min_size=1, max_size=30), st.booleans())
def test_readers_agree_on_any_well_formed_report(rows, same_order):
    if same_order:  # a whole batch in one order takes the vectorised path, mixed ones the per-row path
        rows = [row[:4] + sorted(row[4:6], key=lambda f: not f.isdigit()) + row[6:] for row in rows]
    arrow, fallback = both(csv_bytes(rows))
    assert arrow == fallback
    assert len(arrow) == len(rows)


ERROR_CODE = st.sampled_from([*BY_ERROR_CODE, "Mystery", ""]) | FIELD


@st.composite
def outcome_records(draw):
    """A results record whose error code is usually one the classification tables know."""
    record = draw(records())
    code_at = 4 if record[5].isdigit() and len(record[5]) == 3 else 5
    record[code_at] = draw(ERROR_CODE)
    if draw(st.integers(0, 9)) == 0:  # an unquoted comma in the message: pyarrow sets it aside
        return [*record, draw(FIELD)]
    return record


def tallied(parts, unknown: Disposition):
    retried, permanent = [], []
    counts = tally_parts(parts, unknown=unknown, on_retriable=retried.append, on_permanent=permanent.append)
    return counts, retried, permanent


@settings(max_examples=150, deadline=None)
@given(
    st.lists(outcome_records(), min_size=1, max_size=40),
    st.sampled_from(list(Disposition)),
    st.sampled_from([1 << 10, 1 << 20]),
    st.sampled_from([accounting._Outcomes.DENSE_PAIRS, 0]),
)
def test_counting_in_arrow_agrees_with_counting_rows(rows, unknown, block_bytes, dense_pairs):
    """ProcessReport's Complete-job path (batches counted in Arrow, only failed rows converted, each
    row's (5th, 6th column) pair numbered densely or looked up among the distinct ones) against the csv-module fallback row by row: the same counts
    and the same rows to each sink, in the same order except for records pyarrow set aside (they
    follow the batch they were read with)."""
    data = csv_bytes(rows)
    parts = arrow_result_parts(io.BytesIO(data), block_bytes)
    dense, accounting._Outcomes.DENSE_PAIRS = accounting._Outcomes.DENSE_PAIRS, dense_pairs
    try:
        arrow_counts, *arrow_sinks = tallied(parts, unknown)
    finally:
        accounting._Outcomes.DENSE_PAIRS = dense
    fallback_counts, *fallback_sinks = tallied([read_result_rows(io.BytesIO(data), CSV_MODULE)], unknown)
    assert arrow_counts == fallback_counts
    assert arrow_counts.rows == len(rows)
    if all(len(row) == 7 for row in rows):
        assert arrow_sinks == fallback_sinks
    else:
        assert [Counter(sink) for sink in arrow_sinks] == [Counter(sink) for sink in fallback_sinks]


SUCCESS = st.builds(
    lambda bucket, key, version, message: [bucket, key, version, "succeeded", "200", "", message],
    FIELD,
    FIELD,
    FIELD,
    FIELD,
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(SUCCESS, max_size=40),
    st.lists(outcome_records(), max_size=3),
    st.sampled_from(list(Disposition)),
    st.sampled_from([1 << 10, 1 << 20]),
    st.sampled_from(["succeeded", "failed", None]),
    st.data(),
)
def test_a_file_of_successes_is_only_counted_and_any_other_record_sends_it_the_long_way(
    successes, others, unknown, block_bytes, status, data
):
    """``tally_results`` whatever the manifest says of the file: a file of plain successes labelled
    succeeded is counted without a row object; a record of another status or width anywhere in it
    (S3 would not write one, but nothing relies on that) and it is read again row by row. Counts and
    sink rows always equal the csv-module path's."""
    rows = list(successes)
    for record in others:
        rows.insert(data.draw(st.integers(0, len(rows))), record)
    encoded = csv_bytes(rows)
    opened = []

    def open_stream():
        opened.append(io.BytesIO(encoded))
        return opened[-1]

    retried, permanent = [], []
    counts = tally_results(
        open_stream,
        status,
        reader=PYARROW,
        unknown=unknown,
        on_retriable=retried.append,
        on_permanent=permanent.append,
    )
    fallback_counts, *fallback_sinks = tallied([read_result_rows(io.BytesIO(encoded), CSV_MODULE)], unknown)

    assert counts == fallback_counts
    assert [Counter(retried), Counter(permanent)] == [Counter(sink) for sink in fallback_sinks]
    plain = all(row[3] == "succeeded" and len(row) == 7 for row in rows)
    assert len(opened) == (1 if status != "succeeded" or plain else 2)


def test_counting_successes_stops_at_the_first_record_that_is_not_one():
    ok = [["b", f"k{i}", "", "succeeded", "200", "", "Successful"] for i in range(3)]
    assert count_successes(io.BytesIO(csv_bytes(ok))) == 3
    assert count_successes(io.BytesIO(b"")) == 0
    for odd in (
        ["b", "k", "", "failed", "503", "SlowDown", "slow"],
        ["b", "k", "", "Succeeded", "200", "", ""],
        ["b", "k"],
    ):
        assert count_successes(io.BytesIO(csv_bytes([*ok, odd]))) is None
    with pytest.raises(UnicodeDecodeError):  # UTF-8 is checked in every column, converted or not
        count_successes(io.BytesIO(csv_bytes(ok) + b"b,k\xff,,succeeded,200,,x\r\n"))


def test_a_report_mixing_both_column_orders_is_decided_per_row():
    data = b"b,k1,,failed,503,SlowDown,m\nb,k2,,failed,NoSuchKey,404,m\nb,k3,,succeeded,200,,ok\n"
    arrow, fallback = both(data)
    assert arrow == fallback
    assert [(r.http_status, r.error_code) for r in arrow] == [
        (503, "SlowDown"),
        (404, "NoSuchKey"),
        (200, ""),
    ]


def test_records_of_the_wrong_width_are_kept_not_dropped():
    data = (
        b"b,k1,,succeeded,200,,ok\n"
        b"b,k2,,failed,400,InvalidRequest,bad, really, bad\n"  # unquoted commas: 9 fields
        b'b,k3,,failed,400,InvalidRequest,"two\nlines", and more\n'
        b"b,k4,,failed\n"  # short
        b"b,k5,,succeeded,200,,ok\n"
    )
    arrow, fallback = both(data)
    assert sorted(arrow) == sorted(fallback)  # set-aside records follow their batch
    by_key = {row.key: row for row in arrow}
    assert by_key["k2"].message == "bad, really, bad"
    assert by_key["k3"].message == "two\nlines, and more"
    assert by_key["k4"] == ReportRow("b", "k4", "", "failed", None, "", "")
    assert len(arrow) == 5


def test_an_empty_results_file_has_no_rows():
    for data in (b"", b"\xef\xbb\xbf", b"\n\n"):
        assert both(data) == ([], [])


@pytest.mark.parametrize("offset", range(14))
def test_a_quoted_crlf_split_between_two_reads_keeps_both_bytes(offset):
    """apache/arrow#51368: pyarrow alone drops the \n when a read ends between \r and \n."""
    record = b'k,,,failed,500,InternalError,"ab\r\ncd"\r\n'
    data = b"p,,,succeeded,200,," + b"y" * offset + b"\r\n" + record * 200
    for block_bytes in (64, 101):
        arrow, fallback = both(data, block_bytes=block_bytes)
        assert arrow == fallback
        assert {row.message for row in arrow[1:]} == {"ab\r\ncd"}


def test_quoted_newlines_across_block_boundaries():
    message = 'Lambda returned function error: {"errorMessage":"x, y"}\nat line 2\r\nat line 3'
    rows = [["src", f"k{i}", "", "failed", "200", "TemporaryFailure", message] for i in range(3_000)]
    rows += [["src", f"s{i}", "v", "succeeded", "200", "", "Successful"] for i in range(3_000)]
    arrow, fallback = both(csv_bytes(rows), block_bytes=4096)  # ~40 rows a block: many batches
    assert arrow == fallback
    assert len(arrow) == 6_000 and arrow[0].message == message and arrow[-1].key == "s2999"


class GeneratedReport(io.RawIOBase):
    """A results CSV made as it is read, so the test itself holds no report."""

    def __init__(self, rows: int) -> None:
        self._lines = (
            f'src,photos/2024/{i:09d}.jpg,,failed,503,SlowDown,"Please reduce your request rate, {i}"\r\n'.encode()
            for i in range(rows)
        )
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while len(self._pending) < len(buffer):
            line = next(self._lines, None)
            if line is None:
                break
            self._pending += line
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def test_arrow_reader_memory_does_not_grow_with_rows():
    def peaks(rows: int) -> tuple[int, int]:
        arrow_peak = count = 0
        tracemalloc.start()
        for count, _row in enumerate(arrow_result_rows(io.BufferedReader(GeneratedReport(rows), 1 << 16)), 1):
            if count % 1_000 == 0:
                arrow_peak = max(arrow_peak, pa.total_allocated_bytes())
        _, python_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert count == rows
        return arrow_peak, python_peak

    _, small_python = peaks(30_000)  # ~3 blocks
    large_arrow, large_python = peaks(150_000)  # ~15 blocks, 15 MB of CSV
    assert large_arrow < 16 << 20, large_arrow  # a few 1 MiB blocks in flight, not the file
    # pyarrow's read-ahead (1 MiB blocks read through Python) fills up over the first blocks: ~4.5 MB
    # at 30,000 rows, ~7 MB from 150,000 to 600,000. Holding the rows would take ~50 MB here.
    assert large_python < 2 * small_python + (1 << 20), (small_python, large_python)


class CountedReads(io.RawIOBase):
    """A stream that notes, at each read, how many blocks it has given that the consumer has not
    taken as batches yet (``taken`` is the consumer's count)."""

    def __init__(self, binary) -> None:
        self._binary, self.reads, self.taken, self.most_ahead = binary, 0, 0, 0

    def readable(self) -> bool:
        return True

    def read(self, size=-1) -> bytes:
        chunk = self._binary.read(size)
        if chunk:
            self.reads += 1
            self.most_ahead = max(self.most_ahead, self.reads - self.taken)
        return chunk


def _read_slowly(data: bytes) -> CountedReads:
    """Every batch of ``data`` in 64 KiB blocks, taken by a consumer slower than the reads (as the
    report stage is: its work on a batch costs more than reading the bytes)."""
    stream = CountedReads(io.BytesIO(data))
    rows = 0
    for part in arrow_result_parts(stream, block_bytes=1 << 16):
        stream.taken += 1
        rows += len(part)
        time.sleep(0.002)
    assert rows == data.count(b"\n")
    return stream


def test_arrow_reads_stay_a_few_blocks_ahead_of_the_batches_taken(monkeypatch):
    """Arrow's background reader queues up to 32 blocks of a stream before any is parsed (the whole
    window, from an S3 body that arrives faster than it is parsed); the reads are held to
    READ_AHEAD_BLOCKS ahead of the batches taken (one more while a taken batch is being counted)."""
    data = b"".join(b"bkt,k%06d,,failed,404,NoSuchKey,Not found\n" % i for i in range(60_000))  # ~40 blocks
    # Waits that never run out here, so the bound is exact however slow the machine.
    monkeypatch.setattr(
        report, "_Pacer", functools.partial(report._Pacer, asking_seconds=60, idle_seconds=60)
    )

    ahead = report.READ_AHEAD_BLOCKS
    paced = _read_slowly(data)
    monkeypatch.setattr(report, "READ_AHEAD_BLOCKS", 64)
    unpaced = _read_slowly(data)

    assert paced.reads == unpaced.reads >= 30
    assert paced.most_ahead <= ahead + 1 < 10
    assert unpaced.most_ahead >= 10  # what the test would see without the pacing


def test_a_held_read_goes_ahead_when_a_batch_is_taken_when_nothing_moves_and_once_finished():
    """No wait is unbounded: a consumer that stops taking batches without closing slows the reads
    but never stops them (Arrow's reader thread is never left blocked)."""
    held = report._Pacer(1, asking_seconds=60, idle_seconds=60)
    held.before_read()
    threading.Timer(0.05, held.taken).start()
    started = time.monotonic()
    held.before_read()  # released by the batch taken
    assert 0.04 <= time.monotonic() - started < 30

    stalled = report._Pacer(1, asking_seconds=0.02, idle_seconds=0.1)
    stalled.before_read()
    started = time.monotonic()
    stalled.before_read()  # nothing taken, nobody asking: the idle bound, then the read
    assert 0.09 <= time.monotonic() - started < 30
    stalled.asking()
    started = time.monotonic()
    stalled.before_read()  # a batch asked for and none coming: the asking bound
    assert 0.015 <= time.monotonic() - started < 30
    stalled.finish()
    started = time.monotonic()
    for _ in range(5):
        stalled.before_read()  # finished: no wait at all
    assert time.monotonic() - started < 0.09


def test_without_pyarrow_the_csv_module_reads_and_one_warning_is_logged(monkeypatch, caplog):
    assert default_reader() == PYARROW
    monkeypatch.setattr(report, "pacsv", None)
    report._warn_csv_fallback.cache_clear()
    caplog.clear()
    try:
        assert default_reader() == CSV_MODULE
        rows = list(read_result_rows(io.BytesIO(b"b,k,,failed,503,SlowDown,again\n")))
        assert rows == [ReportRow("b", "k", "", "failed", 503, "SlowDown", "again")]
        assert default_reader() == CSV_MODULE
        warnings = [r for r in caplog.records if "pyarrow is not importable" in r.getMessage()]
        assert [r.levelname for r in warnings] == ["WARNING"]  # once per process, not per file
    finally:
        report._warn_csv_fallback.cache_clear()


@pytest.mark.parametrize("reader", [PYARROW, CSV_MODULE])
def test_invalid_utf8_fails_loudly(reader):
    with pytest.raises((UnicodeDecodeError, pa.ArrowInvalid)):
        list(read_result_rows(io.BytesIO(b"b,\xff\xfe,,succeeded,200,,ok\n"), reader))


class Trickle(io.RawIOBase):
    """A byte stream that returns at most ``step`` bytes a read, so block edges fall anywhere."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._step = data, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size = min(len(buffer), self._step, len(self._data))
        buffer[:size], self._data = self._data[:size], self._data[size:]
        return size


ASCII_ROWS = b"b,k,,succeeded,200,,ok\n" * 50


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64])
def test_utf8_split_between_reads_is_accepted_and_bad_utf8_anywhere_is_not(step):
    """UTF-8 is checked by the stream wrapper, not by Arrow (check_utf8=False): a character split
    between two reads is fine; a bad byte after many ASCII blocks, or a stream ending inside a
    character, fails even in a succeeded row, whose strings are never converted."""
    good = ASCII_ROWS + "b,caf\u00e9\u20ac,,succeeded,200,,ok\n".encode() + ASCII_ROWS
    parts = arrow_result_parts(io.BufferedReader(Trickle(good, step), 64), block_bytes=1 << 10)
    assert tallied(parts, Disposition.PERMANENT)[0].succeeded == 101
    for bad in (ASCII_ROWS + b"b,\xff,,succeeded,200,,ok\n", ASCII_ROWS + b"b,k,,succeeded,200,,ok\xe2\x82"):
        with pytest.raises((UnicodeDecodeError, pa.ArrowInvalid)):
            list(arrow_result_parts(io.BufferedReader(Trickle(bad, step), 64), block_bytes=1 << 10))


def test_a_status_column_counts_as_successes_only_when_every_value_is_succeeded():
    """The count's check compares the column's offsets and bytes with a template: lengths that add up
    but split differently, a sliced column and an empty one are all decided right."""
    from batchpipe_core.report import _all_succeeded

    assert _all_succeeded(pa.array([], pa.string()))
    assert _all_succeeded(pa.array(["succeeded"] * 20_000))  # more than the first template holds
    assert _all_succeeded(pa.array(["failed", "succeeded", "succeeded"]).slice(1))
    for values in (
        ["succeededsucceeded", ""],
        ["", ""],
        ["succeeded", "Succeeded"],
        ["succeeded", "succeede"],
    ):
        assert not _all_succeeded(pa.array(values))
