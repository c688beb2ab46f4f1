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

The failures file lives in the pipeline bucket, where anyone allowed to write there could change it,
so its rows are input like any other: a row naming a bucket other than the one the stack's runs act
on (the source bucket of its InventoryPrefix, within SourceBuckets) refuses the rerun before a job
exists (the Batch role may reach every SourceBuckets member), and a
file that is not one (too big, a line too long, bytes that are not UTF-8, broken quoting) is refused
naming the file and the line (docs/LIMITS.md states the caps).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from batchpipe_core.csv_upload import CsvUpload
from batchpipe_core.errors import FailuresFileError, TooManyObjectsError
from batchpipe_core.keys import encode_key
from batchpipe_core.report import FAILURE_HEADER, READ_BUFFER_BYTES
from batchpipe_core.s3uri import s3_uri, split_s3_uri

SAMPLE_SIZE = 20
#: A failures file larger than this is refused before it is read: ImportFailures streams about
#: 3 GB in its 15 minutes (docs/LIMITS.md), and a file this large means the cause hit most objects.
MAX_FAILURES_BYTES = 2 * 1024**3
#: One line of a failures file at most (S3 keys are at most 1,024 bytes; the rest is an error
#: message). Reading a line is bounded by this, so a file without newlines never fills memory.
MAX_LINE_BYTES = 128 * 1024


def failure_rows(binary: Any, uri: str, size: int | None = None) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) for each record of a failures file after its header, checked to be one.

    ``line`` is the record's first line (a quoted key or message may hold newlines). Anything that
    makes the file unreadable is a FailuresFileError naming ``uri`` and the line, never a bare
    UnicodeDecodeError or csv.Error from somewhere inside the reader.
    """
    if size is not None and size > MAX_FAILURES_BYTES:
        raise FailuresFileError(
            f"{uri} is {size} bytes, more than a rerun reads ({MAX_FAILURES_BYTES} bytes, docs/LIMITS.md); "
            "a failures file that large means the cause hit most objects: start a new run from the inventory"
        )
    if not isinstance(binary, io.BufferedIOBase):
        binary = io.BufferedReader(binary, READ_BUFFER_BYTES)
    lines = _checked_lines(binary, uri)
    rows = csv.reader(lines)
    first = 1
    try:
        header = next(rows, None)
        if header != FAILURE_HEADER:
            raise FailuresFileError(
                f"{uri} line 1: is not the failures-file header {','.join(FAILURE_HEADER)}; "
                "rerun.failures takes a run's permanentFailures file (its summary names it)"
            )
        while True:
            first = rows.line_num + 1
            fields = next(rows, None)
            if fields is None:
                return
            if fields:
                yield first, fields
    except csv.Error as exc:
        raise FailuresFileError(
            f"{uri} line {first}: is not a CSV record ({exc}); "
            "rerun.failures takes a run's permanentFailures file, unchanged"
        ) from None


def _checked_lines(binary: Any, uri: str) -> Iterator[str]:
    """The file's lines as text, each read with a bounded readline and decoded on its own."""
    number = 0
    while line := binary.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise FailuresFileError(
                f"{uri} line {number}: longer than {MAX_LINE_BYTES} bytes (docs/LIMITS.md); "
                "rerun.failures takes a run's permanentFailures file, unchanged"
            )
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FailuresFileError(
                f"{uri} line {number}: byte {exc.start + 1} is not UTF-8; "
                "rerun.failures takes a run's permanentFailures file, unchanged"
            ) from None
        yield text.removeprefix("\ufeff") if number == 1 else text


