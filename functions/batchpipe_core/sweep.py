"""The job sweep: cancels this stack's S3 Batch jobs whose execution is no longer running.

CancelJobs stops a run's jobs on the Catch paths and on the execution's own status change event, but
EventBridge delivers that event best effort, and a function error past Lambda's retries drops it
(docs/EVENTS_AND_FALLBACK.md). The sweep is the backstop: it finds the jobs with ``ListJobs``, tells
this stack's from any other's by their ``batchpipe:pipeline`` tag and the ``ref#`` item their
``batchpipe:ref`` tag points at, asks ``DescribeExecution`` whether the run's execution still runs,
and cancels the run's jobs through ``cancel_run_jobs`` when it does not. Running it again changes
nothing more: a cancelled job is no longer listed, and ``cancel_run_jobs`` repeats no cancel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from batchpipe_core.control import cancel_run_jobs
from batchpipe_core.identity import start_stamp
from batchpipe_core.jobs import error_code, pipeline_ref, transient_as_retryable
from batchpipe_core.observability import logger
from batchpipe_core.tokens import TokenTable

# ListJobs' JobStatuses filter: every status of a job that may still run tasks. Ending (Cancelling,
# Completing, Failing) and ended jobs need nothing; New and Preparing jobs of an ended run would go
# on to Suspended and, unconfirmed, fail after 30 days, but cancelling them now costs no job fee more.
LIVE_JOB_STATUSES = ("New", "Preparing", "Suspended", "Ready", "Active", "Pausing", "Paused")
# ListJobs MaxResults is at most 1,000 (S3 API reference, ListJobs).
LIST_PAGE = 1000
# DescribeExecution statuses of an execution that still runs or is about to run again (a redrive:
# Step Functions developer guide, "Redriving executions").
LIVE_EXECUTION_STATUSES = frozenset({"RUNNING", "PENDING_REDRIVE"})
GONE = "GONE"


@dataclass
class SweepReport:
    listed: int = 0
    foreign: int = 0
    running: int = 0
    # This stack's jobs whose ref item is gone (TTL, 30 days after the run's last wait): the sweep
    # cannot tell their execution, so it reports them and leaves them (docs/OPERATIONS.md).
    unknown: list[str] = field(default_factory=list)
    cancelled: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "listed": self.listed,
            "foreign": self.foreign,
            "running": self.running,
            "unknown": self.unknown,
            "cancelled": self.cancelled,
        }


def split_token_key(key: str) -> tuple[str, str, str]:
    """``<execution ARN>@<start stamp>#<attempt>`` -> (run ID, execution ARN, start stamp)."""
    run_id = key.rpartition("#")[0]
    execution_arn, _, stamp = run_id.rpartition("@")
    return run_id, execution_arn, stamp


def execution_status(stepfunctions: Any, execution_arn: str, stamp: str) -> str:
    """The run's execution status; ``GONE`` when Step Functions no longer has that execution (its
    history expired 90 days after it ended, and a reuse of its name is another execution)."""
    try:
        with transient_as_retryable("DescribeExecution"):
            described = stepfunctions.describe_execution(executionArn=execution_arn)
    except ClientError as exc:
        if error_code(exc) == "ExecutionDoesNotExist":
            return GONE
        raise
    if start_stamp(described["startDate"]) != stamp:
        return GONE
    return str(described["status"])


def sweep_jobs(
    s3control: Any,
    stepfunctions: Any,
    table: TokenTable,
    *,
    account_id: str,
    pipeline_name: str,
) -> SweepReport:
    report = SweepReport()
    swept: set[str] = set()
    request: dict[str, Any] = {
        "AccountId": account_id,
        "JobStatuses": list(LIVE_JOB_STATUSES),
        "MaxResults": LIST_PAGE,
    }
    while True:
        with transient_as_retryable("ListJobs"):
            page = s3control.list_jobs(**request)
        for job in page.get("Jobs", []):
            report.listed += 1
            _sweep_one(
                s3control, stepfunctions, table, job["JobId"], account_id, pipeline_name, report, swept
            )
        if not page.get("NextToken"):
            return report
        request["NextToken"] = page["NextToken"]


def _sweep_one(
    s3control: Any,
    stepfunctions: Any,
    table: TokenTable,
    job_id: str,
    account_id: str,
    pipeline_name: str,
    report: SweepReport,
    swept: set[str],
) -> None:
    try:
        with transient_as_retryable("GetJobTagging"):
            tags = s3control.get_job_tagging(AccountId=account_id, JobId=job_id).get("Tags", [])
    except ClientError as exc:
        if error_code(exc) not in ("NotFoundException", "NoSuchJob", "NoSuchJobException"):
            raise
        return  # listed a moment ago, not found now: not visible yet, or deleted
    ref = pipeline_ref(tags, pipeline_name)
    if ref is None:
        report.foreign += 1
        return
    key = table.key_for_ref(ref)
    if key is None:
        report.unknown.append(job_id)
        logger.warning(
            "job of this stack with no run record: left alone",
            extra={
                "jobId": job_id,
                "ref": ref,
                "why": "its ref item expired (30 days after its run's last wait)",
            },
        )
        return
    run_id, execution_arn, stamp = split_token_key(key)
    if run_id in swept:
        return
    status = execution_status(stepfunctions, execution_arn, stamp)
    if status in LIVE_EXECUTION_STATUSES:
        report.running += 1
        return
    swept.add(run_id)
    reason = (
        f"the execution is {status}, found by the job sweep"
        if status != GONE
        else ("the execution no longer exists, found by the job sweep")
    )
    cancelled = cancel_run_jobs(s3control, table, account_id=account_id, run_id=run_id, reason=reason)
    logger.warning(
        "jobs of an execution that is no longer running: cancelled",
        extra={"runId": run_id, "executionStatus": status, "jobId": job_id, "cancelled": cancelled},
    )
    report.cancelled.extend({"runId": run_id, "executionStatus": status, **entry} for entry in cancelled)
