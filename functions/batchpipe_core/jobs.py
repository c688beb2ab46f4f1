"""S3 Batch Operations jobs as data: the CreateJob request, the job outcome, the tags that lead back.

Pure code (no AWS calls): the CreateJob, JobStatus and CheckJob handlers are thin wiring over it, so
the request every handler sends and the outcome every handler reports are built in one place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from pydantic import BaseModel, ConfigDict, Field

from batchpipe_core.config import Config
from batchpipe_core.errors import TransientError
from batchpipe_core.inventory_layout import VERSIONS_CURRENT

TERMINAL_STATUSES = frozenset({"Complete", "Cancelled", "Failed"})
# Statuses in which S3 has read the whole manifest (Preparing is over), so ProgressSummary's
# TotalNumberOfTasks is S3's own count of the job's objects, and the job can still be cancelled. S3
# user guide, "Tracking job status": Preparing -> Suspended (confirmation required) -> Ready -> Active.
COUNTED_STATUSES = frozenset({"Suspended", "Ready", "Active", "Pausing", "Paused"})
# Statuses on the way to a terminal one: the count is S3's too, but the job can no longer be stopped.
ENDING_STATUSES = frozenset({"Completing", "Failing", "Cancelling"})
MANIFEST_FORMAT = "S3BatchOperations_CSV_20180820"
REPORT_FORMAT = "Report_CSV_20180820"

TAG_PIPELINE = "batchpipe:pipeline"
TAG_RUN = "batchpipe:run"
TAG_EXECUTION = "batchpipe:execution"
TAG_ATTEMPT = "batchpipe:attempt"
# Set to CONFIRM_BY_OPERATOR on a Suspended job the pipeline has counted and leaves for a person to
# confirm (spec confirmationRequired): the local operator stand-in confirms only such jobs.
TAG_CONFIRMATION = "batchpipe:confirmation"
CONFIRM_BY_OPERATOR = "operator"
# Set with it: the number of objects the pipeline checked against maxObjects, so the person asked to
# confirm sees it even when DescribeJob gives no TotalNumberOfTasks (an optional member).
TAG_OBJECTS = "batchpipe:objects"
# The token-table key contains an execution ARN (whose name part may hold characters S3 tag values
# reject) and '#', so the job carries its digest instead; the token table maps digest -> key.
TAG_REF = "batchpipe:ref"

_TAG_VALUE_MAX = 256
_DESCRIPTION_MAX = 256
# S3 tag values: ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$ (botocore's model; its validator does not check it).
_TAG_PUNCTUATION = frozenset(" _.:/=+-@")

# Error codes (any AWS service these handlers call) that are worth retrying as they are.
TRANSIENT_ERROR_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequests",
        "TooManyRequestsException",
        "SlowDown",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServerException",
        "InternalServiceException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "TransactionConflictException",
    }
)
_TRANSIENT_TRANSPORT_ERRORS = (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)


# ------------------------------------------------------------------ state documents (the ASL's payloads)


class StatePart(BaseModel):
    # The state document carries more than a handler reads; ignore the rest rather than break on it.
    model_config = ConfigDict(extra="ignore")


class RunRef(StatePart):
    executionId: str = Field(min_length=1)
    executionName: str = Field(min_length=1)
    prefix: str = Field(min_length=1)
    name: str = "batchpipe"
    # Set by ValidateSpec for the run lock (batchpipe_core.runlock): when the scheduler started the
    # run, and how long each renewal of the lock lasts.
    scheduledTime: str | None = None
    leaseSeconds: int | None = Field(default=None, ge=1)


class JobRunRef(RunRef):
    """The run as the job handlers need it: with the identity that keys its tokens and jobs."""

    # batchpipe_core.identity.run_id: unique per execution forever, unlike the execution ARN.
    runId: str = Field(min_length=1)


class ManifestRef(StatePart):
    bucket: str = Field(min_length=1)
    key: str = Field(min_length=1)
    etag: str = Field(min_length=1)
    objects: int | None = None
    # The manifest's columns as written (BuildManifest, ImportFailures, a retry manifest inherits its
    # attempt's): CreateJob names exactly these, whatever the stack's inventory lists.
    fields: list[Literal["Bucket", "Key", "VersionId"]] | None = None
    # The first attempt of a spec.source run: S3 Batch's manifest generator lists the bucket inside
    # the job, and ConfirmJob puts the manifest it wrote here (batchpipe_core.generated_copy).
    generated: bool = False


class CurrentAttempt(StatePart):
    attempt: int = Field(ge=1)
    manifest: ManifestRef


class ReportChoice(StatePart):
    scope: str | None = None


class SpecView(StatePart):
    """The fields of the (already validated, defaults filled) job spec that shape the job."""

    name: str | None = None
    operation: dict[str, Any]
    report: ReportChoice = Field(default_factory=ReportChoice)
    priority: int | None = None
    confirmationRequired: bool = False
    concurrency: str = "skip"
    # A spec.source run's bucket and filter (batchpipe_core.generator): None for inventory runs.
    source: dict[str, Any] | None = None
    filter: dict[str, Any] | None = None


class CreateJobInput(StatePart):
    taskToken: str = Field(min_length=1)
    # $$.State.EnteredTime of this wait: orders the tokens of re-entries (TokenTable.store_token).
    waitEnteredAt: str | None = None
    spec: SpecView
    run: JobRunRef
    current: CurrentAttempt


class CheckJobInput(StatePart):
    run: JobRunRef
    current: CurrentAttempt


# ------------------------------------------------------------------ keys


#: A run has at most this many attempts (spec ``retry.maxAttempts``), so its token items are
#: ``token_key(run_id, 1..MAX_ATTEMPTS_LIMIT)``: a cleanup can read every one of them without a scan.
MAX_ATTEMPTS_LIMIT = 10


def token_key(run_id: str, attempt: int) -> str:
    """TokenTable partition key of one (run, attempt): docs/ARCHITECTURE.md fixes the shape.

    ``run_id`` is the run's identity (``run.runId``), not the execution ARN: a reused execution name
    must not find the token items or the job of the earlier execution of that name.
    """
    return f"{run_id}#{attempt}"


def job_ref(run_id: str, attempt: int) -> str:
    """Digest of the token key: 64 hex chars, valid both as ClientRequestToken and as a tag value.

    The same run and attempt always give the same ref, so a retried CreateJob Lambda and a
    re-entry after a wait timeout send the same ClientRequestToken and get the same job.
    """
    return hashlib.sha256(token_key(run_id, attempt).encode()).hexdigest()


def is_terminal(status: str | None) -> bool:
    """Complete, Cancelled and Failed never change again (Suspended waits for a human: not terminal)."""
    return status in TERMINAL_STATUSES


# ------------------------------------------------------------------ CreateJob


@dataclass(frozen=True)
class JobSettings:
    """The stack-level inputs of a CreateJob request (template.yaml Globals)."""

    account_id: str
    pipeline_bucket: str
    batch_role_arn: str
    inventory_versions: str
    pipeline_name: str
    default_priority: int
    default_report_scope: str

    @classmethod
    def from_config(cls, config: Config) -> JobSettings:
        return cls(
            account_id=config.account_id,
            pipeline_bucket=config.pipeline_bucket,
            batch_role_arn=config.batch_role_arn,
            inventory_versions=config.inventory_versions,
            pipeline_name=config.state_machine_name,
            default_priority=config.default_priority,
            default_report_scope=config.default_report_scope,
        )

    @property
    def partition(self) -> str:
        """aws, aws-cn, aws-us-gov...: taken from the role ARN so bucket ARNs match the stack's."""
        parts = self.batch_role_arn.split(":")
        return parts[1] if len(parts) > 1 and parts[1] else "aws"


