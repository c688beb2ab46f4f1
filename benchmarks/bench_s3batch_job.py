"""How long the local S3 Batch engine takes to run one large tagging job (wall and CPU seconds).

Not a test: a time depends on the machine and its load, so no test asserts one
(tests/local/test_s3batch_scale.py checks the same job's outcome). This is the figure docs/LOCAL.md
quotes for a 100,000-object tagging job.

    .venv/bin/python benchmarks/bench_s3batch_job.py [--objects 100000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid

import boto3
from moto import mock_aws
from moto.s3.models import s3_backends

from batchpipe.local.s3batch import BatchEngine

ACCOUNT = "123456789012"
REGION = "us-east-1"
TAGGING = {"S3PutObjectTagging": {"TagSet": [{"Key": "tier", "Value": "cold"}]}}


def one_job(objects: int) -> dict[str, float]:
    """Seeds ``objects`` objects, runs one tagging job over them; wall and CPU seconds of the job alone."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3control = boto3.client("s3control", region_name=REGION)
        for bucket in ("bench-src", "bench-pipeline"):
            s3.create_bucket(Bucket=bucket)
        # Seeding through moto's backend: it is set-up, not part of the measured job.
        backend = s3_backends[ACCOUNT]["aws"]
        for number in range(objects):
            backend.put_object("bench-src", f"objects/{number:07d}.bin", b"x")
        body = "".join(f"bench-src,objects/{n:07d}.bin\n" for n in range(objects)).encode()
        etag = s3.put_object(Bucket="bench-pipeline", Key="manifest.csv", Body=body)["ETag"].strip('"')
        # The counts of tasks done, withheld by default (docs/LOCAL.md, "Unkind answers"), check the job.
        with BatchEngine(account_id=ACCOUNT, region=REGION, withhold_counts=False) as engine:
            wall, cpu = time.perf_counter(), time.process_time()
            job_id = s3control.create_job(
                AccountId=ACCOUNT,
                Operation=TAGGING,
                Manifest={
                    "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
                    "Location": {"ObjectArn": "arn:aws:s3:::bench-pipeline/manifest.csv", "ETag": etag},
                },
                Report={
                    "Bucket": "arn:aws:s3:::bench-pipeline",
                    "Format": "Report_CSV_20180820",
                    "Enabled": True,
                    "Prefix": "report",
                    "ReportScope": "AllTasks",
                },
                Priority=10,
                ConfirmationRequired=False,
                ClientRequestToken=uuid.uuid4().hex,
                RoleArn=f"arn:aws:iam::{ACCOUNT}:role/batch",
            )["JobId"]
            if not engine.wait_idle(3600):
                raise SystemExit("the job did not finish within an hour")
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            job = describe(s3control, job_id)
    if job["Status"] != "Complete" or job["ProgressSummary"]["NumberOfTasksSucceeded"] != objects:
        raise SystemExit(f"the job ended {job['Status']}: {job.get('ProgressSummary')}")
    return {"wallSeconds": round(wall, 2), "cpuSeconds": round(cpu, 2)}


def describe(s3control, job_id: str) -> dict:
    """The job, asked again while DescribeJob says NotFound: the embedded engine answers a new job's
    first DescribeJob so (docs/LOCAL.md), as S3's eventual consistency may."""
    for _ in range(5):
        try:
            return s3control.describe_job(AccountId=ACCOUNT, JobId=job_id)["Job"]
        except s3control.exceptions.NotFoundException:
            time.sleep(0.2)
    raise SystemExit(f"DescribeJob kept answering NotFound for job {job_id}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = [one_job(args.objects) for _ in range(args.repeat)]
    result = {"objects": args.objects, "runs": runs, "loadAverage": os.getloadavg()[0]}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for run in runs:
        print(f"{args.objects} objects: {run['wallSeconds']:.2f} s wall, {run['cpuSeconds']:.2f} s CPU")
    print(f"load average {result['loadAverage']:.1f} (the machine may be shared: compare CPU seconds)")


if __name__ == "__main__":
    main()
