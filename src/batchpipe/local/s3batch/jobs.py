"""A job's state and its s3control descriptions (DescribeJob ``Job``, ListJobs entries).

Statuses follow the S3 user guide: New -> Preparing -> (Suspended ->) Ready -> Active -> Completing ->
Complete, or -> Failing -> Failed, or (UpdateJobStatus Cancelled) -> Cancelling -> Cancelled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from moto.utilities.utils import get_partition

from . import generator, operations
from .errors import BadRequestException
from .manifest import CSV_FORMAT, INVENTORY_FORMAT, parse_bucket_arn, parse_object_arn
from .report import ALL_TASKS, FAILED_TASKS_ONLY, REPORT_FORMAT, ResultSpool
from .tasks import Task

NEW, PREPARING, SUSPENDED, READY, ACTIVE = "New", "Preparing", "Suspended", "Ready", "Active"
COMPLETING, COMPLETE = "Completing", "Complete"
FAILING, FAILED = "Failing", "Failed"
CANCELLING, CANCELLED = "Cancelling", "Cancelled"
TERMINAL = frozenset({COMPLETE, FAILED, CANCELLED})

#: AWS: "after at least 1,000 tasks have run, more than 50% of run tasks failed" fails the job.
FAILURE_THRESHOLD_MIN_TASKS = 1000
#: Our failure code for that rule (no AWS source names the code S3 reports).
FAILURE_THRESHOLD_CODE = "TaskFailureThresholdExceeded"
MAX_JOB_TAGS = 50


@dataclass
class Job:
    job_id: str
    sequence: int
    account_id: str
    region: str
    request: dict
    creation_time: datetime
    priority: int
    tags: list[dict]
    status: str = NEW
    # Each entry becomes None once its task's report row is written (see ResultSpool).
    tasks: list[Task | None] | None = None
    results: ResultSpool | None = None
    succeeded: int = 0
    failed: int = 0
    failure_reasons: list[dict] = field(default_factory=list)
    status_update_reason: str | None = None
    termination_date: datetime | None = None
    suspended_date: datetime | None = None
    suspended_cause: str | None = None
    cancel_requested: bool = False
    report_manifest_key: str | None = None
    # DescribeJob's GeneratedManifestDescriptor: set once a ManifestGenerator has run (and wrote output).
    generated_manifest: dict | None = None
    # DescribeJob calls so far (the first ones may answer NotFound), and whether the job went Active.
    describes: int = 0
    ran: bool = False
    _active_since: float | None = None
    _active_seconds: float = 0.0

    @property
    def arn(self) -> str:
        return f"arn:{get_partition(self.region)}:s3:{self.region}:{self.account_id}:job/{self.job_id}"

    @property
    def operation_name(self) -> str:
        return next(iter(self.request["Operation"]))

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def started_active(self) -> None:
        self._active_since = time.monotonic()

    def stopped_active(self) -> None:
        if self._active_since is not None:
            self._active_seconds += time.monotonic() - self._active_since
            self._active_since = None

    def active_seconds(self) -> int:
        running = time.monotonic() - self._active_since if self._active_since is not None else 0.0
        return int(self._active_seconds + running)

    def failure_threshold_exceeded(self) -> bool:
        ran = self.succeeded + self.failed
        return ran >= FAILURE_THRESHOLD_MIN_TASKS and self.failed * 2 > ran

    def progress_summary(self) -> dict:
        return {
            "TotalNumberOfTasks": len(self.tasks) if self.tasks is not None else 0,
            "NumberOfTasksSucceeded": self.succeeded,
            "NumberOfTasksFailed": self.failed,
            "Timers": {"ElapsedTimeInActiveSeconds": self.active_seconds()},
        }

    def descriptor(self) -> dict:
        """DescribeJob's ``Job``."""
        request = self.request
        job: dict[str, Any] = {
            "JobId": self.job_id,
            "ConfirmationRequired": bool(request.get("ConfirmationRequired", False)),
            "Description": request.get("Description"),
            "JobArn": self.arn,
            "Status": self.status,
            "Manifest": request.get("Manifest"),
            "ManifestGenerator": request.get("ManifestGenerator"),
            "GeneratedManifestDescriptor": self.generated_manifest,
            "Operation": request["Operation"],
            "Priority": self.priority,
            "ProgressSummary": self.progress_summary(),
            "StatusUpdateReason": self.status_update_reason,
            "FailureReasons": list(self.failure_reasons) or None,
            "Report": request["Report"],
            "CreationTime": self.creation_time,
            "TerminationDate": self.termination_date,
            "RoleArn": request["RoleArn"],
            "SuspendedDate": self.suspended_date,
            "SuspendedCause": self.suspended_cause,
        }
        return {name: value for name, value in job.items() if value is not None}

    def list_descriptor(self) -> dict:
        """A ListJobs entry."""
        entry: dict[str, Any] = {
            "JobId": self.job_id,
            "Description": self.request.get("Description"),
            "Operation": self.operation_name,
            "Priority": self.priority,
            "Status": self.status,
            "CreationTime": self.creation_time,
            "TerminationDate": self.termination_date,
            "ProgressSummary": self.progress_summary(),
        }
        return {name: value for name, value in entry.items() if value is not None}


def validate_create_job(params: dict) -> None:
    """What CreateJob refuses beyond botocore's own validation; raises BadRequestException."""
    try:
        operations.validate(params.get("Operation") or {})
    except ValueError as exc:
        raise BadRequestException(str(exc)) from exc
    manifest = params.get("Manifest")
    if params.get("ManifestGenerator"):
        if manifest:
            raise BadRequestException("Specify either Manifest or ManifestGenerator, not both")
        generator.validate(params["ManifestGenerator"])
    elif not manifest:
        raise BadRequestException("CreateJob requires Manifest (or ManifestGenerator)")
    else:
        _validate_manifest(manifest)
    _validate_report(params["Report"])
    if len(params.get("Tags") or []) > MAX_JOB_TAGS:
        raise BadRequestException(f"A job takes at most {MAX_JOB_TAGS} tags")


def _validate_manifest(manifest: dict) -> None:
    spec, location = manifest["Spec"], manifest["Location"]
    if spec["Format"] not in (CSV_FORMAT, INVENTORY_FORMAT):
        raise BadRequestException(f"Manifest format {spec['Format']!r} is not supported")
    fields = spec.get("Fields") or []
    if spec["Format"] == CSV_FORMAT:
        if "Bucket" not in fields or "Key" not in fields:
            raise BadRequestException(f"Manifest Spec.Fields {fields} must include Bucket and Key")
        unknown = set(fields) - {"Ignore", "Bucket", "Key", "VersionId"}
        if unknown or len(set(fields) - {"Ignore"}) != len([f for f in fields if f != "Ignore"]):
            raise BadRequestException(f"Manifest Spec.Fields {fields} is not valid")
    try:
        parse_object_arn(location["ObjectArn"])
    except ValueError as exc:
        raise BadRequestException(f"Manifest Location.ObjectArn: {exc}") from exc


def _validate_report(report: dict) -> None:
    if not report.get("Enabled"):
        return
    if report.get("Format") != REPORT_FORMAT:
        raise BadRequestException(f"Report.Format must be {REPORT_FORMAT} when the report is enabled")
    if report.get("ReportScope", ALL_TASKS) not in (ALL_TASKS, FAILED_TASKS_ONLY):
        raise BadRequestException("Report.ReportScope must be AllTasks or FailedTasksOnly")
    try:
        parse_bucket_arn(report.get("Bucket") or "")
    except ValueError as exc:
        raise BadRequestException(f"Report.Bucket: {exc}") from exc
