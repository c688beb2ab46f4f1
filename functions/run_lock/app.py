"""AcquireRunLock: at most one active run per run name (``batchpipe_core.runlock``).

Input: the state document (``spec``, ``run`` and, when the run waits for the name, the previous
``lock``). Output: the new ``lock`` key, whose ``next`` the RunLockTaken? Choice follows.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from pydantic import Field

from batchpipe_core.config import Config
from batchpipe_core.jobs import RunRef, StatePart
from batchpipe_core.observability import instrumented, logger, metrics
from batchpipe_core.runlock import RunLock, acquire_for_run


class LockSpec(StatePart):
    name: str = Field(min_length=1)
    concurrency: str = "skip"


class PreviousLock(StatePart):
    waitedSeconds: int = Field(default=0, ge=0)


class AcquireRunLockInput(StatePart):
    spec: LockSpec
    run: RunRef
    lock: PreviousLock | None = None


@instrumented
def handler(event: dict, context: Any) -> dict:
    request = parse(event=event, model=AcquireRunLockInput)
    config = Config.from_env()
    run = request.run
    result = acquire_for_run(
        RunLock(config.token_table, boto3.client("dynamodb")),
        name=request.spec.name,
        concurrency=request.spec.concurrency,
        execution_id=run.executionId,
        execution_name=run.executionName,
        scheduled_time=run.scheduledTime,
        lease=run.leaseSeconds,
        waited_seconds=request.lock.waitedSeconds if request.lock else 0,
        max_wait_seconds=config.concurrency_wait_seconds,
    )
    if result["next"] == "skip":
        metrics.add_metric(name="RunLockSkips", unit=MetricUnit.Count, value=1)
    if result["reason"] == "forced":
        metrics.add_metric(name="RunLockOverrides", unit=MetricUnit.Count, value=1)
    logger.info(result["message"] or "run lock taken", extra={"runName": request.spec.name, "lock": result})
    return result
