"""The job spec (the execution input; README, "Job spec reference"): its model, its checks and its normal form.

The models say only what the user wrote (``None`` = not given); ``normalize_spec`` fills the stack's
defaults. Every field is strict (``"3"`` is not 3, ``1`` is not ``true``) and unknown fields are
errors, because a typo in a spec that acts on a billion objects must fail loudly, not be ignored.
Error lines read ``<field path>: <what is wrong>; <how to fix it>`` and are all reported at once.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from aws_lambda_powertools.utilities.parser import parse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails, PydanticCustomError, core_schema

from batchpipe_core.config import Config
from batchpipe_core.errors import SpecValidationError, shown
from batchpipe_core.generator import GENERATOR_STORAGE_CLASSES, INVENTORY_ONLY_FILTERS, generator_problems
from batchpipe_core.inventory_layout import VERSION_CHOICES, VERSIONS_CURRENT, VERSIONS_PINNED, known_columns
from batchpipe_core.jobs import MAX_ATTEMPTS_LIMIT
from batchpipe_core.operation import operation_errors, operation_names
from batchpipe_core.query import MAX_BIGINT, build_unload_sql
from batchpipe_core.rerun import rerun_buckets
from batchpipe_core.where import normalize_where

DEFAULT_NAME = "batchpipe"
LATEST = "latest"
# Values S3 Inventory writes in its StorageClass and EncryptionStatus columns (S3 user guide,
# "Amazon S3 Inventory list").
INVENTORY_STORAGE_CLASSES: tuple[str, ...] = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "OUTPOSTS",
    "GLACIER_IR",
    "SNOW",
)
INVENTORY_ENCRYPTION_STATUSES: tuple[str, ...] = ("SSE-S3", "SSE-C", "SSE-KMS", "DSSE-KMS", "NOT-SSE")
REPORT_SCOPES: tuple[str, ...] = ("AllTasks", "FailedTasksOnly")
# What a run does while another run of its name is active (batchpipe_core.runlock, docs/OPERATIONS.md).
CONCURRENCY_MODES: tuple[str, ...] = ("skip", "wait", "force")
# The template's BackoffSeconds parameter allows the same; the wait doubles per attempt.
MAX_BACKOFF_SECONDS = 86_400
MAX_PRIORITY = 2_147_483_647
MAX_KEY_BYTES = 1024
# A key regex longer than this is a list of names in disguise, which prefixes express better.
MAX_REGEX_LENGTH = 4096
# The spec travels in the input of every state, and a state's input or output may hold 256 KiB of
# UTF-8 text (Step Functions quotas); a spec of at most 32 KiB leaves the rest to what states add.
MAX_SPEC_BYTES = 32 * 1024
# Objects and lists nest at most this deep. The deepest legitimate spec (an S3PutObjectAcl grant)
# is 7 levels; a bound keeps every later walk of the document far from Python's recursion limit.
MAX_SPEC_DEPTH = 32
# Integers anywhere in the spec fit in 64 bits (Athena's bigint, the AWS APIs' long).
MIN_INTEGER = -(2**63)
# A spec that reaches Athena is checked by building its statement against a placeholder delivery
# and output location at least as long as any real one (a run's folder is a few hundred bytes).
_PLACEHOLDER_PARTITION = "9999-12-31-23-59"
_PLACEHOLDER_FOLDER = "x" * 512

_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
# General purpose bucket names (S3 user guide, "Bucket naming rules"); the finer rules (no "..", not an
# IP address) are the stack's SourceBuckets parameter's to enforce: a source must be one of those.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Athena names: letters, digits and underscores (anything else would need quoting in the query).
_ATHENA_NAME = re.compile(r"[A-Za-z0-9_]{1,255}")
# ASCII digits only ([0-9], not \d, which in Python also matches other scripts' digits).
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PARTITION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")
# Regex syntax that Python accepts but Java (Athena's regexp_like) does not, and Java syntax that
# Python's compiler would reject although Athena accepts it; escapes are matched first so that
# an escaped "\(" never looks like a group.
_REGEX_SCAN = re.compile(r"\\[pP]\{\w+\}|\\.|\(\?P[<=>]|\(\?\(|\(\?<(?=[A-Za-z])", re.DOTALL)
_EXAMPLE_OPERATION = '{"S3PutObjectTagging": {"TagSet": [{"Key": "project", "Value": "blue"}]}}'


def _problem(message: str) -> PydanticCustomError:
    """A validation error whose text is ours; the field path is prefixed when it is reported."""
    return PydanticCustomError("batchpipe", "{message}", {"message": message})


def _problem_lines(lines: list[str]) -> PydanticCustomError:
    """Errors that already carry their own field paths (operation, filter.where)."""
    return PydanticCustomError("batchpipe_lines", "{message}", {"message": "\n".join(lines)})


@dataclass(frozen=True, eq=False)  # hashed by identity: typing hashes Annotated metadata
class _Rule:
    """A check on a field and what JSON Schema can say of the same rule, side by side, so the
    spec's JSON Schema (``batchpipe spec-schema``) says what ValidateSpec checks: one source for both.
    ``schema`` is a necessary condition of ``check`` (an ECMA-262 pattern, a bound, an enum); what it
    cannot say (a real date, a regex's syntax) only the check knows."""

    check: Callable[[Any], Any]
    schema: dict[str, Any] = field(default_factory=dict)

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {**handler(schema), **self.schema}


def _between(low: int, high: int | None) -> _Rule:
    def check(value: int) -> int:
        if value < low or (high is not None and value > high):
            allowed = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise _problem(f"must be {allowed}, got {value}")
        return value

    return _Rule(check, {"minimum": low} | ({"maximum": high} if high is not None else {}))


def _one_of(valid: tuple[str, ...], what: str) -> _Rule:
    def check(value: str) -> str:
        if value not in valid:
            upper = {v.upper(): v for v in valid}
            close = upper.get(value.upper()) or next(iter(difflib.get_close_matches(value, valid, n=1)), None)
            hint = f"did you mean {close!r}? " if close else ""
            raise _problem(f"{shown(value)} is not {what}; {hint}use one of: {', '.join(valid)}")
        return value

    return _Rule(check, {"enum": list(valid)})


def _athena_name(value: str) -> str:
    if not _ATHENA_NAME.fullmatch(value):
        raise _problem(
            f"{shown(value)} is not a usable Athena name; use letters, digits and underscores (1-255)"
        )
    return value


def _inventory_date(value: str) -> str:
    if value == LATEST:
        return value
    try:
        if _DATE.fullmatch(value):
            datetime.strptime(value, "%Y-%m-%d")
            return value
        if _PARTITION.fullmatch(value):
            datetime.strptime(value, "%Y-%m-%d-%H-%M")
            return value
    except ValueError:
        raise _problem(f"{shown(value)} is not a real date; check the month, day, hour and minute") from None
    raise _problem(
        f'must be "latest", a day YYYY-MM-DD or an inventory partition YYYY-MM-DD-HH-MM, got {shown(value)}'
    )


def _prefix(value: str) -> str:
    if not value:
        raise _problem("is empty; remove it (omit filter.prefixes to select every key)")
    if len(value.encode()) > MAX_KEY_BYTES:
        raise _problem(f"is longer than an S3 key can be ({MAX_KEY_BYTES} bytes); shorten it")
    return value


def _bucket_name(value: str) -> str:
    if not _BUCKET.fullmatch(value):
        raise _problem(
            f"{shown(value)} is not an S3 bucket name; use the bucket's name (3-63 lowercase letters, digits, "
            "'.' and '-'), not its ARN or an s3:// URI"
        )
    return value


def _non_empty_unique(values: list[str]) -> list[str]:
    if not values:
        raise _problem("is an empty list; omit the field (or use null) to apply no such condition")
    return list(dict.fromkeys(values))


def _run_name(value: str) -> str:
    if not _NAME.fullmatch(value) or value in (".", ".."):
        raise _problem(
            f"{shown(value)} cannot name S3 keys and tags; use 1-64 letters, digits, '.', '_' or '-' "
            "(not '.' or '..' alone)"
        )
    return value


def _failures_uri(value: str) -> str:
    bucket, _, key = value.removeprefix("s3://").partition("/")
    if not value.startswith("s3://") or not bucket or not key or key.endswith("/"):
        raise _problem(
            f"must be the s3:// URI of a run's failures file (its summary's permanentFailures), "
            f"e.g. s3://<pipeline bucket>/runs/<name>/<execution>/<start>/permanent-failures.csv, got {shown(value)}"
        )
    return value


def _error_code(value: str) -> str:
    if not value or not value.isprintable():
        raise _problem(
            f"{shown(value)} is not an error code; use the errorCode column's values, e.g. AccessDenied"
        )
    return value


def _timestamp(value: str) -> str:
    """The canonical form: seconds, or the fraction without trailing zeros, then Z."""
    if not _TIMESTAMP.fullmatch(value):
        raise _problem(
            f"must be an ISO 8601 UTC timestamp ending in Z, e.g. 2024-01-01T00:00:00Z, got {shown(value)}"
        )
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise _problem(
            f"{shown(value)} is not a real point in time ({error}); fix the date or time"
        ) from None
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def _key_regex(value: str) -> str:
    if not value:
        raise _problem("is empty; omit it (or use null) to match every key")
    if len(value) > MAX_REGEX_LENGTH:
        raise _problem(
            f"is {len(value):,} characters long; the maximum is {MAX_REGEX_LENGTH:,}: "
            "match a shorter pattern, or use filter.prefixes for lists of names"
        )
    for syntax in _REGEX_SCAN.findall(value):
        if syntax.startswith(("(?P", "(?(")):
            raise _problem(
                f"uses Python-only syntax {shown(syntax)}; Athena's regexp_like takes Java regular expressions: "
                "write a named group as (?<name>...) and avoid conditionals"
            )
    try:
        re.compile(_REGEX_SCAN.sub(_python_equivalent, value))
    except RecursionError:
        raise _problem("nests groups too deeply to check; simplify it") from None
    except re.error as error:
        raise _problem(
            f"is not a valid regular expression ({error}); Athena's regexp_like takes Java syntax, "
            "e.g. \\.jpe?g$"
        ) from None
    return value


def _python_equivalent(match: re.Match[str]) -> str:
    """Java-only syntax rewritten just far enough for Python's compiler to check the rest."""
    syntax = match.group(0)
    if syntax.startswith(("\\p", "\\P")):
        return "\\w"
    if syntax == "\\z":
        return "\\Z"
    if syntax == "(?<":
        return "(?P<"
    return syntax


class _SpecModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, validate_by_alias=True, validate_by_name=False
    )