def tag_value(text: str, limit: int = _TAG_VALUE_MAX) -> str:
    """``text`` with every character S3 rejects in a tag value replaced by ``_``, cut to ``limit``."""
    safe = "".join(c if c.isalnum() or c in _TAG_PUNCTUATION else "_" for c in text)
    return safe[:limit]


def manifest_fields(inventory_versions: str, versions: str | None = None) -> list[str]:
    """The columns of a manifest built from this stack's inventory.

    An "All versions" inventory gives every row the version ID it listed, unless the spec's
    ``filter.versions`` is ``"current"``: then rows have no version and S3 Batch Operations acts on each
    key's current version when the task runs. A "Current" inventory never has a version column.
    """
    pinned = inventory_versions == "All" and versions != VERSIONS_CURRENT
    return ["Bucket", "Key", "VersionId"] if pinned else ["Bucket", "Key"]


def report_prefix(run_prefix: str, attempt: int) -> str:
    """Where the completion report of an attempt goes (docs/ARCHITECTURE.md bucket layout)."""
    return f"{run_prefix}attempt-{attempt}/report"


def job_tags(settings: JobSettings, run: JobRunRef, attempt: int) -> list[dict[str, str]]:
    """Tags that name the pipeline, run, execution and attempt, and lead back to the task token."""
    execution_digest = hashlib.sha256(run.runId.encode()).hexdigest()[:8]
    execution = f"{tag_value(run.executionName, _TAG_VALUE_MAX - 9)}-{execution_digest}"
    return [
        {"Key": TAG_PIPELINE, "Value": tag_value(settings.pipeline_name)},
        {"Key": TAG_RUN, "Value": tag_value(run.name)},
        {"Key": TAG_EXECUTION, "Value": execution},
        {"Key": TAG_ATTEMPT, "Value": str(attempt)},
        {"Key": TAG_REF, "Value": job_ref(run.runId, attempt)},
    ]


