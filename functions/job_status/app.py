"""JobStatusFunction: S3 Batch job status event (via CloudTrail and EventBridge) -> task token.

Every event is treated as a mere hint that a job may have changed: the job's tags say whether it
is ours and which token waits for it, DescribeJob says what happened. So duplicate, late, reordered
and foreign events are harmless, and nothing here raises for them (no EventBridge retry storm).
"""

from __future__ import annotations

from typing import Any, Literal

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import BaseModel, Field, ValidationError, parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from botocore.exceptions import ClientError

from batchpipe_core.config import Config
from batchpipe_core.jobs import (
    JOB_GONE_ERRORS,
    error_code,
    job_outcome,
    pipeline_ref,
    transient_as_retryable,
    wakes_the_run,
)
from batchpipe_core.observability import instrumented, logger, metrics
from batchpipe_core.tokens import TokenTable, complete_once

# GetJobTagging/DescribeJob for a job this account cannot see (deleted after 90 days, other account).
_UNKNOWN_JOB_ERRORS = JOB_GONE_ERRORS | {"AccessDenied", "AccessDeniedException"}


class JobStatusDetails(BaseModel):
    jobId: str
    jobArn: str | None = None
    status: str
    jobEventId: str | None = None
    failureCodes: list[str] = Field(default_factory=list)
    statusChangeReason: list[str] = Field(default_factory=list)


class CloudTrailServiceEventDetail(BaseModel):
    """``detail`` of an "AWS Service Event via CloudTrail" event; Powertools has no model for it."""

    eventSource: Literal["s3.amazonaws.com"]
    eventName: Literal["JobStatusChanged"]
    eventID: str | None = None
    serviceEventDetails: JobStatusDetails


class JobStatusChangedEvent(EventBridgeModel):
    detail: CloudTrailServiceEventDetail


@instrumented
def handler(event: dict, context: Any) -> dict:
    try:
        parsed = parse(event=event, model=JobStatusChangedEvent)
    except ValidationError as exc:
        # Raising would only make EventBridge redeliver the same unreadable event, 20 times.
        logger.error(
            "ignored: not a JobStatusChanged event", extra={"problems": exc.errors(include_url=False)}
        )
        result = {"jobId": None, "result": "ignored-malformed"}
    else:
        result = handle(parsed)
    # One metric per outcome (StatusEventCompleted, StatusEventIgnoredForeign, ...): duplicates and
    # foreign events are normal, but a rise in TaskGone means events arrive after the wait gave up.
    outcome_name = "".join(part.capitalize() for part in result["result"].split("-"))
    metrics.add_metric(name=f"StatusEvent{outcome_name}", unit=MetricUnit.Count, value=1)
    return result


def handle(parsed: JobStatusChangedEvent) -> dict:
    """What one status event changes: at most the completion of the task token it leads to."""
    details = parsed.detail.serviceEventDetails
    job_id = details.jobId
    config = Config.from_env()
    log = {"jobId": job_id, "eventStatus": details.status, "eventId": parsed.id}

    if parsed.account != config.account_id:
        logger.info("ignored: job of another account", extra=log)
        return {"jobId": job_id, "result": "ignored-foreign"}

    s3control = boto3.client("s3control")
    table = TokenTable(config.token_table, boto3.client("dynamodb"))
    try:
        with transient_as_retryable("GetJobTagging"):
            tags = s3control.get_job_tagging(AccountId=config.account_id, JobId=job_id).get("Tags", [])
    except ClientError as exc:
        if error_code(exc) not in _UNKNOWN_JOB_ERRORS:
            raise
        logger.info("ignored: job not visible", extra={**log, "error": error_code(exc)})
        return {"jobId": job_id, "result": "ignored-foreign"}

    ref = pipeline_ref(tags, config.state_machine_name)
    key = table.key_for_ref(ref) if ref else None
    item = table.get(key) if key else None
    if item is None or item.task_token is None:
        logger.info("ignored: not a job of this pipeline", extra=log)
        return {"jobId": job_id, "result": "ignored-foreign"}
    if item.job_id is not None and item.job_id != job_id:
        logger.warning("ignored: the attempt recorded another job", extra={**log, "recorded": item.job_id})
        return {"jobId": job_id, "result": "ignored-foreign"}
    if item.completed:
        logger.info("ignored: the waiting token is already completed", extra={**log, "by": item.completed_by})
        return {"jobId": job_id, "result": "already-completed"}

    # Trust DescribeJob, not the event: it may be a stale status delivered late or out of order.
    try:
        with transient_as_retryable("DescribeJob"):
            job = s3control.describe_job(AccountId=config.account_id, JobId=job_id)["Job"]
    except ClientError as exc:
        if error_code(exc) not in JOB_GONE_ERRORS:
            raise
        # Gone between GetJobTagging and now: CheckJob, on the wait's timeout, settles the attempt.
        logger.info("ignored: job no longer exists", extra={**log, "error": error_code(exc)})
        return {"jobId": job_id, "result": "ignored-gone"}
    outcome = job_outcome(job, counted=item.counted)
    if not wakes_the_run(outcome):
        logger.info(
            "ignored: job neither ended nor to be counted", extra={**log, "status": outcome["status"]}
        )
        return {"jobId": job_id, "result": "not-terminal"}

    result = complete_once(
        table, boto3.client("stepfunctions"), item.key, item.task_token, outcome, f"job_status:{parsed.id}"
    )
    return {"jobId": job_id, "result": result}
