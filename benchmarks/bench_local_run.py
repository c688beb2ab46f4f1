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

``--failures`` runs issue 23's "done when" instead of a clean run: a faults file (``FAULTS``) makes
5% of the objects fail permanently (404 NoSuchKey and 403 AccessDenied) and 2% fail once with 503
SlowDown, so a second attempt reruns them and they succeed. The benchmark computes from the generated
keys which objects each rule hits and checks the outcome exactly: the run ends PARTIAL (exit status
3) after two attempts, succeeded + failed permanently is every object, each count and error label is
the expected one, and the run's permanent-failures.csv holds one row per failed object, each a key a
permanent rule made fail, with that rule's error. In the default mode it also stamps each line the
run prints with the wall and CPU seconds so far, and reports the stages between them (the batch job
of attempt 1 among them: issue 23 §5).

Each mode prints a table, the per-object figures and their ratios to the first size, and the load
average (the machine may be shared: CPU seconds are the figure to compare across runs). ``--json``
prints one JSON document instead.

    .venv/bin/python benchmarks/bench_local_run.py 100000 1000000
    .venv/bin/python benchmarks/bench_local_run.py --failures 1000000
    .venv/bin/python benchmarks/bench_local_run.py --same-process --warmup 500 5000 20000
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from batchpipe.local.world import SOURCE_BUCKET, World
from batchpipe.outcome import EXIT_STATUS

#: The run's seed (``local run --seed``): the benchmark generates the same keys to know which fail.
SEED = 7
#: --failures: the faults file. Each rule's regex is searched in the decoded key (docs/LOCAL.md,
#: "Fault injection"); it looks at the key's last number (the object's serial, written after a
#: folder, a space, ``IMG_``, ``v``, ... by the generator, before an extension or ``%25``), so 1 in 20
#: objects ends in 00, 20, 40, 60 or 80 (permanent: two codes S3 Batch Operations does not retry) and
#: 1 in 50 in 05 or 55 (retriable: ``times`` 1, so the rerun succeeds). The rules are tried in order.
FAULTS = [
    {"keyRegex": r"(00|40|80)(%25)?\D*$", "httpStatus": 404, "errorCode": "NoSuchKey"},
    {"keyRegex": r"(20|60)(%25)?\D*$", "httpStatus": 403, "errorCode": "AccessDenied"},
    {"keyRegex": r"[05]5(%25)?\D*$", "httpStatus": 503, "errorCode": "SlowDown", "times": 1},
]

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


def run_arguments(objects: int, out: Path, faults: Path | None) -> list[str]:
    arguments = ["local", "run", "--objects", str(objects), "--seed", str(SEED), "--out", str(out), "--json"]
    return arguments + (["--faults", str(faults)] if faults else [])


def write_faults(work: Path) -> Path:
    path = work / "faults.json"
    path.write_text(json.dumps(FAULTS), encoding="utf-8")
    return path


def expected_failures(objects: int) -> tuple[dict[str, str], int]:
    """Which generated keys fail for good, with their rule's "<status> <code>", and how many fail
    once (retriably): the first matching rule of FAULTS per key, as the engine applies them."""
    rules = [(re.compile(rule["keyRegex"]), rule) for rule in FAULTS]
    permanent: dict[str, str] = {}
    retriable = 0
    for row in World().generated(objects, seed=SEED):
        rule = next((rule for regex, rule in rules if regex.search(row.key)), None)
        if rule is None:
            continue
        if rule.get("times") is None:
            permanent[row.key] = f"{rule['httpStatus']} {rule['errorCode']}"
        else:
            retriable += 1
    return permanent, retriable