def build_create_job_request(
    spec: SpecView, run: JobRunRef, current: CurrentAttempt, settings: JobSettings
) -> dict[str, Any]:
    """The s3control CreateJob parameters of one attempt; identical for identical inputs.

    Determinism matters: S3 only returns the existing job for a repeated ClientRequestToken when the
    rest of the request is the same, so nothing here may depend on time or randomness.
    """
    partition = settings.partition
    manifest = current.manifest
    attempt = current.attempt
    description = f"batchpipe {run.name} attempt {attempt} ({run.executionName})"
    return {
        "AccountId": settings.account_id,
        # Always: the job then stops in Suspended once S3 has counted the manifest, and ConfirmJob
        # checks that count before anything runs (docs/EVENTS_AND_FALLBACK.md, "Counting").
        "ConfirmationRequired": True,
        "Operation": spec.operation,
        "Report": {
            "Bucket": f"arn:{partition}:s3:::{settings.pipeline_bucket}",
            "Format": REPORT_FORMAT,
            "Enabled": True,
            "Prefix": report_prefix(run.prefix, attempt),
            "ReportScope": spec.report.scope or settings.default_report_scope,
            "ExpectedBucketOwner": settings.account_id,
        },
        "ClientRequestToken": job_ref(run.runId, attempt),
        "Manifest": {
            "Spec": {
                "Format": MANIFEST_FORMAT,
                "Fields": manifest.fields or manifest_fields(settings.inventory_versions),
            },
            "Location": {
                "ObjectArn": f"arn:{partition}:s3:::{manifest.bucket}/{manifest.key}",
                # S3 returns ETags quoted; CreateJob's documented examples pass the bare hex.
                "ETag": manifest.etag.strip('"'),
            },
        },
        "Description": description[:_DESCRIPTION_MAX],
        "Priority": settings.default_priority if spec.priority is None else spec.priority,
        "RoleArn": settings.batch_role_arn,
        "Tags": job_tags(settings, run, attempt),
    }


# ------------------------------------------------------------------ tags -> token


def tags_as_dict(tags: Iterable[Mapping[str, str]]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags}


def pipeline_ref(tags: Iterable[Mapping[str, str]], pipeline_name: str) -> str | None:
    """The ref of a job this pipeline created, or None for a foreign job (no tag, other stack)."""
    by_key = tags_as_dict(tags)
    if by_key.get(TAG_PIPELINE) != tag_value(pipeline_name):
        return None
    return by_key.get(TAG_REF) or None


# ------------------------------------------------------------------ job outcome


def _bucket_name(bucket_arn: str | None) -> str | None:
    if not bucket_arn:
        return None
    return bucket_arn.split(":::", 1)[-1]


def job_outcome(job: Mapping[str, Any], *, counted: bool = False) -> dict[str, Any]:
    """The job outcome (docs/ARCHITECTURE.md) from DescribeJob's ``Job``: the task-token output.

    Always built from DescribeJob, never from a status event: events may be stale or reordered.
    ``counted``: the pipeline has already checked S3's count of this job (the token item says so);
    until then a job past Preparing ``needsCount``, which wakes the waiting run like an end does.
    """
    progress = job.get("ProgressSummary") or {}
    report = job.get("Report") or {}
    status = job.get("Status", "Unknown")
    return {
        "jobId": job["JobId"],
        "status": status,
        "terminal": is_terminal(status),
        "needsCount": status in COUNTED_STATUSES and not counted,
        # Every JobProgressSummary member is optional (S3 API reference): an absent count is
        # unknown (None), never 0.
        "total": _count(progress, "TotalNumberOfTasks"),
        "succeeded": _count(progress, "NumberOfTasksSucceeded"),
        "failed": _count(progress, "NumberOfTasksFailed"),
        "failureReasons": [
            {"code": r.get("FailureCode", ""), "reason": r.get("FailureReason", "")}
            for r in job.get("FailureReasons") or []
        ],
        "statusUpdateReason": job.get("StatusUpdateReason", ""),
        # The job reached Suspended (S3 prepared it): a Failed job that never ran and was never
        # confirmed then failed waiting there, not while preparing (see fanout.plan_report).
        "suspended": bool(job.get("SuspendedDate")),
        "report": {
            "bucket": _bucket_name(report.get("Bucket")),
            "prefix": report.get("Prefix"),
            "scope": report.get("ReportScope"),
        },
        # For the run page's timeline (runpage.py); JSON has no datetimes, so ISO 8601 text.
        "created": _iso(job.get("CreationTime")),
        "ended": _iso(job.get("TerminationDate")),
    }


