"""A run's objects from S3 Batch's own manifest generator instead of an inventory (issue #26 §2).

The spec's ``filter`` is translated into CreateJob's ``ManifestGenerator`` (``S3JobManifestGenerator``
with a ``JobManifestGeneratorFilter``; S3 API reference). The generator can express only part of the
filter, so every other field is refused by name, naming the source that supports it, rather than
silently widened. Translations keep the spec's meaning exactly:

* ``prefixes``/``suffixes``/``substrings`` -> ``KeyNameConstraint.MatchAnyPrefix``/``MatchAnySuffix``/
  ``MatchAnySubstring``; each "accepts an array of strings with a length of 1 string" (API reference,
  KeyNameConstraint; strings of 1-1,024 characters in its model): one of each per run. The generator
  compares the key as stored, case-sensitively, as every other source compares the decoded key.
* ``replicationStatuses`` -> ``ObjectReplicationStatuses`` (COMPLETED, FAILED, REPLICA, NONE: no
  PENDING, which only the inventory can select); ``eligibleForReplication`` -> ``EligibleForReplication``,
  which only the generator has.
* ``minSizeBytes``/``maxSizeBytes`` are inclusive; ``ObjectSizeGreaterThanBytes``/``LessThanBytes`` are
  strict, so the bounds move by one byte.
* ``modifiedAfter`` is inclusive and ``CreatedAfter`` strict ("created after this time"): the bound moves
  back one millisecond, finer than the second to which S3 records LastModified (ListObjectsV2 shows
  ``.000Z``), so no object moves in or out. ``modifiedBefore`` and ``CreatedBefore`` are both exclusive.
* ``storageClasses`` -> ``MatchAnyStorageClass``, whose valid values lack REDUCED_REDUNDANCY, OUTPOSTS
  and SNOW.
* ``encryptionStatuses`` -> ``MatchAnyObjectEncryption``, which holds exactly one entry.

The generator lists current versions only and its manifest names no version: ``latestOnly: false`` and
``versions: "pinned"`` are refused too.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import datetime, timedelta
from typing import Any

from batchpipe_core.csv_upload import CsvUpload
from batchpipe_core.errors import AccountingError
from batchpipe_core.jobs import (
    CurrentAttempt,
    JobRunRef,
    JobSettings,
    ManifestRef,
    SpecView,
    build_create_job_request,
    transient_as_retryable,
)
from batchpipe_core.keys import decode_key

# Keys shown by a dry run (as BuildManifest shows an inventory run's).
SAMPLE_KEYS = 20
GENERATED_MANIFEST_FORMAT = "S3InventoryReport_CSV_20211130"
# API reference, JobManifestGeneratorFilter.MatchAnyStorageClass (S3StorageClass).
GENERATOR_STORAGE_CLASSES = (
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "GLACIER",
    "INTELLIGENT_TIERING",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
)
# Inventory EncryptionStatus values -> ObjectEncryptionFilter members.
GENERATOR_ENCRYPTIONS = {
    "SSE-S3": "SSES3",
    "SSE-KMS": "SSEKMS",
    "DSSE-KMS": "DSSEKMS",
    "SSE-C": "SSEC",
    "NOT-SSE": "NOTSSE",
}
INVENTORY_SOURCE = "the inventory source (omit source)"
GENERATOR_SOURCE = 'source.bucket (S3 Batch\'s manifest generator: "source": {"bucket": "<name>"})'
# API reference, JobManifestGeneratorFilter.ObjectReplicationStatuses (ReplicationStatus).
GENERATOR_REPLICATION_STATUSES = ("COMPLETED", "FAILED", "REPLICA", "NONE")
# KeyNameConstraint members: spec field -> member; each list holds exactly one string.
GENERATOR_KEY_CONSTRAINTS = {
    "prefixes": "MatchAnyPrefix",
    "suffixes": "MatchAnySuffix",
    "substrings": "MatchAnySubstring",
}
_SINGULAR = {"prefixes": "prefix", "suffixes": "suffix", "substrings": "substring"}
# Filter fields only the manifest generator can evaluate: no inventory or table column says them.
GENERATOR_ONLY_FILTERS = {
    "eligibleForReplication": "eligibility under the bucket's replication configuration",
}
# Filter fields only an inventory (through Athena) can evaluate.
INVENTORY_ONLY_FILTERS = {
    "keyRegex": "a regular expression",
    "where": "an SQL predicate over inventory columns",
}


def generator_problems(filter_spec: dict[str, Any] | None) -> list[str]:
    """One line per filter field the manifest generator cannot apply as written, naming the fix."""
    filter_spec = filter_spec or {}
    problems = [
        f"filter.{name}: {what} needs {INVENTORY_SOURCE}; S3 Batch's manifest generator (source.bucket) "
        "filters only by key prefix, suffix and substring, size, storage class, creation time, encryption "
        "and replication"
        for name, what in INVENTORY_ONLY_FILTERS.items()
        if filter_spec.get(name) is not None
    ]
    for field, member in GENERATOR_KEY_CONSTRAINTS.items():
        values = filter_spec.get(field) or []
        if len(values) > 1:
            problems.append(
                f"filter.{field}: the manifest generator takes one {_SINGULAR[field]} (KeyNameConstraint.{member}), "
                f"got {len(values)}; run once per {_SINGULAR[field]}, or use {INVENTORY_SOURCE}"
            )
    statuses = [
        s for s in filter_spec.get("replicationStatuses") or [] if s not in GENERATOR_REPLICATION_STATUSES
    ]
    if statuses:
        problems.append(
            f"filter.replicationStatuses: the manifest generator cannot select {', '.join(statuses)}; use one of "
            f"{', '.join(GENERATOR_REPLICATION_STATUSES)}, or {INVENTORY_SOURCE}"
        )
    classes = [c for c in filter_spec.get("storageClasses") or [] if c not in GENERATOR_STORAGE_CLASSES]
    if classes:
        problems.append(
            f"filter.storageClasses: the manifest generator cannot select {', '.join(classes)}; use one of "
            f"{', '.join(GENERATOR_STORAGE_CLASSES)}, or {INVENTORY_SOURCE}"
        )
    encryptions = filter_spec.get("encryptionStatuses") or []
    if len(encryptions) > 1:
        problems.append(
            "filter.encryptionStatuses: the manifest generator takes one encryption status "
            f"(MatchAnyObjectEncryption holds 1 entry), got {len(encryptions)}; run once per status, "
            f"or use {INVENTORY_SOURCE}"
        )
    if filter_spec.get("latestOnly") is False:
        problems.append(
            "filter.latestOnly: the manifest generator lists current versions only; remove latestOnly: false, "
            f"or use {INVENTORY_SOURCE} with an all-versions inventory"
        )
    if filter_spec.get("versions") == "pinned":
        problems.append(
            'filter.versions: "pinned" needs version IDs, which the generated manifest does not list; '
            f'use "current", or {INVENTORY_SOURCE} with an all-versions inventory'
        )
    return problems


def one_source_problems(
    filter_spec: dict[str, Any] | None, fields: dict[str, str], *, only: str, use: str, source: str
) -> list[str]:
    """Filter ``fields`` (name -> what it reads) that only one source has, given on another ``source``:
    one line each, ``filter.<name>: <what> <only>; use <use>, not <source>``."""
    filter_spec = filter_spec or {}
    return [
        f"filter.{name}: {what} {only}; use {use}, not {source}"
        for name, what in fields.items()
        if filter_spec.get(name) is not None
    ]


def generator_only_problems(filter_spec: dict[str, Any] | None, source: str) -> list[str]:
    """Filter fields only the manifest generator applies, on another ``source``."""
    return one_source_problems(
        filter_spec,
        GENERATOR_ONLY_FILTERS,
        only="is known only to S3 Batch's manifest generator",
        use=GENERATOR_SOURCE,
        source=source,
    )


def generator_filter(filter_spec: dict[str, Any] | None) -> dict[str, Any]:
    """The ``JobManifestGeneratorFilter`` of a filter that ``generator_problems`` accepts."""
    filter_spec = filter_spec or {}
    result: dict[str, Any] = {}
    if filter_spec.get("modifiedAfter") is not None:
        result["CreatedAfter"] = _instant(filter_spec["modifiedAfter"]) - timedelta(milliseconds=1)
    if filter_spec.get("modifiedBefore") is not None:
        result["CreatedBefore"] = _instant(filter_spec["modifiedBefore"])
    constraint = {
        member: list(filter_spec[field])
        for field, member in GENERATOR_KEY_CONSTRAINTS.items()
        if filter_spec.get(field)
    }
    if constraint:
        result["KeyNameConstraint"] = constraint
    if filter_spec.get("minSizeBytes"):  # at least 0 bytes: every object, no condition
        result["ObjectSizeGreaterThanBytes"] = filter_spec["minSizeBytes"] - 1
    if filter_spec.get("maxSizeBytes") is not None:
        result["ObjectSizeLessThanBytes"] = filter_spec["maxSizeBytes"] + 1
    if filter_spec.get("storageClasses"):
        result["MatchAnyStorageClass"] = list(filter_spec["storageClasses"])
    if filter_spec.get("encryptionStatuses"):
        result["MatchAnyObjectEncryption"] = [
            {GENERATOR_ENCRYPTIONS[status]: {}} for status in filter_spec["encryptionStatuses"]
        ]
    if filter_spec.get("replicationStatuses"):
        result["ObjectReplicationStatuses"] = list(filter_spec["replicationStatuses"])
    if filter_spec.get("eligibleForReplication"):
        result["EligibleForReplication"] = True
    return result


def manifest_output_prefix(run_prefix: str) -> str:
    """Where S3 writes the generated manifest: in the run's own folder, beside its reports."""
    return f"{run_prefix}generated-manifest"