def check_failures(out: Path, objects: int, summary: dict) -> dict:
    """Issue 23's "done when", exactly: PARTIAL, every object accounted for, the failures file's rows
    exactly the objects made to fail for good. Returns the figures checked."""
    permanent, retriable = expected_failures(objects)
    totals, attempts = summary["totals"], summary["attempts"]
    wanted_errors = Counter(permanent.values()) + Counter({"503 SlowDown": retriable})
    problems = [
        f"{what}: {got!r}, expected {want!r}"
        for what, got, want in [
            ("status", summary.get("status"), "PARTIAL"),
            ("totals.objects", totals["objects"], objects),
            ("totals.succeeded", totals["succeeded"], objects - len(permanent)),
            ("totals.failedPermanent", totals["failedPermanent"], len(permanent)),
            ("totals.failedRetriesExhausted", totals["failedRetriesExhausted"], 0),
            ("succeeded + failedPermanent", totals["succeeded"] + totals["failedPermanent"], objects),
            ("attempts", len(attempts), 2),
            ("attempt 1 errors", attempts[0]["errors"], dict(wanted_errors)),
            ("attempt 1 failedRetriable", attempts[0]["failedRetriable"], retriable),
            ("attempt 2 objects", attempts[-1]["total"], retriable),
            ("attempt 2 succeeded", attempts[-1]["succeeded"], retriable),
        ]
        if got != want
    ]
    failures = out / str(summary["permanentFailures"]).removeprefix("s3://")
    with open(failures, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = [dict(zip(header, row, strict=True)) for row in reader]
    listed = Counter(row["key"] for row in rows)
    wrong = [row for row in rows if permanent.get(row["key"]) != f"{row['httpStatus']} {row['errorCode']}"]
    problems += [
        f"{failures.name}: {what}"
        for what, bad in [
            (
                f"{len(rows)} rows for {totals['failedPermanent']} failed objects",
                len(rows) != totals["failedPermanent"],
            ),
            (f"{sum(n > 1 for n in listed.values())} keys listed twice", any(n > 1 for n in listed.values())),
            (f"{len(wrong)} rows not made to fail so, e.g. {wrong[:1]}", bool(wrong)),
            (f"{len(set(permanent) - set(listed))} failed keys missing", set(permanent) != set(listed)),
        ]
        if bad
    ]
    if problems:
        raise SystemExit(
            f"the run of {objects} objects with failures is not exact:\n  " + "\n  ".join(problems)
        )
    return {
        "failed_permanent": len(permanent),
        "failed_once": retriable,
        "failures_file_mib": round(failures.stat().st_size / 2**20, 2),
        "errors": dict(wanted_errors),
    }


def check_outputs(out: Path, objects: int, *, failures: bool = False) -> dict:
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    checked = {}
    if failures:
        checked = check_failures(out, objects, summary)
    elif summary.get("status") != "SUCCEEDED" or summary["totals"]["objects"] != objects:
        raise SystemExit(f"run of {objects} objects did not succeed: {summary.get('status')}")
    source = f'{{"bucket": "{SOURCE_BUCKET}",'.encode()
    with open(out / "objects.jsonl", "rb") as fh:
        lines = sum(1 for line in fh if line.startswith(source))
    if lines != objects:
        raise SystemExit(f"objects.jsonl describes {lines} objects of {SOURCE_BUCKET}, not {objects}")
    return checked


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a running process, all its threads (/proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / _TICKS


#: Stages of a run told by the lines it prints: (name, the lines that open it, the line that closes
#: it), each line the first after the one before that starts with the text (none: the run's start
#: or end). The job's span runs from CreateJob to the line saying how it ended, so it includes
#: Preparing (the engine reads the manifest) and the pipeline's waits and its own count of the
#: manifest (ConfirmJob); "job active" starts when ConfirmJob let it run.
STAGES = [
    ("set-up (objects, inventory)", (), "▶ ValidateSpec"),
    ("query and manifest", ("▶ ValidateSpec",), "▶ AnythingToDo?"),
    ("job, attempt 1 (CreateJob to its end)", ("▶ CreateJobAndWait",), "  job "),
    ("job active, attempt 1", ("▶ ConfirmJob", "▶ CreateJobAndWait"), "  job "),
    ("report, attempt 1", ("▶ PlanReport",), "▶ MoreToRetry?"),
    ("the rest, outputs", ("▶ MoreToRetry?",), None),
]


def stages(stamped: list[tuple[float, float, str]]) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds of each of STAGES from the stamped lines (``(wall, cpu, line)``)."""

    def after(index: int, text: str) -> int | None:
        return next((i for i in range(index, len(stamped)) if stamped[i][2].startswith(text)), None)

    figures = {}
    moments = [(0.0, 0.0), *((wall, cpu) for wall, cpu, _ in stamped)]  # moment i + 1 is line i's
    for name, opening, closing in STAGES:
        opened: int | None = -1
        for text in opening:
            opened = after(opened + 1, text) if opened is not None else None
        if opened is None:
            continue
        closed = len(stamped) - 1 if closing is None else after(opened + 1, closing)
        if closed is not None:
            (wall0, cpu0), (wall1, cpu1) = moments[opened + 1], moments[closed + 1]
            figures[name] = {"wall_s": round(wall1 - wall0, 1), "cpu_s": round(cpu1 - cpu0, 1)}
    return figures


def run_fresh(objects: int, work: Path, faults: Path | None = None) -> dict:
    out = work / f"out-{objects}"
    command = [sys.executable, "-m", "batchpipe.cli", *run_arguments(objects, out, faults)]
    load = os.getloadavg()[0]
    started = time.monotonic()
    stamped: list[tuple[float, float, str]] = []
    with open(work / f"log-{objects}.txt", "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, encoding="utf-8"
        )
        for line in process.stderr:
            stamp = (round(time.monotonic() - started, 2), _cpu_of(process.pid), line.rstrip("\n"))
            stamped.append(stamp)
            log.write(f"[{stamp[0]:9.2f} s, {stamp[1]:8.2f} CPU-s] {line}")
        _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    expected = EXIT_STATUS["PARTIAL" if faults else "SUCCEEDED"]
    if os.waitstatus_to_exitcode(status) != expected:
        raise SystemExit(
            f"the run of {objects} objects exited {os.waitstatus_to_exitcode(status)}, not {expected}: "
            f"see {work}/log-{objects}.txt"
        )
    checked = check_outputs(out, objects, failures=faults is not None)
    return {
        "objects": objects,
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "stages": stages(stamped),
        **checked,
    }


def run_here(objects: int, work: Path, faults: Path | None = None) -> dict:
    from batchpipe.cli import main

    out = work / f"out-{objects}"
    load = os.getloadavg()[0]
    before = _rss_mib()
    _reset_peak()
    cpu, started = time.process_time(), time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(run_arguments(objects, out, faults))
    cpu, wall = time.process_time() - cpu, time.monotonic() - started
    expected = EXIT_STATUS["PARTIAL" if faults else "SUCCEEDED"]
    if code != expected:
        raise SystemExit(f"the run of {objects} objects exited {code}, not {expected}")
    checked = check_outputs(out, objects, failures=faults is not None)
    return {
        "objects": objects,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "peak_rss_mib": round(_peak_mib()),
        "peak_growth_mib": round(max(_peak_mib() - before, 1.0), 1),
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        **checked,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", type=int, nargs="+", help="object counts, smallest first")
    parser.add_argument("--same-process", action="store_true")
    parser.add_argument("--warmup", type=int, default=0, help="objects of an unmeasured first run")
    parser.add_argument(
        "--failures",
        action="store_true",
        help="5%% of the objects fail for good and 2%% once (FAULTS); check the run ends PARTIAL, exactly",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", help="keep the outputs in this folder (default: a temporary one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-local-run-") as scratch:
        work = Path(args.keep or scratch)
        work.mkdir(parents=True, exist_ok=True)
        faults = write_faults(work) if args.failures else None
        if args.same_process:
            if args.warmup:
                run_here(args.warmup, work, faults)
            rows = [run_here(n, work, faults) for n in args.sizes]
        else:
            rows = [run_fresh(n, work, faults) for n in args.sizes]

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
    for row in rows:
        if "failed_permanent" in row:
            print(
                f"{row['objects']:,} objects: PARTIAL, exact: {row['failed_permanent']:,} failed for good "
                f"({row['failures_file_mib']} MiB of failures file), {row['failed_once']:,} failed once "
                f"and succeeded in attempt 2; errors {row['errors']}"
            )
        for stage, figures in row.get("stages", {}).items():
            print(
                f"  {row['objects']:,} objects, {stage}: {figures['wall_s']} s wall, {figures['cpu_s']} CPU-s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
