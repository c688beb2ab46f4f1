"""Session-wide reporting shared by every test folder (loaded by pytest's controller process too, so
it sees the reports of every xdist worker)."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How long `sam local invoke`'s parts took (tests/samlocal): the figures of the test report that
    saw the most invocations (the last test's, in whatever order the reports are kept)."""
    seconds = None
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == "samlocal_seconds" and (
                    seconds is None or len(value["invocations"]) >= len(seconds["invocations"])
                ):
                    seconds = value
    if seconds is None:
        return
    invocations = seconds["invocations"]
    parts = [f"{name} {seconds[name]:.0f} s" for name in ("set-up", "sam build") if name in seconds]
    if invocations:
        total = sum(elapsed for _, elapsed in invocations)
        slowest = max(invocations, key=lambda item: item[1])
        parts.append(
            f"{len(invocations)} invocations {total:.0f} s "
            f"({total / len(invocations):.1f} s each, slowest {slowest[0]} {slowest[1]:.0f} s)"
        )
    if parts:
        terminalreporter.write_sep("-", "sam local invoke (tests/samlocal): " + ", ".join(parts))
