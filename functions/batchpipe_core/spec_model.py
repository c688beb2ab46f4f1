"""The job spec's model (README, "Job spec reference"): its sections, the cross-field rules, and the
error lines a bad spec gets.

The models say only what the user wrote (``None`` = not given); ``batchpipe_core.spec.normalize_spec``
fills the stack's defaults. Every field is strict (``"3"`` is not 3, ``1`` is not ``true``) and unknown
fields are errors, because a typo in a spec that acts on a billion objects must fail loudly, not be
ignored. Error lines read ``<field path>: <what is wrong>; <how to fix it>`` and are all reported at once.
"""

from __future__ import annotations

import difflib
from datetime import datetime
from typing import Annotated, Any

from aws_lambda_powertools.utilities.parser import parse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from batchpipe_core import metadata_table
from batchpipe_core.errors import SpecValidationError, shown
from batchpipe_core.generator_rules import (
    GENERATOR_KEY_CONSTRAINTS,
    GENERATOR_ONLY_FILTERS,
    GENERATOR_REPLICATION_STATUSES,
    GENERATOR_STORAGE_CLASSES,
    INVENTORY_ONLY_FILTERS,
)
from batchpipe_core.inventory_layout import INVENTORY_COLUMNS, VERSIONS_PINNED
from batchpipe_core.operation import operation_errors, operation_names
from batchpipe_core.spec_document import document_problems, field_path
from batchpipe_core.spec_fields import (
    CONCURRENCY_MODES,
    DEFAULT_NAME,
    LATEST,
    REPORT_SCOPES,
    AthenaName,
    Attempts,
    BucketName,
    Bytes,
    Concurrency,
    Count,
    EncryptionStatus,
    ErrorCode,
    FailuresUri,
    InventoryDate,
    KeyRegex,
    MetadataKey,
    MetadataValue,
    NonEmptyUnique,
    Prefix,
    Priority,
    ReplicationStatus,
    ReportScope,
    RunName,
    Seconds,
    StorageClass,
    Substring,
    Suffix,
    TagKey,
    TagValue,
    Timestamp,
    UniquePairs,
    Versions,
    problem,
    problem_lines,
)
from batchpipe_core.where import normalize_where

# Where filter.where may name any column of either table; ValidateSpec then checks the run's own.
_ANY_SOURCE_COLUMNS = tuple(dict.fromkeys(INVENTORY_COLUMNS + metadata_table.WHERE_COLUMNS))
_EXAMPLE_OPERATION = '{"S3PutObjectTagging": {"TagSet": [{"Key": "project", "Value": "blue"}]}}'


class _SpecModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, validate_by_alias=True, validate_by_name=False
    )


def _about(description: str, default: Any = None) -> Any:
    """A field's description and real default for the spec's JSON Schema. The model's own default stays
    None ("not given"): normalize_spec fills it, some from the stack's parameters."""
    extra = {"default": default} if default is not None else None
    return Field(None, description=description, json_schema_extra=extra)


# Defaults the stack's parameters give (template.yaml's own defaults; a stack may deploy others).
PARAMETER_DEFAULTS: dict[str, Any] = {
    "MaxAttempts": 3,
    "BackoffSeconds": 300,
    "DefaultPriority": 10,
    "DefaultMaxObjects": 1_000_000_000,
}


class InventorySpec(_SpecModel):
    """The S3 Inventory table to select from (default: the stack's)."""

    database: AthenaName | None = _about(
        "Glue database of the inventory table; default: the stack's database"
    )
    table: AthenaName | None = _about("Glue table of the inventory; default: the stack's inventory table")
    date: InventoryDate | None = _about(
        '"latest" (the newest complete delivery), a day YYYY-MM-DD (its newest delivery) or an inventory '
        "partition YYYY-MM-DD-HH-MM",
        LATEST,
    )


class MetadataTableSpec(_SpecModel):
    """The bucket's S3 Metadata live inventory table (batchpipe_core.metadata_table). Every field
    defaults to the stack's (MetadataTableBucket, MetadataTableNamespace); a value given must be it."""

    bucket: BucketName | None = _about(
        "the bucket whose table it is; default and only value: the stack's MetadataTableBucket"
    )
    catalog: StrictStr | None = _about(
        "Athena's catalog of the table; default and only value: s3tablescatalog/aws-s3"
    )
    namespace: StrictStr | None = _about(
        "the table's namespace; default and only value: the stack's MetadataTableNamespace (b_<bucket>)"
    )
    table: StrictStr | None = _about("the table's name; default and only value: inventory")


