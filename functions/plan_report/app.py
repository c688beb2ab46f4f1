"""PlanReportFunction: how a finished job's report is split among bounded workers.

Wiring only; the work is ``batchpipe_core.fanout.plan_report``.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.parser import event_parser

from batchpipe_core.attempts import ProcessReportInput
from batchpipe_core.config import Config
from batchpipe_core.fanout import plan_report
from batchpipe_core.jobs import token_key, transient_as_retryable
from batchpipe_core.observability import instrumented
from batchpipe_core.runlock import renew_in_report_stage
from batchpipe_core.tokens import TokenTable, who_cancelled


@instrumented
@event_parser(model=ProcessReportInput)
def handler(event: ProcessReportInput, context: Any) -> dict[str, Any]:
    config = Config.from_env()
    renew_in_report_stage(event.run, event.spec.concurrency, config)
    retry = event.spec.retry_or(config.default_max_attempts, config.default_backoff_seconds)
    cancelled_by, confirmed = None, True
    if event.job.status in ("Cancelled", "Failed") and event.run.runId:
        table = TokenTable(config.token_table, boto3.client("dynamodb"))
        key = token_key(event.run.runId, event.current.attempt)
        if event.job.status == "Cancelled":
            cancelled_by = who_cancelled(table, key)
        else:
            # Whether the pipeline confirmed a Failed job: one nobody confirmed is never rerun.
            item = table.get(key)
            confirmed = item is not None and item.confirmed
    with transient_as_retryable("planning the report's parts"):
        return plan_report(
            boto3.client("s3"),
            event,
            retry=retry,
            default_scope=config.default_report_scope,
            cancelled_by=cancelled_by,
            part_rows=config.report_part_rows,
            join_rows=config.join_partition_rows,
            confirmed=confirmed,
        )
