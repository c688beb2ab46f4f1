"""The completion-report parser, manifest reader, S3 upload and manifest/report join."""

from __future__ import annotations

import base64
import io
import itertools
import json
import tracemalloc
import zlib

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from batchpipe_core.clients import s3_client
from batchpipe_core.csv_upload import CsvUpload, PiecesBody
from batchpipe_core.keys import encode_key
from batchpipe_core.reconciliation import Reconciliation, identity
from batchpipe_core.report import (
    READERS,
    ManifestRow,
    ReportRow,
    iter_manifest_rows,
    iter_report_rows,
    manifest_field_count,
    parse_manifest_rows,
    parse_report_manifest,
    parse_result_rows,
    read_report_manifest,
    read_result_rows,
    report_manifest_key,
    report_row,
)
from tests.unit.test_report_layout import (
    SPECIAL_KEYS,
    failed,
    manifest_csv,
    results_csv,
    succeeded,
    write_report,
)

BUCKET = "pipeline-bucket"


@pytest.fixture(params=READERS)
def reader(request) -> str:
    """Every parser test runs with pyarrow's reader and with the csv-module fallback."""
    return request.param


@pytest.fixture
def rows_of(reader):
    def parse(data: bytes) -> list[ReportRow]:
        return list(read_result_rows(io.BytesIO(data), reader))

    return parse


# ------------------------------------------------------------------------------------ parsing


def test_documented_sample_rows_parse(rows_of):
    data = (
        b"amzn-s3-demo-bucket1,image_14975%2C.jpg,,failed,200,PermanentFailure,"
        b'"Lambda returned function error: {""errorMessage"":""BadRequest""}"\n'
        b"amzn-s3-demo-bucket1,path/to/object,versionid,succeeded,200,,Successful\n"
    )
    first, second = rows_of(data)
    assert first == ReportRow(
        "amzn-s3-demo-bucket1",
        "image_14975%2C.jpg",
        "",
        "failed",
        200,
        "PermanentFailure",
        'Lambda returned function error: {"errorMessage":"BadRequest"}',
    )
    assert first.decoded_key == "image_14975,.jpg"
    assert second == ReportRow(
        "amzn-s3-demo-bucket1", "path/to/object", "versionid", "succeeded", 200, "", "Successful"
    )
    assert second.succeeded and not first.succeeded


@pytest.mark.parametrize("order", ["aws", "schema"])
def test_both_column_orders_give_the_same_rows(order, rows_of):
    tasks = [
        failed("b", "x", 503, "SlowDown"),
        failed("b", "y", 404, "NoSuchKey"),
        failed("b", "z", 200, "TemporaryFailure"),
        succeeded("b", "w"),
    ]
    rows = rows_of(results_csv(tasks, order))
    assert [(r.http_status, r.error_code) for r in rows] == [
        (503, "SlowDown"),
        (404, "NoSuchKey"),
        (200, "TemporaryFailure"),
        (200, ""),
    ]


def test_messages_with_commas_quotes_and_newlines_stay_one_field(rows_of):
    message = 'line one, with "quotes"\nline two\r\nline three,,'
    data = results_csv([failed("b", "k", 500, "InternalError", message), succeeded("b", "k2")])
    data = data.replace(b"\n", b"\r\n")  # CRLF record ends as well; the quoted \r\n must survive
    rows = rows_of(data)
    assert len(rows) == 2
    assert rows[0].message == message.replace("\n", "\r\n")
    assert rows[1].key == "k2"


def test_unquoted_commas_in_a_message_are_kept():
    row = report_row(["b", "k", "", "failed", "400", "InvalidRequest", "bad", " really", " bad"])
    assert row.message == "bad, really, bad"
    assert (row.http_status, row.error_code) == (400, "InvalidRequest")


def test_short_rows_and_missing_status_parse():
    assert report_row(["b", "k", "", "failed"]) == ReportRow("b", "k", "", "failed", None, "", "")
    assert report_row(["b", "k", "", "FAILED", "", "Weird", "m"]).error_code == "Weird"
    assert report_row(["b", "k", "", "Succeeded", "200", "", ""]).status == "succeeded"


def test_blank_lines_are_skipped(rows_of):
    assert len(rows_of(b"\nb,k,,succeeded,200,,ok\n\n")) == 1


def test_byte_order_mark_is_not_part_of_the_bucket(rows_of):
    assert rows_of(b"\xef\xbb\xbfb,k,,succeeded,200,,ok\n")[0].bucket == "b"


