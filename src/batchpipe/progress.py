"""Progress bars for the long local steps (seeding, writing outputs, running a batch job)."""

from __future__ import annotations

from typing import TextIO


def bar(done: int, total: int, unit: str, width: int = 30) -> str:
    filled = min(width, int(width * done / total)) if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {unit}"


class TerminalBar:
    """A bar redrawn in place while a step runs, on a terminal only: logs and pipes (``--json``'s
    stderr redirected, CI) get nothing, so their output stays line by line. Call it with the count
    done so far; ``close()`` clears the line."""

    def __init__(self, stream: TextIO, label: str, total: int, unit: str = "objects") -> None:
        self.stream, self.label, self.total, self.unit = stream, label, total, unit
        self.shown = False
        isatty = getattr(stream, "isatty", None)
        self.enabled = bool(isatty and isatty())

    def __call__(self, done: int) -> None:
        if self.enabled:
            self.stream.write(f"\r{self.label} {bar(done, self.total, self.unit)}")
            self.stream.flush()
            self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False

    def __enter__(self) -> TerminalBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