def _pattern(regex: re.Pattern[str]) -> dict[str, Any]:
    """A whole-value Python pattern as JSON Schema's (ECMA-262, unanchored by default)."""
    return {"pattern": f"^(?:{regex.pattern})$"}


# Field types: strict JSON types plus the checks whose messages say what to do instead.
AthenaName = Annotated[StrictStr, _Rule(_athena_name, _pattern(_ATHENA_NAME))]
InventoryDate = Annotated[
    StrictStr,
    _Rule(_inventory_date, {"pattern": f"^(?:{LATEST}|{_DATE.pattern}|{_PARTITION.pattern})$"}),
]
# At most 1,024 bytes is at most 1,024 characters: the schema's bound is the necessary half.
Prefix = Annotated[StrictStr, _Rule(_prefix, {"minLength": 1, "maxLength": MAX_KEY_BYTES})]
StorageClass = Annotated[StrictStr, _one_of(INVENTORY_STORAGE_CLASSES, "an inventory storage class")]
EncryptionStatus = Annotated[
    StrictStr, _one_of(INVENTORY_ENCRYPTION_STATUSES, "an inventory encryption status")
]
ReportScope = Annotated[StrictStr, _one_of(REPORT_SCOPES, "a report scope")]
Concurrency = Annotated[StrictStr, _one_of(CONCURRENCY_MODES, "a concurrency mode")]
Versions = Annotated[StrictStr, _one_of(VERSION_CHOICES, "a version choice")]
KeyRegex = Annotated[StrictStr, _Rule(_key_regex, {"minLength": 1, "maxLength": MAX_REGEX_LENGTH})]
Timestamp = Annotated[StrictStr, _Rule(_timestamp, _pattern(_TIMESTAMP))]
Bytes = Annotated[StrictInt, _between(0, MAX_BIGINT)]
Attempts = Annotated[StrictInt, _between(1, MAX_ATTEMPTS_LIMIT)]
Seconds = Annotated[StrictInt, _between(0, MAX_BACKOFF_SECONDS)]
Priority = Annotated[StrictInt, _between(0, MAX_PRIORITY)]
Count = Annotated[StrictInt, _between(1, MAX_BIGINT)]
FailuresUri = Annotated[StrictStr, _Rule(_failures_uri, {"pattern": r"^s3://[^/]+/[\s\S]*[^/]$"})]
BucketName = Annotated[StrictStr, _Rule(_bucket_name, _pattern(_BUCKET))]
ErrorCode = Annotated[StrictStr, _Rule(_error_code, {"minLength": 1})]
RunName = Annotated[StrictStr, _Rule(_run_name, _pattern(_NAME) | {"not": {"enum": [".", ".."]}})]
NonEmptyUnique = _Rule(_non_empty_unique, {"minItems": 1})


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


