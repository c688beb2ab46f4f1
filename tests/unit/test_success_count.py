"""Counting a results file of successes by its record ends (``report.count_succeeded_records``).

The fast count must give Arrow's count (``report.count_successes``) wherever it answers, and hand
the bytes to Arrow wherever a record end is not simply a newline: quotes, carriage returns, bytes
past ASCII, a last record without a newline. What it assumes instead of checking (every record's
status is the file's; no blank line) is pinned here too, and the blank line's way out (the merge
joins a report with more records than objects) in tests/unit/test_process_report.py.
"""

from __future__ import annotations

import codecs
import csv
import io
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpipe_core.accounting import tally_parts, tally_results
from batchpipe_core.byte_window import ByteWindow
from batchpipe_core.classification import Disposition
from batchpipe_core.csv_upload import CsvWriter
from batchpipe_core.report import (
    READERS,
    arrow_result_parts,
    count_succeeded_records,
    count_successes,
    count_successes_csv,
)

# Fields as hostile as a report may hold: the characters CSV must quote, unicode of 2 to 4 bytes.
FIELD = st.text(alphabet=st.sampled_from(list('ab%2F,"\n\r é中🎉')), max_size=8)
PLAIN = st.text(alphabet=st.sampled_from(list("ab%2F._-")), min_size=1, max_size=12)
#: Where reads end: a stream hands out at most this many bytes per read, in turn, so block
#: boundaries fall at every position of small files.
READ_SIZES = st.lists(st.integers(1, 64), min_size=1, max_size=8)


