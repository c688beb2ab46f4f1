"""ConfirmJob: S3 has prepared the attempt's job (Suspended after Preparing); check its count and release it.

``maxObjects`` is enforced on the count (S3's own, or when S3 withholds it the pipeline's: the rows it
wrote, the rows of the manifest S3 generated for a spec.source run (copied in bounded, resumable pieces:
batchpipe_core.generated_copy), or its own count of the manifest,
see batchpipe_core.control.check_count; over: the job is cancelled, TooManyObjectsError; nothing to
count: cancelled, UncountedJobError); a dry run's job is then cancelled, else
the job is confirmed (UpdateJobStatus Ready) unless the spec asks a person to confirm it, in which
case it is tagged ``batchpipe:confirmation`` = ``operator`` and left Suspended. Output: the attempt's
``current`` with ``manifest.objects`` = S3's count. The run then waits for the job again
(CreateJobAndWait, same job, new token).
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from pydantic import Field

from batchpipe_core.config import Config
from batchpipe_core.control import check_count
from batchpipe_core.errors import AccountingError
from batchpipe_core.generated_copy import copy_generated_manifest
from batchpipe_core.generator import generated_manifest_location
from batchpipe_core.jobs import CurrentAttempt, JobRunRef, StatePart, token_key
from batchpipe_core.observability import instrumented, metrics
from batchpipe_core.tokens import TokenTable


class ConfirmSpec(StatePart):
    maxObjects: int | None = Field(default=None, ge=0)
    confirmationRequired: bool = False
    dryRun: bool = False


class CountedJob(StatePart):
    jobId: str = Field(min_length=1)


class ConfirmJobInput(StatePart):
    spec: ConfirmSpec
    run: JobRunRef
    current: CurrentAttempt
    job: CountedJob


@instrumented
def handler(event: dict, context: Any) -> dict:
    request = parse(event=event, model=ConfirmJobInput)
    config = Config.from_env()
    table = TokenTable(config.token_table, boto3.client("dynamodb"))
    key = token_key(request.run.runId, request.current.attempt)
    item = table.get(key)
    if item is None or item.job_id != request.job.jobId:
        raise AccountingError(
            f"job {request.job.jobId} is not the job recorded for attempt {request.current.attempt}"
        )
    s3 = boto3.client("s3")
    current = request.current
    copied: dict[str, Any] = {}
    if current.manifest.generated:
        # A spec.source run: when DescribeJob names the manifest S3 generated, it becomes the run's own
        # (batchpipe_core.generated_copy), and its rows are a count that holds maxObjects whether or not S3
        # gives its own (which must then agree). S3 may write it only once the job runs (its docs are
        # silent): then S3's count alone holds maxObjects, and PlanReport copies it after the job.
        # The copy goes in bounded pieces: short of time it saves its progress and raises
        # ManifestCountIncomplete, and the state's Retry invokes this function again to go on.
        at = generated_manifest_location(
            boto3.client("s3control"), account_id=config.account_id, job_id=request.job.jobId
        )
        if at is not None:
            copied = copy_generated_manifest(
                s3,
                job_id=request.job.jobId,
                at=at,
                manifest=current.manifest,
                objects=None,
                remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000,
            )
            current = current.model_copy(
                update={"manifest": current.manifest.model_copy(update={"objects": copied["objects"]})}
            )
    total = check_count(
        boto3.client("s3control"),
        table,
        account_id=config.account_id,
        key=key,
        job_id=request.job.jobId,
        current=current,
        max_objects=request.spec.maxObjects or config.default_max_objects,
        leave_for_operator=request.spec.confirmationRequired,
        dry_run=request.spec.dryRun,
        # When S3 withholds its count, the manifest is counted here, in pieces that fit the invocation.
        s3=s3,
        remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    metrics.add_metric(name="ObjectsCountedByS3", unit=MetricUnit.Count, value=total)
    sample = copied.pop("sample", [])
    # The state's current as it came (every manifest field), with the count as its objects (and, for a
    # generated manifest, the run's copy of it); a dry run also shows its first keys.
    manifest = event["current"]["manifest"] | copied | {"objects": total}
    if request.spec.dryRun:
        manifest |= {"sample": sample, "estimatedObjects": total}
    # Counted: the next thing to wait for is the job's end, which S3 does announce (best effort).
    wait = event["run"]["jobWaitTimeoutSeconds"]
    return event["current"] | {"manifest": manifest, "waitSeconds": wait}
