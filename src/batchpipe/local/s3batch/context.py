"""What a job's operation runs with: the S3 it acts on, the job, and how a LambdaInvoke reaches Lambda."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moto.s3.models import s3_backends
from moto.utilities.utils import get_partition


@dataclass(frozen=True)
class OperationContext:
    s3: Any
    account_id: str
    region: str
    job_id: str
    lambda_invoker: Callable[[str, dict], Any] | None = None
    lambda_redrives: int = 3

    def backend(self) -> Any:
        return s3_backends[self.account_id][get_partition(self.region)]
