"""The column-wise failure path (batchpipe_core.failure_columns) equals the row-by-row one exactly,
on hostile keys: raw and encoded unicode, ``+``, ``%`` without hex, lower-case hex, escapes that
decode to invalid UTF-8, CR/LF/quotes/commas in every field."""

from __future__ import annotations

import csv
import io
import re
import sys
from pathlib import Path
from urllib.parse import unquote, unquote_plus, unquote_to_bytes

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
if str(FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS))

from batchpipe_core.accounting import one_value, tally_results  # noqa: E402
from batchpipe_core.attempts import AttemptOutputs  # noqa: E402
from batchpipe_core.classification import Disposition  # noqa: E402
from batchpipe_core.csv_upload import CsvWriter  # noqa: E402
from batchpipe_core.failure_columns import (  # noqa: E402
    _NOT_SLASH,
    csv_lines,
    decoded_keys,
    encoded_keys,
    manifest_keys,
    prefix_counts,
    retry_keys,
)
from batchpipe_core.keys import encode_key, manifest_key, report_key  # noqa: E402
from batchpipe_core.prefixes import MAX_PREFIX_CHARS, PrefixTally  # noqa: E402
from batchpipe_core.report import PYARROW  # noqa: E402

PIECES = [
    "/",
    "%",
    "+",
    " ",
    ",",
    '"',
    "\r",
    "\n",
    "%2F",
    "%2f",
    "%20",
    "%2B",
    "%25",
    "%41",
    "%C3%A9",
    "%c3%a9",
    "%E6%97%A5",
    "%C3",
    "%A9",
    "%FF",
    "%E6%97",
    "%zz",
    "%4",
    "%00",
    "%5C",
    # what quoted-printable decoding (failure_columns._unescaped) reads differently from "%" escapes
    "=",
    "=41",
    "%3D",
    "%%41",
    "%\n",
    "%\r",
    "\\",
    "\\x41",
    # what joining a batch's keys with NUL between them (failure_columns.decoded_keys) must not confuse
    "\x00",
    "%00",
    "%0A",
    "%0a",
    "%3d",
    "%%",
    "%252F",
    "%F0%9F%98",  # an emoji's first three bytes: report_key makes them one U+FFFD, as long
    "%E6",
    "41",
    "é",
    "日本",
    "😀",
    "a",
    "photos",
    "2024",
    "x" * 150,
]
keys = st.lists(st.sampled_from(PIECES), max_size=12).map("".join) | st.text(max_size=40)
encoded_report_keys = st.lists(keys, min_size=1, max_size=30)


@settings(max_examples=400, deadline=None)
@given(encoded_report_keys)
def test_keys_decode_as_report_key_does(values):
    assert decoded_keys(pa.array(values, pa.string())).to_pylist() == [report_key(v) for v in values]


#: Keys as reports spell them (ASCII, URL-encoded), where whole batches are decoded at once; hostile
#: ones among them (a "%" without two hex digits, or at a key's end before a key that starts with
#: hex digits, backslashes that look like escapes) decode piece by piece, as report_key does.
ascii_report_keys = st.lists(
    st.lists(st.sampled_from([p for p in PIECES if p.isascii()]), max_size=12).map("".join),
    min_size=1,
    max_size=30,
)


@settings(max_examples=400, deadline=None)
@given(ascii_report_keys, st.integers(0, 3))
def test_ascii_keys_decode_as_report_key_does_in_any_slice(values, cut):
    array = pa.array(["x%41", *values], pa.string()).slice(1 + min(cut, len(values) - 1))
    assert decoded_keys(array).to_pylist() == [report_key(v) for v in array.to_pylist()]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=40) | keys, min_size=1, max_size=30))
def test_keys_encode_as_encode_key_does(values):
    values = [v.encode("utf-8", "replace").decode("utf-8") for v in values]  # strings Arrow holds
    assert encoded_keys(pa.array(values, pa.string())).to_pylist() == [encode_key(v) for v in values]


