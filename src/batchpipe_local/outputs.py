"""What a local run leaves behind: summary.json, the pipeline bucket at its keys, and objects.jsonl
describing every object of the other buckets (docs/LOCAL.md, "What a run leaves behind").

An output folder is only ever emptied of what this tool wrote there: each one holds a marker file
listing the entries the tool created, a non-empty folder without it is refused, and a later run
removes just the entries the marker lists."""

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

MARKER = ".batchpipe-out"
RUN_ENTRIES = ("summary.json", "objects.jsonl", "lambda-logs.jsonl")


class OutDirError(ValueError):
    """The output folder cannot be used without risking files this tool did not write."""


def prepare_out(out: Path, entries: tuple[str, ...] = RUN_ENTRIES) -> None:
    """Makes ``out`` ready for a new run: created if missing; if it is an earlier output folder (it
    holds the marker), the entries the marker lists are removed and nothing else; any other
    non-empty folder, and anything that is not a folder, is refused."""
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise OutDirError(f"--out {out} is not a folder: give a new or empty folder")
        if (out / MARKER).is_file():
            for name in _claimed(out):
                _remove(out / name)
        elif any(out.iterdir()):
            raise OutDirError(
                f"--out {out} is a non-empty folder that batchpipe did not create (no {MARKER} in it): "
                "give a new or empty folder; nothing was deleted"
            )
    out.mkdir(parents=True, exist_ok=True)
    _write_marker(out, list(entries))


def claim(out: Path, name: str) -> None:
    """Records one more entry of ``out`` as this tool's, before writing it."""
    claimed = _claimed(out)
    if name not in claimed:
        _write_marker(out, [*claimed, name])


def _claimed(out: Path) -> list[str]:
    try:
        names = json.loads((out / MARKER).read_text(encoding="utf-8"))["entries"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutDirError(
            f"{out / MARKER} is not a batchpipe marker ({exc}): give a new or empty folder"
        ) from None
    # Only plain names directly in the folder: a hand-edited marker must not reach outside it.
    return [
        n
        for n in names
        if isinstance(n, str) and n not in ("", ".", "..", MARKER) and "/" not in n and "\\" not in n
    ]


def _write_marker(out: Path, entries: list[str]) -> None:
    note = "Written by batchpipe: a later run with this --out removes the entries listed here, nothing else."
    (out / MARKER).write_text(
        json.dumps({"note": note, "entries": entries}, indent=2) + "\n", encoding="utf-8"
    )


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


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
    claim(out, stack.pipeline_bucket)
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
