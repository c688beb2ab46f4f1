"""Whether a failed S3 Batch Operations task is worth another job: the one table of the policy.

The policy: 5xx, throttling, RequestTimeout and Lambda TemporaryFailure are retriable; other 4xx,
InvalidObjectState and Lambda PermanentFailure are permanent. Error codes are looked up before HTTP statuses
because a code is more specific than its status: S3 answers ``RequestTimeout`` with HTTP 400 (the
status alone would say permanent), and LambdaInvoke tasks report HTTP 200 with the function's result
code (``TemporaryFailure`` / ``PermanentFailure``). What neither table knows follows the configured
``UNKNOWN_ERROR_POLICY`` and is flagged so the attempt record can list it for a human to classify.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Disposition(enum.StrEnum):
    RETRIABLE = "retriable"
    PERMANENT = "permanent"


#: Error code of a task that a Failed or Cancelled job never ran (docs/OPERATIONS.md, "Reading a run summary").
NOT_RUN = "NotRun"

_R, _P = Disposition.RETRIABLE, Disposition.PERMANENT

#: Error code -> disposition. Consulted first.
BY_ERROR_CODE: dict[str, Disposition] = {
    # transient: the same request can succeed later
    "InternalError": _R,
    "ServiceUnavailable": _R,
    "SlowDown": _R,
    "Throttling": _R,
    "ThrottlingException": _R,
    "TooManyRequests": _R,
    "TooManyRequestsException": _R,
    "RequestTimeout": _R,
    "TemporaryFailure": _R,  # LambdaInvoke result code
    NOT_RUN: _R,
    # permanent: the same request will fail the same way
    "AccessDenied": _P,
    "NoSuchKey": _P,
    "NoSuchVersion": _P,
    "NoSuchBucket": _P,
    "MethodNotAllowed": _P,
    "PreconditionFailed": _P,
    "InvalidObjectState": _P,  # archived object not restored
    "NotSupportedByLocalEngine": _P,  # the embedded S3 Batch engine cannot perform this operation on moto
    "PermanentFailure": _P,  # LambdaInvoke result code
}

#: HTTP status -> disposition, for codes the table above does not name. 5xx is handled by range.
BY_HTTP_STATUS: dict[int, Disposition] = {
    408: _R,
    429: _R,
    400: _P,
    403: _P,
    404: _P,
    405: _P,
    409: _P,
    412: _P,
}

UNKNOWN_ERROR_POLICIES = ("permanent", "retriable")


@dataclass(frozen=True, slots=True)
class Classification:
    disposition: Disposition
    known: bool  # False: neither table matched and the policy decided

    @property
    def retriable(self) -> bool:
        return self.disposition is Disposition.RETRIABLE


# Shared instances: classification runs once per failed row, possibly millions of times.
_KNOWN = {d: Classification(d, known=True) for d in Disposition}
_UNKNOWN = {d: Classification(d, known=False) for d in Disposition}


def policy_disposition(policy: str) -> Disposition:
    """The disposition of unknown errors; a typo in the setting must not silently mean 'permanent'."""
    if policy not in UNKNOWN_ERROR_POLICIES:
        raise ValueError(f"UNKNOWN_ERROR_POLICY must be one of {UNKNOWN_ERROR_POLICIES}, got {policy!r}")
    return Disposition(policy)


def classify(http_status: int | None, error_code: str, unknown: Disposition = _P) -> Classification:
    """Disposition of one failed task from its report row's HTTP status and error code."""
    by_code = BY_ERROR_CODE.get(error_code)
    if by_code is not None:
        return _KNOWN[by_code]
    if http_status is not None:
        if 500 <= http_status <= 599:
            return _KNOWN[_R]
        by_status = BY_HTTP_STATUS.get(http_status)
        if by_status is not None:
            return _KNOWN[by_status]
    return _UNKNOWN[unknown]


def error_label(http_status: int | None, error_code: str) -> str:
    """How an error is counted and shown: ``"503 SlowDown"``, ``"NotRun"``, ``"500"``."""
    parts = [str(http_status)] if http_status is not None else []
    if error_code:
        parts.append(error_code)
    return " ".join(parts) or "unknown"
