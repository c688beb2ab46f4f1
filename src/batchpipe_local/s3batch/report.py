"""The completion report, in the layout S3 Batch Operations writes (S3 user guide, "Examples: S3 Batch Operations completion reports").

``<Prefix>/job-<JobId>/manifest.json`` lists one results CSV per task status under
``<Prefix>/job-<JobId>/results/``. Result rows have no header; the HTTP status is the 5th column and
the error code the 6th (the reverse of what ``ReportSchema`` says, as in real reports). Keys are
written as the manifest gave them (URL-encoded).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from batchpipe_core.report import CsvWriter

from .manifest import parse_bucket_arn
from .tasks import FAILED, SUCCEEDED, Task, TaskOutcome

REPORT_FORMAT = "Report_CSV_20180820"
REPORT_SCHEMA = "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"
ALL_TASKS = "AllTasks"
FAILED_TASKS_ONLY = "FailedTasksOnly"


def job_report_prefix(prefix: str | None, job_id: str) -> str:
    """``<Prefix>/job-<JobId>``; a trailing slash of the prefix is not doubled (unverified on AWS)."""
    prefix = (prefix or "").rstrip("/")
    return f"{prefix}/job-{job_id}" if prefix else f"job-{job_id}"


def results_csv(rows: Sequence[tuple[Task, TaskOutcome]]) -> bytes:
    buffer = io.StringIO()
    writer = CsvWriter(buffer)  # a "\r" in a Lambda's ResultString stays inside its field
    for task, outcome in rows:
        writer.writerow(
            [
                task.bucket,
                task.key,
                task.version_field,
                outcome.status,
                outcome.http_status,
                outcome.error_code,
                outcome.message,
            ]
        )
    return buffer.getvalue().encode("utf-8")


def report_timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def write_report(
    s3: Any,
    *,
    job_id: str,
    report: dict,
    records: Sequence[tuple[Task, TaskOutcome]],
    created_at: datetime,
) -> str:
    """Writes the results CSVs and manifest.json (SSE-S3, as S3 does); returns manifest.json's key."""
    bucket = parse_bucket_arn(report["Bucket"])
    base = job_report_prefix(report.get("Prefix"), job_id)
    statuses = [FAILED] if report.get("ReportScope") == FAILED_TASKS_ONLY else [SUCCEEDED, FAILED]
    results = []
    for status in statuses:
        rows = [(task, outcome) for task, outcome in records if outcome.status == status]
        if not rows:
            continue
        body = results_csv(rows)
        name = hashlib.sha1(f"{job_id}/{status}".encode()).hexdigest()  # noqa: S324 - a name, not a secret
        key = f"{base}/results/{name}.csv"
        _put(s3, bucket, key, body, "text/csv")
        results.append(
            {
                "TaskExecutionStatus": status,
                "Bucket": bucket,
                "MD5Checksum": hashlib.md5(body).hexdigest(),  # noqa: S324 - S3's checksum field
                "Key": key,
            }
        )
    manifest = {
        "Format": REPORT_FORMAT,
        "ReportCreationDate": report_timestamp(created_at),
        "Results": results,
        "ReportSchema": REPORT_SCHEMA,
    }
    manifest_key = f"{base}/manifest.json"
    _put(s3, bucket, manifest_key, json.dumps(manifest).encode("utf-8"), "application/json")
    return manifest_key


def _put(s3: Any, bucket: str, key: str, body: bytes, content_type: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, ServerSideEncryption="AES256")
