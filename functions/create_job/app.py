"""CreateJobAndWait's Lambda: store the task token, create the attempt's job, close the early-end race.

Invoked with ``.waitForTaskToken``: its return value is ignored; the task ends when someone sends
the token (JobStatusFunction on the status event, this function if the job is already over, or the
wait times out into CheckJob). docs/EVENTS_AND_FALLBACK.md explains the protocol.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse

from batchpipe_core.config import Config
from batchpipe_core.jobs import (
    CreateJobInput,
    JobSettings,
    build_create_job_request,
    job_outcome,
    job_ref,
    token_key,
    transient_as_retryable,
)
from batchpipe_core.observability import instrumented, logger, metrics
from batchpipe_core.tokens import TokenTable, complete_once


@instrumented
def handler(event: dict, context: Any) -> dict:
    request = parse(event=event, model=CreateJobInput)
    config = Config.from_env()
    settings = JobSettings.from_config(config)
    s3control = boto3.client("s3control")
    table = TokenTable(config.token_table, boto3.client("dynamodb"))

    execution_id, attempt = request.run.executionId, request.current.attempt
    key = token_key(execution_id, attempt)
    # Before CreateJob: an event for this job can then never arrive ahead of its token.
    item = table.store_token(key, job_ref(execution_id, attempt), request.taskToken)

    job_id = item.job_id
    if job_id is None:
        params = build_create_job_request(request.spec, request.run, request.current, settings)
        with transient_as_retryable("CreateJob"):
            job_id = s3control.create_job(**params)["JobId"]
        table.record_job(key, job_id)
        logger.info("job created", extra={"jobId": job_id, "attempt": attempt})
        metrics.add_metric(name="JobsCreated", unit=MetricUnit.Count, value=1)
    else:
        logger.info("re-entered: waiting again for the attempt's job", extra={"jobId": job_id})
        metrics.add_metric(name="JobWaitsRenewed", unit=MetricUnit.Count, value=1)

    # The job may have ended before the token was stored (re-entry) or before now: no event would
    # then reach the new token, so complete it here.
    with transient_as_retryable("DescribeJob"):
        job = s3control.describe_job(AccountId=config.account_id, JobId=job_id)["Job"]
    outcome = job_outcome(job)
    if outcome["terminal"]:
        result = complete_once(
            table, boto3.client("stepfunctions"), key, request.taskToken, outcome, "create_job"
        )
        if result == "completed":
            metrics.add_metric(name="TaskTokensCompletedByCreateJob", unit=MetricUnit.Count, value=1)
    return {"jobId": job_id}
