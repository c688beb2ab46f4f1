"""A run's failures file -> a rerun manifest (batchpipe_core.rerun), against moto S3."""

from __future__ import annotations

import csv
import io
from urllib.parse import unquote, unquote_plus

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from batchpipe_core.csv_upload import CsvWriter
from batchpipe_core.errors import FailuresFileError, TooManyObjectsError
from batchpipe_core.report import FAILURE_HEADER
from batchpipe_core.rerun import RerunBuckets, manifest_from_failures, rerun_buckets
from tests.unit.test_keys_property import any_key

BUCKET = "batchpipe-pipelinebucket"
FAILURES_KEY = "runs/first/run-1/permanent-failures.csv"
FAILURES_URI = f"s3://{BUCKET}/{FAILURES_KEY}"
MANIFEST_KEY = "runs/fix/run-2/manifest.csv"


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def put_failures(s3, rows, header=FAILURE_HEADER) -> None:
    text = io.StringIO(newline="")
    writer = CsvWriter(text)  # as ProcessReport and Summarize write failures files
    writer.writerow(header)
    for row in rows:
        writer.writerow(row)
    s3.put_object(Bucket=BUCKET, Key=FAILURES_KEY, Body=text.getvalue().encode())


def rerun(s3, *, error_codes=None, versioned=False, max_objects=1_000_000, allowed=("src",)) -> dict:
    return manifest_from_failures(
        s3,
        failures_uri=FAILURES_URI,
        error_codes=error_codes,
        bucket=BUCKET,
        key=MANIFEST_KEY,
        versioned=versioned,
        max_objects=max_objects,
        allowed_buckets=RerunBuckets(frozenset(allowed), "one of the stack's SourceBuckets"),
    )


def manifest_rows(s3) -> list[list[str]]:
    body = s3.get_object(Bucket=BUCKET, Key=MANIFEST_KEY)["Body"].read().decode()
    return list(csv.reader(io.StringIO(body, newline="")))


def failure(key, code="AccessDenied", status="403", version="", message="Access Denied") -> list[str]:
    return ["src", key, version, status, code, message]


def test_every_row_becomes_a_manifest_row_with_its_key_encoded(s3):
    put_failures(
        s3, [failure("a b+c.jpg"), failure('q,"x"\n#?.bin', "NoSuchKey", "404", message='say "no",\nok')]
    )

    manifest = rerun(s3)

    head = s3.head_object(Bucket=BUCKET, Key=MANIFEST_KEY)
    assert manifest == {
        "location": f"s3://{BUCKET}/{MANIFEST_KEY}",
        "bucket": BUCKET,
        "key": MANIFEST_KEY,
        "etag": head["ETag"].strip('"'),
        "objects": 2,
        "sizeBytes": head["ContentLength"],
        "bytesScanned": 0,
        "sample": ["a b+c.jpg", 'q,"x"\n#?.bin'],
    }
    assert manifest_rows(s3) == [["src", "a%20b%2Bc.jpg"], ["src", "q%2C%22x%22%0A%23%3F.bin"]]


def test_only_the_chosen_error_codes_are_rerun(s3):
    put_failures(
        s3,
        [
            failure("denied.jpg"),
            failure("gone.jpg", "NoSuchKey", "404"),
            failure("kms.jpg", "KMS.AccessDenied"),
        ],
    )

    manifest = rerun(s3, error_codes=["AccessDenied", "KMS.AccessDenied"])

    assert manifest["objects"] == 2
    assert manifest_rows(s3) == [["src", "denied.jpg"], ["src", "kms.jpg"]]


def test_no_matching_row_writes_nothing_and_reports_zero_objects(s3):
    put_failures(s3, [failure("gone.jpg", "NoSuchKey", "404")])

    manifest = rerun(s3, error_codes=["AccessDenied"])

    assert manifest["objects"] == 0
    assert manifest["location"] is None
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=MANIFEST_KEY)


def test_a_versioned_stack_keeps_version_ids_and_writes_null_for_the_null_version(s3):
    put_failures(s3, [failure("a.jpg", version="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"), failure("b.jpg")])

    rerun(s3, versioned=True)

    assert manifest_rows(s3) == [
        ["src", "a.jpg", "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"],
        ["src", "b.jpg", "null"],
    ]


