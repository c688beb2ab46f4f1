"""A local run's cost grows linearly with its objects, so the quadratic paths of issue 17 (moto's
ListObjectVersions copying every version per page, one boto3 round trip per seeded object) cannot
come back unnoticed.

Two sizes measured in the same process by benchmarks/bench_local_run.py (after a warm-up run, so
imports and one-time set-up are outside both): the CPU seconds and the peak-RSS growth of the
larger run, per object, must stay within a generous factor of the smaller run's. A quadratic path
makes the per-object cost of 4x the objects about 4x larger; linear costs keep it near 1x (below,
since each run also has fixed costs). A ratio in one test run, never a timed threshold.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SMALL, LARGE = 5_000, 20_000
#: Per-object cost of LARGE over SMALL. Linear: <= 1 plus noise; quadratic: ~4.
SLACK = 2.0
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_local_run.py"


def bench_runs(folder: Path, *arguments: str) -> list[dict]:
    """The runs ``bench_local_run.py --json`` measured (and checked: it exits 0 only if they passed)."""
    result = subprocess.run(
        [sys.executable, str(BENCH), *arguments, "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)["runs"]


def test_time_and_memory_of_a_local_run_grow_linearly_with_the_objects(tmp_path):
    small, large = bench_runs(tmp_path, "--same-process", "--warmup", "300", str(SMALL), str(LARGE))
    print(json.dumps([small, large], indent=1))  # the figures, for the log
    assert large["cpu_per_object_ratio"] < SLACK, (small, large)
    assert large["memory_per_object_ratio"] < SLACK, (small, large)


def test_a_run_where_five_percent_fail_for_good_ends_partial_with_exact_totals(tmp_path):
    """Issue 23's "done when" at a test's size: ``bench_local_run.py --failures`` makes 5% of the
    objects fail for good and 2% once, and exits 0 only if the run ended PARTIAL after a second
    attempt with every count exact and the failures file listing exactly the keys made to fail
    (the benchmark's own checks; docs/PERFORMANCE.md has the 1,000,000-object run)."""
    (run,) = bench_runs(tmp_path, "--failures", "2000")
    assert 60 <= run["failed_permanent"] <= 140 and 20 <= run["failed_once"] <= 60, run
    assert set(run["errors"]) == {"404 NoSuchKey", "403 AccessDenied", "503 SlowDown"}
    assert run["stages"]["job active, attempt 1"]["cpu_s"] >= 0
