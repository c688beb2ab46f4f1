"""One object of a job's manifest, and what happened when the job's operation ran on it."""

from __future__ import annotations

from dataclasses import dataclass

SUCCEEDED = "succeeded"
FAILED = "failed"

#: Error code of every task whose operation the local engine cannot perform (never a silent success).
NOT_SUPPORTED = "NotSupportedByLocalEngine"
#: HTTP status reported with NOT_SUPPORTED: a 4xx, because running the task again cannot help.
NOT_SUPPORTED_STATUS = 400


@dataclass(frozen=True, slots=True)
class Task:
    """``bucket``/``key``/``version_field`` are the manifest's fields as written (the report repeats
    them verbatim); ``object_key`` and ``version_id`` are what the operation addresses."""

    bucket: str
    key: str
    version_field: str
    object_key: str
    version_id: str | None


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    status: str
    http_status: int
    error_code: str
    message: str

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    @classmethod
    def success(cls, message: str = "Successful", http_status: int = 200) -> TaskOutcome:
        return cls(SUCCEEDED, http_status, "", message)

    @classmethod
    def failure(cls, http_status: int, error_code: str, message: str) -> TaskOutcome:
        return cls(FAILED, http_status, error_code, message)

    @classmethod
    def not_supported(cls, what: str) -> TaskOutcome:
        return cls.failure(
            NOT_SUPPORTED_STATUS, NOT_SUPPORTED, f"{what} is not supported by the local S3 Batch engine"
        )


class TaskFailed(Exception):
    """Raised inside an operation to end the task with S3's answer."""

    def __init__(self, http_status: int, error_code: str, message: str) -> None:
        super().__init__(f"{http_status} {error_code}: {message}")
        self.outcome = TaskOutcome.failure(http_status, error_code, message)