def _given_as(part: str, kind: str) -> dict[str, Any]:
    """JSON Schema's "this spec gives <part> as a <kind>" (null is "not given", as to the model)."""
    return {"required": [part], "properties": {part: {"type": kind}}}


class SourceSpec(_SpecModel):
    """Where a run's objects come from instead of the S3 Inventory: the bucket itself, listed by S3
    Batch Operations (batchpipe_core.generator), or its S3 Metadata live inventory table."""

    model_config = ConfigDict(
        json_schema_extra=lambda schema: schema.update(
            oneOf=[_given_as("bucket", "string"), _given_as("metadataTable", "object")]
        )
    )

    bucket: BucketName | None = _about(
        "the bucket S3 Batch's manifest generator lists (the source bucket of the stack's "
        "InventoryPrefix, within SourceBuckets); its name, not an ARN or s3:// URI"
    )
    metadata_table: MetadataTableSpec | None = _about(
        "instead of bucket: select from the bucket's S3 Metadata live inventory table ({} for the stack's), "
        "with every filter field plus tags and metadata"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SourceSpec:
        if (self.bucket is None) == (self.metadata_table is None):
            raise problem(
                'give exactly one of bucket (S3 Batch lists the bucket: {"bucket": "<name>"}) and '
                'metadataTable (its S3 Metadata live inventory table: {"metadataTable": {}})'
            )
        return self


class TagPair(_SpecModel):
    """A tag: ``key`` with ``value``, or ``key`` alone for "present, whatever its value"."""

    key: TagKey = Field(description="the tag's key, exactly (case-sensitive)")
    value: TagValue | None = _about("the tag's value, exactly; omitted: any value (the key is present)")


class MetadataPair(_SpecModel):
    """A user-defined metadata entry: ``key`` with ``value``, or ``key`` alone for "present"."""

    key: MetadataKey = Field(description="the metadata name in lowercase, without x-amz-meta-")
    value: MetadataValue | None = _about("the value, exactly; omitted: any value (the name is present)")


class _MapFilter(_SpecModel):
    model_config = ConfigDict(
        json_schema_extra=lambda schema: schema.update(
            anyOf=[_given_as("allOf", "array"), _given_as("anyOf", "array"), _given_as("absent", "array")]
        )
    )

    @model_validator(mode="after")
    def _something(self) -> _MapFilter:
        if all(getattr(self, name) is None for name in ("all_of", "any_of", "absent")):
            raise problem("give at least one of allOf, anyOf and absent (or omit the field)")
        return self


class TagFilterSpec(_MapFilter):
    """filter.tags: every pair of allOf, at least one of anyOf, none of the keys in absent."""

    all_of: Annotated[list[TagPair], UniquePairs] | None = _about("objects with every one of these tags")
    any_of: Annotated[list[TagPair], UniquePairs] | None = _about("objects with at least one of these tags")
    absent: Annotated[list[TagKey], NonEmptyUnique] | None = _about("objects with none of these tag keys")


class MetadataFilterSpec(_MapFilter):
    """filter.metadata: as filter.tags, over the object's user-defined metadata."""

    all_of: Annotated[list[MetadataPair], UniquePairs] | None = _about("objects with every one of these")
    any_of: Annotated[list[MetadataPair], UniquePairs] | None = _about("objects with at least one of these")
    absent: Annotated[list[MetadataKey], NonEmptyUnique] | None = _about("objects with none of these names")


class FilterSpec(_SpecModel):
    """Which inventory rows to act on; every condition given must hold (omitted: no condition)."""

    # Field order matters: a cross-field check runs on the later field of the pair.
    prefixes: Annotated[list[Prefix], NonEmptyUnique] | None = _about("keys starting with any of these")
    suffixes: Annotated[list[Suffix], NonEmptyUnique] | None = _about(
        "keys ending with any of these, compared as the key reads (case-sensitive), e.g. .jpg"
    )
    substrings: Annotated[list[Substring], NonEmptyUnique] | None = _about(
        "keys containing any of these anywhere, compared as the key reads (case-sensitive)"
    )
    key_regex: KeyRegex | None = _about(
        "Java-style regular expression the decoded key must match (Athena's regexp_like), e.g. \\.jpe?g$"
    )
    storage_classes: Annotated[list[StorageClass], NonEmptyUnique] | None = _about(
        "objects in any of these storage classes"
    )
    min_size_bytes: Bytes | None = _about("objects of at least this many bytes")
    max_size_bytes: Bytes | None = _about("objects of at most this many bytes (not below minSizeBytes)")
    modified_before: Timestamp | None = _about(
        "objects last modified before this UTC time, e.g. 2024-01-01T00:00:00Z"
    )
    modified_after: Timestamp | None = _about(
        "objects last modified at or after this UTC time (earlier than modifiedBefore)"
    )
    encryption_statuses: Annotated[list[EncryptionStatus], NonEmptyUnique] | None = _about(
        "objects with any of these inventory encryption statuses"
    )
    replication_statuses: Annotated[list[ReplicationStatus], NonEmptyUnique] | None = _about(
        "objects with any of these replication statuses (NONE: not part of any replication); the inventory "
        "and source.bucket only"
    )
    eligible_for_replication: StrictBool | None = Field(
        None,
        description="source.bucket only: objects the source bucket's replication configuration would "
        "replicate (the manifest generator's EligibleForReplication); true, or omit it",
        json_schema_extra={"anyOf": [{"type": "boolean", "const": True}, {"type": "null"}]},
    )
    latest_only: StrictBool | None = _about(
        "versioned inventories: only current versions (delete markers are never selected)", True
    )
    versions: Versions | None = _about(
        'all-versions inventories with latestOnly: "pinned" acts on the version the inventory listed, '
        '"current" on each key\'s current version when the job runs; default: "pinned" on a stack with '
        'InventoryVersions=All, "current" otherwise (the only choice there)'
    )
    where: StrictStr | None = _about(
        "a boolean SQL predicate over the inventory columns, e.g. size > 0 AND replication_status = 'FAILED' "
        "(no statements, subqueries, comments or ;)"
    )
    tags: TagFilterSpec | None = _about(
        "S3 Metadata source only (source.metadataTable): the object's tags, e.g. "
        '{"allOf": [{"key": "project", "value": "atlas"}], "absent": ["legal hold"]}'
    )
    metadata: MetadataFilterSpec | None = _about(
        "S3 Metadata source only (source.metadataTable): the object's user-defined metadata, as tags"
    )

    @field_validator("max_size_bytes")
    @classmethod
    def _not_below_min(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_size_bytes")
        if value is not None and low is not None and value < low:
            raise problem(f"{value} is below filter.minSizeBytes ({low}); raise it or lower minSizeBytes")
        return value

    @field_validator("modified_after")
    @classmethod
    def _before_modified_before(cls, value: str | None, info: ValidationInfo) -> str | None:
        before = info.data.get("modified_before")
        if value is not None and before is not None and _instant(value) >= _instant(before):
            raise problem(
                f"{value} is not earlier than filter.modifiedBefore ({before}); swap them or widen the range"
            )
        return value

    @field_validator("eligible_for_replication")
    @classmethod
    def _only_true(cls, value: bool | None) -> bool | None:
        if value is False:
            raise problem(
                "false is not a condition the manifest generator can apply (it selects eligible objects only); "
                "omit eligibleForReplication to select objects whatever their eligibility"
            )
        return value

    @field_validator("where")
    @classmethod
    def _single_condition(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return normalize_where(value, _ANY_SOURCE_COLUMNS)
        except SpecValidationError as error:
            raise problem_lines(str(error).splitlines()) from None


class RerunSpec(_SpecModel):
    """Objects from a previous run's failures file instead of the inventory (batchpipe_core.rerun)."""

    failures: FailuresUri = Field(
        description="s3:// URI of a run's failures file (its summary's permanentFailures) in the stack's "
        "pipeline bucket"
    )
    error_codes: Annotated[list[ErrorCode], NonEmptyUnique] | None = _about(
        "only the failures file's rows with these error codes, e.g. AccessDenied (omitted: every row)"
    )
    versions: Versions | None = _about(
        'as filter.versions: "current" for a failures file of a "current" run (its version IDs are empty); '
        "default: the stack's filter.versions default"
    )


class ReportSpec(_SpecModel):
    """The S3 Batch Operations completion report."""

    scope: ReportScope | None = _about(
        "AllTasks (every object: the audit trail) or FailedTasksOnly", REPORT_SCOPES[0]
    )


class RetrySpec(_SpecModel):
    """Reruns of the retriable failures (503 SlowDown, throttling, 500) as new jobs."""

    max_attempts: Attempts | None = _about(
        "jobs per run: the first plus reruns of retriable failures; default: the stack's MaxAttempts",
        PARAMETER_DEFAULTS["MaxAttempts"],
    )
    backoff_seconds: Seconds | None = _about(
        "wait before the first rerun, doubling each time; default: the stack's BackoffSeconds",
        PARAMETER_DEFAULTS["BackoffSeconds"],
    )


class JobSpec(_SpecModel):
    """A batchpipe job spec: which objects, and the one S3 Batch Operations operation to run on them."""

    model_config = ConfigDict(json_schema_extra=lambda schema: schema.update(allOf=_EXCLUSIONS))

    name: RunName | None = _about(
        "run name: the S3 prefix runs/<name>/<execution>/<start>/, job tags and the run lock's name",
        DEFAULT_NAME,
    )
    inventory: InventorySpec | None = _about("the S3 Inventory table to select from; default: the stack's")
    source: SourceSpec | None = _about(
        "instead of an inventory: S3 Batch's manifest generator lists this bucket inside the job "
        "(a subset of filter; no inventory), or its S3 Metadata live inventory table"
    )
    filter: FilterSpec | None = _about("which inventory rows to act on (omitted: every object)")
    rerun: RerunSpec | None = _about(
        "instead of inventory, source and filter: act on the objects of a previous run's failures file"
    )
    operation: Any = Field(
        description="exactly one S3 Batch Operations JobOperation, as in the CreateJob API "
        "(S3PutObjectTagging, S3PutObjectCopy, LambdaInvoke, ...)"
    )
    report: ReportSpec | None = _about("the completion report")
    retry: RetrySpec | None = _about("reruns of retriable failures")
    priority: Priority | None = _about(
        "S3 Batch Operations job priority (higher runs first); default: the stack's DefaultPriority",
        PARAMETER_DEFAULTS["DefaultPriority"],
    )
    confirmation_required: StrictBool | None = _about(
        "the job waits in Suspended, counted, until a person confirms it", False
    )
    dry_run: StrictBool | None = _about(
        "stop after the manifest: count, sample keys, estimated cost; no job (source.bucket: the job S3 lists "
        "the bucket in, cancelled before it touches any object)",
        False,
    )
    max_objects: Count | None = _about(
        "fail before creating any job if the selection holds more objects; default: the stack's "
        "DefaultMaxObjects",
        PARAMETER_DEFAULTS["DefaultMaxObjects"],
    )
    concurrency: Concurrency | None = _about(
        "while another run of this name is active: skip (end at once, SKIPPED), wait (start when it ends, "
        "at most the stack's ConcurrencyWaitSeconds) or force (run alongside it)",
        CONCURRENCY_MODES[0],
    )

    @field_validator("source")
    @classmethod
    def _source_replaces_inventory(cls, value: SourceSpec | None, info: ValidationInfo) -> SourceSpec | None:
        if value is not None and info.data.get("inventory") is not None:
            raise problem(
                "cannot be combined with inventory: source selects from the bucket itself (bucket) or its S3 "
                "Metadata live inventory table (metadataTable), inventory from an S3 Inventory table; remove one "
                "of them"
            )
        return value

    @field_validator("rerun")
    @classmethod
    def _rerun_replaces_selection(cls, value: RerunSpec | None, info: ValidationInfo) -> RerunSpec | None:
        given = [name for name in ("inventory", "source", "filter") if info.data.get(name) is not None]
        if value is not None and given:
            raise problem(
                f"cannot be combined with {' and '.join(given)}: a rerun acts on the objects of its failures "
                f"file, not on an inventory selection; remove {' and '.join(given)} (or remove rerun to "
                "select from the inventory)"
            )
        return value

    @field_validator("operation")
    @classmethod
    def _one_batch_operation(cls, value: Any) -> Any:
        problems = operation_errors(value)
        if problems:
            raise problem_lines(problems)
        return value


_NOT_GIVEN = {"type": "null"}


def _source_given_as(part: str, kind: str) -> dict[str, Any]:
    """JSON Schema's "this spec gives source.<part> as a <kind>"."""
    return _given_as("source", "object") | {
        "properties": {"source": _given_as(part, kind) | {"type": "object"}}
    }


# The cross-field rules of JobSpec's validators and of spec_stack's source checks, as JSON Schema says them.
_EXCLUSIONS: list[dict[str, Any]] = [
    {
        "if": _given_as("rerun", "object"),
        "then": {"properties": dict.fromkeys(("inventory", "source", "filter"), _NOT_GIVEN)},
    },
    {
        "if": _source_given_as("bucket", "string"),
        "then": {
            "properties": {
                "inventory": _NOT_GIVEN,
                # What S3 Batch's manifest generator can filter by (batchpipe_core.generator).
                "filter": {
                    "properties": {
                        **dict.fromkeys(INVENTORY_ONLY_FILTERS, _NOT_GIVEN),
                        **{field: {"maxItems": 1} for field in GENERATOR_KEY_CONSTRAINTS},
                        "storageClasses": {"items": {"enum": list(GENERATOR_STORAGE_CLASSES)}},
                        "encryptionStatuses": {"maxItems": 1},
                        "replicationStatuses": {"items": {"enum": list(GENERATOR_REPLICATION_STATUSES)}},
                        "latestOnly": {"not": {"const": False}},
                        "versions": {"not": {"const": VERSIONS_PINNED}},
                    }
                },
            }
        },
        # Only the generator knows a bucket's replication eligibility.
        "else": {"properties": {"filter": {"properties": dict.fromkeys(GENERATOR_ONLY_FILTERS, _NOT_GIVEN)}}},
    },
    {"if": _given_as("source", "object"), "then": {"properties": {"inventory": _NOT_GIVEN}}},
    # Tags and user metadata are only in the S3 Metadata live inventory table, whose storage classes
    # are fewer than S3 Inventory's (batchpipe_core.metadata_table). A stack whose DefaultSource is the
    # table also takes them without source: a schema cannot know a stack's parameters.
    {
        "if": _source_given_as("metadataTable", "object"),
        "then": {
            "properties": {
                "filter": {
                    "properties": {
                        "storageClasses": {"items": {"enum": list(metadata_table.STORAGE_CLASSES)}},
                        "replicationStatuses": _NOT_GIVEN,
                    }
                }
            }
        },
        "else": {"properties": {"filter": {"properties": {"tags": _NOT_GIVEN, "metadata": _NOT_GIVEN}}}},
    },
]


_SECTIONS: dict[tuple[str, ...], type[_SpecModel]] = {
    (): JobSpec,
    ("inventory",): InventorySpec,
    ("source",): SourceSpec,
    ("source", "metadataTable"): MetadataTableSpec,
    ("filter", "tags"): TagFilterSpec,
    ("filter", "metadata"): MetadataFilterSpec,
    ("filter",): FilterSpec,
    ("report",): ReportSpec,
    ("retry",): RetrySpec,
    ("rerun",): RerunSpec,
}


def parse_spec(raw: Any) -> tuple[JobSpec | None, list[str]]:
    if not isinstance(raw, dict):
        return None, [f'spec: must be a JSON object with at least "operation", got {_json_value(raw)}']
    try:
        return parse(event=raw, model=JobSpec), []
    except ValidationError as error:
        return None, [line for details in error.errors() for line in _describe(details)]


def _instant(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


# ---------------------------------------------------------------- error text


def _describe(details: ErrorDetails) -> list[str]:
    loc = details["loc"]
    path = field_path(loc) or "spec"
    kind, value = details["type"], details.get("input")
    message = (details.get("ctx") or {}).get("message", "")
    if kind == "batchpipe_lines":
        return str(message).splitlines()
    if kind == "batchpipe":
        return [f"{path}: {message}"]
    if kind == "extra_forbidden":
        return [f"{path}: unknown field; {_field_hint(loc)}"]
    if kind == "missing" and loc == ("operation",):
        return [
            f"operation: missing required field; give exactly one S3 Batch Operations operation, e.g. "
            f"{_EXAMPLE_OPERATION} (one of: {', '.join(operation_names())})"
        ]
    if kind == "missing" and loc == ("rerun", "failures"):
        return [
            "rerun.failures: missing required field; give the s3:// URI of the failures file to rerun "
            "(the permanentFailures of the run's summary)"
        ]
    expected = {
        "string_type": "a string",
        "int_type": "an integer",
        "bool_type": "true or false",
        "list_type": "a list",
        "model_type": "an object",
        "model_attributes_type": "an object",
        "dict_type": "an object",
    }.get(kind)
    if expected:
        return [f"{path}: must be {expected}, got {_json_value(value)}"]
    return [f"{path}: {details['msg']}"]


def _field_hint(loc: tuple[int | str, ...]) -> str:
    section = _SECTIONS.get(tuple(str(p) for p in loc[:-1]))
    if section is None:
        return "remove it"
    allowed = [field.alias or name for name, field in section.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    where = f"in {'.'.join(map(str, loc[:-1]))}" if loc[:-1] else "at the top level"
    return f"{hint}allowed {where}: {', '.join(allowed)}"


def _json_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {shown(value)}"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def check_spec_model(raw: Any) -> None:
    """The checks that need no stack (types, ranges, the operation against botocore's model):
    what the `batchpipe` command runs before it starts an execution. SpecValidationError if any fails."""
    problems = document_problems(raw) or parse_spec(raw)[1]
    if problems:
        raise SpecValidationError("\n".join(dict.fromkeys(problems)))