def manifest_from_failures(
    s3: Any,
    *,
    failures_uri: str,
    error_codes: Iterable[str] | None,
    bucket: str,
    key: str,
    versioned: bool,
    max_objects: int,
    allowed_buckets: RerunBuckets,
) -> dict[str, Any]:
    """The ``manifest`` state document (BuildManifest's shape) for the rows of a failures file.

    ``objects`` is 0 (and nothing is written) when no row matches; more than ``max_objects`` rows
    is a TooManyObjectsError before any job exists, as for an inventory run. A row whose bucket is
    not in ``allowed_buckets`` (``rerun_buckets``) is a FailuresFileError, also before any job.
    """
    allowed = allowed_buckets
    source_bucket, source_key = split_s3_uri(failures_uri)
    wanted = frozenset(error_codes) if error_codes else None
    upload = CsvUpload(s3, bucket, key, skip_if_empty=True)
    sample: list[str] = []
    try:
        try:
            response = s3.get_object(Bucket=source_bucket, Key=source_key)
        except s3.exceptions.NoSuchKey:
            raise FailuresFileError(
                f"{failures_uri} does not exist; rerun.failures takes the permanentFailures URI of a run's "
                "summary, and the bucket's lifecycle rule deletes it after RetentionDays"
            ) from None
        rows = failure_rows(response["Body"], failures_uri, response.get("ContentLength"))
        for line, fields in rows:
            if len(fields) != len(FAILURE_HEADER):
                raise FailuresFileError(
                    f"{failures_uri} line {line}: {len(fields)} fields, expected {len(FAILURE_HEADER)}"
                )
            object_bucket, object_key, version_id, _status, error_code, _message = fields
            if wanted is not None and error_code not in wanted:
                continue
            check_bucket(object_bucket, allowed, failures_uri, line)
            upload.writerow(
                manifest_row(object_bucket, object_key, version_id, versioned, failures_uri, line)
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


@dataclass(frozen=True)
class RerunBuckets:
    """The bucket names a rerun may act on, and how a refusal describes them."""

    names: frozenset[str]
    described: str


def rerun_buckets(source_buckets: Iterable[str], inventory_prefix: str) -> RerunBuckets:
    """The buckets a rerun of this stack may act on: those its runs act on, within SourceBuckets.

    Every run of a stack selects from one inventory, and InventoryPrefix is, as S3 lays inventories
    out and template.yaml asks, ``<destination prefix>/<source bucket>/<configuration ID>``: so the
    rows of any failures file a run of this stack wrote name that one bucket. A stack parameter,
    unlike the file, cannot be edited by whoever can write the pipeline bucket. When the prefix has
    no bucket segment, SourceBuckets alone bounds the rerun.
    """
    allowed = frozenset(source_buckets)
    segments = inventory_prefix.strip("/").split("/")
    if len(segments) < 2:
        return RerunBuckets(allowed, "one of the stack's SourceBuckets")
    inventoried = segments[-2]
    return RerunBuckets(
        allowed & {inventoried},
        f"the bucket the stack's runs act on ({inventoried!r}, the source bucket of InventoryPrefix) "
        "within SourceBuckets",
    )


def check_bucket(bucket: str, allowed: RerunBuckets, source: str, line: int) -> None:
    """A row outside the buckets the stack's runs act on refuses the whole rerun: no job acts on any of it."""
    if bucket and bucket not in allowed.names:  # an empty bucket is manifest_row's to name
        raise FailuresFileError(
            f"{source} line {line}: bucket {bucket[:80]!r} is not {allowed.described} "
            f"({', '.join(sorted(allowed.names)) or 'none'}); no job was created. The file was changed after "
            "its run wrote it, or the stack's parameters changed: remove the row, or rerun on a stack whose "
            "SourceBuckets and InventoryPrefix name that bucket"
        )


def manifest_row(
    bucket: str, key: str, version_id: str, versioned: bool, source: str, line: int
) -> tuple[str, ...]:
    """One manifest row; a version ID this stack's manifests cannot carry is an error, never dropped.

    Dropping it would act on the object's current version instead of the one that failed.
    """
    if not bucket or not key:
        raise FailuresFileError(f"{source} line {line}: the bucket and key columns must not be empty")
    if versioned:
        # A failures row without a version ID came from a task on the null version (as retry manifests).
        return (bucket, encode_key(key), version_id or "null")
    if version_id:
        raise FailuresFileError(
            f"{source} line {line}: has version ID {version_id!r}, but this rerun's manifest has no "
            'VersionId field (rerun.versions "current", or InventoryVersions=Current); rerun it with '
            'rerun.versions "pinned" on a stack whose InventoryVersions is All or that reads an S3 Metadata '
            "live inventory table (MetadataTableBucket)"
        )
    return (bucket, encode_key(key))