def manifest_generator(
    source_bucket: str, filter_spec: dict[str, Any] | None, run_prefix: str, settings: JobSettings
) -> dict[str, Any]:
    """CreateJob's ``ManifestGenerator`` for a run of ``source_bucket``, its manifest kept in the run's prefix."""
    partition = settings.partition
    spec: dict[str, Any] = {
        "ExpectedBucketOwner": settings.account_id,
        "SourceBucket": f"arn:{partition}:s3:::{source_bucket}",
        # Always written: the report join, the counts and reruns read the manifest the job ran on.
        "EnableManifestOutput": True,
        "ManifestOutputLocation": {
            "ExpectedManifestBucketOwner": settings.account_id,
            "Bucket": f"arn:{partition}:s3:::{settings.pipeline_bucket}",
            "ManifestPrefix": manifest_output_prefix(run_prefix),
            "ManifestEncryption": {"SSES3": {}},
            "ManifestFormat": GENERATED_MANIFEST_FORMAT,
        },
    }
    conditions = generator_filter(filter_spec)
    if conditions:
        spec["Filter"] = conditions
    return {"S3JobManifestGenerator": spec}


def with_manifest_generator(request: dict[str, Any], generator: dict[str, Any]) -> dict[str, Any]:
    """A CreateJob request (``jobs.build_create_job_request``) that lists its objects with ``generator``:
    CreateJob takes Manifest or ManifestGenerator, never both."""
    return {name: value for name, value in request.items() if name != "Manifest"} | {
        "ManifestGenerator": generator
    }


