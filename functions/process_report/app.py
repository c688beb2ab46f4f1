"""ProcessReportFunction: the report's parts -> the attempt's counts, files and record.

Wiring only; the work is ``batchpipe_core.fanout.merge_parts`` (the parts are PlanReport's plan,
done by ReportPartFunction in the state machine's Distributed Maps).
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.parser import event_parser

from batchpipe_core.attempts import ProcessReportInput
from batchpipe_core.config import Config
from batchpipe_core.fanout import PlanRef, merge_parts
from batchpipe_core.jobs import transient_as_retryable
from batchpipe_core.observability import instrumented


class MergeInput(ProcessReportInput):
    reportPlan: PlanRef


@instrumented
@event_parser(model=MergeInput)
def handler(event: MergeInput, context: Any) -> dict[str, Any]:
    config = Config.from_env()
    retry = event.spec.retry_or(config.default_max_attempts, config.default_backoff_seconds)
    with transient_as_retryable("merging the report's parts"):
        return merge_parts(boto3.client("s3"), event, event.reportPlan, retry=retry)
