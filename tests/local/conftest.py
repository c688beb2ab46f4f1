"""Fixtures of the local-emulation tests. S3 Batch engine fixtures are named ``s3batch_*``."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from batchpipe.local import inventory as inv
from batchpipe.local.s3batch import BatchEngine


def write_their_inventory(folder: Path, objects: Sequence[Any]) -> None:
    """A user's S3 Inventory folder as S3 delivers it: the objects of their-bucket, CSV, current
    versions, delivered 2026-11-01 (what `preview --inventory` and `local run --inventory` read)."""
    inv.write_inventory_dir(
        folder,
        source_bucket="their-bucket",
        dest_bucket="dest",
        dest_prefix="inv",
        config_id="cfg",
        objects=objects,
        fmt="CSV",
        versions="Current",
        delivery_time=datetime(2026, 11, 1, tzinfo=UTC),
    )


S3BATCH_ACCOUNT = "123456789012"
S3BATCH_REGION = "us-east-1"
S3BATCH_ROLE = f"arn:aws:iam::{S3BATCH_ACCOUNT}:role/batch-operations"


_S3BATCH_CLIENTS: dict[str, Any] = {}


def _s3batch_client(service: str) -> Any:
    """Clients are built once (about 0.1 s each) inside the first mock and reused by later mocks:
    they hold moto's fake credentials and moto's request hook from their creation."""
    if service not in _S3BATCH_CLIENTS:
        _S3BATCH_CLIENTS[service] = boto3.client(service, region_name=S3BATCH_REGION)
    return _S3BATCH_CLIENTS[service]


class S3BatchWorld:
    """Plain boto3 clients on moto plus one engine, and the chores every engine test repeats."""

    def __init__(self) -> None:
        self.s3 = _s3batch_client("s3")
        self.s3control = _s3batch_client("s3control")
        self.events: list[dict] = []
        self.engine: BatchEngine | None = None
        self.s3.create_bucket(Bucket="s3batch-manifests")
        self.s3.create_bucket(Bucket="s3batch-reports")

    def start(self, *, engine_defaults: bool = False, **options: Any) -> BatchEngine:
        """Installs and starts an engine. Its tests check its task accounting through the counts
        ProgressSummary gives, so they are given unless ``engine_defaults`` (the engine's unkind
        default withholds them: docs/LOCAL.md, "Unkind answers")."""
        options.setdefault("event_sink", self.events.append)
        if not engine_defaults:
            options.setdefault("withhold_counts", False)
        self.engine = BatchEngine(account_id=S3BATCH_ACCOUNT, region=S3BATCH_REGION, **options)
        self.engine.install()
        self.engine.start()
        return self.engine

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine.uninstall()

    def bucket(self, name: str, *, versioned: bool = False, object_lock: bool = False) -> str:
        if object_lock:
            self.s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        else:
            self.s3.create_bucket(Bucket=name)
        if versioned:
            self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def put(self, bucket: str, key: str, body: bytes = b"data", **extra: Any) -> str | None:
        return self.s3.put_object(Bucket=bucket, Key=key, Body=body, **extra).get("VersionId")

    def manifest(self, rows: Sequence[Sequence[str]], fields: Sequence[str] = ("Bucket", "Key")) -> dict:
        """Writes a CSV manifest (rows as given, no header) and returns CreateJob's ``Manifest``."""
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        return self.manifest_text(buffer.getvalue(), fields)

    def manifest_text(self, text: str, fields: Sequence[str] = ("Bucket", "Key")) -> dict:
        key = f"manifests/{uuid.uuid4().hex}.csv"
        etag = self.s3.put_object(Bucket="s3batch-manifests", Key=key, Body=text.encode())["ETag"]
        return {
            "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": list(fields)},
            "Location": {"ObjectArn": f"arn:aws:s3:::s3batch-manifests/{key}", "ETag": etag.strip('"')},
        }

    def report(self, prefix: str = "reports", scope: str = "AllTasks") -> dict:
        return {
            "Bucket": "arn:aws:s3:::s3batch-reports",
            "Format": "Report_CSV_20180820",
            "Enabled": True,
            "Prefix": prefix,
            "ReportScope": scope,
        }

    def create_job(self, operation: dict, manifest: dict, **request: Any) -> str:
        request.setdefault("Report", self.report())
        request.setdefault("Priority", 10)
        request.setdefault("ConfirmationRequired", False)
        request.setdefault("ClientRequestToken", uuid.uuid4().hex)
        response = self.s3control.create_job(
            AccountId=S3BATCH_ACCOUNT, Operation=operation, Manifest=manifest, RoleArn=S3BATCH_ROLE, **request
        )
        return response["JobId"]

    def describe(self, job_id: str, *, tries: int = 4) -> dict:
        """DescribeJob as the S3 guide advises a client to call it: NotFound on a new job is retried.

        (S3 user guide, "Troubleshooting Batch Operations": a job checked right after CreateJob may
        not be registered yet; the engine answers so by default.)
        """
        for _ in range(tries - 1):
            try:
                return self.s3control.describe_job(AccountId=S3BATCH_ACCOUNT, JobId=job_id)["Job"]
            except self.s3control.exceptions.NotFoundException:
                continue
        return self.s3control.describe_job(AccountId=S3BATCH_ACCOUNT, JobId=job_id)["Job"]

    def run(self, operation: dict, manifest: dict, **request: Any) -> dict:
        """Creates a job, waits until the engine is idle and returns DescribeJob's ``Job``."""
        job_id = self.create_job(operation, manifest, **request)
        assert self.engine is not None and self.engine.wait_idle(60)
        return self.describe(job_id)

    def read(self, bucket: str, key: str) -> bytes:
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def report_manifest(self, job_id: str, prefix: str = "reports") -> dict:
        return json.loads(self.read("s3batch-reports", f"{prefix}/job-{job_id}/manifest.json"))

    def report_lines(self, job_id: str, prefix: str = "reports") -> dict[str, list[str]]:
        """Lines of each results CSV, by TaskExecutionStatus."""
        manifest = self.report_manifest(job_id, prefix)
        return {
            result["TaskExecutionStatus"]: self.read(result["Bucket"], result["Key"]).decode().splitlines()
            for result in manifest["Results"]
        }

    def statuses(self, job_id: str) -> list[str]:
        return [
            event["detail"]["serviceEventDetails"]["status"]
            for event in self.events
            if event["detail"]["serviceEventDetails"]["jobId"] == job_id
        ]

    def tags(self, bucket: str, key: str, version: str | None = None) -> dict[str, str]:
        extra = {"VersionId": version} if version else {}
        tag_set = self.s3.get_object_tagging(Bucket=bucket, Key=key, **extra)["TagSet"]
        return {tag["Key"]: tag["Value"] for tag in tag_set}


@pytest.fixture
def s3batch_world() -> Iterator[S3BatchWorld]:
    """moto with the manifest and report buckets; call ``.start(...)`` to install an engine."""
    with mock_aws():
        world = S3BatchWorld()
        try:
            yield world
        finally:
            world.close()


@pytest.fixture
def s3batch_env(s3batch_world: S3BatchWorld) -> S3BatchWorld:
    """``s3batch_world`` with a default engine (percent decoding, no faults, counts given) installed."""
    s3batch_world.start()
    return s3batch_world
