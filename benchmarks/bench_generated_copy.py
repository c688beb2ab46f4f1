"""Copying a generated manifest into the run's manifest (ConfirmJob, a spec.source run): rows per CPU-second.

Not a test. Writes a generated manifest as S3 Batch Operations' manifest generator does
(``S3InventoryReport_CSV_20211130``: a manifest.json naming CSV.gz data files of ``"Bucket","Key"``
rows, keys URL-encoded) to moto's S3 served from a child process (bench_report.S3Server, so S3's
own request handling is not in the figure), with bench_report's realistic keys (spaces, ``+``,
accents, CJK, emoji, deep folders, one in 20 about 450 characters). Then each mode copies it, in
turn, ``--repeat`` rounds:

* ``before``   **baseline**: the copy as it was before it was made resumable - one CsvUpload, every
               row through the csv module (kept here, verbatim in effect, for the ratio)
* ``csv``      batchpipe_core.generated_copy with the csv-module reader (no pyarrow: python3.11):
               pieces, progress, and the join inside S3
* ``pyarrow``  the same with pyarrow's reader (what ConfirmJob runs with ArrowLayer)

Shown per mode: this process's CPU seconds (user + system; the median over rounds), rows per
CPU-second, and the ratio to ``before`` in the same round. ``--pieces-mib`` sets
generated_copy.PIECE_INPUT_BYTES (compressed input per piece) so the join has several parts.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "functions"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_report import KEY_TEMPLATES, S3Server  # noqa: E402

BUCKET = "pipeline-bucket-example"
SOURCE = "source-bucket-example"
MODES = ["before", "csv", "pyarrow"]


def raw_key(i: int) -> str:
    return KEY_TEMPLATES[i % len(KEY_TEMPLATES)](i)


def put_generated(s3: Any, rows: int, rows_per_file: int) -> tuple[str, int]:
    """The generated manifest's data files and manifest.json; (its key, its compressed bytes)."""
    from batchpipe_core.keys import encode_key

    files, total = [], 0
    for number, start in enumerate(range(0, rows, rows_per_file)):
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerows(
            [SOURCE, encode_key(raw_key(i))] for i in range(start, min(start + rows_per_file, rows))
        )
        body = gzip.compress(text.getvalue().encode())
        key = f"runs/bench/generated-manifest/job-1/data/{number:05d}.csv.gz"
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        files.append({"key": key, "size": len(body), "MD5checksum": "-"})
        total += len(body)
    document = {"fileFormat": "CSV", "fileSchema": "Bucket, Key", "files": files, "version": "2021-11-30"}
    key = "runs/bench/generated-manifest/job-1/manifest.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(document).encode())
    return key, total


def copy_before(s3: Any, at: tuple[str, str], manifest: Any) -> int:
    """The copy before it was made resumable (b04a588's copy_generated_manifest, sample and checks
    included): one streamed upload, the csv module row by row."""
    from batchpipe_core.csv_upload import CsvUpload
    from batchpipe_core.keys import decode_key

    bucket, key = at
    document = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    schema = [name.strip() for name in document["fileSchema"].split(",")]
    at_bucket, at_key = schema.index("Bucket"), schema.index("Key")
    upload = CsvUpload(s3, manifest.bucket, manifest.key)
    sample: list[str] = []
    for entry in document["files"]:
        body = s3.get_object(Bucket=bucket, Key=entry["key"])["Body"]
        with gzip.GzipFile(fileobj=body) as raw, io.TextIOWrapper(raw, "utf-8", newline="") as text:
            for row in csv.reader(text):
                if row:
                    upload.writerow([row[at_bucket], row[at_key]])
                    if len(sample) < 20:
                        sample.append(decode_key(row[at_key]))
    rows = upload.rows
    upload.close()
    return rows


def measure(s3: Any, mode: str, at: tuple[str, str], run: int) -> tuple[float, float, int]:
    """(CPU s, wall s, rows) of one copy by ``mode`` into a fresh run folder."""
    from batchpipe_core import generated_copy
    from batchpipe_core.jobs import ManifestRef

    manifest = ManifestRef(bucket=BUCKET, key=f"runs/bench-{mode}-{run}/attempt-1/manifest.csv", etag="-")
    cpu, wall = time.process_time(), time.perf_counter()
    if mode == "before":
        rows = copy_before(s3, at, manifest)
    else:
        reader = generated_copy.PYARROW if mode == "pyarrow" else generated_copy.CSV_MODULE
        rows = generated_copy.copy_generated_manifest(
            s3, job_id="1", at=at, manifest=manifest, objects=None, reader=reader
        )["objects"]
    return time.process_time() - cpu, time.perf_counter() - wall, rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--rows-per-file", type=int, default=100_000, help="rows per data file (S3's is undocumented)"
    )
    parser.add_argument(
        "--pieces-mib", type=float, default=None, help="PIECE_INPUT_BYTES in MiB (default: the module's)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    modes = args.modes.split(",")
    if unknown := sorted(set(modes) - set(MODES)):
        parser.error(f"--modes: unknown {', '.join(unknown)}; choose from {', '.join(MODES)}")
    import platform

    import boto3

    from batchpipe_core import generated_copy

    if args.pieces_mib:
        generated_copy.PIECE_INPUT_BYTES = int(args.pieces_mib * 2**20)
    server = S3Server()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    try:
        s3 = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        key, compressed = put_generated(s3, args.rows, args.rows_per_file)
        print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
        print(
            f"{args.rows:,} rows in {-(-args.rows // args.rows_per_file)} data files, {compressed / 2**20:.1f} MiB "
            f"compressed; pieces of {generated_copy.PIECE_INPUT_BYTES / 2**20:g} MiB of input"
        )
        figures: dict[str, list[tuple[float, float, int]]] = {mode: [] for mode in modes}
        for run in range(args.repeat):
            for mode in modes:
                figures[mode].append(measure(s3, mode, (BUCKET, key), run))
        baseline = figures.get("before")
        print(f"{'mode':<8} {'rows':>10} {'CPU s':>7} {'wall s':>7} {'rows/CPU-s':>11} {'vs before':>9}")
        for mode in modes:
            cpu = statistics.median(c for c, _, _ in figures[mode])
            wall = statistics.median(w for _, w, _ in figures[mode])
            rows = figures[mode][0][2]
            assert rows == args.rows, (mode, rows)
            ratio = (
                statistics.median(b[0] / f[0] for b, f in zip(baseline, figures[mode], strict=True))
                if baseline
                else float("nan")
            )
            print(f"{mode:<8} {rows:>10,} {cpu:>7.2f} {wall:>7.2f} {rows / cpu:>11,.0f} {ratio:>8.2f}x")
        sample = unquote(raw_key(0))
        assert sample  # keys are realistic, not empty
    finally:
        server.stop()


if __name__ == "__main__":
    main()