@pytest.mark.parametrize("key", SPECIAL_KEYS)
def test_special_keys_are_kept_encoded_and_decode_back(key, rows_of):
    (row,) = rows_of(
        results_csv([failed("b", key, 503, "SlowDown", version="3sL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")])
    )
    assert row.key == encode_key(key)
    assert row.decoded_key == key
    assert row.version_id == "3sL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"


def test_null_versions_are_kept_as_given(rows_of):
    rows = rows_of(b"b,k1,null,succeeded,200,,ok\nb,k2,,succeeded,200,,ok\n")
    assert [r.version_id for r in rows] == ["null", ""]
    assert identity("b", "k1", "null") == identity("b", "k1", "")


def test_manifest_rows_with_and_without_versions():
    assert list(parse_manifest_rows(io.StringIO("b,a%20b\nb,c\n"))) == [
        ManifestRow("b", "a%20b", ""),
        ManifestRow("b", "c", ""),
    ]
    assert list(parse_manifest_rows(io.StringIO("b,k,v1\nb,k,null\n"))) == [
        ManifestRow("b", "k", "v1"),
        ManifestRow("b", "k", "null"),
    ]
    with pytest.raises(ValueError, match="row 1 has 4 fields"):
        list(parse_manifest_rows(io.StringIO("b,k,v,x\n")))


def test_report_manifest_format_is_checked():
    document = {
        "Format": "Report_CSV_20180820",
        "ReportSchema": "s",
        "Results": [
            {
                "TaskExecutionStatus": "Failed",
                "Bucket": "arn:aws:s3:::other",
                "MD5Checksum": "x",
                "Key": "r/1.csv",
            },
        ],
    }
    parsed = parse_report_manifest(document, "bkt", "p/job-1/manifest.json")
    assert parsed.uri == "s3://bkt/p/job-1/manifest.json"
    assert [(r.status, r.bucket, r.key) for r in parsed.results] == [("failed", "other", "r/1.csv")]
    with pytest.raises(ValueError, match="Report_CSV_20991231"):
        parse_report_manifest({"Format": "Report_CSV_20991231", "Results": []}, "bkt", "k")


@pytest.mark.parametrize(
    ("prefix", "key"),
    [
        ("runs/a/attempt-1/report", "runs/a/attempt-1/report/job-J/manifest.json"),
        ("runs/a/attempt-1/report/", "runs/a/attempt-1/report/job-J/manifest.json"),
        ("", "job-J/manifest.json"),
    ],
)
def test_report_manifest_key(prefix, key):
    assert report_manifest_key(prefix, "J") == key


# ------------------------------------------------------------------------------------ S3


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.mark.parametrize("order", ["aws", "schema"])
def test_reads_every_results_file_of_a_report(s3, order, reader):
    tasks = [succeeded("src", key) for key in SPECIAL_KEYS] + [
        failed("src", key, 503, "SlowDown") for key in SPECIAL_KEYS[:5]
    ]
    write_report(s3, BUCKET, "runs/r/attempt-1/report", "job1", tasks, files_per_status=3, order=order)
    report = read_report_manifest(s3, f"arn:aws:s3:::{BUCKET}", "runs/r/attempt-1/report", "job1")
    assert report is not None and len(report.results) == 6
    rows = list(iter_report_rows(s3, report, reader))
    assert sorted((r.decoded_key, r.status, r.http_status) for r in rows) == sorted(
        (t.key, t.status, t.http) for t in tasks
    )


def test_missing_report_is_none(s3):
    assert read_report_manifest(s3, BUCKET, "runs/r/attempt-1/report", "nojob") is None


def test_manifest_field_count_and_rows(s3):
    tasks = [succeeded("src", key, "v1") for key in SPECIAL_KEYS]
    s3.put_object(Bucket=BUCKET, Key="m3.csv", Body=manifest_csv(tasks, versions=True))
    s3.put_object(Bucket=BUCKET, Key="m2.csv", Body=manifest_csv(tasks, versions=False))
    assert manifest_field_count(s3, BUCKET, "m3.csv") == 3
    assert manifest_field_count(s3, BUCKET, "m2.csv") == 2
    rows = list(iter_manifest_rows(s3, BUCKET, "m3.csv"))
    assert [r.key for r in rows] == [encode_key(k) for k in SPECIAL_KEYS]


