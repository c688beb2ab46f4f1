"""The value rules of the spec's fields: each field type pairs a check (its message says what to do
instead) with what JSON Schema can say of the same rule, so the spec's JSON Schema (``batchpipe
spec-schema``) says what ValidateSpec checks. The models that use them are batchpipe_core.spec_model.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StrictInt,
    StrictStr,
)
from pydantic_core import PydanticCustomError, core_schema

from batchpipe_core.errors import shown
from batchpipe_core.inventory_layout import INVENTORY_STORAGE_CLASSES, REPLICATION_STATUSES, VERSION_CHOICES
from batchpipe_core.jobs import MAX_ATTEMPTS_LIMIT
from batchpipe_core.query import MAX_BIGINT
from batchpipe_core.s3uri import split_s3_uri

DEFAULT_NAME = "batchpipe"
LATEST = "latest"
# Values S3 Inventory writes in its EncryptionStatus column (S3 user guide, "Amazon S3 Inventory
# list"); its StorageClass values are batchpipe_core.inventory_layout's INVENTORY_STORAGE_CLASSES.
INVENTORY_ENCRYPTION_STATUSES: tuple[str, ...] = ("SSE-S3", "SSE-C", "SSE-KMS", "DSSE-KMS", "NOT-SSE")
REPORT_SCOPES: tuple[str, ...] = ("AllTasks", "FailedTasksOnly")
# What a run does while another run of its name is active (batchpipe_core.runlock, docs/OPERATIONS.md).
CONCURRENCY_MODES: tuple[str, ...] = ("skip", "wait", "force")
# The template's BackoffSeconds parameter allows the same; the wait doubles per attempt.
MAX_BACKOFF_SECONDS = 86_400
MAX_PRIORITY = 2_147_483_647
MAX_KEY_BYTES = 1024
# Object tags: keys of 1-128 and values of 0-256 Unicode characters (S3 user guide, "Categorizing
# your objects using tags"). User-defined metadata: at most 2 KB in the PUT request's headers, its
# keys stored in lowercase (S3 user guide, "Working with object metadata", user-defined metadata).
MAX_TAG_KEY_CHARS = 128
MAX_TAG_VALUE_CHARS = 256
MAX_METADATA_BYTES = 2048
# A key regex longer than this is a list of names in disguise, which prefixes express better.
MAX_REGEX_LENGTH = 4096

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


def problem(message: str) -> PydanticCustomError:
    """A validation error whose text is ours; the field path is prefixed when it is reported."""
    return PydanticCustomError("batchpipe", "{message}", {"message": message})


def problem_lines(lines: list[str]) -> PydanticCustomError:
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
            raise problem(f"must be {allowed}, got {value}")
        return value

    return _Rule(check, {"minimum": low} | ({"maximum": high} if high is not None else {}))


def _one_of(valid: tuple[str, ...], what: str) -> _Rule:
    def check(value: str) -> str:
        if value not in valid:
            upper = {v.upper(): v for v in valid}
            close = upper.get(value.upper()) or next(iter(difflib.get_close_matches(value, valid, n=1)), None)
            hint = f"did you mean {close!r}? " if close else ""
            raise problem(f"{shown(value)} is not {what}; {hint}use one of: {', '.join(valid)}")
        return value

    return _Rule(check, {"enum": list(valid)})


def _athena_name(value: str) -> str:
    if not _ATHENA_NAME.fullmatch(value):
        raise problem(
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
        raise problem(f"{shown(value)} is not a real date; check the month, day, hour and minute") from None
    raise problem(
        f'must be "latest", a day YYYY-MM-DD or an inventory partition YYYY-MM-DD-HH-MM, got {shown(value)}'
    )


def _key_part(field: str) -> Callable[[str], str]:
    """A part of a key (filter.prefixes, suffixes, substrings): non-empty, no longer than a key."""

    def check(value: str) -> str:
        if not value:
            raise problem(f"is empty; remove it (omit filter.{field} to select every key)")
        if len(value.encode()) > MAX_KEY_BYTES:
            raise problem(f"is longer than an S3 key can be ({MAX_KEY_BYTES} bytes); shorten it")
        return value

    return check


def _bucket_name(value: str) -> str:
    if not _BUCKET.fullmatch(value):
        raise problem(
            f"{shown(value)} is not an S3 bucket name; use the bucket's name (3-63 lowercase letters, digits, "
            "'.' and '-'), not its ARN or an s3:// URI"
        )
    return value


def _non_empty_unique(values: list[str]) -> list[str]:
    if not values:
        raise problem("is an empty list; omit the field (or use null) to apply no such condition")
    return list(dict.fromkeys(values))


def _run_name(value: str) -> str:
    if not _NAME.fullmatch(value) or value in (".", ".."):
        raise problem(
            f"{shown(value)} cannot name S3 keys and tags; use 1-64 letters, digits, '.', '_' or '-' "
            "(not '.' or '..' alone)"
        )
    return value


def _failures_uri(value: str) -> str:
    try:
        bucket, key = split_s3_uri(value)
    except ValueError:
        bucket = key = ""
    if not bucket or not key or key.endswith("/"):
        raise problem(
            f"must be the s3:// URI of a run's failures file (its summary's permanentFailures), "
            f"e.g. s3://<pipeline bucket>/runs/<name>/<execution>/<start>/permanent-failures.csv, got {shown(value)}"
        )
    return value


def _error_code(value: str) -> str:
    if not value or not value.isprintable():
        raise problem(
            f"{shown(value)} is not an error code; use the errorCode column's values, e.g. AccessDenied"
        )
    return value


def _timestamp(value: str) -> str:
    """The canonical form: seconds, or the fraction without trailing zeros, then Z."""
    if not _TIMESTAMP.fullmatch(value):
        raise problem(
            f"must be an ISO 8601 UTC timestamp ending in Z, e.g. 2024-01-01T00:00:00Z, got {shown(value)}"
        )
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise problem(f"{shown(value)} is not a real point in time ({error}); fix the date or time") from None
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def _key_regex(value: str) -> str:
    if not value:
        raise problem("is empty; omit it (or use null) to match every key")
    if len(value) > MAX_REGEX_LENGTH:
        raise problem(
            f"is {len(value):,} characters long; the maximum is {MAX_REGEX_LENGTH:,}: "
            "match a shorter pattern, or use filter.prefixes for lists of names"
        )
    for syntax in _REGEX_SCAN.findall(value):
        if syntax.startswith(("(?P", "(?(")):
            raise problem(
                f"uses Python-only syntax {shown(syntax)}; Athena's regexp_like takes Java regular expressions: "
                "write a named group as (?<name>...) and avoid conditionals"
            )
    try:
        re.compile(_REGEX_SCAN.sub(_python_equivalent, value))
    except RecursionError:
        raise problem("nests groups too deeply to check; simplify it") from None
    except re.error as error:
        raise problem(
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
_KEY_PART_SCHEMA = {"minLength": 1, "maxLength": MAX_KEY_BYTES}
Prefix = Annotated[StrictStr, _Rule(_key_part("prefixes"), _KEY_PART_SCHEMA)]
Suffix = Annotated[StrictStr, _Rule(_key_part("suffixes"), _KEY_PART_SCHEMA)]
Substring = Annotated[StrictStr, _Rule(_key_part("substrings"), _KEY_PART_SCHEMA)]
ReplicationStatus = Annotated[StrictStr, _one_of(REPLICATION_STATUSES, "a replication status")]
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


def _tag_key(value: str) -> str:
    if not value or len(value) > MAX_TAG_KEY_CHARS:
        raise problem(f"must be 1-{MAX_TAG_KEY_CHARS} characters (an S3 tag key), got {len(value)}")
    return value


def _tag_value(value: str) -> str:
    if len(value) > MAX_TAG_VALUE_CHARS:
        raise problem(f"must be at most {MAX_TAG_VALUE_CHARS} characters (an S3 tag value), got {len(value)}")
    return value


def _metadata_text(value: str) -> str:
    if len(value.encode()) > MAX_METADATA_BYTES:
        raise problem(f"is longer than S3's user-defined metadata can be ({MAX_METADATA_BYTES} bytes)")
    return value


def _metadata_key(value: str) -> str:
    _metadata_text(value)
    if not value:
        raise problem("is empty; give the metadata name without its x-amz-meta- prefix")
    if value.lower().startswith("x-amz-meta-"):
        raise problem(f"give the name without its x-amz-meta- prefix, e.g. {shown(value[11:])}")
    if value != value.lower():
        raise problem(
            f"S3 stores user-defined metadata names in lowercase, so {shown(value)} never matches; "
            f"write {shown(value.lower())}"
        )
    return value


def _unique_pairs(values: list[Any]) -> list[Any]:
    if not values:
        raise problem("is an empty list; omit the field (or use null) to apply no such condition")
    return list(dict.fromkeys(values))


TagKey = Annotated[StrictStr, _Rule(_tag_key, {"minLength": 1, "maxLength": MAX_TAG_KEY_CHARS})]
TagValue = Annotated[StrictStr, _Rule(_tag_value, {"maxLength": MAX_TAG_VALUE_CHARS})]
MetadataKey = Annotated[StrictStr, _Rule(_metadata_key, {"minLength": 1})]
MetadataValue = Annotated[StrictStr, _Rule(_metadata_text)]
UniquePairs = _Rule(_unique_pairs, {"minItems": 1})
