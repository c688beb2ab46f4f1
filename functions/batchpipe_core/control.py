"""What the pipeline itself does to a job: check S3's count and confirm it, or cancel it.

S3 Batch Operations counts a job's manifest while the job is ``Preparing``; a job created with
``ConfirmationRequired`` then waits in ``Suspended`` with ``ProgressSummary.TotalNumberOfTasks`` set
(S3 user guide, "Tracking job status"). That number, not Athena's statistics, is the run's object
count: ``maxObjects`` is enforced on it before any object is touched. Every cancel the pipeline asks
for is first written to the attempt's token item, so a Cancelled job without that record is known
to be a person's cancel (final, see batchpipe_core.attempts).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from batchpipe_core.errors import (
    AccountingError,
    ManifestCountIncomplete,
    TooManyObjectsError,
    UncountedJobError,
)
from batchpipe_core.jobs import (
    CONFIRM_BY_OPERATOR,
    COUNTED_STATUSES,
    ENDING_STATUSES,
    MAX_ATTEMPTS_LIMIT,
    TAG_CONFIRMATION,
    TAG_OBJECTS,
    CurrentAttempt,
    ManifestRef,
    error_code,
    is_terminal,
    token_key,
    transient_as_retryable,
)
from batchpipe_core.observability import logger
from batchpipe_core.tokens import TokenTable

# UpdateJobStatus's StatusUpdateReason: 1-256 characters (S3 API reference, UpdateJobStatus).
REASON_MAX = 256
REASON_PREFIX = "batchpipe: "
# UpdateJobStatus refusals that mean the job has moved on (already ending or ended, or gone).
# completedBy of a token item closed because its run ended early.
CLOSED_BY = "cleanup"
_JOB_MOVED_ON = frozenset({"JobStatusException", "NotFoundException", "NoSuchJob", "NoSuchJobException"})
# ConfirmJob's own count of a manifest S3 has not counted: read in pieces of this size, and stopped
# (its progress saved for the state's Retry) when less than COUNT_MARGIN_SECONDS of the invocation remain.
COUNT_CHUNK_BYTES = 8 << 20
COUNT_MARGIN_SECONDS = 30.0


def pipeline_reason(text: str) -> str:
    return (REASON_PREFIX + text)[:REASON_MAX]


def describe(s3control: Any, account_id: str, job_id: str) -> dict[str, Any]:
    with transient_as_retryable("DescribeJob"):
        return s3control.describe_job(AccountId=account_id, JobId=job_id)["Job"]


def cancel_job(
    s3control: Any, table: TokenTable, *, account_id: str, key: str, job_id: str, reason: str
) -> dict[str, Any]:
    """The pipeline cancels the attempt's job: its record first, then UpdateJobStatus Cancelled.

    Idempotent and never raises for a job that has already ended or is gone. Returns what a summary
    says about it: ``{jobId, status, reason, total}`` (status as DescribeJob saw it afterwards).
    """
    text = pipeline_reason(reason)
    table.record_pipeline_cancel(key, text)
    try:
        with transient_as_retryable("UpdateJobStatus"):
            s3control.update_job_status(
                AccountId=account_id, JobId=job_id, RequestedJobStatus="Cancelled", StatusUpdateReason=text
            )
    except ClientError as exc:
        if error_code(exc) not in _JOB_MOVED_ON:
            raise
        logger.info("job not cancelled: it has moved on", extra={"jobId": job_id, "error": error_code(exc)})
    try:
        job = describe(s3control, account_id, job_id)
    except ClientError as exc:
        if error_code(exc) not in _JOB_MOVED_ON:
            raise
        return {"jobId": job_id, "status": "Unknown", "reason": text, "total": None}
    logger.warning("job cancelled by the pipeline", extra={"jobId": job_id, "reason": text})
    progress = job.get("ProgressSummary") or {}
    return {
        "jobId": job_id,
        "status": job.get("Status"),
        "reason": text,
        "total": progress.get("TotalNumberOfTasks"),
    }


def check_count(
    s3control: Any,
    table: TokenTable,
    *,
    account_id: str,
    key: str,
    job_id: str,
    current: CurrentAttempt,
    max_objects: int,
    leave_for_operator: bool,
    dry_run: bool = False,
    s3: Any = None,
    remaining_seconds: Callable[[], float] = lambda: float("inf"),
) -> int:
    """Enforces maxObjects on the job's count, then lets the job run (or leaves it for a person).

    The count is S3's ``TotalNumberOfTasks`` when DescribeJob gives it. Every JobProgressSummary
    member is optional (S3 API reference, JobProgressSummary), so when it is absent the count comes
    from the pipeline instead, never from reading absence as 0: the rows it wrote itself (a retry or a
    rerun manifest), else its own count of the manifest's rows (``s3``; resumable, see
    count_manifest_rows). A manifest S3 generated (spec.source) is counted by ConfirmJob's copy of it
    (``current.manifest.objects``); when neither S3's count nor that copy exists, nothing can hold
    maxObjects and the job is cancelled (UncountedJobError). Returns the count. Over the limit (or an
    S3 count other than the rows the pipeline wrote or copied) the job is cancelled and the error
    raised. ``dry_run``: a counted job is cancelled instead of confirmed.
    """
    job = describe(s3control, account_id, job_id)
    status = job.get("Status")
    # A job may move on between the status the wait saw and this call: one already ending was
    # counted as well (it ran), it just cannot be cancelled any more.
    if status not in COUNTED_STATUSES and status not in ENDING_STATUSES and not is_terminal(status):
        raise AccountingError(f"job {job_id} is {status}: S3 has not counted its manifest yet")
    reported = (job.get("ProgressSummary") or {}).get("TotalNumberOfTasks")
    manifest = current.manifest
    if reported is not None:
        total, counted = int(reported), f"S3 Batch Operations counted {int(reported)} objects"
    elif manifest.objects is not None:
        total, counted = manifest.objects, f"the manifest the pipeline wrote has {manifest.objects} objects"
    elif manifest.generated:
        # A spec.source run whose job neither S3 counted nor wrote its manifest for yet (ConfirmJob
        # copies and counts the generated manifest when DescribeJob names it): nothing to check
        # maxObjects against, and confirming would act on an unknown number of objects.
        total, counted = -1, ""
    else:
        if s3 is None:
            raise AccountingError(f"job {job_id}: S3 gave no count and no manifest reader was given")
        total = count_manifest_rows(
            s3, table, key, manifest, stop_after=max_objects, remaining_seconds=remaining_seconds
        )
        counted = (
            f"S3 Batch Operations gave no count; the pipeline counted {total} objects in the manifest"
            + (" before it stopped counting" if total > max_objects else "")
        )
    problem: Exception | None = None
    if total < 0:
        problem = UncountedJobError(
            f"job {job_id}: S3 Batch Operations gave neither its count (TotalNumberOfTasks) nor the manifest it "
            f"generated (GeneratedManifestDescriptor) before confirmation, so maxObjects ({max_objects}) cannot be "
            "checked; the job was cancelled before it touched any object. Use the inventory or S3 Metadata source, "
            "whose selection the pipeline counts before any job runs"
        )
    elif total > max_objects:
        problem = TooManyObjectsError(
            f"{counted}, more than maxObjects ({max_objects}); the job was cancelled before it touched "
            "any object. Narrow the filter (prefixes, keyRegex, sizes, dates) or raise maxObjects in the spec."
        )
    elif reported is not None and manifest.objects is not None and total != manifest.objects:
        problem = AccountingError(
            f"S3 Batch Operations counted {total} objects in the manifest of attempt {current.attempt}, "
            f"which has {manifest.objects} rows; the job was cancelled"
        )
    if problem is not None:
        if status in COUNTED_STATUSES:
            cancel_job(s3control, table, account_id=account_id, key=key, job_id=job_id, reason=str(problem))
        raise problem

    table.record_count(key, total)
    if status == "Suspended" and dry_run:
        # A dry run stops here: counted (and its manifest read) before any object is touched.
        cancel_job(
            s3control,
            table,
            account_id=account_id,
            key=key,
            job_id=job_id,
            reason=f"dry run: {total} objects counted, none touched",
        )
    elif status == "Suspended":
        if leave_for_operator:
            _tag_for_operator(s3control, account_id, job_id, total)
        else:
            if _confirm(s3control, account_id, job_id, total, max_objects):
                table.record_confirmed(key)
    logger.info(
        "the job's objects are counted",
        extra={
            "jobId": job_id,
            "objects": total,
            "countedBy": "S3" if reported is not None else "pipeline",
            "status": status,
            "leftForOperator": leave_for_operator,
        },
    )
    return total


def count_manifest_rows(
    s3: Any,
    table: TokenTable,
    key: str,
    manifest: ManifestRef,
    *,
    stop_after: int,
    remaining_seconds: Callable[[], float],
) -> int:
    """The manifest's rows (newlines, plus an unterminated last row), read at the ETag the job has.

    Stops early once more than ``stop_after`` rows are seen (that is all maxObjects needs to know).
    A count that would outlast the invocation saves its progress on the attempt's token item and
    raises ManifestCountIncomplete: the state's Retry invokes ConfirmJob again, which goes on from
    there, so a manifest of any size is counted in bounded pieces.
    """
    item = table.get(key)
    offset, rows = (item.count_offset, item.count_rows) if item is not None else (0, 0)
    request: dict[str, Any] = {"Bucket": manifest.bucket, "Key": manifest.key, "IfMatch": manifest.etag}
    if offset:
        request["Range"] = f"bytes={offset}-"
    with transient_as_retryable("reading the manifest to count it"):
        body = s3.get_object(**request)["Body"]
    last = b"\n"
    while chunk := body.read(COUNT_CHUNK_BYTES):
        rows += chunk.count(b"\n")
        offset += len(chunk)
        last = chunk[-1:]
        if rows > stop_after:
            return rows
        if remaining_seconds() < COUNT_MARGIN_SECONDS:
            body.close()
            table.record_count_progress(key, offset, rows)
            raise ManifestCountIncomplete(
                f"counted {rows} rows in the first {offset} bytes of s3://{manifest.bucket}/{manifest.key}; "
                "the count goes on in the next invocation"
            )
    return rows + (last != b"\n")


def _confirm(s3control: Any, account_id: str, job_id: str, total: int, max_objects: int) -> bool:
    """UpdateJobStatus Ready; False when the job had moved on (someone confirmed or cancelled it)."""
    try:
        with transient_as_retryable("UpdateJobStatus"):
            s3control.update_job_status(
                AccountId=account_id,
                JobId=job_id,
                RequestedJobStatus="Ready",
                StatusUpdateReason=pipeline_reason(f"{total} objects counted, maxObjects {max_objects}"),
            )
    except ClientError as exc:
        # Someone confirmed or cancelled it meanwhile: the wait that follows sees what happened.
        if error_code(exc) not in _JOB_MOVED_ON:
            raise
        logger.info("job not confirmed: it has moved on", extra={"jobId": job_id, "error": error_code(exc)})
        return False
    return True


def _tag_for_operator(s3control: Any, account_id: str, job_id: str, total: int) -> None:
    """Marks the counted job as waiting for a person, with the count checked; PutJobTagging replaces
    the set, so keep the rest."""
    with transient_as_retryable("GetJobTagging"):
        tags = s3control.get_job_tagging(AccountId=account_id, JobId=job_id).get("Tags", [])
    kept = [tag for tag in tags if tag["Key"] not in (TAG_CONFIRMATION, TAG_OBJECTS)]
    with transient_as_retryable("PutJobTagging"):
        s3control.put_job_tagging(
            AccountId=account_id,
            JobId=job_id,
            Tags=[
                *kept,
                {"Key": TAG_CONFIRMATION, "Value": CONFIRM_BY_OPERATOR},
                {"Key": TAG_OBJECTS, "Value": str(total)},
            ],
        )


def cancel_run_jobs(
    s3control: Any, table: TokenTable, *, account_id: str, run_id: str, reason: str
) -> list[dict[str, Any]]:
    """Cancels every job of the run (``run.runId``) that has not ended, and closes the attempts' token items.

    Every possible attempt's item ``token_key(run_id, 1..MAX_ATTEMPTS_LIMIT)`` is read, so no scan
    is needed and an item that TTL removed (an early attempt of a run that lasted past the token
    TTL) does not hide the later ones. Closing claims the waiting token, so a late status event can
    no longer complete it. Returns one entry per job the pipeline cancelled, its own earlier cancels
    included: a repeated call (a retried invocation whose first answer was lost) gives the same list.
    """
    cancelled = []
    for attempt in range(1, MAX_ATTEMPTS_LIMIT + 1):
        key = token_key(run_id, attempt)
        item = table.get(key)
        if item is None:
            continue
        if item.task_token is not None and not item.completed:
            table.claim(key, item.task_token, CLOSED_BY)
        if item.job_id is None:
            continue
        try:
            job = describe(s3control, account_id, item.job_id)
        except ClientError as exc:
            if error_code(exc) not in _JOB_MOVED_ON:
                raise
            continue
        status = job.get("Status")
        if item.cancel_reason is not None and status in ("Cancelling", "Cancelled"):
            # The pipeline's cancel already took (this call's first run, or ConfirmJob's maxObjects).
            progress = job.get("ProgressSummary") or {}
            entry = {
                "jobId": item.job_id,
                "status": status,
                "reason": item.cancel_reason,
                "total": progress.get("TotalNumberOfTasks"),
            }
        elif is_terminal(status) or status in ENDING_STATUSES:
            continue  # ended or ending by itself (or by a person): nothing to stop
        else:
            entry = cancel_job(
                s3control, table, account_id=account_id, key=key, job_id=item.job_id, reason=reason
            )
        cancelled.append({"attempt": attempt, **entry, "by": "pipeline"})
    return cancelled