@settings(max_examples=400, deadline=None)
@given(st.one_of(encoded_report_keys, ascii_report_keys), st.integers(0, 3))
def test_retry_manifest_keys_are_manifest_key_row_by_row_and_decode_to_the_report_key(values, cut):
    """The report's spelling is kept exactly where ``manifest_key`` keeps it, whole batches and mixed
    ones, in any slice; every key written decodes to the report key's ``report_key`` whether S3 reads
    ``+`` as a space or not."""
    array = pa.array(["x%41", *values], pa.string()).slice(1 + min(cut, len(values) - 1))
    written = manifest_keys(array, decoded_keys(array)).to_pylist()
    spelled = array.to_pylist()
    assert written == [manifest_key(k, report_key(k)) for k in spelled]
    for key, spelling in zip(written, spelled, strict=True):
        assert unquote(key) == unquote_plus(key) == report_key(spelling)
        if not (spelling.isascii() and ESCAPED.fullmatch(spelling)):
            assert key == encode_key(report_key(spelling))
        elif _is_utf8(unquote_to_bytes(spelling)):
            assert key == spelling


@settings(max_examples=400, deadline=None)
@given(st.one_of(encoded_report_keys, ascii_report_keys), st.integers(0, 3))
def test_retry_keys_decode_and_spell_as_the_row_by_row_functions_do(values, cut):
    """``retry_keys`` (the decode telling which spellings are reused) equals ``report_key`` and
    ``manifest_key`` row by row, on whole batches and slices, hostile keys among them."""
    array = pa.array(["x%41", *values], pa.string()).slice(1 + min(cut, len(values) - 1))
    decoded, written = retry_keys(array)
    spelled = array.to_pylist()
    assert decoded.to_pylist() == [report_key(k) for k in spelled]
    assert written.to_pylist() == [manifest_key(k, report_key(k)) for k in spelled]


@pytest.mark.parametrize(
    "batch",
    [
        ["a%2Fb", "c%2fd%C3%A9"],  # every spelling reused, as it is
        ["a%2Fb", "c+d"],  # a "+": re-encoded, the batch's others kept
        ["a%2Fb", "100%"],  # a "%" that starts no escape
        ["a%2Fb", "%F0%9F%98x"],  # invalid UTF-8 of one U+FFFD's length: manifest_key keeps it
        ["a%2Fb", "%FFx"],  # invalid UTF-8, longer decoded: re-encoded
        ["a=b%41", "c"],  # "=": the escape codec's path
        ["é%41", "x"],  # raw non-ASCII
        ["a%00b", "c"],  # an escaped NUL
        [""],
    ],
)
def test_hostile_retry_batches_spell_as_manifest_key_does(batch):
    decoded, written = retry_keys(pa.array(batch, pa.string()))
    assert decoded.to_pylist() == [report_key(k) for k in batch]
    assert written.to_pylist() == [manifest_key(k, report_key(k)) for k in batch]


#: ASCII spellings both decodings read alike: no ``+``, every ``%`` an escape.
ESCAPED = re.compile("(?:[^%+]|%[0-9A-Fa-f]{2})*", re.DOTALL)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def test_a_retry_manifest_key_is_the_reports_spelling_when_both_decodings_agree():
    assert manifest_key("a%2Fb%20c%C3%A9", "a/b cé") == "a%2Fb%20c%C3%A9"  # %2F stays %2F
    assert manifest_key("a%2fb", "a/b") == "a%2fb"
    assert manifest_key("a+b", "a b") == "a%20b"  # form-style space: re-encoded
    assert manifest_key("100%", "100%") == "100%25"  # a % that is no escape
    assert manifest_key("%4", "%4") == "%254"
    assert manifest_key("caf\u00e9", "caf\u00e9") == "caf%C3%A9"  # raw non-ASCII
    keys = pa.array(["a%2Fb", "a+b", "x%2Fy"], pa.string())
    assert manifest_keys(keys, decoded_keys(keys)).to_pylist() == ["a%2Fb", "a%20b", "x%2Fy"]


def test_a_sliced_array_encodes_only_its_own_rows():
    array = pa.array(["a b", "é/x", "c,d"], pa.string()).slice(1, 2)
    assert encoded_keys(array).to_pylist() == [encode_key("é/x"), encode_key("c,d")]


