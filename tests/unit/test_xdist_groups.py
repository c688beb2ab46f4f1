"""`make test` runs with ``--dist loadgroup``: tests marked ``xdist_group`` share something (a served
endpoint, a browser, a folder) and must run on one worker, one after the other. pytest 9 broke this
silently with pytest-xdist 3.8 (the group never reached the scheduler), so it is checked here on the
pinned versions rather than assumed."""

import subprocess
import sys
import textwrap


def test_a_marked_group_runs_on_one_worker(tmp_path):
    (tmp_path / "test_grouped.py").write_text(
        textwrap.dedent(
            """
            import os
            import pytest

            @pytest.mark.xdist_group("shared")
            @pytest.mark.parametrize("i", range(8))
            def test_grouped(i):
                with open("workers.txt", "a") as out:
                    out.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")

            @pytest.mark.parametrize("i", range(8))
            def test_free(i):
                pass
            """
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-n",
            "2",
            "--dist",
            "loadgroup",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    workers = (tmp_path / "workers.txt").read_text().split()
    assert len(workers) == 8
    assert len(set(workers)) == 1, f"the group ran on {sorted(set(workers))}"
