"""Progress on a terminal: the one bar every command draws, and lines redrawn in place.

Shared by the operator's `watch` (a deployed run's batch jobs) and the embedded AWS's `local run`
(seeding, batch jobs, writing outputs). Logs and pipes get nothing redrawn, so their output stays line
by line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TextIO


def bar(done: int, total: int, unit: str, width: int = 30) -> str:
    """``[####......] done/total unit``. A total of 0 draws an empty bar: S3 Batch Operations reports a
    job's TotalNumberOfTasks only once it has read the manifest, so 0 there means "not known yet"."""
    filled = min(width, width * done // total) if total > 0 else 0
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {unit}"


def task_progress(summary: Mapping[str, Any]) -> str:
    """A job's ProgressSummary (DescribeJob, ListJobs) as a bar of its tasks done. Every member is
    optional (S3 API reference, ``JobProgressSummary``: "Required: No"), so where S3 leaves out the
    counts of tasks that succeeded or failed the line says so rather than drawing 0 done."""
    total = summary.get("TotalNumberOfTasks") or 0
    succeeded, failed = summary.get("NumberOfTasksSucceeded"), summary.get("NumberOfTasksFailed")
    if succeeded is None or failed is None:
        return f"{total or '?'} tasks (S3 gives no count of those done)"
    return f"{bar(succeeded + failed, total, 'tasks')} ({failed} failed)"


class LiveLine:
    """One line redrawn in place on a terminal; on anything else ``show`` writes nothing."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = False
        isatty = getattr(stream, "isatty", None)
        self.enabled = bool(isatty and isatty())

    def show(self, text: str) -> None:
        if self.enabled:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            self.shown = True

    def clear(self) -> None:
        """Wipes the line, so what is printed next starts on a clean one."""
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


class TerminalBar(LiveLine):
    """A bar redrawn while a step runs: call it with the count done so far; leaving the ``with``
    block clears the line."""

    def __init__(self, stream: TextIO, label: str, total: int, unit: str = "objects") -> None:
        super().__init__(stream)
        self.label, self.total, self.unit = label, total, unit

    def __call__(self, done: int) -> None:
        self.show(f"{self.label} {bar(done, self.total, self.unit)}")

    def __enter__(self) -> TerminalBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()
