"""How `batchpipe local run --objects N` scales: wall time, CPU time and peak memory per size.

Not a test. Two modes:

* default: each size is its own ``batchpipe local run --objects N --out DIR --json`` process, as a user
  runs it; wall seconds, CPU seconds (user + system, all threads) and peak RSS come from the kernel
  (``os.wait4``). The outputs are then checked: summary.json SUCCEEDED for all N objects and
  objects.jsonl with one line per object. These are the figures of docs/PERFORMANCE.md.
* ``--same-process``: all sizes in this one process after an optional warm-up run, so the one-time
  costs (imports, moto's first requests) fall outside the measurements; per size the CPU seconds and
  how far the peak RSS rose above the RSS before the run (the kernel's high-water mark is reset first).
  tests/local/test_scaling.py uses this mode to check that both grow linearly.

Each mode prints a table, the per-object figures and their ratios to the first size, and the load
average (the machine may be shared: CPU seconds are the figure to compare across runs). ``--json``
prints one JSON document instead.

    .venv/bin/python benchmarks/bench_local_run.py 100000 1000000
    .venv/bin/python benchmarks/bench_local_run.py --same-process --warmup 500 5000 20000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from batchpipe.local.world import SOURCE_BUCKET

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * _PAGE / 2**20


def _peak_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_peak() -> None:
    """Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def check_outputs(out: Path, objects: int) -> None:
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    if summary.get("status") != "SUCCEEDED" or summary["totals"]["objects"] != objects:
        raise SystemExit(f"run of {objects} objects did not succeed: {summary.get('status')}")
    source = f'{{"bucket": "{SOURCE_BUCKET}",'.encode()
    with open(out / "objects.jsonl", "rb") as fh:
        lines = sum(1 for line in fh if line.startswith(source))
    if lines != objects:
        raise SystemExit(f"objects.jsonl describes {lines} objects of {SOURCE_BUCKET}, not {objects}")


def run_fresh(objects: int, work: Path) -> dict:
    out = work / f"out-{objects}"
    command = [sys.executable, "-m", "batchpipe.cli", "local", "run"]
    command += ["--objects", str(objects), "--out", str(out), "--json"]
    load = os.getloadavg()[0]
    started = time.monotonic()
    with open(work / f"log-{objects}.txt", "w") as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the run of {objects} objects failed: see {work}/log-{objects}.txt")
    check_outputs(out, objects)
    return {
        "objects": objects,
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def run_here(objects: int, work: Path) -> dict:
    from batchpipe.cli import main

    out = work / f"out-{objects}"
    load = os.getloadavg()[0]
    before = _rss_mib()
    _reset_peak()
    cpu, started = time.process_time(), time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(["local", "run", "--objects", str(objects), "--out", str(out), "--json"])
    cpu, wall = time.process_time() - cpu, time.monotonic() - started
    if code != 0:
        raise SystemExit(f"the run of {objects} objects exited {code}")
    check_outputs(out, objects)
    return {
        "objects": objects,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "peak_rss_mib": round(_peak_mib()),
        "peak_growth_mib": round(max(_peak_mib() - before, 1.0), 1),
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", type=int, nargs="+", help="object counts, smallest first")
    parser.add_argument("--same-process", action="store_true")
    parser.add_argument("--warmup", type=int, default=0, help="objects of an unmeasured first run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", help="keep the outputs in this folder (default: a temporary one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-local-run-") as scratch:
        work = Path(args.keep or scratch)
        work.mkdir(parents=True, exist_ok=True)
        if args.same_process:
            if args.warmup:
                run_here(args.warmup, work)
            rows = [run_here(n, work) for n in args.sizes]
        else:
            rows = [run_fresh(n, work) for n in args.sizes]

    first = rows[0]
    growth = "peak_growth_mib" if args.same_process else "peak_rss_mib"
    for row in rows:
        row["cpu_per_object_ratio"] = round(
            (row["cpu_s"] / row["objects"]) / (first["cpu_s"] / first["objects"]), 3
        )
        row["memory_per_object_ratio"] = round(
            (row[growth] / row["objects"]) / (first[growth] / first["objects"]), 3
        )
    if args.json:
        print(json.dumps({"mode": "same-process" if args.same_process else "fresh", "runs": rows}))
        return 0
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    header = ["objects", "wall_s", "cpu_s", growth, "cpu_per_object_ratio", "memory_per_object_ratio"]
    print(" | ".join([*header, "load before/after"]))
    for row in rows:
        cells = [f"{row[name]:,}" if isinstance(row[name], int) else str(row[name]) for name in header]
        print(" | ".join([*cells, f"{row['load_before']}/{row['load_after']}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
