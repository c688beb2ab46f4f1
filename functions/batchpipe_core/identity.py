"""Who a run is, forever: the execution plus the moment it started.

Step Functions lets a standard workflow execution's name be reused 90 days after the execution ends
(Step Functions developer guide, StartExecution: "name"), so its ARN names two executions over time,
while ``RetentionDays`` may keep a run's files and its jobs' records far longer. Everything keyed by a
run (its folder in the pipeline bucket, its token-table items, the idempotency tokens of its Athena
query and jobs) is keyed by the execution ARN *and* its start time, which no two executions of one
name share.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def start_instant(start_time: str | int | float | datetime) -> datetime:
    """The start time as an aware UTC datetime, from ``$$.Execution.StartTime`` (ISO 8601) or from
    the epoch milliseconds of EventBridge's execution status events (``detail.startDate``)."""
    if isinstance(start_time, datetime):
        moment = start_time
    elif isinstance(start_time, int | float):
        # Integer arithmetic: a float division may round to the neighbouring millisecond.
        moment = _EPOCH + timedelta(milliseconds=int(start_time))
    else:
        moment = datetime.fromisoformat(start_time.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def epoch_millis(start_time: str | int | float | datetime) -> int:
    """Milliseconds since the epoch, exact (no float rounding)."""
    return (start_instant(start_time) - _EPOCH) // timedelta(milliseconds=1)


def start_stamp(start_time: str | int | float | datetime) -> str:
    """Millisecond UTC stamp safe in S3 keys and tag values: ``20261120T150000.123Z``."""
    moment = start_instant(start_time)
    return moment.strftime("%Y%m%dT%H%M%S") + f".{moment.microsecond // 1000:03d}Z"


def run_id(execution_arn: str, start_time: str | int | float | datetime) -> str:
    """The run's unique identity: ``<execution ARN>@<start stamp>``."""
    return f"{execution_arn}@{start_stamp(start_time)}"


def run_folder(run_name: str, execution_name: str, start_time: str | int | float | datetime) -> str:
    """The run's folder in the pipeline bucket: ``runs/<name>/<execution name>/<start stamp>/``."""
    return f"runs/{run_name}/{execution_name}/{start_stamp(start_time)}/"
