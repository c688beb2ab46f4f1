"""The report fan-out's workers: records per CPU-second of each kind of part, and bytes through Lambda.

Not a test. Puts a manifest and a completion report of a stopped job (the report 5% short of the
manifest: tasks never run; 1% of the tasks failed) into an in-process moto S3, plans the attempt as
PlanReportFunction does, then times (CPU seconds of this process, moto's share included) what each
ReportPartFunction invocation does, one invocation per file (``ReportPartRows`` = the file's rows):

* ``count``           a Complete job's report window: counted in Arrow, failures written
* ``scatter-manifest`` a manifest window hashed into join partitions
* ``scatter-report``   a report window hashed into join partitions
* ``join-partition``   one partition's manifest and report rows joined (``JoinPartitionRows`` rows)
* ``merge``            ProcessReportFunction: the parts' counts added, their files joined in S3

``--manifest``: the manifest's assembly instead - Athena's output files (a few of at least 5 MiB,
many smaller) packed by PackManifest steps, then joined by BuildManifest; prints the bytes each step
reads through the function against the manifest's size.

    .venv/bin/python benchmarks/bench_fanout.py                # 200,000 objects
    .venv/bin/python benchmarks/bench_fanout.py --objects 1000000 --json
    .venv/bin/python benchmarks/bench_fanout.py --objects 1000000 --join-rows 1000000  # spilled join
    .venv/bin/python benchmarks/bench_fanout.py --manifest     # 40 small files + 2 large
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "functions"))
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from batchpipe_core import fanout  # noqa: E402
from batchpipe_core.attempts import ProcessReportInput, RetrySettings  # noqa: E402
from batchpipe_core.classification import policy_disposition  # noqa: E402
from batchpipe_core.keys import encode_key  # noqa: E402

BUCKET = "bench-pipeline"
SOURCE = "bench-source-bucket-01"
PREFIX = "runs/bench/exec/20261202T000000.000Z/"


def keys(objects: int) -> list[str]:
    return [f"photos/2026/{i % 977:03d}/image {i:09d}+v2.jpg" for i in range(objects)]


def put_inputs(s3, objects: int) -> dict:
    names = keys(objects)
    manifest = "".join(f"{SOURCE},{encode_key(k)}\n" for k in names).encode()
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}manifest.csv", Body=manifest)
    ran = names[: int(objects * 0.95)]
    rows = []
    for i, key in enumerate(ran):
        if i % 100 == 7:
            rows.append(
                f'{SOURCE},{encode_key(key)},,failed,503,SlowDown,"Please reduce your request rate."\n'
            )
        else:
            rows.append(f"{SOURCE},{encode_key(key)},,succeeded,200,,Successful\n")
    report = "".join(rows).encode()
    job_prefix = f"{PREFIX}attempt-1/report/job-bench"
    s3.put_object(Bucket=BUCKET, Key=f"{job_prefix}/results/all.csv", Body=report)
    document = {
        "Format": "Report_CSV_20180820",
        "ReportCreationDate": "2026-12-02T00:00:00.000Z",
        "Results": [
            {
                "TaskExecutionStatus": "succeeded",
                "Bucket": BUCKET,
                "MD5Checksum": "",
                "Key": f"{job_prefix}/results/all.csv",
            }
        ],
        "ReportSchema": "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage",
    }
    s3.put_object(Bucket=BUCKET, Key=f"{job_prefix}/manifest.json", Body=json.dumps(document).encode())
    return {"manifest_bytes": len(manifest), "report_bytes": len(report), "report_rows": len(ran)}


def event(objects: int, status: str, put) -> ProcessReportInput:
    return ProcessReportInput.model_validate(
        {
            "spec": {"retry": {"maxAttempts": 3, "backoffSeconds": 0}},
            "run": {"bucket": BUCKET, "prefix": PREFIX},
            "current": {
                "attempt": 1,
                "manifest": {
                    "location": f"s3://{BUCKET}/{PREFIX}manifest.csv",
                    "bucket": BUCKET,
                    "key": f"{PREFIX}manifest.csv",
                    "etag": put,
                    "objects": objects,
                },
            },
            "job": {
                "jobId": "bench",
                "status": status,
                "succeeded": 1,
                "failed": 1,
                "report": {"bucket": BUCKET, "prefix": f"{PREFIX}attempt-1/report", "scope": "AllTasks"},
            },
        }
    )


def timed(name: str, rows: int, work) -> dict:
    start = time.process_time()
    work()
    seconds = time.process_time() - start
    return {"mode": name, "rows": rows, "cpu_s": round(seconds, 3), "rows_per_cpu_s": round(rows / seconds)}


PACK_BYTES = 1 << 30  # ManifestPackBytes' default


def pack_parts(s3, ref) -> None:
    """The PackParts loop, as the state machine runs it before the merge: each step given the last
    one's cursor (``reportPlan.packing``)."""
    while True:
        step = fanout.pack_parts_step(s3, ref, budget=PACK_BYTES)
        if step["done"]:
            return
        cursor = {name: step[name] for name in fanout.PackingCursor.model_fields}
        ref = ref.model_copy(update={"packing": fanout.PackingCursor.model_validate(cursor)})


