"""Reads a job's manifest into tasks, as S3 does while the job is Preparing.

Two formats (S3 user guide, "Specifying a manifest"): ``S3BatchOperations_CSV_20180820`` (no header, columns
named by ``Spec.Fields``) and ``S3InventoryReport_CSV_20161130`` (an S3 Inventory manifest.json whose
gzipped CSV data files list the objects, columns named by its ``fileSchema``). Keys are URL-encoded in
both; whether S3 reads ``+`` as a space is unverified, so the decoding is a setting.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from botocore.exceptions import ClientError

from batchpipe_core.keys import decode_key

from .tasks import Task

CSV_FORMAT = "S3BatchOperations_CSV_20180820"
INVENTORY_FORMAT = "S3InventoryReport_CSV_20161130"
KEY_DECODINGS = ("percent", "form")

# The job failure codes below are ours: no AWS source names the codes S3 reports for these cases.
ETAG_MISMATCH = "ManifestETagMismatch"
MANIFEST_NOT_READABLE = "ManifestNotReadable"
INVALID_MANIFEST = "InvalidManifest"


class ManifestError(Exception):
    """The job cannot be prepared: it fails with this failure code and reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def parse_object_arn(arn: str) -> tuple[str, str]:
    """``arn:aws:s3:::bucket/key`` -> (bucket, key); ValueError if it is not an object ARN."""
    prefix, sep, resource = arn.partition(":::")
    bucket, slash, key = resource.partition("/")
    if not sep or not prefix.startswith("arn:") or not prefix.endswith(":s3") or not slash or not bucket:
        raise ValueError(f"{arn!r} is not an S3 object ARN (arn:aws:s3:::bucket/key)")
    return bucket, key


def parse_bucket_arn(arn: str) -> str:
    """``arn:aws:s3:::bucket`` -> bucket; ValueError otherwise."""
    prefix, sep, bucket = arn.partition(":::")
    if not sep or not prefix.startswith("arn:") or not prefix.endswith(":s3") or not bucket or "/" in bucket:
        raise ValueError(f"{arn!r} is not an S3 bucket ARN (arn:aws:s3:::bucket)")
    return bucket


def read_tasks(s3: Any, manifest: dict, *, key_decoding: str) -> list[Task]:
    """Every task of the manifest, in manifest order. Raises ManifestError."""
    location, spec = manifest["Location"], manifest["Spec"]
    body = _read_manifest_object(s3, location)
    plus_is_space = key_decoding == "form"
    if spec["Format"] == CSV_FORMAT:
        rows = _csv_rows(body.decode("utf-8-sig"))
        return list(_tasks(rows, spec.get("Fields") or [], plus_is_space, empty_version_is_null=False))
    if spec["Format"] == INVENTORY_FORMAT:
        fields, rows = _inventory_rows(s3, body)
        return list(_tasks(rows, fields, plus_is_space, empty_version_is_null=True))
    raise ManifestError(INVALID_MANIFEST, f"Manifest format {spec['Format']!r} is not supported")


def _read_manifest_object(s3: Any, location: dict) -> bytes:
    bucket, key = parse_object_arn(location["ObjectArn"])
    request = {"Bucket": bucket, "Key": key}
    if location.get("ObjectVersionId"):
        request["VersionId"] = location["ObjectVersionId"]
    try:
        response = s3.get_object(**request)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        raise ManifestError(
            MANIFEST_NOT_READABLE,
            f"Reading the manifest {location['ObjectArn']} failed: {status} {error.get('Code')} "
            f"{error.get('Message', '')}".rstrip(),
        ) from exc
    actual, expected = response["ETag"].strip('"'), location["ETag"].strip('"')
    if actual != expected:
        raise ManifestError(
            ETAG_MISMATCH,
            f"The ETag of the manifest object ({actual}) does not match the ETag of the job's "
            f"manifest location ({expected})",
        )
    return response["Body"].read()


def _csv_rows(text: str) -> Iterator[list[str]]:
    return (row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row))


def _inventory_rows(s3: Any, body: bytes) -> tuple[list[str], Iterator[list[str]]]:
    try:
        report = json.loads(body)
        file_format = report["fileFormat"]
        fields = [name.strip() for name in report["fileSchema"].split(",")]
        bucket = parse_bucket_arn(report["destinationBucket"])
        files = report["files"]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ManifestError(INVALID_MANIFEST, f"The inventory manifest.json is not valid: {exc}") from exc
    if file_format != "CSV":
        raise ManifestError(
            INVALID_MANIFEST, f"Inventory report format {file_format!r} is not CSV ({INVENTORY_FORMAT})"
        )
    return fields, _rows_of_files(s3, bucket, files)


def _rows_of_files(s3: Any, bucket: str, files: Iterable[dict]) -> Iterator[list[str]]:
    for entry in files:
        try:
            data = s3.get_object(Bucket=bucket, Key=entry["key"])["Body"].read()
        except ClientError as exc:
            raise ManifestError(
                MANIFEST_NOT_READABLE, f"Reading inventory file s3://{bucket}/{entry['key']} failed: {exc}"
            ) from exc
        if entry.get("MD5checksum") and hashlib.md5(data).hexdigest() != entry["MD5checksum"]:  # noqa: S324
            raise ManifestError(
                INVALID_MANIFEST, f"Inventory file {entry['key']} does not match its MD5checksum"
            )
        yield from _csv_rows(gzip.decompress(data).decode("utf-8"))


def _tasks(
    rows: Iterable[list[str]], fields: list[str], plus_is_space: bool, *, empty_version_is_null: bool
) -> Iterator[Task]:
    columns = {name: index for index, name in enumerate(fields) if name != "Ignore"}
    if "Bucket" not in columns or "Key" not in columns:
        raise ManifestError(INVALID_MANIFEST, f"Manifest fields {fields} must name Bucket and Key")
    bucket_at, key_at, version_at = columns["Bucket"], columns["Key"], columns.get("VersionId")
    for number, row in enumerate(rows, start=1):
        if len(row) != len(fields):
            raise ManifestError(
                INVALID_MANIFEST, f"Manifest row {number} has {len(row)} fields; the manifest names {fields}"
            )
        bucket, key = row[bucket_at], row[key_at]
        if not bucket or not key:
            raise ManifestError(INVALID_MANIFEST, f"Manifest row {number} has no bucket or no key")
        version_field = row[version_at] if version_at is not None else ""
        # An inventory lists the null version of an object with an empty version ID; a CSV manifest
        # row with an empty version ID addresses the current version.
        version_id = version_field or ("null" if empty_version_is_null and version_at is not None else None)
        yield Task(bucket, key, version_field, decode_key(key, plus_is_space=plus_is_space), version_id)
