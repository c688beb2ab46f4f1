"""Byte windows: a report split for several workers is read record by record, exactly once."""

from __future__ import annotations

import csv
import functools
import io

import boto3
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from batchpipe_core.byte_window import ByteWindow, open_window
from batchpipe_core.csv_upload import CsvWriter
from batchpipe_core.report import parse_result_rows

FIELD = st.text(alphabet=st.sampled_from(list('ab,"\n\r %é')), max_size=12)


def csv_bytes(records: list[list[str]]) -> bytes:
    """Well-formed CSV as the pipeline writes it (CsvWriter quotes a field holding a carriage return)."""
    out = io.StringIO(newline="")
    writer = CsvWriter(out)
    for record in records:
        writer.writerow(record)
    return out.getvalue().encode()


def windows(
    data: bytes,
    max_rows: int,
    max_bytes: int | None = None,
    min_record_bytes: int = 1,
    rest_known: bool = False,
) -> list[bytes]:
    """The windows that tile ``data``; with ``rest_known`` each is told the bytes left from its start
    (as ``open_window`` tells it the object's size), so the last may be ``whole`` and count nothing."""
    pieces, offset = [], 0
    while offset < len(data):
        rest = len(data) - offset if rest_known else None
        window = ByteWindow(io.BytesIO(data[offset:]), max_rows, max_bytes, min_record_bytes, rest=rest)
        assert window.whole == (rest is not None and not window.counts_rows and rest < max_bytes)
        piece = b"".join(iter(functools.partial(window.read, 7), b""))
        assert window.consumed == len(piece) > 0
        pieces.append(piece)
        offset += window.consumed
    return pieces


def records(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(FIELD, min_size=1, max_size=7), max_size=30),
    st.integers(1, 12),
    st.one_of(st.none(), st.integers(1, 200)),
    st.booleans(),
)
def test_windows_tile_the_object_and_split_only_between_records(rows, max_rows, max_bytes, rest_known):
    data = csv_bytes(rows)

    pieces = windows(data, max_rows, max_bytes, rest_known=rest_known)

    assert b"".join(pieces) == data
    assert [r for piece in pieces for r in records(piece)] == records(data)
    assert all(len(records(piece)) <= max_rows for piece in pieces)
    if max_bytes is None:  # every window but the last is full
        assert all(len(records(piece)) == max_rows for piece in pieces[:-1])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(FIELD, min_size=2, max_size=7), max_size=30),
    st.integers(1, 120),
    st.integers(1, 6),
    st.booleans(),
)
def test_a_window_whose_bytes_bound_its_records_need_not_count_them(
    rows, max_bytes, min_record_bytes, rest_known
):
    """Records of at least ``min_record_bytes`` and a ``max_bytes`` that cannot hold ``max_rows`` of
    them: the window counts only quotes (nothing at all where it knows it is the object's rest), and
    still tiles the object record by record within both bounds."""
    rows = [row for row in rows if len(csv_bytes([row])) >= min_record_bytes]
    data = csv_bytes(rows)
    max_rows = (max_bytes - 1) // min_record_bytes + 1  # the most the bytes can hold

    assert not ByteWindow(io.BytesIO(data), max_rows, max_bytes, min_record_bytes).counts_rows
    assert ByteWindow(io.BytesIO(data), max_rows - 1, max_bytes, min_record_bytes).counts_rows
    pieces = windows(data, max_rows, max_bytes, min_record_bytes, rest_known)

    assert b"".join(pieces) == data
    assert [r for piece in pieces for r in records(piece)] == records(data)
    assert all(len(records(piece)) <= max_rows for piece in pieces)


def test_a_quoted_newline_does_not_end_a_record():
    data = b'b,k1,,failed,200,PermanentFailure,"line one\nline two"\nb,k2,,succeeded,200,,Successful\n'

    first, second = windows(data, max_rows=1)

    assert [r.key for r in parse_result_rows(io.StringIO(first.decode(), newline=""))] == ["k1"]
    assert [r.key for r in parse_result_rows(io.StringIO(second.decode(), newline=""))] == ["k2"]


@mock_aws
def test_open_window_reads_from_an_offset_and_says_where_the_next_starts():
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="report-bucket")
    data = b"".join(b"b,key-%03d,,succeeded,200,,Successful\n" % i for i in range(100))
    s3.put_object(Bucket="report-bucket", Key="r.csv", Body=data)
    s3.put_object(Bucket="report-bucket", Key="empty.csv", Body=b"")

    offset, pieces = 0, []
    while offset is not None:
        window = open_window(s3, "report-bucket", "r.csv", offset, max_rows=30)
        pieces.append(window.stream.read(-1) + window.stream.read(-1))
        window.close()
        offset = window.next_offset
    empty = open_window(s3, "report-bucket", "empty.csv", 0, max_rows=30)

    assert b"".join(pieces) == data
    assert len(pieces) == 4  # 30 + 30 + 30 + 10 records
    assert empty.stream.read() == b"" and empty.next_offset is None


def test_a_window_is_whole_only_when_the_rest_of_the_object_is_under_its_byte_bound():
    """The boundary: ``read`` cuts once the bytes passed reach ``max_bytes``, so a rest of
    ``max_bytes - 1`` bytes can never be cut (``whole``: nothing counted) and a rest of ``max_bytes``
    can, and is cut at the first record end at or past byte ``max_bytes - 1``, as without ``rest``."""
    # min_record_bytes as large as the data: the byte bound alone bounds the rows, so none are counted.
    data = b'b,k1,,failed,500,InternalError,"a\nb"\nb,k2,,failed,500,InternalError,c\n'
    for max_bytes, whole in ((len(data) + 1, True), (len(data), False), (20, False)):
        window = ByteWindow(io.BytesIO(data), 10, max_bytes, min_record_bytes=len(data), rest=len(data))
        assert not window.counts_rows and window.whole is whole
        piece = b"".join(iter(functools.partial(window.read, 5), b""))
        unknowing = ByteWindow(io.BytesIO(data), 10, max_bytes, min_record_bytes=len(data))
        assert piece == b"".join(iter(functools.partial(unknowing.read, 5), b"")) and window.consumed == len(
            piece
        )
        assert window.quotes is None if whole else window.quotes == unknowing.quotes
    assert windows(data, 10, 20, min_record_bytes=len(data), rest_known=True) == windows(
        data, 10, 20, len(data)
    )
