"""What a local run leaves behind (BRIEF section 5): summary.json, the pipeline bucket at its keys,
and objects.jsonl describing every object of the other buckets."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from .lambdas import code_root


def prepare_out(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)


@contextmanager
def lambda_logs_to(path: Path) -> Iterator[None]:
    """The handlers' structured logs (Powertools, JSON lines) go to a file instead of stdout, where
    they would interleave with the progress and break `--json`."""
    sys.path.insert(0, str(code_root("functions/")))
    from batchpipe_core.observability import logger

    handler = logger.registered_handler
    with open(path, "a", encoding="utf-8") as fh:
        # Not setStream(): it flushes the old stream, which a test harness may have closed already.
        with handler.lock:
            previous, handler.stream = handler.stream, fh
        try:
            yield
        finally:
            with handler.lock:
                handler.stream = sys.stderr if getattr(previous, "closed", False) else previous


def write_outputs(stack: Any, out: Path, summary: dict, *, exclude_buckets: set[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    s3 = stack.client("s3")
    mirror_bucket(s3, stack.pipeline_bucket, out / stack.pipeline_bucket)
    with open(out / "objects.jsonl", "w", encoding="utf-8") as fh:
        for bucket in sorted(b["Name"] for b in s3.list_buckets()["Buckets"]):
            if bucket in exclude_buckets:
                continue
            for record in describe_objects(s3, bucket):
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def mirror_bucket(s3: Any, bucket: str, target: Path) -> None:
    """The pipeline's own keys are safe as paths (it writes them); anything else is refused."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            path = (target / key).resolve()
            if not path.is_relative_to(target.resolve()) or key.endswith("/"):
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(path))


def _tags(s3: Any, kwargs: dict) -> list[dict]:
    try:
        return s3.get_object_tagging(**kwargs)["TagSet"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "InvalidObjectState":
            raise
    # moto refuses GetObjectTagging on archived objects; S3 answers it (tags are not object data).
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    key = backend.get_object(kwargs["Bucket"], kwargs["Key"], version_id=kwargs.get("VersionId"))
    return backend.get_object_tagging(key)["Tags"]


def describe_objects(s3: Any, bucket: str) -> Iterator[dict]:
    """Every object version with its tags and metadata; keys stay data, never file paths."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            key, version_id = version["Key"], version.get("VersionId")
            kwargs = {"Bucket": bucket, "Key": key}
            if version_id and version_id != "null":
                kwargs["VersionId"] = version_id
            try:
                tags = _tags(s3, kwargs)
                head = s3.head_object(**kwargs)
            except ClientError as exc:
                yield {"bucket": bucket, "key": key, "version": version_id, "error": str(exc)}
                continue
            yield {
                "bucket": bucket,
                "key": key,
                "version": version_id,
                "isLatest": version.get("IsLatest"),
                "size": version.get("Size"),
                "storageClass": version.get("StorageClass", "STANDARD"),
                "tags": {t["Key"]: t["Value"] for t in tags},
                "metadata": head.get("Metadata", {}),
                "restore": head.get("Restore"),
                "legalHold": head.get("ObjectLockLegalHoldStatus"),
                "retention": {
                    "mode": head.get("ObjectLockMode"),
                    "until": str(head["ObjectLockRetainUntilDate"])
                    if head.get("ObjectLockRetainUntilDate")
                    else None,
                },
            }
        for marker in page.get("DeleteMarkers", []):
            yield {
                "bucket": bucket,
                "key": marker["Key"],
                "version": marker.get("VersionId"),
                "deleteMarker": True,
            }
