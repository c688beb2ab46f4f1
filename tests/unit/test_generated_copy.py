"""A generated manifest copied into the run's manifest in bounded, resumable pieces (generated_copy).

Real boto3 against moto S3 (with S3's part-copy rules, tests/unit/conftest.py). Asserted: the bytes of
the run's manifest (equal however many invocations and retries made it, and line for line what the
csv module reads from the data files), its count, its sample, and how the pieces were joined.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
from collections import Counter
from urllib.parse import unquote

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from batchpipe_core import generated_copy
from batchpipe_core.csv_upload import CsvWriter
from batchpipe_core.errors import AccountingError, ManifestCountIncomplete
from batchpipe_core.generated_copy import CSV_MODULE, PYARROW, copy_generated_manifest, piece_bounds
from batchpipe_core.jobs import ManifestRef
from batchpipe_core.keys import encode_key
from batchpipe_core.multipart import MiB

BUCKET = "pipeline"
SOURCE = "source-bucket"
JOB = "job-1"
FOLDER = "runs/r1/generated-manifest/job-job-1"
MANIFEST = ManifestRef(bucket=BUCKET, key="runs/r1/attempt-1/manifest.csv", etag="-", generated=True)


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def data_file(rows: list[list[str]], *, quote_all: bool = True) -> bytes:
    """One CSV.gz data file as an inventory writes it (every field quoted), or quoted only where
    needed (csv_upload.CsvWriter: the csv module's minimal quoting, a row with a ``\r`` quoted whole,
    since an unquoted ``\r`` would end the line)."""
    text = io.StringIO()
    if quote_all:
        csv.writer(text, lineterminator="\n", quoting=csv.QUOTE_ALL).writerows(rows)
    else:
        writer = CsvWriter(text)
        for row in rows:
            writer.writerow(row)
    return gzip.compress(text.getvalue().encode(), mtime=0)


def put_generated(
    s3, files: list[list[list[str]]], schema: str = "Bucket, Key", **options
) -> tuple[str, str]:
    """A generated manifest of the given data files (rows of each); (bucket, key) of its manifest.json."""
    entries = []
    for number, rows in enumerate(files):
        key = f"{FOLDER}/data/{number:05d}.csv.gz"
        body = data_file(rows, **options)
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        entries.append({"key": key, "size": len(body), "MD5checksum": "-"})
    document = {"fileFormat": "CSV", "fileSchema": schema, "files": entries, "version": "2021-11-30"}
    s3.put_object(Bucket=BUCKET, Key=f"{FOLDER}/manifest.json", Body=json.dumps(document).encode())
    return BUCKET, f"{FOLDER}/manifest.json"


def expected_lines(files: list[list[list[str]]]) -> Counter:
    """The run manifest's lines as the csv module writes each data file's Bucket,Key rows."""
    text = io.StringIO()
    writer = CsvWriter(text)
    for rows in files:
        for row in rows:
            writer.writerow(row[:2])
    return Counter(_lines(text.getvalue().encode()))


def _lines(data: bytes) -> list[tuple[str, ...]]:
    return [tuple(row) for row in csv.reader(io.StringIO(data.decode(), newline=""))]


def read(s3, key: str = MANIFEST.key) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def copy(s3, at, *, objects=None, remaining=lambda: float("inf"), reader=None):
    return generated_copy.copy_generated_manifest(
        s3, job_id=JOB, at=at, manifest=MANIFEST, objects=objects, remaining_seconds=remaining, reader=reader
    )


def forget_copy(s3) -> None:
    """The run's manifest and every piece and progress of its copy deleted: the next copy starts anew."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="runs/r1/attempt-1/"):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=BUCKET, Key=item["Key"])


def copy_in_invocations(s3, at, **options) -> tuple[dict, int]:
    """The copy as the state machine runs it with no time to spare: one step per invocation, each
    ended by ManifestCountIncomplete until the last; (its result, the invocations)."""
    for invocations in range(1, 1000):
        try:
            return copy(s3, at, remaining=lambda: 0.0, **options), invocations
        except ManifestCountIncomplete:
            continue
    raise AssertionError("the copy never ended")


def requests(s3, operation: str) -> list[dict]:
    """The parameters of every ``operation`` call the client makes from now on."""
    seen: list[dict] = []
    s3.meta.events.register(f"provide-client-params.s3.{operation}", lambda params, **_: seen.append(params))
    return seen


# ---------------------------------------------------------------- the cut into pieces (pure)


