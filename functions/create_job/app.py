"""CreateJobAndWait's Lambda: store the task token, create the attempt's job, close the early-end race.

Invoked with ``.waitForTaskToken``: its return value is ignored; the task ends when someone sends
the token (JobStatusFunction on the status event, this function if the job is already over, or the
wait times out into CheckJob). docs/EVENTS_AND_FALLBACK.md explains the protocol.
"""

from __future__ import annotations

import time
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from botocore.exceptions import ClientError

from batchpipe_core.config import Config
from batchpipe_core.generator import create_job_request
from batchpipe_core.jobs import (
    JOB_GONE_ERRORS,
    CreateJobInput,
    JobSettings,
    error_code,
    gone_job_outcome,
    job_outcome,
    job_ref,
    not_visible_yet,
    token_key,
    transient_as_retryable,
    wakes_the_run,
)
from batchpipe_core.observability import instrumented, logger, metrics
from batchpipe_core.runlock import renew_run_lock
from batchpipe_core.tokens import TokenTable, complete_once


@instrumented
def handler(event: dict, context: Any) -> dict:
    request = parse(event=event, model=CreateJobInput)
    config = Config.from_env()
    settings = JobSettings.from_config(config)
    s3control = boto3.client("s3control")
    table = TokenTable(config.token_table, boto3.client("dynamodb"))

    run_id, attempt = request.run.runId, request.current.attempt
    key = token_key(run_id, attempt)
    # Before CreateJob: an event for this job can then never arrive ahead of its token.
    item = table.store_token(
        key, job_ref(run_id, attempt), request.taskToken, entered_at=request.waitEnteredAt
    )
    if item is None:
        # A late duplicate of an older wait: its task has timed out, a newer one waits. Touch nothing.
        metrics.add_metric(name="StaleWaitInvocations", unit=MetricUnit.Count, value=1)
        return {"jobId": None, "stale": True}
    # Every wait renews the run lock's lease, so a run that outlasts its schedule keeps its name.
    renew_run_lock(
        request.run, config, starting_job=item.job_id is None, forced=request.spec.concurrency == "force"
    )

    job_id, created_at = item.job_id, item.job_created_at
    if job_id is None:
        params = create_job_request(request.spec, request.run, request.current, settings)
        with transient_as_retryable("CreateJob"):
            job_id = s3control.create_job(**params)["JobId"]
        created_at = int(time.time())
        table.record_job(key, job_id, now=created_at)
        logger.info("job created", extra={"jobId": job_id, "attempt": attempt})
        metrics.add_metric(name="JobsCreated", unit=MetricUnit.Count, value=1)
    else:
        logger.info("re-entered: waiting again for the attempt's job", extra={"jobId": job_id})
        metrics.add_metric(name="JobWaitsRenewed", unit=MetricUnit.Count, value=1)

    # The job may have ended before the token was stored (re-entry) or before now: no event would
    # then reach the new token, so complete it here.
    try:
        with transient_as_retryable("DescribeJob"):
            job = s3control.describe_job(AccountId=config.account_id, JobId=job_id)["Job"]
        outcome = job_outcome(job, counted=item.counted)
    except ClientError as exc:
        if error_code(exc) not in JOB_GONE_ERRORS:
            raise
        if not_visible_yet(created_at, time.time()):
            # Moments after CreateJob S3 may not find the job yet: wait for it (CheckJob looks again
            # when the wait times out); never a second job.
            logger.info("the new job is not visible yet", extra={"jobId": job_id})
            metrics.add_metric(name="JobsNotVisibleYet", unit=MetricUnit.Count, value=1)
            return {"jobId": job_id}
        # A re-entry long after the recorded job ended: S3 has deleted it (90 days after the end).
        logger.warning("the recorded job no longer exists", extra={"jobId": job_id})
        outcome = gone_job_outcome(job_id, request.run, request.current, settings)
    if wakes_the_run(outcome):
        result = complete_once(
            table, boto3.client("stepfunctions"), key, request.taskToken, outcome, "create_job"
        )
        if result == "completed":
            metrics.add_metric(name="TaskTokensCompletedByCreateJob", unit=MetricUnit.Count, value=1)
    return {"jobId": job_id}