class SourceSpec(_SpecModel):
    """No inventory: S3 Batch Operations lists the bucket itself (batchpipe_core.generator)."""

    bucket: BucketName = Field(
        description="the bucket S3 Batch's manifest generator lists (the source bucket of the stack's "
        "InventoryPrefix, within SourceBuckets); its name, not an ARN or s3:// URI"
    )


class FilterSpec(_SpecModel):
    """Which inventory rows to act on; every condition given must hold (omitted: no condition)."""

    # Field order matters: a cross-field check runs on the later field of the pair.
    prefixes: Annotated[list[Prefix], NonEmptyUnique] | None = _about("keys starting with any of these")
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

    @field_validator("max_size_bytes")
    @classmethod
    def _not_below_min(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_size_bytes")
        if value is not None and low is not None and value < low:
            raise _problem(f"{value} is below filter.minSizeBytes ({low}); raise it or lower minSizeBytes")
        return value

    @field_validator("modified_after")
    @classmethod
    def _before_modified_before(cls, value: str | None, info: ValidationInfo) -> str | None:
        before = info.data.get("modified_before")
        if value is not None and before is not None and _instant(value) >= _instant(before):
            raise _problem(
                f"{value} is not earlier than filter.modifiedBefore ({before}); swap them or widen the range"
            )
        return value

    @field_validator("where")
    @classmethod
    def _single_condition(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return normalize_where(value)
        except SpecValidationError as error:
            raise _problem_lines(str(error).splitlines()) from None


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
        "(a subset of filter; no inventory, no dryRun)"
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
        "stop after the manifest: count, sample keys, estimated cost; no job", False
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
            raise _problem(
                "cannot be combined with inventory: source.bucket lists the bucket with S3 Batch's manifest "
                "generator, inventory selects from an S3 Inventory table; remove one of them"
            )
        return value

    @field_validator("rerun")
    @classmethod
    def _rerun_replaces_selection(cls, value: RerunSpec | None, info: ValidationInfo) -> RerunSpec | None:
        given = [name for name in ("inventory", "source", "filter") if info.data.get(name) is not None]
        if value is not None and given:
            raise _problem(
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
            raise _problem_lines(problems)
        return value


def _given_as(part: str, kind: str) -> dict[str, Any]:
    """JSON Schema's "this spec gives <part> as a <kind>" (null is "not given", as to the model)."""
    return {"required": [part], "properties": {part: {"type": kind}}}


_NOT_GIVEN = {"type": "null"}
# The cross-field rules of JobSpec's validators and of _source_problems, as JSON Schema says them.
_EXCLUSIONS: list[dict[str, Any]] = [
    {
        "if": _given_as("rerun", "object"),
        "then": {"properties": dict.fromkeys(("inventory", "source", "filter"), _NOT_GIVEN)},
    },
    {
        "if": _given_as("source", "object"),
        "then": {
            "properties": {
                "inventory": _NOT_GIVEN,
                "dryRun": {"not": {"const": True}},
                # What S3 Batch's manifest generator can filter by (batchpipe_core.generator).
                "filter": {
                    "properties": {
                        **dict.fromkeys(INVENTORY_ONLY_FILTERS, _NOT_GIVEN),
                        "prefixes": {"maxItems": 1},
                        "storageClasses": {"items": {"enum": list(GENERATOR_STORAGE_CLASSES)}},
                        "encryptionStatuses": {"maxItems": 1},
                        "latestOnly": {"not": {"const": False}},
                        "versions": {"not": {"const": VERSIONS_PINNED}},
                    }
                },
            }
        },
    },
]


_SECTIONS: dict[tuple[str, ...], type[_SpecModel]] = {
    (): JobSpec,
    ("inventory",): InventorySpec,
    ("source",): SourceSpec,
    ("filter",): FilterSpec,
    ("report",): ReportSpec,
    ("retry",): RetrySpec,
    ("rerun",): RerunSpec,
}


def normalize_spec(raw: Any, config: Config) -> dict[str, Any]:
    """The spec with every default filled in (the README's "Job spec reference" shape), or SpecValidationError.

    The result is plain JSON, and a valid spec itself: normalizing it again returns it unchanged.
    """
    document = _document_problems(raw)
    if document:
        # Nothing else looks at a document too big, too deep or not JSON: each later check would
        # only repeat the problem, or be what it exhausts.
        raise SpecValidationError("\n".join(document))
    spec, problems = _parse_spec(raw)
    problems += _stack_problems(raw, problems, config)
    if spec is None or problems:
        raise SpecValidationError("\n".join(dict.fromkeys(problems)))
    normalized = _source_selection(spec, _rerun_selection(spec, _with_defaults(spec, config)))
    statement = _statement_problems(normalized, config)
    if statement:
        raise SpecValidationError("\n".join(dict.fromkeys(statement)))
    # The defaults come from stack parameters: a bad one is a deployment fault, not the user's.
    _, default_problems = _parse_spec(normalized)
    if default_problems:
        raise RuntimeError("the stack's defaults make an invalid spec: " + "; ".join(default_problems))
    return normalized


def parse_spec_document(document: bytes | str) -> Any:
    """The JSON value of a spec document (a file's bytes, a request body), or SpecValidationError.

    One line naming what is wrong for anything that is not a small UTF-8 JSON text: too large,
    UTF-16 or another encoding, nested too deeply, NaN/Infinity, a key given twice. The value is not
    yet checked as a spec: ``normalize_spec`` does that.
    """
    data = document.encode("utf-8", errors="replace") if isinstance(document, str) else document
    if len(data) > MAX_SPEC_BYTES:
        raise SpecValidationError(_too_large(len(data)))
    for mark, encoding in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            raise SpecValidationError(
                f"spec: starts with a {encoding} byte order mark; save it as UTF-8 without one"
            )
    if b"\x00" in data:
        raise SpecValidationError("spec: contains NUL bytes, as UTF-16 or UTF-32 text does; save it as UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecValidationError(f"spec: is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    if _text_depth(text) > MAX_SPEC_DEPTH:
        raise SpecValidationError(_too_deep())
    try:
        return json.loads(text, parse_constant=_not_json, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as error:
        raise SpecValidationError(
            f"spec: is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    except ValueError as error:  # NaN/Infinity, a repeated key, an integer of thousands of digits
        raise SpecValidationError(f"spec: {str(error)[:200]}") from None


_BYTE_ORDER_MARKS = (
    (b"\xef\xbb\xbf", "UTF-8"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def _text_depth(text: str) -> int:
    """How deep ``[``/``{`` nest in a JSON text, strings skipped; no parsing, no recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number; write a number or a string")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise ValueError(f"the key {shown(key)} appears twice in one object; keep one")
    return dict(pairs)


def _too_large(size: int) -> str:
    return (
        f"spec: is {size:,} bytes of JSON; the maximum is {MAX_SPEC_BYTES:,} (32 KiB), because it travels "
        "in every state's input (at most 256 KiB); move long lists into fewer filter.prefixes or a keyRegex"
    )


def _too_deep() -> str:
    return f"spec: nests objects and lists more than {MAX_SPEC_DEPTH} levels deep; a spec needs at most 8"


def _document_problems(raw: Any) -> list[str]:
    """Limits of the whole document, checked without recursion before any model looks at it."""
    problems: list[str] = []
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(raw, ())]
    while stack:
        value, loc = stack.pop()
        if len(loc) > MAX_SPEC_DEPTH:
            return [_too_deep()]
        where = _path(loc) or "spec"
        if isinstance(value, dict):
            for key, item in reversed(value.items()):
                if not isinstance(key, str):
                    problems.append(f"{where}: has a key that is not a string ({type(key).__name__})")
                else:
                    stack.append((key, (*loc, "<key>")))
                    stack.append((item, (*loc, key)))
        elif isinstance(value, list):
            stack.extend((item, (*loc, index)) for index, item in reversed(list(enumerate(value))))
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as error:
                place = where.removesuffix(".<key>")
                what = "a key" if loc and loc[-1] == "<key>" else "it"
                problems.append(
                    f"{place}: {what} is not valid Unicode text (an unpaired surrogate at character {error.start})"
                )
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not MIN_INTEGER <= value <= MAX_BIGINT:
                # Not echoed: such a number can have more digits than Python will print.
                problems.append(
                    f"{where}: is beyond 64-bit integers (at most {MAX_BIGINT}); use a smaller number"
                )
        elif isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                problems.append(f"{where}: {value} is not a JSON number")
        else:
            problems.append(f"{where}: {type(value).__name__} is not a JSON value")
    if problems:
        return problems
    size = len(json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode())
    return [_too_large(size)] if size > MAX_SPEC_BYTES else []


def _statement_problems(normalized: dict[str, Any], config: Config) -> list[str]:
    """The Athena statement this spec will make: every value reads back as itself, within limits."""
    if "filter" not in normalized or "source" in normalized:
        return []  # a rerun reads its failures file, a source run lists its bucket: no inventory
    try:
        build_unload_sql(
            normalized,
            database=normalized["inventory"]["database"],
            table=normalized["inventory"]["table"],
            partition=_PLACEHOLDER_PARTITION,
            inventory_format=config.inventory_format,
            versions=config.inventory_versions,
            output_uri=f"s3://{config.pipeline_bucket}/{_PLACEHOLDER_FOLDER}/",
        )
    except SpecValidationError as error:
        return str(error).splitlines()
    return []


def _parse_spec(raw: Any) -> tuple[JobSpec | None, list[str]]:
    if not isinstance(raw, dict):
        return None, [f'spec: must be a JSON object with at least "operation", got {_json_value(raw)}']
    try:
        return parse(event=raw, model=JobSpec), []
    except ValidationError as error:
        return None, [line for details in error.errors() for line in _describe(details)]


def _stack_problems(raw: Any, problems: list[str], config: Config) -> list[str]:
    """Checks that depend on the stack's parameters: filter.where, rerun.failures."""
    return (
        _where_problems(raw, problems, config)
        + _versions_problems(raw, problems, config)
        + _rerun_problems(raw, problems, config)
        + _source_problems(raw, problems, config)
        + _allowed_operation_problems(raw, problems, config)
    )


def _source_problems(raw: Any, problems: list[str], config: Config) -> list[str]:
    """source.bucket: a bucket the stack may act on, a filter the manifest generator can apply, no dry run."""
    source = raw.get("source") if isinstance(raw, dict) else None
    bucket = source.get("bucket") if isinstance(source, dict) else None
    if not isinstance(bucket, str) or any(line.startswith("source") for line in problems):
        return []
    found = []
    # The buckets a rerun of this stack may act on (batchpipe_core.rerun): a run whose failures could
    # not be rerun would break the promise that every failure can be.
    allowed = rerun_buckets(config.source_buckets, config.inventory_prefix)
    if bucket not in allowed.names:
        found.append(
            f"source.bucket: {shown(bucket)} is not {allowed.described} "
            f"({', '.join(sorted(allowed.names)) or 'none'}), the buckets its Batch Operations role may list and "
            "act on and its reruns may touch; use that bucket, or a stack whose SourceBuckets and InventoryPrefix "
            "name this one"
        )
    filter_ = raw.get("filter")
    if isinstance(filter_, dict) and not any(line.startswith("filter") for line in problems):
        found += generator_problems(filter_)
    if raw.get("dryRun") is True:
        # The generator lists the bucket only inside a job, while it prepares: there is no count or
        # sample to show without creating a job (docs/FILTERS.md, "Sources").
        found.append(
            "dryRun: a source.bucket run has no dry run: S3 Batch lists the bucket only while its job "
            "prepares; remove dryRun and set confirmationRequired: true, which stops the job after S3 has "
            "counted it and before it touches any object"
        )
    return found


# AllowedOperations entries beyond the operation names: the two uses of S3PutObjectRetention (and
# of a copy's Object Lock settings) that cannot be undone or that shorten a protection. The Batch
# Operations role is granted them only when named (template.yaml, BatchOperationsRole).
COMPLIANCE_RETENTION = "S3PutObjectRetention:COMPLIANCE"
BYPASS_GOVERNANCE = "S3PutObjectRetention:BypassGovernanceRetention"


def _allowed_operation_problems(raw: Any, problems: list[str], config: Config) -> list[str]:
    """An operation the stack's Batch Operations role is not granted: refused here, by name, rather
    than as a job whose every task fails 403 AccessDenied."""
    allowed = config.allowed_operations
    operation = raw.get("operation") if isinstance(raw, dict) else None
    if allowed is None or not isinstance(operation, dict) or len(operation) != 1:
        return []
    if any(line.startswith("operation") for line in problems):
        return []
    ((name, body),) = operation.items()
    fix = "redeploy the stack with {} added to its AllowedOperations parameter, or choose another operation"
    if name not in allowed:
        return [
            f"operation: {name} is not allowed by this stack (AllowedOperations: {', '.join(allowed)}); "
            + fix.format(name)
        ]
    body = body if isinstance(body, dict) else {}
    found = []
    lock_mode = (
        (body.get("Retention") or {}).get("Mode")
        if name == "S3PutObjectRetention"
        else body.get("ObjectLockMode")
    )
    if lock_mode == "COMPLIANCE" and COMPLIANCE_RETENTION not in allowed:
        where = "Retention.Mode" if name == "S3PutObjectRetention" else "ObjectLockMode"
        found.append(
            f"operation.{name}.{where}: COMPLIANCE retention cannot be shortened or removed by anyone once set, "
            f"and this stack does not allow it; " + fix.format(COMPLIANCE_RETENTION) + " (or use GOVERNANCE)"
        )
    if (
        name == "S3PutObjectRetention"
        and body.get("BypassGovernanceRetention") is True
        and BYPASS_GOVERNANCE not in allowed
    ):
        found.append(
            f"operation.{name}.BypassGovernanceRetention: shortening or removing GOVERNANCE retention is not "
            "allowed by this stack; " + fix.format(BYPASS_GOVERNANCE)
        )
    return found


def _versions_problems(raw: Any, problems: list[str], config: Config) -> list[str]:
    """filter.versions and rerun.versions: a choice only an all-versions inventory (with latestOnly) offers."""
    found = []
    for part in ("filter", "rerun"):
        section = raw.get(part) if isinstance(raw, dict) else None
        versions = section.get("versions") if isinstance(section, dict) else None
        field = f"{part}.versions"
        if versions is None or any(line.startswith(f"{field}:") for line in problems):
            continue
        if config.inventory_versions != "All":
            if versions != VERSIONS_CURRENT:  # "current" is what a current-versions inventory always does
                found.append(
                    f'{field}: "{versions}" needs an inventory that lists version IDs, but the stack\'s '
                    "InventoryVersions is Current (jobs act on each key's current version); remove "
                    f"{field} or use a stack with InventoryVersions=All"
                )
        elif part == "filter" and versions == VERSIONS_CURRENT and section.get("latestOnly") is False:
            found.append(
                'filter.versions: "current" acts on each key\'s current version, which only means something '
                'with filter.latestOnly true; remove latestOnly: false or use filter.versions "pinned"'
            )
    return found


def _rerun_problems(raw: Any, problems: list[str], config: Config) -> list[str]:
    """A failures file outside the pipeline bucket: the stack may read only its own bucket."""
    rerun = raw.get("rerun") if isinstance(raw, dict) else None
    uri = rerun.get("failures") if isinstance(rerun, dict) else None
    if not isinstance(uri, str) or any(line.startswith("rerun.failures:") for line in problems):
        return []
    bucket = uri.removeprefix("s3://").partition("/")[0]
    if bucket == config.pipeline_bucket:
        return []
    return [
        f"rerun.failures: is in bucket {shown(bucket)}, but the stack reads failures files only from its pipeline "
        f"bucket {config.pipeline_bucket!r}, where runs write them; copy the file there"
    ]


def _where_problems(raw: Any, problems: list[str], config: Config) -> list[str]:
    """filter.where against this stack's inventory table, whose columns depend on its parameters."""
    filter_ = raw.get("filter") if isinstance(raw, dict) else None
    where = filter_.get("where") if isinstance(filter_, dict) else None
    if not isinstance(where, str) or any(line.startswith("filter.where:") for line in problems):
        return []
    try:
        normalize_where(where, known_columns(config.inventory_versions))
    except SpecValidationError as error:
        return str(error).splitlines()
    return []


def _with_defaults(spec: JobSpec, config: Config) -> dict[str, Any]:
    inventory = spec.inventory or InventorySpec()
    filter_ = spec.filter or FilterSpec()
    report = spec.report or ReportSpec()
    retry = spec.retry or RetrySpec()
    return {
        "name": _given(spec.name, DEFAULT_NAME),
        "inventory": {
            "database": _given(inventory.database, config.inventory_database),
            "table": _given(inventory.table, config.inventory_table),
            "date": _given(inventory.date, LATEST),
        },
        "filter": {
            "prefixes": filter_.prefixes,
            "keyRegex": filter_.key_regex,
            "storageClasses": filter_.storage_classes,
            "minSizeBytes": filter_.min_size_bytes,
            "maxSizeBytes": filter_.max_size_bytes,
            "modifiedBefore": filter_.modified_before,
            "modifiedAfter": filter_.modified_after,
            "encryptionStatuses": filter_.encryption_statuses,
            "latestOnly": _given(filter_.latest_only, True),
            "versions": _given(
                filter_.versions, VERSIONS_PINNED if config.inventory_versions == "All" else VERSIONS_CURRENT
            ),
            "where": filter_.where,
        },
        "operation": copy.deepcopy(spec.operation),
        "report": {"scope": _given(report.scope, config.default_report_scope)},
        "retry": {
            "maxAttempts": _given(retry.max_attempts, config.default_max_attempts),
            "backoffSeconds": _given(retry.backoff_seconds, config.default_backoff_seconds),
        },
        "priority": _given(spec.priority, config.default_priority),
        "confirmationRequired": _given(spec.confirmation_required, False),
        "dryRun": _given(spec.dry_run, False),
        "maxObjects": _given(spec.max_objects, config.default_max_objects),
        "concurrency": _given(spec.concurrency, CONCURRENCY_MODES[0]),
    }


def _rerun_selection(spec: JobSpec, normalized: dict[str, Any]) -> dict[str, Any]:
    """A rerun's objects come from its failures file: ``rerun`` takes the place of inventory and filter."""
    if spec.rerun is None:
        return normalized
    rerun = {
        "failures": spec.rerun.failures,
        "errorCodes": spec.rerun.error_codes,
        # As filter.versions: a "current" run's failures file has empty version IDs, which "pinned"
        # would read as the null version.
        "versions": _given(spec.rerun.versions, normalized["filter"]["versions"]),
    }
    return {
        ("rerun" if name == "inventory" else name): (rerun if name == "inventory" else value)
        for name, value in normalized.items()
        if name != "filter"
    }


def _source_selection(spec: JobSpec, normalized: dict[str, Any]) -> dict[str, Any]:
    """A source run lists its bucket: ``source`` takes the place of inventory; the generator's manifest
    names no version IDs, so each job acts on each key's current version ("current")."""
    if spec.source is None:
        return normalized
    return {
        ("source" if name == "inventory" else name): (
            {"bucket": spec.source.bucket}
            if name == "inventory"
            else (value | {"versions": VERSIONS_CURRENT} if name == "filter" else value)
        )
        for name, value in normalized.items()
    }


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def _instant(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


# ---------------------------------------------------------------- error text


def _describe(details: ErrorDetails) -> list[str]:
    loc = details["loc"]
    path = _path(loc) or "spec"
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


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        # An unknown field's name is user text: quoted if it could break the one-line-per-problem form.
        name = str(part) if str(part).isprintable() else json.dumps(part)
        name = name if len(str(part)) <= 60 else shown(str(part))
        text += f"[{part}]" if isinstance(part, int) else (f".{name}" if text else name)
    return text


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
    problems = _document_problems(raw) or _parse_spec(raw)[1]
    if problems:
        raise SpecValidationError("\n".join(dict.fromkeys(problems)))
