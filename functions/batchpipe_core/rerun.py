"""A run's failures file -> the manifest of a new run over exactly those objects (spec ``rerun``).

After fixing the cause of a run's permanent failures (a bucket policy, a missing KMS grant, archived
objects now restored), the objects to act on are already known: they are the rows of that run's
``permanent-failures.csv`` (``bucket,key,versionId,httpStatus,errorCode,message``, keys decoded).
Selecting them from the inventory again would re-process everything that already succeeded, so a
rerun turns the file into a manifest instead, optionally only the rows with given error codes:

    runs/retag/run-7/<start>/permanent-failures.csv  runs/retag/run-8/<start>/manifest.csv
    bucket,key,versionId,httpStatus,errorCode,...    src,photos/a%20b%2Bc.jpg
    src,photos/a b+c.jpg,,403,AccessDenied,...   ->  (errorCodes: ["AccessDenied"])
    src,gone.jpg,,404,NoSuchKey,...

Keys are encoded as every manifest of this stack is (``keys.encode_key``: percent- and form-decoding
both give the key back) and the VersionId field is present exactly when the stack's manifests have
it, so the jobs of a rerun are created like any other. The file is streamed and the manifest
uploaded in parts: memory does not grow with the number of rows.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any

from batchpipe_core.errors import FailuresFileError, TooManyObjectsError
from batchpipe_core.keys import encode_key
from batchpipe_core.report import FAILURE_HEADER, CsvUpload, s3_uri, split_s3_uri, text_stream

SAMPLE_SIZE = 20


def manifest_from_failures(
    s3: Any,
    *,
    failures_uri: str,
    error_codes: Iterable[str] | None,
    bucket: str,
    key: str,
    versioned: bool,
    max_objects: int,
) -> dict[str, Any]:
    """The ``manifest`` state document (BuildManifest's shape) for the rows of a failures file.

    ``objects`` is 0 (and nothing is written) when no row matches; more than ``max_objects`` rows
    is a TooManyObjectsError before any job exists, as for an inventory run.
    """
    source_bucket, source_key = split_s3_uri(failures_uri)
    wanted = frozenset(error_codes) if error_codes else None
    upload = CsvUpload(s3, bucket, key, skip_if_empty=True)
    sample: list[str] = []
    try:
        try:
            body = s3.get_object(Bucket=source_bucket, Key=source_key)["Body"]
        except s3.exceptions.NoSuchKey:
            raise FailuresFileError(
                f"{failures_uri} does not exist; rerun.failures takes the permanentFailures URI of a run's "
                "summary, and the bucket's lifecycle rule deletes it after RetentionDays"
            ) from None
        with text_stream(body) as text:
            rows = csv.reader(text)
            header = next(rows, None)
            if header != FAILURE_HEADER:
                raise FailuresFileError(
                    f"{failures_uri} does not start with the failures-file header {','.join(FAILURE_HEADER)}; "
                    "rerun.failures takes a run's permanentFailures file (its summary names it)"
                )
            for record, fields in enumerate(rows, start=2):  # the header is record 1
                if not fields:
                    continue
                if len(fields) != len(FAILURE_HEADER):
                    raise FailuresFileError(
                        f"{failures_uri} record {record}: {len(fields)} fields, expected {len(FAILURE_HEADER)}"
                    )
                object_bucket, object_key, version_id, _status, error_code, _message = fields
                if wanted is not None and error_code not in wanted:
                    continue
                upload.writerow(
                    manifest_row(object_bucket, object_key, version_id, versioned, failures_uri, record)
                )
                if upload.rows > max_objects:
                    raise TooManyObjectsError(
                        f"{failures_uri} lists more than maxObjects ({max_objects}) objects to rerun; no job "
                        "was created. Raise maxObjects in the spec or narrow rerun.errorCodes."
                    )
                if len(sample) < SAMPLE_SIZE:
                    sample.append(object_key)
    except BaseException:
        upload.abort()
        raise
    uploaded = upload.close()
    result: dict[str, Any] = {
        "location": None,
        "bucket": bucket,
        "key": None,
        "etag": None,
        "objects": 0,
        "sizeBytes": 0,
        "bytesScanned": 0,  # no Athena query: the objects are listed already
        "sample": sample,
    }
    if uploaded is None:
        return result
    return result | {
        "location": s3_uri(uploaded.bucket, uploaded.key),
        "key": uploaded.key,
        "etag": uploaded.etag,
        "objects": uploaded.rows,
        "sizeBytes": uploaded.size,
    }


def manifest_row(
    bucket: str, key: str, version_id: str, versioned: bool, source: str, record: int
) -> tuple[str, ...]:
    """One manifest row; a version ID this stack's manifests cannot carry is an error, never dropped.

    Dropping it would act on the object's current version instead of the one that failed.
    """
    if not bucket or not key:
        raise FailuresFileError(f"{source} record {record}: the bucket and key columns must not be empty")
    if versioned:
        # A failures row without a version ID came from a task on the null version (as retry manifests).
        return (bucket, encode_key(key), version_id or "null")
    if version_id:
        raise FailuresFileError(
            f"{source} record {record}: has version ID {version_id!r}, but this rerun's manifest has no "
            'VersionId field (rerun.versions "current", or InventoryVersions=Current); rerun it with '
            'rerun.versions "pinned" on a stack whose InventoryVersions is All'
        )
    return (bucket, encode_key(key))