def _iso(moment: Any) -> str | None:
    if moment is None:
        return None
    return moment.isoformat() if hasattr(moment, "isoformat") else str(moment)


def _count(progress: Mapping[str, Any], name: str) -> int | None:
    value = progress.get(name)
    return None if value is None else int(value)


def wakes_the_run(outcome: Mapping[str, Any]) -> bool:
    """Whether a job outcome completes the waiting task: the job ended, or S3's count awaits checking."""
    return bool(outcome["terminal"] or outcome.get("needsCount"))


def no_job_outcome(run: RunRef, current: CurrentAttempt, settings: JobSettings) -> dict[str, Any]:
    """The outcome while no job is recorded for the attempt yet: not terminal, so the run waits again.

    The report scope is the job's to say (the spec may override the default), so it stays unknown.
    """
    return {
        "jobId": None,
        "status": "Unknown",
        "terminal": False,
        "needsCount": False,
        "total": 0,
        "succeeded": 0,
        "failed": 0,
        "failureReasons": [],
        "statusUpdateReason": "no job recorded for this attempt yet",
        "report": {
            "bucket": settings.pipeline_bucket,
            "prefix": report_prefix(run.prefix, current.attempt),
            "scope": None,
        },
    }


# DescribeJob/GetJobTagging for a job S3 does not know: either not registered yet, moments after
# CreateJob, or deleted 90 days after it ended (S3 user guide, "Troubleshooting Batch Operations",
# NoSuchJobException: "Timing issues" and "Job expiration"); the model names NotFoundException.
JOB_GONE_ERRORS = frozenset({"NotFoundException", "NoSuchJob", "NoSuchJobException"})
# S3 deletes a job 90 days after it ends, so a job created less than that long ago cannot have been
# deleted: not found, it is not visible yet.
JOB_RETENTION_SECONDS = 90 * 24 * 3600


def not_visible_yet(created_at: float | None, now: float) -> bool:
    """Whether a job DescribeJob does not find is merely not registered yet (not a job that is gone).

    ``created_at``: when the pipeline recorded the job (the token item's ``jobCreatedAt``); None for
    an item written before that was recorded, which is read as the old answer, gone.
    """
    return created_at is not None and now - created_at < JOB_RETENTION_SECONDS


def not_visible_outcome(
    job_id: str, run: RunRef, current: CurrentAttempt, settings: JobSettings
) -> dict[str, Any]:
    """The outcome of a job DescribeJob does not find yet: not terminal, so the run waits for it again.

    Never a second job: the attempt keeps the job CreateJob returned, and the next look finds it.
    """
    return {
        **no_job_outcome(run, current, settings),
        "jobId": job_id,
        "statusUpdateReason": "DescribeJob does not find the new job yet (S3 registers it after CreateJob)",
    }


def gone_job_outcome(
    job_id: str, run: RunRef, current: CurrentAttempt, settings: JobSettings
) -> dict[str, Any]:
    """The outcome of a recorded job that DescribeJob no longer finds: it ended long ago.

    Reported as a Failed job with no known progress, so ProcessReport reads whatever report is left
    and turns every object it does not account for into ``NotRun`` (retriable): nothing is lost,
    and an operation S3 runs at least once anyway tolerates the rerun.
    """
    return {
        **no_job_outcome(run, current, settings),
        "jobId": job_id,
        "status": "Failed",
        "terminal": True,
        "gone": True,
        "statusUpdateReason": "the job no longer exists (DescribeJob: not found); its report is all that is left",
    }


# ------------------------------------------------------------------ AWS errors -> TransientError


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code")
    return None


def is_transient(exc: BaseException) -> bool:
    """Throttling, 5xx and dropped connections: worth retrying unchanged."""
    if isinstance(exc, _TRANSIENT_TRANSPORT_ERRORS):
        return True
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return error_code(exc) in TRANSIENT_ERROR_CODES or status == 429 or status >= 500


@contextmanager
def transient_as_retryable(action: str) -> Iterator[None]:
    """Re-raises transient AWS errors as TransientError, the name the state machine retries."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        if is_transient(exc):
            raise TransientError(f"{action}: {exc}") from exc
        raise
