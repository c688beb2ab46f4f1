"""The one progress bar and live line that `watch` and `local run` draw."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st

from batchpipe.progress import LiveLine, TerminalBar, bar, task_progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_fills_with_the_share_done():
    assert bar(0, 4, "tasks", width=8) == "[........] 0/4 tasks"
    assert bar(1, 4, "tasks", width=8) == "[##......] 1/4 tasks"
    assert bar(4, 4, "objects", width=8) == "[########] 4/4 objects"


def test_an_unknown_total_draws_an_empty_bar_not_a_full_one():
    # S3 Batch Operations reports TotalNumberOfTasks 0 until it has read the manifest.
    assert bar(0, 0, "tasks", width=4) == "[....] 0/0 tasks"


def test_a_jobs_progress_is_drawn_only_from_the_counts_s3_gave():
    counted = {"TotalNumberOfTasks": 4, "NumberOfTasksSucceeded": 2, "NumberOfTasksFailed": 1}
    assert task_progress(counted) == f"{bar(3, 4, 'tasks')} (1 failed)"
    # JobProgressSummary's members are all optional: no count of tasks done is not 0 done.
    assert task_progress({"TotalNumberOfTasks": 4, "NumberOfTasksFailed": 1}) == (
        "4 tasks (S3 gives no count of those done)"
    )
    assert task_progress({}) == "? tasks (S3 gives no count of those done)"


@given(done=st.integers(0, 10**9), total=st.integers(0, 10**9))
def test_a_bar_is_always_its_width(done, total):
    drawn = bar(done, total, "tasks", width=30)
    assert len(drawn.split("]")[0]) == 31
    assert drawn.endswith(f"] {done}/{total} tasks")


def test_a_live_line_is_redrawn_on_a_terminal_and_cleared_before_the_next_line():
    terminal = Terminal()
    line = LiveLine(terminal)
    line.show("job 1: [....]")
    line.show("job 1: [##..]")
    line.clear()
    line.clear()
    assert terminal.getvalue() == "\r\033[Kjob 1: [....]\r\033[Kjob 1: [##..]\r\033[K"


def test_logs_and_pipes_get_nothing_redrawn():
    log = io.StringIO()
    with TerminalBar(log, "seeding", 10) as seeding:
        seeding(5)
    LiveLine(log).show("job 1")
    assert log.getvalue() == ""


def test_a_terminal_bar_is_cleared_when_its_step_ends():
    terminal = Terminal()
    with TerminalBar(terminal, "seeding", 10) as seeding:
        seeding(5)
    assert terminal.getvalue() == f"\r\033[Kseeding {bar(5, 10, 'objects')}\r\033[K"