@given(st.lists(st.integers(0, 50), max_size=30), st.integers(1, 60))
def test_pieces_cover_every_file_once_in_order(sizes, budget):
    bounds = piece_bounds(sizes, budget)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(sizes)
    assert all(end == next_first for (_, end), (next_first, _) in itertools.pairwise(bounds))
    # Each piece but the last reaches the budget, and would not without its last file.
    for first, end in bounds[:-1]:
        assert sum(sizes[first:end]) >= budget > sum(sizes[first : end - 1])


# ---------------------------------------------------------------- sizes where S3's rules change

# Keys as an S3 generated manifest spells them: URL-encoded, unicode, '+', '%', spaces, commas.
HOSTILE = ["a b+c.jpg", "100%,done", 'say "hi"', "ünïcödé/日本", "x\r\ny", "tab\there", "~!@$&'()*;=?[]"]


def rows_of(prefix: str, count: int, width: int = 0) -> list[list[str]]:
    return [
        [SOURCE, encode_key(f"{prefix}/{HOSTILE[n % len(HOSTILE)]}/{n:08d}{'k' * width}")]
        for n in range(count)
    ]


@pytest.fixture
def crossing(s3, monkeypatch):
    """A generated manifest whose first data file makes a piece past 5 MiB and whose others make small
    pieces, each data file a piece of its own."""
    monkeypatch.setattr(generated_copy, "PIECE_INPUT_BYTES", 1)
    files = [rows_of("big", 60_000, width=40), *(rows_of(f"small{n}", 700 + n) for n in range(4)), []]
    return files, put_generated(s3, files)


def test_a_copy_in_many_invocations_is_the_one_invocation_copy(s3, crossing):
    files, at = crossing
    part_copies = requests(s3, "UploadPartCopy")
    in_one = copy(s3, at)
    manifest = read(s3)
    copies_in_one = len(part_copies)
    forget_copy(s3)

    resumed, invocations = copy_in_invocations(s3, at)

    assert invocations == len(files) + 1  # a step per data file, then the join
    assert read(s3) == manifest
    assert resumed | {"etag": "-"} == in_one | {"etag": "-"}
    assert in_one["objects"] == sum(len(rows) for rows in files) == Counter(manifest.splitlines()).total()
    assert Counter(_lines(manifest)) == expected_lines(files)
    assert len(manifest) > 5 * MiB
    # The big piece was copied inside S3; the small ones were read and sent together as the last part.
    assert copies_in_one == 1 and "files-000000-000001.csv" in str(part_copies[0]["CopySource"])
    assert in_one["sample"] == [unquote(key) for _, key in files[0][:20]]
    assert in_one["fields"] == ["Bucket", "Key"] and in_one["generated"] is False


def test_an_invocation_lost_before_its_progress_was_saved_is_done_again_without_counting_twice(s3, crossing):
    files, at = crossing
    copy(s3, at)
    manifest = read(s3)
    forget_copy(s3)

    # The second step's piece is written, then its progress is lost (the invocation died).
    progress_writes: list[str] = []

    def lose_progress(params, **_):
        if params["Key"].endswith("progress.json"):
            progress_writes.append(params["Key"])
            if len(progress_writes) == 2:
                raise ConnectionResetError("the invocation died")

    s3.meta.events.register("provide-client-params.s3.PutObject", lose_progress)
    with pytest.raises(ManifestCountIncomplete):
        copy(s3, at, remaining=lambda: 0.0)
    with pytest.raises(ConnectionResetError):
        copy(s3, at, remaining=lambda: 0.0)
    result, _ = copy_in_invocations(s3, at)

    assert read(s3) == manifest
    assert result["objects"] == sum(len(rows) for rows in files)


def test_a_count_other_than_s3s_fails_and_writes_no_manifest(s3, crossing):
    files, at = crossing
    total = sum(len(rows) for rows in files)
    with pytest.raises(AccountingError, match=f"lists {total} objects; S3 counted {total - 1}"):
        copy(s3, at, objects=total - 1)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=MANIFEST.key)
    assert copy(s3, at, objects=total)["objects"] == total


def test_a_generated_manifest_without_files_is_an_empty_manifest(s3):
    at = put_generated(s3, [])
    result = copy_generated_manifest(s3, job_id=JOB, at=at, manifest=MANIFEST, objects=0)
    assert (result["objects"], result["sample"], read(s3)) == (0, [], b"")


def test_a_data_file_of_another_shape_is_refused_in_one_line(s3):
    at = put_generated(s3, [[[SOURCE, "a", "extra"]]])
    for reader in (PYARROW, CSV_MODULE):
        with pytest.raises(AccountingError, match=r"data file .*00000\.csv\.gz") as error:
            copy(s3, at, reader=reader)
        assert "\n" not in str(error.value)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=MANIFEST.key)


