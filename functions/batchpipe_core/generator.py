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

from typing import Any

from batchpipe_core.generator_rules import generator_filter
from batchpipe_core.jobs import (
    CurrentAttempt,
    JobRunRef,
    JobSettings,
    SpecView,
    build_create_job_request,
    transient_as_retryable,
)

GENERATED_MANIFEST_FORMAT = "S3InventoryReport_CSV_20211130"


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
