"""Errors whose class names become Step Functions error names (Lambda's errorType).

The state machine's Retry/Catch match on these names, so renaming one is a contract change.
"""

from __future__ import annotations

import json
from typing import Any


class BatchPipeError(Exception):
    """Base class: a failure the pipeline reports by name."""


class SpecValidationError(BatchPipeError):
    """The job spec is invalid. The message names the field and the fix."""


class TransientError(BatchPipeError):
    """Worth retrying as is (throttling, eventual consistency). The ASL retries this name."""


class ManifestCountIncomplete(BatchPipeError):
    """ConfirmJob ran out of time counting a manifest S3 has not counted, or copying (and so counting)
    the manifest S3 generated; its progress is saved and the state's Retry continues where it stopped."""


class JobPreparationFailedError(BatchPipeError):
    """S3 failed the job while preparing it (before any task ran), e.g. an unreadable manifest or an
    ETag mismatch: a new job of the same manifest would fail the same way, so the run ends at once."""


class TooManyObjectsError(BatchPipeError):
    """The filter selected more objects than the spec's maxObjects allows."""


class FailuresFileError(BatchPipeError):
    """The spec's rerun.failures object is not a failures file this stack can rerun."""


class InventoryNotFoundError(BatchPipeError):
    """No complete inventory delivery matches the spec's inventory.date."""


class UncountedJobError(BatchPipeError):
    """S3 gave neither a count nor the manifest it generated before confirmation: maxObjects cannot be
    checked, so the job is not confirmed."""


class AccountingError(BatchPipeError):
    """An attempt's counts do not add up: an object would be lost or counted twice."""


def shown(value: object, limit: int = 60) -> str:
    """A value as an error message quotes it: its repr, cut to ``limit`` characters with the full
    length said, so that a message never repeats all of a 10 MB field."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text):,} characters)"


def readable_cause(cause: Any, limit: int | None = None) -> str:
    """One line a person reads from a failure's cause, never an error's JSON or a stack trace.

    Used by the command line and the run summary's e-mail. A failed Lambda task's cause is its error as
    JSON (errorMessage, errorType, stackTrace); an AWS SDK task's and a failed Athena query's status are
    JSON too; other causes (ASL errors, timeouts) are plain text already.
    """
    text = "" if cause is None else str(cause)
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        # A Lambda error, an SDK error, or an Athena query's status (AthenaQueryFailed).
        keys = ("errorMessage", "Message", "message", "StateChangeReason")
        found = next((document[k] for k in keys if k in document), None)
        text = str(found) if found is not None else ""
    text = " ".join(text.split())
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"
