"""Completion reports in AWS's exact layout, for the report, ProcessReport and Summarize tests.

The layout (S3 user guide, "Examples: S3 Batch Operations completion reports"): ``<prefix>/job-<id>/manifest.json`` lists headerless
results CSVs under ``<prefix>/job-<id>/results/<hash>.csv``, split by task status. Rows are
``Bucket,Key,VersionId,TaskStatus,HTTPStatusCode,ErrorCode,ResultMessage`` as real reports write them
("aws" order) - or with the two middle columns swapped as ``ReportSchema`` lists them ("schema"
order). Keys are written exactly as the manifest gave them (URL-encoded). The tests at the bottom pin
the writer to AWS's documented sample rows.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
if str(FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS))

from batchpipe_core.keys import encode_key  # noqa: E402

REPORT_SCHEMA = "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"

#: One key per special-character class a manifest key can hold (all valid S3 keys).
SPECIAL_KEYS = [
    "plain/photo.jpg",
    "with space/a b.txt",
    "plus+sign/a+b.txt",
    "percent%25/100%.txt",
    "equals=/a=b&c=d.txt",
    "comma,/a,b,c.csv",
    'quotes"/say "hi".txt',
    "single'quote/it's.txt",
    "hash#/a#b.txt",
    "question?/a?b=c.txt",
    "unicode/café/日本語/😀.txt",
    "control/tab\there/new\nline.txt",
    "//double//slashes/",
    "/leading-slash",
    "trailing-space ",
    "k/" + "x" * 1022,  # 1,024 bytes, the S3 maximum
    "é" * 512,  # 1,024 bytes of two-byte characters
]


@dataclass(frozen=True)
class Task:
    """One task outcome as S3 Batch Operations reports it (key decoded; the writer encodes it)."""

    bucket: str
    key: str
    version: str = ""
    status: str = "succeeded"
    http: int | None = 200
    code: str = ""
    message: str = "Successful"

    @property
    def encoded_key(self) -> str:
        return encode_key(self.key)


def succeeded(bucket: str, key: str, version: str = "") -> Task:
    return Task(bucket, key, version)


def failed(bucket: str, key: str, http: int | None, code: str, message: str = "", version: str = "") -> Task:
    return Task(bucket, key, version, "failed", http, code, message or f"{code}: it failed, badly\nsee logs")


def results_csv(tasks: list[Task], order: str = "aws") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for task in tasks:
        http = "" if task.http is None else str(task.http)
        middle = [http, task.code] if order == "aws" else [task.code, http]
        writer.writerow([task.bucket, task.encoded_key, task.version, task.status, *middle, task.message])
    return out.getvalue().encode()


def write_report(
    s3,
    bucket: str,
    prefix: str,
    job_id: str,
    tasks: list[Task],
    *,
    files_per_status: int = 2,
    order: str = "aws",
    scope: str = "AllTasks",
) -> str:
    """Writes the report as S3 would; returns the manifest.json key."""
    job_prefix = f"{prefix.strip('/')}/job-{job_id}"
    results = []
    for status in ("succeeded", "failed"):
        if scope == "FailedTasksOnly" and status == "succeeded":
            continue
        of_status = [t for t in tasks if t.status == status]
        if not of_status:
            continue
        for shard in range(files_per_status):
            body = results_csv(of_status[shard::files_per_status], order)
            if not body:
                continue
            digest = hashlib.sha1(body + job_id.encode()).hexdigest()
            key = f"{job_prefix}/results/{digest}.csv"
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            results.append(
                {
                    "TaskExecutionStatus": status,
                    "Bucket": bucket,
                    "MD5Checksum": hashlib.md5(body).hexdigest(),
                    "Key": key,
                }
            )
    manifest_key = f"{job_prefix}/manifest.json"
    manifest = {
        "Format": "Report_CSV_20180820",
        "ReportCreationDate": "2024-05-01T12:00:00.000Z",
        "Results": results,
        "ReportSchema": REPORT_SCHEMA,
    }
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    return manifest_key


def manifest_csv(tasks: list[Task], *, versions: bool) -> bytes:
    """The job's CSV manifest for these objects (as BuildManifest writes it: encoded keys, no header)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for task in tasks:
        row = [task.bucket, task.encoded_key] + ([task.version or "null"] if versions else [])
        writer.writerow(row)
    return out.getvalue().encode()


# --------------------------------------------------------------------------- the writer itself


def test_rows_match_the_documented_sample_layout():
    # The S3 user guide's sample report rows ("Examples: Batch Operations completion reports").
    body = results_csv(
        [
            Task(
                "amzn-s3-demo-bucket1",
                "image_14975,.jpg",
                "",
                "failed",
                200,
                "PermanentFailure",
                'Lambda returned function error: {"errorMessage":"BadRequest"}',
            ),
            Task("amzn-s3-demo-bucket1", "path/to/object", "versionid", "succeeded", 200, "", "Successful"),
        ]
    ).decode()
    lines = body.splitlines()
    assert lines[0].startswith("amzn-s3-demo-bucket1,image_14975%2C.jpg,,failed,200,PermanentFailure,")
    assert lines[1] == "amzn-s3-demo-bucket1,path/to/object,versionid,succeeded,200,,Successful"


def test_schema_order_swaps_only_the_middle_columns():
    task = Task("b", "k", "", "failed", 503, "SlowDown", "slow")
    assert results_csv([task], "schema").decode() == "b,k,,failed,SlowDown,503,slow\n"


def test_special_keys_are_valid_s3_keys():
    for key in SPECIAL_KEYS:
        assert 1 <= len(key.encode()) <= 1024