fields = st.text(alphabet=st.sampled_from([*'ab,"\r\n é', "日"]), max_size=8)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(fields, fields, fields), min_size=1, max_size=20),
    st.lists(st.booleans(), min_size=3, max_size=3),
    st.integers(0, 3),
)
def test_csv_lines_are_what_the_csv_writer_writes(rows, dictionaries, cut):
    """Columns plain or dictionary-encoded (each quoted once per value; one value throughout taken
    as a scalar), whole or a slice of a filtered batch whose dictionaries hold values it does not use."""
    rows = [("é,\r\n", '"', "x"), ("", "", ""), *rows]  # before the slice: values the rows may not use
    expected = io.StringIO(newline="")
    writer = CsvWriter(expected)
    for row in rows[2 + cut :] or rows[-1:]:
        writer.writerow(row)
    columns = []
    for i, dictionary in enumerate(dictionaries):
        column = pa.array([row[i] for row in rows], pa.string())
        columns.append(pc.dictionary_encode(column) if dictionary else column)
    start = min(2 + cut, len(rows) - 1)
    assert csv_lines([c.slice(start) for c in columns]) == expected.getvalue().encode()


@settings(max_examples=300, deadline=None)
@given(
    fields,
    st.lists(st.tuples(fields, fields), min_size=1, max_size=20),
    st.sampled_from(["plain", "dictionary", "scalar"]),
    st.sampled_from([1, 2]),
)
def test_csv_lines_with_one_value_in_the_first_column(first, rows, form, others):
    """A first column of one value (a bucket), plain, a dictionary or given as a scalar
    (accounting.FailedColumns), joins as a scalar carrying the line end, quoted like any; with one
    other column (a retry manifest's lines) as one list."""
    expected = io.StringIO(newline="")
    writer = CsvWriter(expected)
    for row in rows:
        writer.writerow((first, *row[:others]))
    column = pa.array([first] * len(rows), pa.string())
    columns = [
        {"plain": column, "dictionary": pc.dictionary_encode(column), "scalar": pa.scalar(first)}[form]
    ]
    columns += [pa.array([row[i] for row in rows], pa.string()) for i in range(others)]
    assert csv_lines(columns) == expected.getvalue().encode()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["", "a", "b", "ab", "ba", "é", "aa"]), min_size=1, max_size=12),
    st.integers(0, 3),
)
def test_one_value_is_the_value_of_every_row_or_none(values, cut):
    """Rows of equal length that differ (``ab``/``ba``), empty strings, and a slice of a column
    (its offsets start past 0): a scalar exactly when every row holds the same value."""
    column = pa.array(["xyz", *values], pa.string()).slice(1 + min(cut, len(values) - 1))
    rows = column.to_pylist()
    found = one_value(column)
    assert (found.as_py() if found is not None else None) == (rows[0] if len(set(rows)) == 1 else None)


def test_one_value_of_nothing_or_of_nulls_is_none():
    assert one_value(pa.array([], pa.string())) is None
    assert one_value(pa.array(["a", None], pa.string())) is None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(fields, fields, fields), min_size=1, max_size=20),
    st.lists(fields, min_size=3, max_size=3),
)
# Found by CI: every column of one value (one needing quotes), so no field stayed an array to join.
@example(rows=[("", ",", "")] * 4, values=["", "", ""])
def test_csv_lines_with_scalar_columns_anywhere(rows, values):
    """Any column may be a scalar (a batch's one version, "" without versions), beside array columns
    whose rows hold carriage returns, quotes or commas: the bytes are the csv writer's."""
    for position in range(3):
        expected = io.StringIO(newline="")
        writer = CsvWriter(expected)
        columns = []
        for i in range(3):
            if i == position:
                columns.append(pa.scalar(values[i]))
            else:
                columns.append(pa.array([row[i] for row in rows], pa.string()))
        for row in rows:
            writer.writerow([values[i] if i == position else row[i] for i in range(3)])
        assert csv_lines(columns) == expected.getvalue().encode()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(fields, st.integers(0, 3), fields), min_size=1, max_size=20),
    st.lists(fields, min_size=4, max_size=4),
    st.lists(fields, min_size=4, max_size=4),
    st.booleans(),
)
def test_csv_lines_gather_dictionary_columns_of_the_same_indices_as_one(rows, firsts, seconds, one_bucket):
    """An HTTP status and an error code are two dictionary columns over one index array (by outcome,
    accounting.FailedColumns): gathered as one field, the bytes are still the csv writer's, carriage
    returns and quotes in either dictionary, or in the other columns, included."""
    bucket = ["b"] * len(rows) if one_bucket else [row[0] for row in rows]
    expected = io.StringIO(newline="")
    writer = CsvWriter(expected)
    for name, (_, outcome, message) in zip(bucket, rows, strict=True):
        writer.writerow((name, firsts[outcome], seconds[outcome], message))
    indices = pa.array([row[1] for row in rows], pa.int64())
    columns = [
        pa.array(bucket, pa.string()),
        pa.DictionaryArray.from_arrays(indices, pa.array(firsts, pa.string())),
        pa.DictionaryArray.from_arrays(indices, pa.array(seconds, pa.string())),
        pa.array([row[2] for row in rows], pa.string()),
    ]
    assert csv_lines(columns) == expected.getvalue().encode()


