"""CheckJob: the fallback when no status event completed the wait in time (events are best effort).

Reports the attempt's job outcome with ``terminal`` true or false; JobFinished? either continues
with it (UseCheckedJob) or goes back to CreateJobAndWait to wait again with a new token.
"""

from __future__ import annotations

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
    token_key,
    transient_as_retryable,
)
from batchpipe_core.observability import instrumented, logger, metrics
from batchpipe_core.runlock import renew_run_lock
from batchpipe_core.tokens import TokenTable


@instrumented
def handler(event: dict, context: Any) -> dict:
    request = parse(event=event, model=CheckJobInput)
    config = Config.from_env()
    table = TokenTable(config.token_table, boto3.client("dynamodb"))

    renew_run_lock(request.run, config, starting_job=False, forced=False)
    item = table.get(token_key(request.run.runId, request.current.attempt))
    if item is None or item.job_id is None:
        # CreateJobFunction died before recording the job: the re-entry creates or finds it.
        logger.warning("no job recorded for the attempt", extra={"attempt": request.current.attempt})
        metrics.add_metric(name="JobChecks", unit=MetricUnit.Count, value=1)
        return no_job_outcome(request.run, request.current, JobSettings.from_config(config))

    try:
        with transient_as_retryable("DescribeJob"):
            job = boto3.client("s3control").describe_job(AccountId=config.account_id, JobId=item.job_id)[
                "Job"
            ]
    except ClientError as exc:
        if error_code(exc) not in JOB_GONE_ERRORS:
            raise
        logger.warning("the recorded job no longer exists", extra={"jobId": item.job_id})
        settings = JobSettings.from_config(config)
        return gone_job_outcome(item.job_id, request.run, request.current, settings)
    outcome = job_outcome(job, counted=item.counted)
    logger.info("job checked", extra={"jobId": item.job_id, "status": outcome["status"]})
    metrics.add_metric(name="JobChecks", unit=MetricUnit.Count, value=1)
    # Each terminal check is a status event that never arrived (or came too late).
    if outcome["terminal"]:
        metrics.add_metric(name="JobEndsFoundByFallback", unit=MetricUnit.Count, value=1)
    return outcome
