"""A 100,000-object job completes with every task done and nothing per task kept in memory.

How long it takes is measured by benchmarks/bench_s3batch_job.py, never asserted: a time depends on
the machine's load."""

from __future__ import annotations

from moto.s3.models import s3_backends

from .conftest import S3BATCH_ACCOUNT

OBJECTS = 100_000


def test_a_100k_object_tagging_job_completes_every_task(s3batch_env):
    s3batch_env.bucket("big-bkt")
    # Seeding through moto's backend: 100,000 PutObject round trips would take the test ~2 minutes.
    backend = s3_backends[S3BATCH_ACCOUNT]["aws"]
    for number in range(OBJECTS):
        backend.put_object("big-bkt", f"objects/{number:06d}.bin", b"x")
    manifest = s3batch_env.manifest_text("".join(f"big-bkt,objects/{n:06d}.bin\n" for n in range(OBJECTS)))
    operation = {"S3PutObjectTagging": {"TagSet": [{"Key": "tier", "Value": "cold"}]}}

    job = s3batch_env.run(operation, manifest)

    assert job["Status"] == "Complete"
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == OBJECTS
    assert s3batch_env.tags("big-bkt", f"objects/{OBJECTS - 1:06d}.bin") == {"tier": "cold"}
    (result,) = s3batch_env.report_manifest(job["JobId"])["Results"]
    assert s3batch_env.read("s3batch-reports", result["Key"]).count(b"\n") == OBJECTS
    # Per-task state is bounded: once a task's row is in the report, nothing of the task is kept.
    finished = s3batch_env.engine.job(job["JobId"])
    assert not any(finished.tasks) and len(finished.tasks) == OBJECTS
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == OBJECTS