def whole_file(s3, ref, side: str, unknown) -> Callable[[], object]:
    """ReportPart on the first file of ``side``, from its start (one window: part_rows = objects)."""
    return lambda: fanout.work_on_part(s3, ref, fanout.FileItem(side=side, file=0), 0, unknown=unknown)


def run(objects: int, join_rows: int | None = None) -> list[dict]:
    unknown = policy_disposition("permanent")
    retry = RetrySettings(maxAttempts=3, backoffSeconds=0)
    results = []
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        sizes = put_inputs(s3, objects)
        etag = s3.head_object(Bucket=BUCKET, Key=f"{PREFIX}manifest.csv")["ETag"].strip('"')
        for status in ("Complete-like", "Failed"):
            # A Complete job's report must cover the manifest: count mode is timed on the same report.
            job_status = "Failed" if status == "Failed" else "Complete"
            objects_for_plan = objects if job_status == "Failed" else sizes["report_rows"]
            ev = event(objects_for_plan, job_status, etag)
            ref = fanout.PlanRef.model_validate(
                fanout.plan_report(
                    s3,
                    ev,
                    retry=retry,
                    default_scope="AllTasks",
                    cancelled_by=None,
                    part_rows=objects,
                    join_rows=join_rows or max(1, objects // 4),
                )
            )
            if ref.mode == fanout.COUNT:
                results.append(timed("count", sizes["report_rows"], whole_file(s3, ref, "report", unknown)))
                continue
            results.append(timed("scatter-manifest", objects, whole_file(s3, ref, "manifest", unknown)))
            results.append(
                timed("scatter-report", sizes["report_rows"], whole_file(s3, ref, "report", unknown))
            )
            partitions = [fanout.PartitionItem(partition=p) for p in range(ref.partitions)]
            joined = timed(
                "join-partition",
                objects,
                lambda r=ref, items=partitions: [
                    fanout.work_on_part(s3, r, i, 0, unknown=unknown) for i in items
                ],
            )
            results.append(joined | {"partitions": ref.partitions})
            results.append(timed("pack-parts", objects, lambda r=ref: pack_parts(s3, r)))
            results.append(
                timed(
                    "merge",
                    objects,
                    lambda r=ref, e=ev: fanout.merge_parts(s3, e, r, retry=retry, pack_bytes=PACK_BYTES),
                )
            )
        for result in results:
            result.update(sizes)
    return results


def manifest_reads(small_files: int, large_files: int, pack_mib: int) -> dict:
    """Bytes read through the function per PackManifest step and by BuildManifest's join."""
    from batchpipe_core.config import Config
    from batchpipe_core.multipart import MiB, concatenate
    from build_manifest import app as build_manifest

    os.environ.update(
        {
            "ACCOUNT_ID": "123456789012",
            "PIPELINE_BUCKET": BUCKET,
            "TOKEN_TABLE": "t",
            "INVENTORY_BUCKET": "i",
            "INVENTORY_PREFIX": "i/p/c",
            "INVENTORY_FORMAT": "CSV",
            "INVENTORY_VERSIONS": "Current",
            "INVENTORY_DATABASE": "d",
            "INVENTORY_TABLE": "t",
            "ATHENA_WORKGROUP": "w",
            "BATCH_ROLE_ARN": "arn:aws:iam::123456789012:role/b",
            "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:t",
            "MANIFEST_PACK_BYTES": str(pack_mib * MiB),
        }
    )
    sys.path.insert(0, str(REPO / "functions"))
    reads: list[int] = []
    with mock_aws():
        session = boto3.session.Session()
        session.events.register(
            "after-call.s3.GetObject", lambda parsed, **_: reads.append(int(parsed["ContentLength"]))
        )
        s3 = session.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        output = f"{PREFIX}athena/"
        row = f"{SOURCE},photos/2026/000/image%20000000000%2Bv2.jpg\n".encode()
        sizes = [6 * MiB] * large_files + [(1 + i % 4) * MiB - 1000 for i in range(small_files)]
        for index, size in enumerate(sizes):
            s3.put_object(
                Bucket=BUCKET, Key=f"{output}{index:05d}", Body=(row * (size // len(row) + 1))[:size]
            )
        request = build_manifest.PackManifestInput.model_validate(
            {
                "run": {
                    "executionId": "arn:aws:states:us-east-1:123456789012:execution:sm:b",
                    "executionName": "b",
                    "prefix": PREFIX,
                    "bucket": BUCKET,
                },
                "query": {"outputPrefix": f"s3://{BUCKET}/{output}", "execution": {"id": "q"}},
                "pack": True,
            }
        )
        config = Config.from_env()
        steps = []
        while True:
            reads.clear()
            step = build_manifest.pack_step(request, config, s3=s3)
            done = step["done"]
            # The state carries the loop's cursor into the next step (query.packing).
            cursor = build_manifest.ManifestPackingCursor.model_validate(step)
            request = request.model_copy(
                update={"query": request.query.model_copy(update={"packing": cursor})}
            )
            steps.append(sum(reads))
            if done:
                break
        reads.clear()
        sources = build_manifest.manifest_sources(
            s3, BUCKET, output, f"{PREFIX}{build_manifest.PACKED_FOLDER}", config
        )
        joined = concatenate(
            s3,
            bucket=BUCKET,
            key=f"{PREFIX}manifest.csv",
            sources=sources,
            scratch_prefix=f"{PREFIX}manifest-parts/",
            source_bucket=BUCKET,
        )
        join_reads = sum(reads)
    return {
        "mode": "manifest",
        "manifest_bytes": joined.size,
        "small_bytes": sum(s for s in sizes if s < 5 * MiB),
        "pack_budget_bytes": pack_mib * MiB,
        "steps": len(steps),
        "max_step_read_bytes": max(steps),
        "pack_read_bytes": sum(steps),
        "join_read_bytes": join_reads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=200_000)
    parser.add_argument("--json", action="store_true", help="one JSON object per mode on stdout")
    parser.add_argument(
        "--manifest", action="store_true", help="the manifest's assembly (PackManifest, BuildManifest)"
    )
    parser.add_argument(
        "--join-rows",
        type=int,
        help="JoinPartitionRows (default: a quarter of --objects, joined in memory; --objects itself "
        "gives two partitions, each spilled to disk past 200,000 report rows)",
    )
    parser.add_argument("--small-files", type=int, default=40)
    parser.add_argument("--pack-mib", type=int, default=16, help="ManifestPackBytes in MiB (deployed: 1024)")
    args = parser.parse_args()
    if args.manifest:
        result = manifest_reads(args.small_files, 2, args.pack_mib)
        print(
            json.dumps(result)
            if args.json
            else "\n".join(
                f"{k:>20}: {v:,}" if isinstance(v, int) else f"{k:>20}: {v}" for k, v in result.items()
            )
        )
        return
    for result in run(args.objects, args.join_rows):
        if args.json:
            print(json.dumps(result))
        else:
            print(
                f"{result['mode']:>17}: {result['rows']:>10,} rows  {result['cpu_s']:>7.2f} CPU-s  "
                f"{result['rows_per_cpu_s']:>10,} rows/CPU-s"
            )


if __name__ == "__main__":
    main()
