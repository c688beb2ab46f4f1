"""ValidateSpec: the first state. A bad spec fails the execution here, before anything costs money.

Output: ``spec`` (every default filled in) and ``run`` (who this execution is and where its files go),
the two keys every later state reads (docs/ARCHITECTURE.md, "Data between states").
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from pydantic import BaseModel, ConfigDict, Field

from batchpipe_core.config import Config
from batchpipe_core.errors import SpecValidationError
from batchpipe_core.identity import run_folder, run_id
from batchpipe_core.observability import instrumented, logger, metrics
from batchpipe_core.runlock import lease_for_spec, unwrap_scheduled_input
from batchpipe_core.spec import normalize_spec


class Execution(BaseModel):
    """``$$.Execution`` fields the state machine passes in."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    startTime: str = Field(min_length=1)


class ValidateSpecInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Whatever the execution was started with: checking it is this function's whole job.
    spec: Any = None
    execution: Execution


def run_context(
    spec: dict[str, Any], execution: Execution, config: Config, scheduled_time: str | None = None
) -> dict[str, Any]:
    """The ``run`` key: the execution's identity, its folder in the pipeline bucket and its run lock.

    Identity and folder include the start time: an execution name may be reused 90 days after its
    execution ended, and the earlier run's files and token items may still be there
    (batchpipe_core.identity).
    """
    return {
        "name": spec["name"],
        "executionId": execution.id,
        "executionName": execution.name,
        "startTime": execution.startTime,
        "runId": run_id(execution.id, execution.startTime),
        "bucket": config.pipeline_bucket,
        "prefix": run_folder(spec["name"], execution.name, execution.startTime),
        "jobWaitTimeoutSeconds": config.job_wait_timeout_seconds,
        # The first wait of each attempt: short, since no event may say the job was counted.
        "countWaitSeconds": min(config.job_count_wait_seconds, config.job_wait_timeout_seconds),
        "scheduledTime": scheduled_time,
        "leaseSeconds": lease_for_spec(
            config.job_wait_timeout_seconds, spec["retry"]["backoffSeconds"], spec["retry"]["maxAttempts"]
        ),
    }


@instrumented
def handler(event: dict, context: Any) -> dict:
    request = parse(event=event, model=ValidateSpecInput)
    config = Config.from_env()
    try:
        raw_spec, scheduled_time = unwrap_scheduled_input(request.spec)
        spec = normalize_spec(raw_spec, config)
    except SpecValidationError as error:
        # Re-raised: its class name becomes the Step Functions error, its message the Cause.
        logger.warning("job spec rejected", extra={"problems": str(error).splitlines()})
        metrics.add_metric(name="SpecsRejected", unit=MetricUnit.Count, value=1)
        raise
    metrics.add_metric(name="SpecsAccepted", unit=MetricUnit.Count, value=1)
    operation = next(iter(spec["operation"]))
    logger.info(
        "job spec accepted", extra={"runName": spec["name"], "operation": operation, "dryRun": spec["dryRun"]}
    )
    return {"spec": spec, "run": run_context(spec, request.execution, config, scheduled_time)}
