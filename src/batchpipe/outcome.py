"""How a run's outcome reaches a person: the exit status of each run status, a failure's cause as one line.

Shared by the operator's commands (`watch`, `summary`) and the embedded AWS's (`local run`), so a
script reads the same status from both.
"""

from __future__ import annotations

from batchpipe_core.errors import readable_cause

__all__ = ["EXIT_NO_SUMMARY", "EXIT_STATUS", "readable_cause"]

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
