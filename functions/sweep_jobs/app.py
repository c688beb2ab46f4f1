"""SweepJobsFunction: hourly, cancels this stack's jobs whose execution is no longer running.

Invoked by its EventBridge schedule (asynchronously); the event carries nothing it needs. What it
looked at and what it cancelled is logged as one structured line and returned (batchpipe_core.sweep).
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit

from batchpipe_core.config import Config
from batchpipe_core.observability import instrumented, logger, metrics
from batchpipe_core.sweep import sweep_jobs
from batchpipe_core.tokens import TokenTable


@instrumented
def handler(event: dict, context: Any) -> dict:
    config = Config.from_env()
    report = sweep_jobs(
        boto3.client("s3control"),
        boto3.client("stepfunctions"),
        TokenTable(config.token_table, boto3.client("dynamodb")),
        account_id=config.account_id,
        pipeline_name=config.state_machine_name,
    ).as_dict()
    metrics.add_metric(name="JobsCancelledBySweep", unit=MetricUnit.Count, value=len(report["cancelled"]))
    logger.info("job sweep done", extra={"sweep": report})
    return report