class Reads(io.RawIOBase):
    """``data`` handed out in reads of the given sizes, in turn (a network body's short reads)."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._data, self._sizes, self._at, self._turn = data, sizes, 0, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        step = self._sizes[self._turn % len(self._sizes)]
        self._turn += 1
        if size is not None and size >= 0:
            step = min(step, size)
        data = self._data[self._at : self._at + step]
        self._at += len(data)
        return data


@st.composite
def successes(draw, field=FIELD) -> list[list[str]]:
    return [
        [draw(PLAIN), draw(field), draw(field), "succeeded", "200", "", draw(field)]
        for _ in range(draw(st.integers(0, 12)))
    ]


def encoded(records: list[list[str]], line_end: str) -> bytes:
    """As S3 would write them: fields quoted where CSV needs it; ``\\n`` or ``\\r\\n`` line ends."""
    out = io.StringIO(newline="")
    if line_end == "\n":
        writer: Any = CsvWriter(out)  # quotes a field holding a lone \r, as a \n-ended CSV must
    else:
        writer = csv.writer(out, lineterminator="\r\n")
    for record in records:
        writer.writerow(record)
    return out.getvalue().encode()


def tallied(data: bytes) -> tuple[int, int]:
    """(records, successes) as the long way reads them: every row parsed by Arrow."""
    counts = tally_parts(
        arrow_result_parts(io.BytesIO(data)),
        unknown=Disposition.PERMANENT,
        on_retriable=lambda row: None,
        on_permanent=lambda row: None,
    )
    return counts.rows, counts.succeeded


def guarded_at(data: bytes) -> int:
    """The first byte the fast count hands to Arrow for: a quote, a carriage return, past ASCII."""
    found = [data.find(byte) for byte in (b'"', b"\r")]
    found += [i for i, byte in enumerate(data) if byte > 0x7F][:1]
    return min((i for i in found if i >= 0), default=len(data))


@settings(max_examples=400, deadline=None)
@given(successes(), st.sampled_from(["\n", "\r\n"]), st.booleans(), READ_SIZES, st.sampled_from(READERS))
def test_a_file_of_successes_counts_what_arrow_counts(records, line_end, last_newline, sizes, reader):
    """With either reader behind it (the csv module's count where pyarrow is missing)."""
    data = encoded(records, line_end)
    if not last_newline:
        data = data.removesuffix(b"\n")  # a \r left bare is its own line end to Arrow

    fast = count_succeeded_records(Reads(data, sizes), block_bytes=1 << 10, reader=reader)

    assert fast == count_successes(io.BytesIO(data)) == count_successes_csv(io.BytesIO(data))
    assert fast == tallied(data)[1] == len(records)


@settings(max_examples=300, deadline=None)
@given(successes(field=PLAIN), st.data(), READ_SIZES)
def test_any_line_end_arrow_reads_is_one_the_count_reads(records, data, sizes):
    """Unquoted records ended by ``\n``, ``\r\n`` or a bare ``\r`` (a line end to Arrow, not to a
    newline count), as no CSV writer would mix them."""
    ends = [data.draw(st.sampled_from([b"\n", b"\r\n", b"\r"])) for _ in records]
    file = b"".join(
        b",".join(f.encode() for f in record) + end for record, end in zip(records, ends, strict=True)
    )

    for reader in READERS:
        fast = count_succeeded_records(Reads(file, sizes), block_bytes=1 << 10, reader=reader)
        assert fast == count_successes(io.BytesIO(file)) == count_successes_csv(io.BytesIO(file))
        assert fast == len(records)


@settings(max_examples=400, deadline=None)
@given(successes(), successes(field=PLAIN), st.data(), READ_SIZES)
def test_a_record_of_another_status_is_refused_once_the_bytes_need_parsing(before, after, data, sizes):
    """A ``failed`` record inside a file labelled ``succeeded`` (S3 writes none: one file per status)
    is refused wherever Arrow reads it: after a quote, a carriage return or a byte past ASCII, or
    when it is the record a read's sample looks at. Otherwise the count assumes the label and
    counts it: the number of records is still exact."""
    odd = ["b", data.draw(PLAIN), "", "failed", "503", "SlowDown", data.draw(FIELD)]
    file = encoded([*before, odd, *after], "\n")
    ends_at = len(encoded([*before, odd], "\n"))

    assert count_successes(io.BytesIO(file)) is None is count_successes_csv(io.BytesIO(file))
    for reader in READERS:
        fast = count_succeeded_records(Reads(file, sizes), block_bytes=1 << 10, reader=reader)
        if guarded_at(file) < ends_at:
            assert fast is None
        else:
            assert fast in (None, tallied(file)[0])


@settings(max_examples=300, deadline=None)
@given(successes(), st.lists(st.integers(0, 12), min_size=1, max_size=3), READ_SIZES)
def test_a_blank_line_is_counted_unless_arrow_reads_it(records, blanks, sizes):
    """Arrow skips blank lines; the newline count would need another pass to see them, so it counts
    them: an overcount, which the merge refuses (more records than objects). Where Arrow reads the
    bytes anyway, or a read's sample is the blank line, the count is Arrow's."""
    lines = [encoded([record], "\n") for record in records]
    for position in sorted(blanks, reverse=True):
        lines.insert(min(position, len(lines)), b"\n")
    data = b"".join(lines)

    fast = count_succeeded_records(Reads(data, sizes), block_bytes=1 << 10)

    assert count_successes(io.BytesIO(data)) == len(records)
    assert fast is None or len(records) <= fast <= len(records) + len(blanks)
    if guarded_at(data) == len(data):  # plain bytes: Arrow reads only from a sample that failed
        assert fast is not None


@settings(max_examples=300, deadline=None)
@given(
    successes(),
    st.integers(1, 12),
    st.integers(17, 400),
    st.sampled_from(["\n", "\r\n"]),
    READ_SIZES,
    st.booleans(),
)
def test_windows_counted_as_their_bytes_pass_add_up_to_the_file(
    records, max_rows, max_bytes, line_end, sizes, rest_known
):
    """Through ``byte_window.ByteWindow`` the count takes the window's own quote check and, when the
    window counts its records, its newline count: each window's count is Arrow's count of the same
    bytes, and the windows still tile the file. Where the window knows the object's rest and is all
    of it (``whole``: it counts no quotes), the count checks its blocks itself, to the same total."""
    data = encoded(records, line_end)
    offset, total = 0, 0
    while offset < len(data):
        rest = len(data) - offset if rest_known else None
        window = ByteWindow(Reads(data[offset:], sizes), max_rows, max_bytes, min_record_bytes=17, rest=rest)
        counted = count_succeeded_records(window, block_bytes=1 << 10)
        piece = data[offset : offset + window.consumed]
        assert window.consumed > 0
        assert counted == count_successes(io.BytesIO(piece))
        total += counted
        offset += window.consumed
    assert offset == len(data)
    assert total == len(records)


def test_a_window_that_counts_its_records_gives_its_count():
    """The fused path: a window of plain successes that counts its records hands its count over
    (its newlines are not counted twice)."""
    data = b"".join(b"bkt,k%d,,succeeded,200,,Successful\n" % i for i in range(1000))
    window = ByteWindow(io.BytesIO(data), 10_000, None)
    assert window.counts_rows

    assert count_succeeded_records(window) == 1000 == window.rows


def test_a_window_that_is_the_rest_of_the_object_counts_no_quotes_and_the_count_still_sees_them():
    """A window that cannot be cut passes its bytes on uncounted (``quotes`` None), so a quoted record
    in a file labelled as successes is still found by the count's own check and parsed by Arrow."""
    plain = b"".join(b"bkt,k%d,,succeeded,200,,Successful\n" % i for i in range(100))
    quoted = plain + b'bkt,"k,1",,succeeded,200,,Successful\n'
    for data, rows in ((plain, 100), (quoted, 101)):
        window = ByteWindow(io.BytesIO(data), 1_000, len(data) + 1, min_record_bytes=17, rest=len(data))
        assert window.whole and window.quotes is None

        assert count_succeeded_records(window, block_bytes=1 << 10) == rows
        assert window.consumed == len(data)


def test_the_edges_of_a_stream_are_arrows():
    ok = b"bkt,k,,succeeded,200,,Successful\n"
    bom = codecs.BOM_UTF8
    assert count_succeeded_records(io.BytesIO(b"")) == 0 == count_successes(io.BytesIO(b""))
    assert count_succeeded_records(io.BytesIO(bom)) == 0  # a byte order mark alone: no record
    assert count_succeeded_records(io.BytesIO(bom + ok * 2)) == 2
    assert count_succeeded_records(io.BytesIO(ok * 2 + ok[:-1])) == 3  # the last record unended
    assert count_succeeded_records(io.BytesIO(ok + b"bkt,k")) is None  # ... and too short
    # A mark after a record end is inside the file (Arrow would skip it at the start of a read).
    assert count_succeeded_records(Reads(ok + bom + ok, [len(ok)]), block_bytes=64) is None
    with pytest.raises(UnicodeDecodeError):  # UTF-8 is checked as Arrow's count checks it
        count_succeeded_records(io.BytesIO(ok + b"bkt,k\xff,,succeeded,200,,x\n"))


def test_a_record_longer_than_a_block_goes_to_arrow():
    long = b"bkt," + b"k" * 3000 + b",,succeeded,200,,Successful\n"
    data = b"bkt,a,,succeeded,200,,Successful\n" + long * 2
    for count in (count_successes, count_succeeded_records):  # Arrow's answer: a record fits a block
        with pytest.raises(pa.ArrowInvalid, match="straddl"):
            count(Reads(data, [500]), block_bytes=1 << 10)
    assert count_succeeded_records(Reads(data, [500]), block_bytes=1 << 20) == 3


def test_what_the_count_assumes_of_a_file_labelled_succeeded():
    """Pinned so that a change is deliberate: a lone record of another status, not sampled, and a
    blank line are counted as records of the file's label (docs/PERFORMANCE.md)."""
    ok = b"bkt,k,,succeeded,200,,Successful\n"
    bad = b"bkt,x,,failed,503,SlowDown,slow\n"
    assert count_succeeded_records(io.BytesIO(bad + ok * 3)) == 4  # the first record is not sampled
    assert count_succeeded_records(io.BytesIO(ok + bad + ok)) is None  # the sampled one
    assert count_succeeded_records(io.BytesIO(ok * 3 + b"\n")) == 4
    assert count_succeeded_records(io.BytesIO(ok + b"\n" + ok)) == 2  # the sample: Arrow reads on


@pytest.mark.parametrize("reader", READERS)
def test_tally_results_counts_a_plain_file_of_successes_in_one_read(reader):
    data = b"".join(b"bkt,k%d,,succeeded,200,,Successful\n" % i for i in range(100))
    opened: list[io.BytesIO] = []

    def open_stream() -> io.BytesIO:
        opened.append(io.BytesIO(data))
        return opened[-1]

    counts = tally_results(
        open_stream,
        "succeeded",
        reader=reader,
        unknown=Disposition.PERMANENT,
        on_retriable=lambda row: None,
        on_permanent=lambda row: None,
    )
    assert (counts.rows, counts.succeeded, len(opened)) == (100, 100, 1)