@pytest.mark.parametrize(
    "batch",
    [
        ["a%41", "b%2"],  # a "%" in the batch's last key without its two digits
        ["a%", "41"],  # a "%" ending a key, before a key that starts with hex digits
        ["a%", ""],
        ["%%41", "x"],
        ["a=b%41", "c\\x41%2F"],  # "=" (quoted-printable's escape) and backslashes: the escape codec
        ["a=b%4", "c"],
        ["a\rb%41", "c%"],
        ["a\nb%41", "a%\nb"],  # LF: quoted-printable's soft line break after an "="
        ["a\x00b", "c%41"],  # NUL, the keys' separator while they are decoded at once
        ["a%00b", "c%0Ad", "e%0a"],  # escapes of NUL and LF
        ["%C3%A9/é", "%FF", "é%41"],  # raw non-ASCII
        ["%C3%A9", "%FF"],  # an escape of invalid UTF-8
        ["%3D", "%zz"],  # a decoded "=" beside one that starts no escape
        ["%e6%97%a5/%3d", "+%2B+", "", "/%2F%2f/"],
    ],
)
def test_hostile_batches_decode_as_report_key_does(batch):
    assert decoded_keys(pa.array(batch, pa.string())).to_pylist() == [report_key(v) for v in batch]


#: Keys for the prefix tally: many slashes, empty folders, and folders longer than MAX_PREFIX_CHARS
#: in characters of one to four bytes (the cut is in characters).
PREFIX_PIECES = [
    "a/",
    "b/",
    "é/",
    "c",
    "/",
    "x" * 120 + "/",
    "%41/",
    "é" * 120 + "/",
    "日" * 90,
    "😀" * 70 + "/",
]
batches_of_keys = st.lists(
    st.lists(st.lists(st.sampled_from(PREFIX_PIECES), max_size=9).map("".join), min_size=1, max_size=40),
    min_size=1,
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(batches_of_keys, st.integers(1, 5), st.integers(1, 8), st.lists(st.booleans(), min_size=4, max_size=4))
def test_prefixes_count_as_the_tally_does_row_by_row(batches, tracked, known, retriable):
    """Batch after batch into one tally (the deepest prefixes' entries it keeps across batches, and
    forgets when more than ``known`` are kept), permanent and retriable rows alike."""
    by_row = PrefixTally(tracked=tracked)
    by_column = PrefixTally(tracked=tracked, known=known)
    for values, is_retriable in zip(batches, retriable, strict=False):  # one flag per batch
        for value in values:
            by_row.add(value, retriable=is_retriable)
        by_column.add_counts(prefix_counts(pa.array(values, pa.string()), 4), retriable=is_retriable)
    assert by_column.as_document() == by_row.as_document()


#: Any text (NUL, every plane, one to four bytes a character) with slashes among it.
any_keys = st.text(alphabet=st.characters(blacklist_categories=["Cs"]) | st.just("/"), max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(any_keys | st.sampled_from(PREFIX_PIECES), min_size=1, max_size=30), min_size=1, max_size=3
    ),
    st.integers(1, 5),
)
def test_prefixes_of_any_text_count_as_the_tally_does_row_by_row(batches, tracked):
    """A key's folder is trimmed off its end byte by byte (``ascii_rtrim`` over every byte but
    ``/``): every byte of every character is trimmed, whatever its length."""
    by_row = PrefixTally(tracked=tracked)
    by_column = PrefixTally(tracked=tracked)
    for values in batches:
        for value in values:
            by_row.add(value, retriable=False)
        by_column.add_counts(prefix_counts(pa.array(values, pa.string()), 4), retriable=False)
    assert by_column.as_document() == by_row.as_document()