def test_a_version_id_an_unversioned_stack_cannot_carry_is_an_error_not_dropped(s3):
    put_failures(s3, [failure("a.jpg"), failure("b.jpg", version="v2")])

    with pytest.raises(FailuresFileError, match=r"line 3: has version ID 'v2'.*InventoryVersions=Current"):
        rerun(s3)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=MANIFEST_KEY)


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        (["Bucket", "Key"], [], "line 1: is not the failures-file header"),
        (FAILURE_HEADER, [["src", "a.jpg", ""]], "line 2: 3 fields, expected 6"),
        (FAILURE_HEADER, [["", "a.jpg", "", "403", "AccessDenied", ""]], "line 2: the bucket and key"),
    ],
)
def test_a_file_that_is_not_a_failures_file_is_rejected(s3, header, rows, message):
    put_failures(s3, rows, header=header)

    with pytest.raises(FailuresFileError, match=message):
        rerun(s3)


def test_a_row_outside_the_stacks_source_buckets_refuses_the_rerun_before_any_manifest(s3):
    put_failures(s3, [failure("a.jpg"), ["someone-elses-bucket", "b.jpg", "", "403", "AccessDenied", ""]])

    with pytest.raises(
        FailuresFileError,
        match=rf"^s3://{BUCKET}/{FAILURES_KEY} line 3: bucket 'someone-elses-bucket' is not one of the stack's "
        r"SourceBuckets \(src, src2\); no job was created",
    ):
        rerun(s3, allowed=("src2", "src"))
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=MANIFEST_KEY)
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_by_default_a_rerun_acts_only_on_the_bucket_the_stacks_runs_act_on(s3):
    # SourceBuckets lets the Batch role reach two buckets; the stack's inventory is of "src" only,
    # so no failures file its runs wrote can name "src2".
    put_failures(s3, [failure("a.jpg"), ["src2", "b.jpg", "", "403", "AccessDenied", ""]])
    allowed = rerun_buckets(("src", "src2"), "inventory/src/all-objects")

    with pytest.raises(
        FailuresFileError,
        match=r"line 3: bucket 'src2' is not the bucket the stack's runs act on \('src', the source bucket "
        r"of InventoryPrefix\) within SourceBuckets \(src\); no job was created",
    ):
        manifest_from_failures(
            s3, failures_uri=FAILURES_URI, error_codes=None, bucket=BUCKET, key=MANIFEST_KEY,
            versioned=False, max_objects=10, allowed_buckets=allowed,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("source_buckets", "prefix", "names"),
    [
        (("src", "src2"), "inventory/src/all-objects", {"src"}),
        (("src", "src2"), "/src/all-objects/", {"src"}),
        (("other",), "inventory/src/all-objects", set()),  # the role cannot reach the inventoried bucket
        (("src", "src2"), "all-objects", {"src", "src2"}),  # no bucket segment: SourceBuckets alone
    ],
)
def test_the_rerun_buckets_come_from_stack_parameters(source_buckets, prefix, names):
    assert rerun_buckets(source_buckets, prefix).names == names


def test_a_row_not_chosen_by_error_codes_is_not_checked_and_not_acted_on(s3):
    put_failures(s3, [failure("a.jpg"), ["other", "b.jpg", "", "404", "NoSuchKey", ""]])

    assert rerun(s3, error_codes=["AccessDenied"])["objects"] == 1
    assert manifest_rows(s3) == [["src", "a.jpg"]]


def test_a_stack_with_no_source_buckets_reruns_nothing(s3):
    put_failures(s3, [failure("a.jpg")])

    with pytest.raises(
        FailuresFileError, match=r"line 2: bucket 'src' is not one of the stack's SourceBuckets \(none\)"
    ):
        rerun(s3, allowed=())


def put_raw(s3, body: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key=FAILURES_KEY, Body=body)