def test_small_upload_is_one_put_with_its_etag(s3):
    upload = CsvUpload(s3, BUCKET, "out/small.csv", header=["a", "b"])
    upload.writerow(["x,y", "z"])
    done = upload.close()
    assert done is not None and done.rows == 1
    head = s3.head_object(Bucket=BUCKET, Key="out/small.csv")
    assert head["ETag"].strip('"') == done.etag and head["ContentLength"] == done.size
    assert s3.get_object(Bucket=BUCKET, Key="out/small.csv")["Body"].read() == b'a,b\n"x,y",z\n'


def test_large_upload_is_multipart_and_complete(s3, monkeypatch):
    monkeypatch.setattr(CsvUpload, "PART_BYTES", 5 << 20)  # S3's minimum part size
    monkeypatch.setattr(CsvUpload, "SINGLE_PUT_BYTES", 5 << 20)
    upload = CsvUpload(s3, BUCKET, "out/large.csv")
    row = ["bucket", "k" * 1000]
    for _ in range(12_000):  # ~12 MB: two full parts and a last one
        upload.writerow(row)
    done = upload.close()
    assert done is not None and done.etag.endswith("-3")
    body = s3.get_object(Bucket=BUCKET, Key="out/large.csv")["Body"].read()
    assert body == ("bucket," + "k" * 1000 + "\n").encode() * 12_000