# ---------------------------------------------------------------- pyarrow writes what the csv module writes

hostile_keys = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(list(',"\r\n+% ')), max_size=12
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    keys=st.lists(hostile_keys, min_size=1, max_size=30),
    encoded=st.booleans(),
    quote_all=st.booleans(),
    schema=st.sampled_from(["Bucket, Key", "Key, Bucket", "Bucket, Key, VersionId"]),
)
def test_pyarrow_and_the_csv_module_write_the_same_manifest(s3, keys, encoded, quote_all, schema):
    # As S3 encodes keys in a generated manifest (URL-encoded), and raw: hostile beyond what S3 writes.
    names = [name.strip() for name in schema.split(",")]
    spelled = [encode_key(k) if encoded else k for k in keys]
    rows = [[{"Bucket": SOURCE, "Key": k, "VersionId": "v1"}[n] for n in names] for k in spelled]
    at = put_generated(
        s3, [rows[: len(rows) // 2], rows[len(rows) // 2 :]], schema=schema, quote_all=quote_all
    )
    forget_copy(s3)  # the fixture's bucket serves every example
    by_csv = copy(s3, at, reader=CSV_MODULE)
    csv_bytes = read(s3)
    forget_copy(s3)
    by_arrow = copy(s3, at, reader=PYARROW)

    assert read(s3) == csv_bytes
    assert by_arrow == by_csv
    # Empty keys make no row in either (a blank line); every other key is one row, spelled as written.
    assert [key for _, key in _lines(csv_bytes)] == [k for k in spelled if k or len(names) > 1]


def test_a_data_file_is_read_a_few_blocks_ahead_of_its_conversion(monkeypatch):
    """The pyarrow conversion reads a data file as the report stage reads a results file
    (``report.open_paced_csv``): Arrow's background reader, which queues up to 32 blocks, is held
    to READ_AHEAD_BLOCKS ahead of the batches converted (one more while a batch is being written),
    so a piece's memory stays a few blocks whatever its size."""
    import functools
    import time

    from batchpipe_core import report
    from tests.unit.test_report_readers import CountedReads

    monkeypatch.setattr(
        report, "_Pacer", functools.partial(report._Pacer, asking_seconds=60, idle_seconds=60)
    )
    monkeypatch.setattr(generated_copy, "ARROW_BLOCK_BYTES", 1 << 16)
    data = b"".join(b"bkt,photos/k%07d.jpg\n" % i for i in range(80_000))  # ~30 blocks

    class SlowUpload:
        """A consumer slower than the reads, as the copy is (it writes each batch's lines)."""

        rows = 0

        def write_block(self, pieces, rows):
            assert b"".join(bytes(piece) for piece in pieces).count(b"\n") == rows
            self.rows += rows
            stream.taken += 1
            time.sleep(0.002)

    def convert() -> CountedReads:
        upload = SlowUpload()
        keys = list(generated_copy._convert_arrow(stream, ["Bucket", "Key"], upload, "data.csv"))
        assert upload.rows == 80_000 and keys[0][:2] == ["photos/k0000000.jpg", "photos/k0000001.jpg"]
        return stream

    ahead = report.READ_AHEAD_BLOCKS
    stream = CountedReads(io.BytesIO(data))
    paced = convert()
    monkeypatch.setattr(report, "READ_AHEAD_BLOCKS", 64)
    stream = CountedReads(io.BytesIO(data))
    unpaced = convert()

    assert paced.reads == unpaced.reads >= 25
    assert paced.most_ahead <= ahead + 1 < 10
    assert unpaced.most_ahead >= 10  # what the test would see without the pacing


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf"], ids=["empty", "bom-alone"])
def test_an_empty_data_file_converts_to_no_rows(data):
    """A data file with no bytes (or a byte-order mark alone) is no rows for pyarrow's reader, as an
    empty one is for the csv module's: nothing written, no key yielded, no error."""

    class Upload:
        rows = 0

        def write_block(self, pieces, rows):
            raise AssertionError("nothing to write")

        def writerow(self, fields):
            raise AssertionError("nothing to write")

    assert list(generated_copy._convert_arrow(io.BytesIO(data), ["Bucket", "Key"], Upload(), "d.csv")) == []
    assert list(generated_copy._convert_csv(io.BytesIO(b""), ["Bucket", "Key"], Upload(), "d.csv")) == []