def _instant(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def create_job_request(
    spec: SpecView, run: JobRunRef, current: CurrentAttempt, settings: JobSettings
) -> dict[str, Any]:
    """The attempt's CreateJob request: a manifest generator for a spec.source run's first attempt,
    else (an inventory run, or a retry of a source run, whose manifest the report wrote) the manifest."""
    request = build_create_job_request(spec, run, current, settings)
    if not current.manifest.generated:
        return request
    if spec.source is None:
        raise ValueError("a generated manifest needs spec.source")
    return with_manifest_generator(
        request, manifest_generator(spec.source["bucket"], spec.filter, run.prefix, settings)
    )


def generated_manifest_location(s3control: Any, *, account_id: str, job_id: str) -> tuple[str, str] | None:
    """(bucket, key) of the job's generated manifest.json, or None while DescribeJob names none.

    The API reference (S3GeneratedManifestDescriptor) says only that jobs with a ManifestGenerator
    "populate details of this descriptor after execution of the ManifestGenerator", not whether that
    is before a ConfirmationRequired job is confirmed: callers handle both answers.
    """
    with transient_as_retryable("DescribeJob"):
        job = s3control.describe_job(AccountId=account_id, JobId=job_id)["Job"]
    location = (job.get("GeneratedManifestDescriptor") or {}).get("Location") or {}
    if not location.get("ObjectArn"):
        return None
    bucket, _, key = location["ObjectArn"].split(":::", 1)[1].partition("/")
    return bucket, key


def copy_generated_manifest(
    s3: Any, *, job_id: str, at: tuple[str, str], manifest: ManifestRef, objects: int | None
) -> dict[str, Any]:
    """The job's generated manifest (its manifest.json ``at``) as the run's own CSV manifest (at
    ``manifest``'s key); its ManifestRef, with the first SAMPLE_KEYS decoded keys as ``sample``.

    S3 writes the generated manifest in S3InventoryReport_CSV_20211130 form (a manifest.json naming
    CSV.gz files), which the report stage does not read and a later CreateJob cannot take as its
    Manifest (JobManifestSpec knows only the 20161130 inventory format). Copied into the plain
    Bucket,Key CSV every other run has, the report join, the retry manifests and the failures file
    work on it as on any run. Keys are copied as S3 wrote them (encoded), so report rows and manifest
    rows spell each key alike. The rows are the count; they must add up to S3's when S3 gave one.
    """
    bucket, key = at
    with transient_as_retryable("GetObject"):
        document = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    schema = [name.strip() for name in document["fileSchema"].split(",")]
    at_bucket, at_key = schema.index("Bucket"), schema.index("Key")
    upload = CsvUpload(s3, manifest.bucket, manifest.key)
    sample: list[str] = []
    try:
        for entry in document["files"]:
            # Streamed: a data file is never held whole, compressed or not.
            with transient_as_retryable("GetObject"):
                body = s3.get_object(Bucket=bucket, Key=entry["key"])["Body"]
                with gzip.GzipFile(fileobj=body) as raw, io.TextIOWrapper(raw, "utf-8", newline="") as text:
                    for row in csv.reader(text):
                        if row:
                            upload.writerow([row[at_bucket], row[at_key]])
                            if len(sample) < SAMPLE_KEYS:
                                sample.append(decode_key(row[at_key]))
    except BaseException:
        upload.abort()
        raise
    if objects is not None and upload.rows != objects:
        upload.abort()
        raise AccountingError(
            f"the generated manifest of job {job_id} lists {upload.rows} objects; S3 counted {objects}"
        )
    rows = upload.rows
    written = upload.close()
    assert written is not None  # never skipped: skip_if_empty is off
    return {
        "bucket": written.bucket,
        "key": written.key,
        "etag": written.etag,
        "objects": rows,
        "fields": ["Bucket", "Key"],
        "generated": False,
        "sample": sample,
    }
