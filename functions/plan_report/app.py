"""PlanReportFunction: how a finished job's report is split among bounded workers.

Wiring only; the work is ``batchpipe_core.fanout.plan_report``.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.parser import event_parser

from batchpipe_core.attempts import ProcessReportInput
from batchpipe_core.clients import s3_client
from batchpipe_core.config import Config
from batchpipe_core.errors import AccountingError
from batchpipe_core.fanout import plan_report
from batchpipe_core.generated_copy import copy_generated_manifest
from batchpipe_core.generator import generated_manifest_location
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
    if event.current.manifest.generated:
        event = _with_generated_manifest(event, config, context)
    with transient_as_retryable("planning the report's parts"):
        return plan_report(
            s3_client(),
            event,
            retry=retry,
            default_scope=config.default_report_scope,
            cancelled_by=cancelled_by,
            part_rows=config.report_part_rows,
            join_rows=config.join_partition_rows,
            fan_in=config.regroup_fan_in,
            confirmed=confirmed,
        )


def _with_generated_manifest(event: ProcessReportInput, config: Config, context: Any) -> ProcessReportInput:
    """A spec.source job whose generated manifest S3 wrote only once it ran (ConfirmJob found none at
    Suspended and held maxObjects on S3's count): the run's manifest is copied from it now, and its
    rows must add up to that count (batchpipe_core.generated_copy)."""
    job_id = event.job.jobId
    at = generated_manifest_location(boto3.client("s3control"), account_id=config.account_id, job_id=job_id)
    if at is None:
        raise AccountingError(
            f"job {job_id} is {event.job.status} and names no generated manifest (GeneratedManifestDescriptor): "
            "the objects it selected cannot be accounted for"
        )
    copied = copy_generated_manifest(
        boto3.client("s3"),
        job_id=job_id,
        at=at,
        manifest=event.current.manifest,
        objects=event.current.manifest.objects,
        # In pieces, as in ConfirmJob: ManifestCountIncomplete, and the state's Retry goes on.
        remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    copied.pop("sample")
    manifest = event.current.manifest.model_copy(update=copied)
    return event.model_copy(update={"current": event.current.model_copy(update={"manifest": manifest})})
