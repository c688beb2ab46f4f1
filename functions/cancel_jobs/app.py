"""CancelJobsFunction: no job is left running when a run ends early.

Two callers, one job: cancel every job of the execution that is still going, with a reason, and close
the attempts' token items (batchpipe_core.control.cancel_run_jobs).

* The state machine's own Catch paths taken while a job may be running (``CancelJobs`` state):
  input ``{"run": ..., "failure": {"Error", "Cause"}}``; the output (the jobs cancelled) goes into
  the summary.
* EventBridge, on the state machine's own "Step Functions Execution Status Change" events with status
  ABORTED, TIMED_OUT or FAILED (a person stopped the execution, it hit a limit, or an error no Catch
  could take): no summary is written for such an execution, so the reason is recorded on the job
  (StatusUpdateReason) and in the token item.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import BaseModel, ValidationError, parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

from batchpipe_core.config import Config
from batchpipe_core.control import cancel_run_jobs
from batchpipe_core.identity import run_id
from batchpipe_core.jobs import StatePart, transient_as_retryable
from batchpipe_core.observability import instrumented, logger, metrics
from batchpipe_core.runlock import RunLock
from batchpipe_core.tokens import TokenTable

MAX_CAUSE_IN_REASON = 120


class ExecutionStatusDetail(BaseModel):
    """``detail`` of a "Step Functions Execution Status Change" event (Step Functions developer guide)."""

    executionArn: str
    stateMachineArn: str
    status: Literal["ABORTED", "TIMED_OUT", "FAILED"]
    startDate: int
    error: str | None = None
    cause: str | None = None


class ExecutionStatusChange(EventBridgeModel):
    detail: ExecutionStatusDetail


class RunPart(StatePart):
    runId: str


class FailurePart(StatePart):
    Error: str | None = None
    Cause: str | None = None


class CatchPathInput(StatePart):
    run: RunPart
    failure: FailurePart | None = None


@instrumented
def handler(event: dict, context: Any) -> dict:
    config = Config.from_env()
    if event.get("source") == "aws.states":
        try:
            change = parse(event=event, model=ExecutionStatusChange)
        except ValidationError as exc:
            logger.error(
                "ignored: not an execution status change", extra={"problems": exc.errors(include_url=False)}
            )
            return {"cancelledJobs": []}
        detail = change.detail
        if detail.stateMachineArn.rsplit(":", 1)[-1] != config.state_machine_name:
            logger.info("ignored: another state machine", extra={"stateMachineArn": detail.stateMachineArn})
            return {"cancelledJobs": []}
        # The run's identity, as ValidateSpec made it: the execution ARN and its start time.
        run = run_id(detail.executionArn, detail.startDate)
        reason = f"the execution ended {detail.status}" + _because(detail.error, detail.cause)
    else:
        request = parse(event=event, model=CatchPathInput)
        run = request.run.runId
        failure = request.failure or FailurePart()
        reason = "the run failed" + _because(failure.Error, failure.Cause)
    cancelled = cancel_run_jobs(
        boto3.client("s3control"),
        TokenTable(config.token_table, boto3.client("dynamodb")),
        account_id=config.account_id,
        run_id=run,
        reason=reason,
    )
    if event.get("source") == "aws.states":
        # The execution never reaches Summarize, which releases the run's name otherwise.
        released = RunLock(config.token_table, boto3.client("dynamodb")).release_execution(
            detail.executionArn
        )
        logger.info("run lock released" if released else "run lock not held", extra={"runName": released})
        # StopExecution stops the state machine, not the Athena query it started: stop that too.
        stopped_query = stop_run_query(detail.executionArn)
        logger.info(
            "Athena query stopped" if stopped_query else "no Athena query to stop",
            extra={"query": stopped_query},
        )
    metrics.add_metric(name="JobsCancelledByPipeline", unit=MetricUnit.Count, value=len(cancelled))
    logger.info("run's jobs stopped", extra={"runId": run, "cancelled": cancelled, "reason": reason})
    return {"cancelledJobs": cancelled}


def started_query(stepfunctions: Any, execution_arn: str) -> str | None:
    """The QueryExecutionId the execution's StartQuery state got, from its history (the state keeps
    it only in the execution's data). The state runs once per run, near the start: read forward."""
    pages = stepfunctions.get_paginator("get_execution_history").paginate(
        executionArn=execution_arn, includeExecutionData=True
    )
    for page in pages:
        for event in page["events"]:
            details = event.get("taskSucceededEventDetails") or {}
            if event["type"] == "TaskSucceeded" and details.get("resource") == "startQueryExecution":
                return json.loads(details.get("output") or "{}").get("QueryExecutionId")
    return None


def stop_run_query(execution_arn: str) -> str | None:
    """Stops the run's Athena query if it still runs; returns its ID (None: the run started none).
    StopQueryExecution on a query that has ended changes nothing, so this is safe to repeat."""
    with transient_as_retryable("reading the execution history"):
        query_id = started_query(boto3.client("stepfunctions"), execution_arn)
    if query_id is None:
        return None
    with transient_as_retryable("StopQueryExecution"):
        boto3.client("athena").stop_query_execution(QueryExecutionId=query_id)
    return query_id


def _because(error: str | None, cause: str | None) -> str:
    if not error:
        return ""
    return f" ({error}: {(cause or '')[:MAX_CAUSE_IN_REASON]})" if cause else f" ({error})"