HEADER_LINE = (",".join(FAILURE_HEADER) + "\n").encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # A field over the csv module's 128 KiB limit, inside one line and spread over many lines.
        (
            HEADER_LINE + b"src,a.jpg,,403,AccessDenied,ok\n" + b"src,b,,1,x," + b"m" * (129 * 1024) + b"\n",
            r"line 3: longer than 131072 bytes",
        ),
        (
            HEADER_LINE + b'src,"' + b"k\n" * 70_000 + b'",,403,AccessDenied,\n',
            r"line 2: is not a CSV record \(field larger",
        ),
        (
            HEADER_LINE + b"src,a.jpg,,403,AccessDenied,ok\nsrc,caf\xe9.jpg,,403,AccessDenied,ok\n",
            r"line 3: byte 8 is not UTF-8",
        ),
        (b"\xff\xfe" + HEADER_LINE, r"line 1: byte 1 is not UTF-8"),
        (b"x" * (1024 * 1024), r"line 1: longer than 131072 bytes"),
    ],
    ids=["long-line", "long-field", "latin-1", "utf-16-bom", "no-newline"],
)
def test_a_file_that_is_not_a_failures_file_is_refused_naming_file_and_line(s3, body, message):
    put_raw(s3, body)

    with pytest.raises(FailuresFileError, match=rf"^s3://{BUCKET}/{FAILURES_KEY} {message}"):
        rerun(s3)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=MANIFEST_KEY)


def test_a_file_over_the_size_cap_is_refused_before_it_is_read(s3, monkeypatch):
    import batchpipe_core.rerun as module

    put_failures(s3, [failure("a.jpg")])
    size = s3.head_object(Bucket=BUCKET, Key=FAILURES_KEY)["ContentLength"]
    monkeypatch.setattr(module, "MAX_FAILURES_BYTES", size - 1)

    with pytest.raises(
        FailuresFileError, match=rf"is {size} bytes, more than a rerun reads \({size - 1} bytes"
    ):
        rerun(s3)


def test_a_byte_order_mark_and_crlf_line_ends_are_still_a_failures_file(s3):
    put_raw(s3, b"\xef\xbb\xbf" + HEADER_LINE.replace(b"\n", b"\r\n") + b"src,a.jpg,,403,AccessDenied,x\r\n")

    assert rerun(s3)["objects"] == 1
    assert manifest_rows(s3) == [["src", "a.jpg"]]


def test_a_missing_failures_file_says_where_the_uri_comes_from(s3):
    with pytest.raises(
        FailuresFileError, match=r"does not exist; rerun\.failures takes the permanentFailures URI"
    ):
        rerun(s3)


def test_an_empty_object_is_not_a_failures_file(s3):
    s3.put_object(Bucket=BUCKET, Key=FAILURES_KEY, Body=b"")

    with pytest.raises(FailuresFileError, match="line 1: is not the failures-file header"):
        rerun(s3)


def test_more_rows_than_max_objects_fails_before_any_manifest_exists(s3):
    put_failures(s3, [failure(f"k{i}") for i in range(5)])

    with pytest.raises(TooManyObjectsError, match=r"more than maxObjects \(4\)"):
        rerun(s3, max_objects=4)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=MANIFEST_KEY)
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(any_key, st.sampled_from(["AccessDenied", "NoSuchKey", "SlowDown"])),
        min_size=1,
        max_size=30,
    ),
    wanted=st.sets(st.sampled_from(["AccessDenied", "NoSuchKey", "SlowDown"]), min_size=1),
)
def test_the_manifest_is_exactly_the_wanted_rows_and_every_key_decodes_back(s3, rows, wanted):
    put_failures(s3, [failure(key, code) for key, code in rows])

    manifest = rerun(s3, error_codes=sorted(wanted))

    expected = [key for key, code in rows if code in wanted]
    assert manifest["objects"] == len(expected)
    if expected:
        written = [row[1] for row in manifest_rows(s3)]
        assert [unquote(k) for k in written] == expected
        assert [unquote_plus(k) for k in written] == expected
        assert manifest["sample"] == expected[:20]
    s3.delete_object(Bucket=BUCKET, Key=MANIFEST_KEY)


def test_a_carriage_return_in_a_key_or_message_stays_inside_its_field():
    text = io.StringIO(newline="")
    rows = [["src", "a\rb", "", "403", "AccessDenied", "line\rbreak"], ["src", "plain", "", "", "", ""]]

    writer = CsvWriter(text)
    for row in rows:
        writer.writerow(row)

    assert list(csv.reader(io.StringIO(text.getvalue(), newline=""))) == rows
    assert text.getvalue().endswith("\nsrc,plain,,,,\n")  # rows without "\r" stay minimally quoted


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"])), min_size=1, max_size=7),
        min_size=1,
        max_size=5,
    )
)
def test_what_csv_writer_writes_reads_back_as_the_same_fields(rows):
    text = io.StringIO(newline="")
    writer = CsvWriter(text)
    for row in rows:
        writer.writerow(row)

    read = list(csv.reader(io.StringIO(text.getvalue(), newline="")))

    assert read == rows
