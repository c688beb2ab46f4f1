"""What S3 Batch's manifest generator can select, and the spec's filter in its terms (issue #26 §2).

The spec-side half of ``batchpipe_core.generator``: constants, refusals and the translation of a
filter into a ``JobManifestGeneratorFilter``, with no AWS call. ValidateSpec, the spec model and
PlanQuery's metadata-table SQL import this module only, so functions that never create or read a job
do not reach the job-side code (its S3 writes and DescribeJob), and their IAM policies stay as small
as their work (tests/template/test_iam_usage.py checks each policy against the code it reaches).
The translation rules are in ``batchpipe_core.generator``'s docstring.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

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


def _instant(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
