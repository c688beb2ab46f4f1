"""CreateJob's ``ManifestGenerator``: S3 Batch lists the source bucket itself while the job is Preparing.

Semantics, from the S3 API reference (``S3JobManifestGenerator``, ``JobManifestGeneratorFilter``,
``KeyNameConstraint``, ``ObjectEncryptionFilter``, ``S3ManifestOutputLocation``,
``S3GeneratedManifestDescriptor``): every given filter member must hold (AND); within a list, any
value may match (the members are named ``MatchAny...``); ``CreatedAfter``/``CreatedBefore`` and the
two size bounds are strict ("after", "before", "greater than", "less than"); each
``KeyNameConstraint`` list and ``MatchAnyObjectEncryption`` hold exactly one value; the generated
manifest is written in ``S3InventoryReport_CSV_20211130`` format only if ``EnableManifestOutput`` is
true, and DescribeJob's ``GeneratedManifestDescriptor`` is filled in only after the generator ran.

Where the documentation is silent, the choice here is the one that assumes least:
* A key constraint compares the raw (decoded) object key, case-sensitively, as ListObjectsV2 returns it
  without ``EncodingType``: the reference says "appears at the start of the object key string".
* "Created" is the object's ``LastModified``: S3 objects are immutable, so a version's last
  modification is its creation (an in-place copy makes a new object with a new date).
* Only current versions are listed, never delete markers: ``S3JobManifestGenerator`` has no version
  option. The manifest names Bucket and Key only, so each task acts on the key's current version when
  it runs.
* The manifest goes to ``<ManifestPrefix>/job-<JobId>/manifest.json`` with its CSV.gz data under
  ``.../data/``, keys URL-encoded as in an S3 Inventory CSV (``batchpipe_core.keys.encode_key``, which
  never writes a bare ``+``). Callers must read the location from ``GeneratedManifestDescriptor``,
  never build it.
* ``EligibleForReplication`` ("eligible for replication according to the Replication configuration on
  the source bucket"): an object is eligible when an ``Enabled`` rule of the bucket's replication
  configuration selects it (the rule's ``Filter``: ``Prefix``, ``Tag`` or ``And`` of both; or the older
  rule-level ``Prefix``), whatever its replication status; a bucket without a configuration has none.
* ``ObjectReplicationStatuses``: HeadObject's ``x-amz-replication-status`` (``COMPLETE`` read as
  ``COMPLETED``, the API reference allowing both), ``NONE`` for an object that has none.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from batchpipe_core.keys import encode_key

from .errors import BadRequestException
from .manifest import ManifestError, parse_bucket_arn
from .tasks import Task

GENERATED_FORMAT = "S3InventoryReport_CSV_20211130"
GENERATED_SCHEMA = ("Bucket", "Key")
# Rows per data file of the generated manifest (S3 does not document its split; any split reads the same).
ROWS_PER_FILE = 100_000
# The API reference's valid values of MatchAnyStorageClass (S3StorageClass).
STORAGE_CLASSES = frozenset(
    {"STANDARD", "STANDARD_IA", "ONEZONE_IA", "GLACIER", "INTELLIGENT_TIERING", "DEEP_ARCHIVE", "GLACIER_IR"}
)
# ObjectEncryptionFilter members -> what HeadObject says of such an object.
_ENCRYPTION_MEMBERS = ("SSES3", "SSEKMS", "DSSEKMS", "SSEC", "NOTSSE")
_SSE_HEADER = {"AES256": "SSES3", "aws:kms": "SSEKMS", "aws:kms:dsse": "DSSEKMS"}
_REPLICATION_STATUSES = frozenset({"COMPLETED", "FAILED", "REPLICA", "NONE"})
# KeyNameConstraint's strings: NonEmptyMaxLength1024String in the API's model.
MAX_KEY_CONSTRAINT_CHARS = 1024
GENERATION_FAILED = "ManifestGenerationFailed"  # ours: no AWS source names this failure code


def validate(generator: dict) -> None:
    """What CreateJob refuses in a ``ManifestGenerator`` beyond botocore's model; BadRequestException."""
    spec = generator.get("S3JobManifestGenerator")
    if not spec:
        raise BadRequestException("ManifestGenerator must hold S3JobManifestGenerator")
    try:
        parse_bucket_arn(spec["SourceBucket"])
    except ValueError as exc:
        raise BadRequestException(f"S3JobManifestGenerator.SourceBucket: {exc}") from exc
    output = spec.get("ManifestOutputLocation")
    if spec["EnableManifestOutput"] and not output:
        raise BadRequestException("EnableManifestOutput is true but no ManifestOutputLocation is given")
    if output:
        try:
            parse_bucket_arn(output["Bucket"])
        except ValueError as exc:
            raise BadRequestException(f"ManifestOutputLocation.Bucket: {exc}") from exc
    filter_ = spec.get("Filter") or {}
    for name, values in (filter_.get("KeyNameConstraint") or {}).items():
        if len(values) != 1:
            raise BadRequestException(f"KeyNameConstraint.{name} takes exactly 1 string, got {len(values)}")
        if not 1 <= len(values[0]) <= MAX_KEY_CONSTRAINT_CHARS:
            raise BadRequestException(
                f"KeyNameConstraint.{name}: the string must be 1 to {MAX_KEY_CONSTRAINT_CHARS} characters"
            )
    unknown = set(filter_.get("MatchAnyStorageClass") or ()) - STORAGE_CLASSES
    if unknown:
        raise BadRequestException(f"Filter.MatchAnyStorageClass: {sorted(unknown)} not valid storage classes")
    unknown = set(filter_.get("ObjectReplicationStatuses") or ()) - _REPLICATION_STATUSES
    if unknown:
        raise BadRequestException(f"Filter.ObjectReplicationStatuses: {sorted(unknown)} not valid")
    for entry in filter_.get("MatchAnyObjectEncryption") or ():
        if len(entry) != 1 or next(iter(entry)) not in _ENCRYPTION_MEMBERS:
            raise BadRequestException("Filter.MatchAnyObjectEncryption: each entry names one encryption type")


