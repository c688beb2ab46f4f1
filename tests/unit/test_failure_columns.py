"""The column-wise failure path (batchpipe_core.failure_columns) equals the row-by-row one exactly,
on hostile keys: raw and encoded unicode, ``+``, ``%`` without hex, lower-case hex, escapes that
decode to invalid UTF-8, CR/LF/quotes/commas in every field."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
if str(FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS))

from batchpipe_core.accounting import tally_results  # noqa: E402
from batchpipe_core.attempts import AttemptOutputs  # noqa: E402
from batchpipe_core.classification import Disposition  # noqa: E402
from batchpipe_core.csv_upload import CsvWriter  # noqa: E402
from batchpipe_core.failure_columns import csv_lines, decoded_keys, encoded_keys, prefix_counts  # noqa: E402
from batchpipe_core.keys import encode_key, report_key  # noqa: E402
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


def test_a_sliced_array_encodes_only_its_own_rows():
    array = pa.array(["a b", "é/x", "c,d"], pa.string()).slice(1, 2)
    assert encoded_keys(array).to_pylist() == [encode_key("é/x"), encode_key("c,d")]


fields = st.text(alphabet=st.sampled_from([*'ab,"\r\n é', "日"]), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(fields, fields, fields), min_size=1, max_size=20))
def test_csv_lines_are_what_the_csv_writer_writes(rows):
    expected = io.StringIO(newline="")
    writer = CsvWriter(expected)
    for row in rows:
        writer.writerow(row)
    columns = [pa.array([row[i] for row in rows], pa.string()) for i in range(3)]
    assert csv_lines(columns) == expected.getvalue().encode()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(["a/", "b/", "é/", "c", "/", "x" * 120 + "/", "%41/"]), max_size=7).map(
            "".join
        ),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 5),
)
def test_prefixes_count_as_the_tally_does_row_by_row(values, tracked):
    by_row = PrefixTally(tracked=tracked)
    for value in values:
        by_row.add(value, retriable=True)
    by_column = PrefixTally(tracked=tracked)
    by_column.add_counts(prefix_counts(pa.array(values, pa.string()), 4, MAX_PREFIX_CHARS), retriable=True)
    assert by_column.as_document() == by_row.as_document()


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
    record = ["bucket-1", key, version, status, http, code, message]
    if draw(st.integers(0, 9)) == 0:
        record.append("an unquoted, extra field")  # pyarrow sets such a record aside: the row path
    return record


def outputs_of(data: bytes, *, columns: bool, last_attempt: bool, fields: int):
    s3 = PutOnlyS3()
    outputs = AttemptOutputs(s3, "b", "out/", last_attempt=last_attempt, fields=lambda: fields, headers=False)
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
