"""ReportPartFunction: one bounded share of a report - a window of a file, or one join partition.

Runs as a child of the state machine's Distributed Maps. Wiring only; the work is
``batchpipe_core.fanout.work_on_part``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from pydantic import BaseModel, ConfigDict, Field

from batchpipe_core.classification import policy_disposition
from batchpipe_core.clients import s3_client
from batchpipe_core.config import Config
from batchpipe_core.fanout import PartItem, PlanRef, work_on_part
from batchpipe_core.jobs import transient_as_retryable
from batchpipe_core.observability import instrumented, logger


class ReportPartInput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    plan: PlanRef
    item: PartItem
    offset: int = Field(default=0, ge=0)


@instrumented
@event_parser(model=ReportPartInput)
def handler(event: ReportPartInput, context: Any) -> dict[str, Any]:
    config = Config.from_env()
    with transient_as_retryable("reading a part of the report"):
        next_offset = work_on_part(
            s3_client(),
            event.plan,
            event.item,
            event.offset,
            unknown=policy_disposition(config.unknown_error_policy),
        )
    logger.info(
        "report part done",
        # The item's file, not the plan's fields it carries (the same in every item of the plan).
        extra={"item": event.item.model_dump(exclude={"plan"}), "offset": event.offset, "next": next_offset},
    )
    return {"offset": next_offset}