def generate(s3: Any, generator: dict, *, account_id: str) -> list[Task]:
    """The tasks of the generated manifest, in listing order (key order). Raises ManifestError."""
    spec = generator["S3JobManifestGenerator"]
    bucket = parse_bucket_arn(spec["SourceBucket"])
    filter_ = spec.get("Filter") or {}
    try:
        rules = _replication_rules(bucket, account_id) if filter_.get("EligibleForReplication") else None
        return [
            Task(bucket, encode_key(key), "", key, None)
            for key, listed in _listing(s3, bucket)
            if _matches(s3, bucket, key, listed, filter_)
            and (rules is None or _eligible(s3, bucket, key, rules))
        ]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ManifestError(
            GENERATION_FAILED, f"Listing s3://{bucket} failed: {error.get('Code')} {error.get('Message', '')}"
        ) from exc


def write_output(s3: Any, generator: dict, job_id: str, tasks: list[Task], at: datetime) -> dict | None:
    """Writes the generated manifest if ``EnableManifestOutput``; DescribeJob's GeneratedManifestDescriptor."""
    spec = generator["S3JobManifestGenerator"]
    output = spec.get("ManifestOutputLocation")
    if not spec["EnableManifestOutput"] or not output:
        return None
    bucket = parse_bucket_arn(output["Bucket"])
    prefix = output.get("ManifestPrefix", "").rstrip("/")
    folder = f"{prefix}/job-{job_id}" if prefix else f"job-{job_id}"
    files = []
    for number, start in enumerate(range(0, max(len(tasks), 1), ROWS_PER_FILE)):
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerows([task.bucket, task.key] for task in tasks[start : start + ROWS_PER_FILE])
        data = gzip.compress(text.getvalue().encode(), mtime=0)
        key = f"{folder}/data/{number:05d}.csv.gz"
        s3.put_object(Bucket=bucket, Key=key, Body=data, **_encryption(output))
        files.append({"key": key, "size": len(data), "MD5checksum": hashlib.md5(data).hexdigest()})  # noqa: S324
    document = {
        "sourceBucket": parse_bucket_arn(spec["SourceBucket"]),
        "destinationBucket": output["Bucket"],
        "version": "2021-11-30",
        "creationTimestamp": str(int(at.timestamp() * 1000)),
        "fileFormat": "CSV",
        "fileSchema": ", ".join(GENERATED_SCHEMA),
        "files": files,
    }
    manifest_key = f"{folder}/manifest.json"
    etag = s3.put_object(
        Bucket=bucket, Key=manifest_key, Body=json.dumps(document).encode(), **_encryption(output)
    )["ETag"]
    arn_prefix = output["Bucket"].split(":::", 1)[0]
    return {
        "Format": output.get("ManifestFormat", GENERATED_FORMAT),
        "Location": {"ObjectArn": f"{arn_prefix}:::{bucket}/{manifest_key}", "ETag": etag.strip('"')},
    }


def _encryption(output: dict) -> dict:
    kms = (output.get("ManifestEncryption") or {}).get("SSEKMS")
    if kms:
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms["KeyId"]}
    return {"ServerSideEncryption": "AES256"}


