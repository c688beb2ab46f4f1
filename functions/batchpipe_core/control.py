"""What the pipeline itself does to a job: check S3's count and confirm it, or cancel it.

S3 Batch Operations counts a job's manifest while the job is ``Preparing``; a job created with
``ConfirmationRequired`` then waits in ``Suspended`` with ``ProgressSummary.TotalNumberOfTasks`` set
(S3 user guide, "Tracking job status"). That number, not Athena's statistics, is the run's object
count: ``maxObjects`` is enforced on it before any object is touched. Every cancel the pipeline asks
for is first written to the attempt's token item, so a Cancelled job without that record is known
to be a person's cancel (final, see batchpipe_core.attempts).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from batchpipe_core.errors import AccountingError, TooManyObjectsError
from batchpipe_core.jobs import (
    CONFIRM_BY_OPERATOR,
    COUNTED_STATUSES,
    ENDING_STATUSES,
    MAX_ATTEMPTS_LIMIT,
    TAG_CONFIRMATION,
    CurrentAttempt,
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
) -> int:
    """Enforces maxObjects on S3's count, then lets the job run (or leaves it for a person).

    Returns S3's count. Over the limit (or, for a retry, a count other than the rows the pipeline
    wrote) the job is cancelled and the error raised.
    """
    job = describe(s3control, account_id, job_id)
    status = job.get("Status")
    # A job may move on between the status the wait saw and this call: one already ending was
    # counted as well (it ran), it just cannot be cancelled any more.
    if status not in COUNTED_STATUSES and status not in ENDING_STATUSES and not is_terminal(status):
        raise AccountingError(f"job {job_id} is {status}: S3 has not counted its manifest yet")
    total = int((job.get("ProgressSummary") or {}).get("TotalNumberOfTasks", 0))
    problem = None
    if total > max_objects:
        problem = TooManyObjectsError(
            f"S3 Batch Operations counted {total} objects in the manifest, more than maxObjects "
            f"({max_objects}); the job was cancelled before it touched any object. Narrow the filter "
            "(prefixes, keyRegex, sizes, dates) or raise maxObjects in the spec."
        )
    elif current.manifest.objects is not None and total != current.manifest.objects:
        problem = AccountingError(
            f"S3 Batch Operations counted {total} objects in the manifest of attempt {current.attempt}, "
            f"which has {current.manifest.objects} rows; the job was cancelled"
        )
    if problem is not None:
        if status in COUNTED_STATUSES:
            cancel_job(s3control, table, account_id=account_id, key=key, job_id=job_id, reason=str(problem))
        raise problem

    table.record_count(key, total)
    if status == "Suspended":
        if leave_for_operator:
            _tag_for_operator(s3control, account_id, job_id)
        else:
            _confirm(s3control, account_id, job_id, total, max_objects)
    logger.info(
        "S3 counted the job's objects",
        extra={"jobId": job_id, "objects": total, "status": status, "leftForOperator": leave_for_operator},
    )
    return total


def _confirm(s3control: Any, account_id: str, job_id: str, total: int, max_objects: int) -> None:
    try:
        with transient_as_retryable("UpdateJobStatus"):
            s3control.update_job_status(
                AccountId=account_id,
                JobId=job_id,
                RequestedJobStatus="Ready",
                StatusUpdateReason=pipeline_reason(
                    f"{total} objects counted by S3, maxObjects {max_objects}"
                ),
            )
    except ClientError as exc:
        # Someone confirmed or cancelled it meanwhile: the wait that follows sees what happened.
        if error_code(exc) not in _JOB_MOVED_ON:
            raise
        logger.info("job not confirmed: it has moved on", extra={"jobId": job_id, "error": error_code(exc)})


def _tag_for_operator(s3control: Any, account_id: str, job_id: str) -> None:
    """Marks the counted job as waiting for a person; PutJobTagging replaces the set, so keep the rest."""
    with transient_as_retryable("GetJobTagging"):
        tags = s3control.get_job_tagging(AccountId=account_id, JobId=job_id).get("Tags", [])
    kept = [tag for tag in tags if tag["Key"] != TAG_CONFIRMATION]
    with transient_as_retryable("PutJobTagging"):
        s3control.put_job_tagging(
            AccountId=account_id,
            JobId=job_id,
            Tags=[*kept, {"Key": TAG_CONFIRMATION, "Value": CONFIRM_BY_OPERATOR}],
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
