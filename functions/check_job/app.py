"""CheckJob: the fallback when no status event completed the wait in time (events are best effort).

Reports the attempt's job outcome (``job``, with ``terminal`` and ``needsCount``) and the attempt's
``current`` with the next wait (``waitSeconds``). JobFinished? either continues with the outcome
(UseCheckedJob) or goes back to CreateJobAndWait to wait again with a new token.

The next wait: no status event says a job was counted (the S3 user guide never lists ``Suspended``
among the statuses it reports), so until the pipeline has counted the job each wait is twice the
last, from the run's ``countWaitSeconds``: a job is counted and confirmed at most about twice its
preparation time after it was created. Once counted, waits are ``jobWaitTimeoutSeconds``.
"""

from __future__ import annotations

import time
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from botocore.exceptions import ClientError

from batchpipe_core.config import Config
from batchpipe_core.jobs import (
    JOB_GONE_ERRORS,
    CheckJobInput,
    JobSettings,
    error_code,
    gone_job_outcome,
    job_outcome,
    no_job_outcome,
    not_visible_outcome,
    not_visible_yet,
    token_key,
    transient_as_retryable,
)
from batchpipe_core.observability import instrumented, logger, metrics
from batchpipe_core.runlock import renew_run_lock
from batchpipe_core.tokens import TokenItem, TokenTable


@instrumented
def handler(event: dict, context: Any) -> dict:
    request = parse(event=event, model=CheckJobInput)
    config = Config.from_env()
    table = TokenTable(config.token_table, boto3.client("dynamodb"))

    renew_run_lock(request.run, config, starting_job=False, forced=False)
    item = table.get(token_key(request.run.runId, request.current.attempt))
    outcome = check(request, config, item)
    metrics.add_metric(name="JobChecks", unit=MetricUnit.Count, value=1)
    # Each terminal check is a status event that never arrived (or came too late).
    if outcome["terminal"]:
        metrics.add_metric(name="JobEndsFoundByFallback", unit=MetricUnit.Count, value=1)
    counted = item is not None and item.counted
    current = event["current"] | {"waitSeconds": next_wait(event, counted=counted)}
    return {"current": current, "job": outcome}


def check(request: CheckJobInput, config: Config, item: TokenItem | None) -> dict[str, Any]:
    """The attempt's job outcome as DescribeJob tells it now."""
    settings = JobSettings.from_config(config)
    if item is None or item.job_id is None:
        # CreateJobFunction died before recording the job: the re-entry creates or finds it.
        logger.warning("no job recorded for the attempt", extra={"attempt": request.current.attempt})
        return no_job_outcome(request.run, request.current, settings)
    try:
        with transient_as_retryable("DescribeJob"):
            job = boto3.client("s3control").describe_job(AccountId=config.account_id, JobId=item.job_id)[
                "Job"
            ]
    except ClientError as exc:
        if error_code(exc) not in JOB_GONE_ERRORS:
            raise
        if not_visible_yet(item.job_created_at, time.time()):
            # S3 troubleshooting guide, NoSuchJobException "Timing issues": not registered yet.
            logger.info("the job is not visible yet", extra={"jobId": item.job_id})
            metrics.add_metric(name="JobsNotVisibleYet", unit=MetricUnit.Count, value=1)
            return not_visible_outcome(item.job_id, request.run, request.current, settings)
        logger.warning("the recorded job no longer exists", extra={"jobId": item.job_id})
        return gone_job_outcome(item.job_id, request.run, request.current, settings)
    outcome = job_outcome(job, counted=item.counted)
    logger.info("job checked", extra={"jobId": item.job_id, "status": outcome["status"]})
    return outcome


def next_wait(event: dict, *, counted: bool) -> int:
    """Seconds of the next wait: doubled while the job is not counted, the long wait once it is."""
    longest = int(event["run"]["jobWaitTimeoutSeconds"])
    if counted:
        return longest
    last = event["current"].get("waitSeconds") or event["run"].get("countWaitSeconds") or longest
    return max(1, min(2 * int(last), longest))