def test_the_bytes_trimmed_off_a_key_are_every_byte_of_utf8_but_the_slash():
    possible = {b for c in range(0x110000) if not 0xD800 <= c < 0xE000 for b in chr(c).encode()}
    assert set(_NOT_SLASH.encode()) == possible - {ord("/")}


def test_folders_cut_to_one_deepest_prefix_are_added_up_in_the_order_first_met():
    keys = ["d/1/2/3/4/x", "e/y", "d/1/2/3/5/6/z", "d/1/2/3/4/w", "d/1/2/3/"]
    assert prefix_counts(pa.array(keys, pa.string()), 4) == [("d/1/2/3/", 4), ("e/", 1)]


def test_a_sliced_array_counts_only_its_own_prefixes():
    array = pa.array(["x/y/z", "é/a/b", "q/r"], pa.string()).slice(1, 2)
    assert prefix_counts(array, 4) == [("é/a/", 1), ("q/", 1)]


def test_prefixes_are_cut_at_max_prefix_chars_characters():
    key = "é" * (MAX_PREFIX_CHARS + 5) + "/name"
    tally = PrefixTally()
    tally.add_counts(prefix_counts(pa.array([key, key], pa.string()), 4), retriable=False)
    (entry,) = tally.as_document()["depths"][0]["prefixes"]
    assert entry == {
        "prefix": "é" * MAX_PREFIX_CHARS,
        "permanent": 2,
        "retriable": 0,
        "exact": True,
        "cut": True,
    }


# ------------------------------------------------------------------ the whole failure path, both ways


class PutOnlyS3:
    """The one request a part's small outputs make: PutObject (bodies kept by key)."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}

    def put_object(self, Bucket: str, Key: str, Body: bytes, ContentType: str = "") -> dict:
        self.bodies[Key] = Body
        return {"ETag": '"etag"'}


HOSTILE_FIELD = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00\ufeff")
    | st.sampled_from([",", '"', "\n", "\r", " ", "%", "+", "/"]),
    max_size=10,
)
CODES = st.sampled_from(
    [("503", "SlowDown"), ("404", "NoSuchKey"), ("200", "TemporaryFailure"), ("403", "Mystery"), ("", "")]
)


@st.composite
def report_records(draw):
    key = draw(keys | HOSTILE_FIELD)
    http, code = draw(CODES)
    status = draw(st.sampled_from(["failed", "failed", "succeeded", "Failed"]))
    message = draw(HOSTILE_FIELD)
    version = draw(st.sampled_from(["", "", "v1", "3HL4kqtJ+lcp", "null"]))
    bucket = draw(st.sampled_from(["bucket-1", "bucket-1", "bucket-1", "b,2", 'q"3', "bucket-\r4"]))
    record = [bucket, key, version, status, http, code, message]
    if draw(st.integers(0, 9)) == 0:
        record.append("an unquoted, extra field")  # pyarrow sets such a record aside: the row path
    return record


def outputs_of(data: bytes, *, columns: bool, last_attempt: bool, fields: int):
    s3 = PutOnlyS3()
    outputs = AttemptOutputs(s3, "b", "out/", last_attempt=last_attempt, fields=lambda: fields, part=True)
    counts = tally_results(
        lambda: io.BytesIO(data),
        "failed",
        reader=PYARROW,
        unknown=Disposition.PERMANENT,
        on_retriable=outputs.on_retriable,
        on_permanent=outputs.on_permanent,
        on_columns=outputs.on_columns if columns else None,
    )
    for upload in outputs.uploads():
        upload.close()
    return counts, s3.bodies, outputs.prefixes.as_document(), outputs.sample


@settings(max_examples=150, deadline=None)
@given(st.lists(report_records(), min_size=1, max_size=40), st.booleans(), st.sampled_from([2, 3]))
def test_failures_written_column_wise_are_the_bytes_written_row_by_row(records, last_attempt, fields):
    text = io.StringIO(newline="")
    csv.writer(text, lineterminator="\r\n").writerows(records)
    data = text.getvalue().encode()
    by_row = outputs_of(data, columns=False, last_attempt=last_attempt, fields=fields)
    by_column = outputs_of(data, columns=True, last_attempt=last_attempt, fields=fields)
    assert by_column == by_row
