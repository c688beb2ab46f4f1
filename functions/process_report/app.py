"""ProcessReportFunction: the report's parts -> the attempt's counts, files and record.

Wiring only; the work is ``batchpipe_core.fanout.merge_parts`` (the parts are PlanReport's plan,
done by ReportPartFunction in the state machine's Distributed Maps), and before it, in the PackParts
loop (``pack: true``), ``fanout.pack_parts_step``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import parse

from batchpipe_core.attempts import ProcessReportInput
from batchpipe_core.clients import s3_client
from batchpipe_core.config import Config
from batchpipe_core.fanout import PlanRef, merge_parts, pack_parts_step
from batchpipe_core.jobs import StatePart, transient_as_retryable
from batchpipe_core.observability import instrumented
from batchpipe_core.runlock import renew_in_report_stage


class MergeInput(ProcessReportInput):
    reportPlan: PlanRef


class PackPartsInput(StatePart):
    reportPlan: PlanRef
    pack: bool


@instrumented
def handler(event: dict, context: Any) -> dict[str, Any]:
    config, s3 = Config.from_env(), s3_client()
    if event.get("pack"):  # the PackParts state
        request = parse(event=event, model=PackPartsInput)
        with transient_as_retryable("packing the report parts' small files"):
            return pack_parts_step(s3, request.reportPlan, budget=config.manifest_pack_bytes)
    merge = parse(event=event, model=MergeInput)
    renew_in_report_stage(merge.run, merge.spec.concurrency, config)
    retry = merge.spec.retry_or(config.default_max_attempts, config.default_backoff_seconds)
    with transient_as_retryable("merging the report's parts"):
        return merge_parts(s3, merge, merge.reportPlan, retry=retry, pack_bytes=config.manifest_pack_bytes)
