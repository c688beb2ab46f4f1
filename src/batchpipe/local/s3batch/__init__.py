"""Embedded S3 Batch Operations engine: the s3control job API on top of moto (never deployed).

    with mock_aws(), BatchEngine(account_id=..., region=..., event_sink=bus) as engine:
        boto3.client("s3control").create_job(...)   # an ordinary client
        engine.wait_idle()

See docs/LOCAL.md, section "S3 Batch Operations engine".
"""

from .engine import KIND_ANSWERS, BatchEngine
from .faults import FaultInjector, FaultRule
from .tasks import NOT_SUPPORTED, Task, TaskOutcome

__all__ = [
    "KIND_ANSWERS",
    "NOT_SUPPORTED",
    "BatchEngine",
    "FaultInjector",
    "FaultRule",
    "Task",
    "TaskOutcome",
]
