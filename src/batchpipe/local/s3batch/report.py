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
import tempfile
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, BinaryIO

from batchpipe_core.csv_upload import CsvWriter

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


class ResultSpool:
    """A job's report rows, each written to a temporary file as its task ends.

    A million-task job would otherwise hold a million (task, outcome) pairs until the report is
    written; here a task's row is on disk once it is recorded and nothing of the task stays in memory.
    One file per task status, in task order, in the results CSV's own format.
    """

    def __init__(self, report: Mapping[str, Any]) -> None:
        if not report.get("Enabled"):
            self.statuses: tuple[str, ...] = ()
        elif report.get("ReportScope") == FAILED_TASKS_ONLY:
            self.statuses = (FAILED,)
        else:
            self.statuses = (SUCCEEDED, FAILED)
        self.count = 0  # tasks recorded, whether or not the report lists them
        self._files: dict[str, tuple[io.TextIOWrapper, CsvWriter]] = {}

    def add(self, task: Task, outcome: TaskOutcome) -> None:
        self.count += 1
        if outcome.status not in self.statuses:
            return
        entry = self._files.get(outcome.status)
        if entry is None:
            text = io.TextIOWrapper(tempfile.TemporaryFile(), encoding="utf-8", newline="")
            entry = self._files[outcome.status] = (text, CsvWriter(text))  # a "\r" stays in its field
        entry[1].writerow(
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

    def results(self) -> Iterator[tuple[str, BinaryIO]]:
        """(status, results CSV positioned at its start) for each status that has rows."""
        for status in self.statuses:
            entry = self._files.get(status)
            if entry is not None:
                entry[0].flush()
                body = entry[0].buffer
                body.seek(0)
                yield status, body

    def close(self) -> None:
        for text, _writer in self._files.values():
            text.close()
        self._files.clear()


def report_timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def write_report(
    s3: Any,
    *,
    job_id: str,
    report: dict,
    results: ResultSpool,
    created_at: datetime,
) -> str:
    """Writes the results CSVs and manifest.json (SSE-S3, as S3 does); returns manifest.json's key."""
    bucket = parse_bucket_arn(report["Bucket"])
    base = job_report_prefix(report.get("Prefix"), job_id)
    entries = []
    for status, body in results.results():
        digest = hashlib.md5()  # noqa: S324 - S3's checksum field
        while chunk := body.read(1 << 20):
            digest.update(chunk)
        body.seek(0)
        name = hashlib.sha1(f"{job_id}/{status}".encode()).hexdigest()  # noqa: S324 - a name, not a secret
        key = f"{base}/results/{name}.csv"
        _put(s3, bucket, key, body, "text/csv")
        entries.append(
            {
                "TaskExecutionStatus": status,
                "Bucket": bucket,
                "MD5Checksum": digest.hexdigest(),
                "Key": key,
            }
        )
    manifest = {
        "Format": REPORT_FORMAT,
        "ReportCreationDate": report_timestamp(created_at),
        "Results": entries,
        "ReportSchema": REPORT_SCHEMA,
    }
    manifest_key = f"{base}/manifest.json"
    _put(s3, bucket, manifest_key, json.dumps(manifest).encode("utf-8"), "application/json")
    return manifest_key


def _put(s3: Any, bucket: str, key: str, body: bytes | BinaryIO, content_type: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, ServerSideEncryption="AES256")
