"""How a run's outcome reaches a person: the exit status of each run status, a failure's cause as one line.

Shared by the operator's commands (`watch`, `summary`) and the embedded AWS's (`local run`), so a
script reads the same status from both.
"""

from __future__ import annotations

import json
from typing import Any

#: Exit status of `watch`, `start --watch` and `local run` per run status, for scripts and CI
#: (README, OPERATIONS.md, LOCAL.md).
EXIT_STATUS = {
    "SUCCEEDED": 0,
    "NOTHING_TO_DO": 0,
    "DRY_RUN": 0,
    "PARTIAL": 3,
    "CANCELLED": 4,
    "FAILED": 5,
    "SKIPPED": 6,
    "UNCONFIRMED": 7,
}
#: An execution that ended without a summary (aborted, timed out, failed before Summarize).
EXIT_NO_SUMMARY = EXIT_STATUS["FAILED"]


def readable_cause(cause: Any, limit: int | None = None) -> str:
    """One line a person reads from a failure's cause, never an error's JSON or a stack trace.

    A failed Lambda task's cause is its error as JSON (errorMessage, errorType, stackTrace); an AWS
    SDK task's and a failed Athena query's status are JSON too; other causes (ASL errors, timeouts) are plain text already.
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