@pytest.mark.parametrize("extra", [0, 1, 5 << 20])
def test_an_upload_is_one_put_up_to_its_single_put_size_and_parts_of_part_size_past_it(
    s3, monkeypatch, extra
):
    """At SINGLE_PUT_BYTES exactly: one PutObject. One byte more: a multipart upload whose parts
    are PART_BYTES each (S3's 5 MiB minimum for all but the last) and a last one of what is left."""
    monkeypatch.setattr(CsvUpload, "PART_BYTES", 5 << 20)  # S3's minimum part size
    monkeypatch.setattr(CsvUpload, "SINGLE_PUT_BYTES", 12 << 20)
    parts: list[int] = []
    s3.meta.events.register(
        "provide-client-params.s3.UploadPart", lambda params, **_: parts.append(len(params["Body"]))
    )
    upload = CsvUpload(s3, BUCKET, "out/boundary.csv")
    line = b"bucket," + b"k" * 1016 + b"\n"  # 1 KiB
    total = (12 << 20) + extra
    for _ in range(total // len(line)):
        upload.write_block([line], 1)
    upload.write_block([b"x" * (total % len(line))], 0)
    done = upload.close()
    assert done is not None and done.size == total
    body = s3.get_object(Bucket=BUCKET, Key="out/boundary.csv")["Body"].read()
    assert len(body) == total and body.startswith(line)
    if not extra:
        assert parts == [] and "-" not in done.etag
    else:
        assert parts[:-1] == [5 << 20] * (len(parts) - 1) and 0 < parts[-1] <= 5 << 20
        assert sum(parts) == total and done.etag.endswith(f"-{len(parts)}")


@pytest.mark.parametrize("extra", [0, 1])
def test_the_report_client_uploads_give_their_crc32_and_send_the_body_unsigned(s3, monkeypatch, extra):
    """Through the report stage's client (clients.UPLOAD_CONFIG): every PutObject and UploadPart
    carries the CRC32 of exactly its body, which S3 checks (next test), and is sent unsigned, as it
    is (no SHA-256 of the body, no aws-chunked re-framing); the object is every byte written."""
    monkeypatch.setattr(CsvUpload, "PART_BYTES", 5 << 20)  # S3's minimum part size
    monkeypatch.setattr(CsvUpload, "SINGLE_PUT_BYTES", 6 << 20)
    client = s3_client()
    assert client.meta.config.s3 == {"payload_signing_enabled": False}
    sent: list[tuple[str, dict, bytes]] = []

    def record(request, **_):
        body = request.body
        if not isinstance(body, bytes | bytearray):  # a file (botocore's BytesIO, or a PiecesBody)
            position = body.tell()
            body.seek(0)
            body = body.read()
            request.body.seek(position)  # as the connection will read it
        sent.append((request.url, dict(request.headers), bytes(body)))

    client.meta.events.register_first("before-send.s3.PutObject", record)
    client.meta.events.register_first("before-send.s3.UploadPart", record)
    upload = CsvUpload(client, BUCKET, "out/checksummed.csv", header=["bucket", "key"])
    line = ("bucket,k\u00e9y " + "x" * 1000 + "\n").encode()
    for _ in range((6 << 20) // len(line) + extra * 2_000):
        upload.write_block([line], 1)
    done = upload.close()
    assert done is not None and ("-" in done.etag) == bool(extra)
    assert len(sent) == (2 if extra else 1)
    for _, headers, body in sent:
        crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big"))
        assert headers["x-amz-checksum-crc32"] in (crc, crc.decode())
        assert headers["X-Amz-Content-SHA256"] in (b"UNSIGNED-PAYLOAD", "UNSIGNED-PAYLOAD")
        assert "Content-Encoding" not in headers
    stored = s3.get_object(Bucket=BUCKET, Key="out/checksummed.csv")["Body"].read()
    assert stored == b"".join(body for _, _, body in sent) and len(stored) == done.size


@given(
    pieces=st.lists(st.binary(max_size=40), max_size=8),
    sizes=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20),
    seeks=st.lists(st.integers(min_value=-10, max_value=400), max_size=4),
)
def test_a_pieces_body_reads_as_its_pieces_joined_from_wherever_it_is_sought(pieces, sizes, seeks):
    """``PiecesBody`` is the file of its pieces joined: sized, each read at most what was asked and
    never across two pieces (a view, not a copy), empty at the end; a seek anywhere (clamped to the
    body) reads on from there, and ``read()`` joins what is left, as moto's mock reads it."""
    whole = b"".join(pieces)
    body = PiecesBody([bytearray(p) if i % 2 else p for i, p in enumerate(pieces)])
    assert len(body) == len(whole) and body.tell() == 0
    for position in [0, *seeks]:
        at = body.seek(position)
        assert at == body.tell() == min(max(position, 0), len(whole))
        read = b""
        for size in itertools.cycle(sizes):
            chunk = body.read(size)
            if not chunk:
                break
            assert 0 < len(chunk) <= size
            read += bytes(chunk)
        assert read == whole[at:] and body.tell() == len(whole) and body.read(5) == b""
        body.seek(at)
        assert body.read() == whole[at:] and body.read() == b""
        body.seek(at)
        assert body.read(None) == whole[at:] and body.read(0) == b""
    assert body.seek(-3, io.SEEK_END) == max(len(whole) - 3, 0) and body.read() == whole[-3:]


_SLOW_DOWN = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"


class _Raw:
    """A response body as botocore reads one (``stream``)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_):
        yield self._body


def test_a_put_retried_after_its_body_was_partly_sent_stores_every_byte():
    """botocore rewinds a file body before it retries (a 503 after part of it went): the object S3
    stores is the whole body once, its CRC32 the one the upload gave (the report client's uploads,
    bodies of many pieces)."""
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        client = s3_client()
        attempts: list[int] = []

        def fail_first(request, **_):
            attempts.append(request.body.tell())
            if len(attempts) == 1:
                request.body.read(100)  # part of the body went before the connection broke
                return AWSResponse(request.url, 503, {}, _Raw(_SLOW_DOWN))
            return None

        client.meta.events.register_first("before-send.s3.PutObject", fail_first)
        upload = CsvUpload(client, BUCKET, "out/retried.csv", header=["bucket", "key"])
        lines = [(f"b,k\u00e9y-{i}-" + "x" * 70_000 + "\n").encode() for i in range(3)]
        upload.write_block(lines, 3)  # pieces of at least _BLOCK_BYTES each, kept as they are
        done = upload.close()
        stored = client.get_object(Bucket=BUCKET, Key="out/retried.csv")["Body"].read()
    assert attempts == [0, 0] and done is not None
    assert stored == b"bucket,key\n" + b"".join(lines) and len(stored) == done.size


def test_an_upload_whose_crc32_does_not_match_its_body_is_refused(s3):
    """What the checksum is for: S3 refuses a body that is not what its CRC32 says (moto, as S3
    documents: "Checking object integrity in Amazon S3")."""
    client = s3_client()
    with pytest.raises(ClientError):
        client.put_object(Bucket=BUCKET, Key="out/bad.csv", Body=b"a,b\n", ChecksumCRC32="AAAAAA==")
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="out/bad").get("KeyCount") == 0


def test_empty_upload_can_be_skipped_and_aborted_uploads_leave_nothing(s3, monkeypatch):
    assert CsvUpload(s3, BUCKET, "out/empty.csv", header=["h"], skip_if_empty=True).close() is None
    monkeypatch.setattr(CsvUpload, "PART_BYTES", 5 << 20)
    monkeypatch.setattr(CsvUpload, "SINGLE_PUT_BYTES", 5 << 20)
    upload = CsvUpload(s3, BUCKET, "out/aborted.csv")
    for _ in range(6_000):
        upload.writerow(["b", "k" * 1000])
    upload.abort()
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="out/").get("KeyCount") == 0
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


# ------------------------------------------------------------------------------------ join


def _absent(row: ManifestRow) -> ReportRow:
    return ReportRow(row.bucket, row.key, row.version_id, "failed", None, "NotRun", "")


def _later(_earlier: ReportRow, later: ReportRow) -> ReportRow:
    return later


@pytest.mark.parametrize("memory_rows", [1_000_000, 7])
def test_join_gives_one_outcome_per_manifest_row(memory_rows, tmp_path):
    manifest = [ManifestRow("b", encode_key(f"key {i}"), "") for i in range(300)]
    report = [
        ReportRow("b", encode_key(f"key {i}"), "", "succeeded", 200, "", "ok") for i in range(0, 300, 2)
    ] + [
        ReportRow("b", encode_key("key 4"), "", "failed", 503, "SlowDown", "again"),
        ReportRow("b", "key%201", "v1", "failed", 404, "NoSuchKey", "foreign"),  # in no manifest row
    ]
    join = Reconciliation(
        manifest,
        report,
        absent=_absent,
        prefer=_later,
        expected_rows=300,
        memory_rows=memory_rows,
        workdir=str(tmp_path),
    )
    outcomes = list(join)
    assert len(outcomes) == 300
    by_key = {o.decoded_key: o for o in outcomes}
    assert by_key["key 4"].error_code == "SlowDown"  # the later of two rows for one object
    assert by_key["key 2"].succeeded
    assert by_key["key 1"].error_code == "NotRun"
    assert sum(o.error_code == "NotRun" for o in outcomes) == 150
    assert join.unmatched == 1
    assert list(tmp_path.iterdir()) == []  # spill files are removed


def test_join_matches_keys_as_given_and_null_versions():
    manifest = [
        ManifestRow("b", "a%2Fb", "null"),
        ManifestRow("b", "c%20d", "v1"),
        ManifestRow("b", "e", "v1"),
    ]
    report = [
        ReportRow("b", "a%2Fb", "", "succeeded", 200, "", ""),
        ReportRow("b", "c%20d", "v1", "succeeded", 200, "", ""),
        ReportRow("b", "e", "v2", "succeeded", 200, "", ""),  # another version of the object
    ]
    outcomes = list(Reconciliation(manifest, report, absent=_absent, prefer=_later, expected_rows=3))
    assert [o.succeeded for o in outcomes] == [True, True, False]


def test_join_keeps_duplicate_manifest_rows():
    manifest = [ManifestRow("b", "k", "")] * 2
    report = [ReportRow("b", "k", "", "succeeded", 200, "", "")]
    outcomes = list(Reconciliation(manifest, report, absent=_absent, prefer=_later, expected_rows=2))
    assert [o.succeeded for o in outcomes] == [True, True]


# ------------------------------------------------------------------------------------ memory


def _report_lines(count: int):
    for i in range(count):
        yield f'src,photos/2024/{i:09d}.jpg,,failed,503,SlowDown,"Please reduce your request rate, {i}"\r\n'


def test_parsing_memory_does_not_grow_with_rows():
    def peak(count: int) -> int:
        tracemalloc.start()
        for _ in parse_result_rows(_report_lines(count)):
            pass
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(2_000), peak(50_000)
    assert large < small + 64 * 1024, (small, large)


def test_spilled_join_memory_is_bounded_by_memory_rows(tmp_path):
    count = 20_000
    manifest = (ManifestRow("src", f"k{i}", "") for i in range(count))
    report = (ReportRow("src", f"k{i}", "", "succeeded", 200, "", "ok") for i in range(0, count, 3))
    join = Reconciliation(
        manifest,
        report,
        absent=_absent,
        prefer=_later,
        expected_rows=count,
        memory_rows=1_000,
        workdir=str(tmp_path),
    )
    tracemalloc.start()
    outcomes = sum(1 for _ in join)
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert outcomes == count
    assert top < 8 << 20, top  # a whole-set dict of 40k rows alone would take more


def test_report_body_streams_through_a_botocore_body(s3, reader):
    lines = "".join(itertools.islice(_report_lines(10_000), 10_000)).encode()
    s3.put_object(Bucket=BUCKET, Key="r.csv", Body=lines)
    body = s3.get_object(Bucket=BUCKET, Key="r.csv")["Body"]
    rows = list(read_result_rows(body, reader))
    assert len(rows) == 10_000 and rows[-1].message == "Please reduce your request rate, 9999"
    assert json.loads(json.dumps(rows[0]._asdict()))["http_status"] == 503