def _listing(s3: Any, bucket: str) -> Iterator[tuple[str, dict]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents") or ():
            yield entry["Key"], entry


def _matches(s3: Any, bucket: str, key: str, listed: dict, filter_: dict) -> bool:
    created = listed["LastModified"]
    if "CreatedAfter" in filter_ and not created > _aware(filter_["CreatedAfter"]):
        return False
    if "CreatedBefore" in filter_ and not created < _aware(filter_["CreatedBefore"]):
        return False
    size = listed["Size"]
    if "ObjectSizeGreaterThanBytes" in filter_ and not size > filter_["ObjectSizeGreaterThanBytes"]:
        return False
    if "ObjectSizeLessThanBytes" in filter_ and not size < filter_["ObjectSizeLessThanBytes"]:
        return False
    classes = filter_.get("MatchAnyStorageClass")
    if classes and listed.get("StorageClass", "STANDARD") not in classes:
        return False
    constraint = filter_.get("KeyNameConstraint") or {}
    for name, test in (
        ("MatchAnyPrefix", str.startswith),
        ("MatchAnySuffix", str.endswith),
        ("MatchAnySubstring", str.__contains__),
    ):
        values = constraint.get(name)
        if values and not any(test(key, value) for value in values):
            return False
    encryptions = filter_.get("MatchAnyObjectEncryption")
    statuses = filter_.get("ObjectReplicationStatuses")
    if encryptions or statuses:
        head = _head(s3, bucket, key)
        if encryptions and _encryption_of(head) not in {next(iter(entry)) for entry in encryptions}:
            return False
        if statuses and _REPLICATION_AS.get(head.get("ReplicationStatus") or "NONE", "") not in statuses:
            return False
    return True


_REPLICATION_AS = {
    "COMPLETE": "COMPLETED",
    "COMPLETED": "COMPLETED",
    "PENDING": "PENDING",
    "FAILED": "FAILED",
    "REPLICA": "REPLICA",
    "NONE": "NONE",
}


def _replication_rules(bucket: str, account_id: str) -> list[dict]:
    """The Enabled rules of the bucket's replication configuration (none without one), each as
    ``{"prefix", "tags"}``.

    Read from moto's store, not through GetBucketReplication: moto 5's answer replaces every rule's
    Filter with ``{"Prefix": ""}``, which would make every object eligible (kinder than AWS). The store
    holds the request as parsed from its XML (a lone Tag is a dict, several a list).
    """
    from moto.s3.models import s3_backends

    # The bucket's owner: the caller's account, else whichever account moto keeps it under.
    owners = [account_id, *(account for account in s3_backends if account != account_id)]
    backend = next((s3_backends[a]["aws"] for a in owners if bucket in s3_backends[a]["aws"].buckets), None)
    configuration = (backend.get_bucket_replication(bucket) if backend else None) or {}
    rules = configuration.get("Rule") or []
    result = []
    for rule in rules if isinstance(rules, list) else [rules]:
        if rule.get("Status") != "Enabled":
            continue
        filter_ = rule.get("Filter")
        if filter_ is None:  # the older form: a rule-level Prefix
            result.append({"prefix": rule.get("Prefix") or "", "tags": {}})
            continue
        both = filter_.get("And") or {}
        pairs = filter_.get("Tag", both.get("Tag")) or []
        pairs = pairs if isinstance(pairs, list) else [pairs]
        prefix = filter_.get("Prefix", both.get("Prefix")) or ""
        result.append({"prefix": prefix, "tags": {pair["Key"]: pair.get("Value") or "" for pair in pairs}})
    return result


def _eligible(s3: Any, bucket: str, key: str, rules: list[dict]) -> bool:
    tags: dict[str, str] | None = None
    for rule in rules:
        if not key.startswith(rule["prefix"]):
            continue
        if rule["tags"] and tags is None:
            tag_set = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
            tags = {pair["Key"]: pair["Value"] for pair in tag_set}
        if all((tags or {}).get(name) == value for name, value in rule["tags"].items()):
            return True
    return False


def _head(s3: Any, bucket: str, key: str) -> dict:
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        # HeadObject of an SSE-C object without its key answers 400: that is what marks it SSE-C here.
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 400:
            return {"SSECustomerAlgorithm": "AES256"}
        raise


def _encryption_of(head: dict) -> str:
    if head.get("SSECustomerAlgorithm"):
        return "SSEC"
    return _SSE_HEADER.get(head.get("ServerSideEncryption") or "", "NOTSSE")


def _aware(moment: datetime | str) -> datetime:
    """A request timestamp as an aware datetime; one without a zone is UTC, as the API's are."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
