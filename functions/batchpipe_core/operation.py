"""The spec's ``operation`` and whole CreateJob requests, checked against botocore's s3control model.

Users paste ``JobOperation`` JSON from the AWS docs, so the model that botocore ships (and that boto3
will serialize the request with) is the schema: nothing here lists operations or their members.
botocore's own ``ParamValidator`` checks structure, types, required members and minimums; it skips
enums, maximums and patterns, which the model also declares, so a second pass reads those from the
same shapes. A few rules S3 enforces that the model cannot express are added where they are certain.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import math
import re
import sys
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ParamValidationError
from botocore.loaders import create_loader
from botocore.model import OperationModel, ServiceModel, Shape
from botocore.utils import parse_timestamp
from botocore.validate import ParamValidator

from batchpipe_core.errors import SpecValidationError, shown

# Valid values for every CreateJob member except Operation, so that validating a whole request
# reports only what is wrong with the user's operation.
_PLACEHOLDER_REQUEST: dict[str, Any] = {
    "AccountId": "111122223333",
    "ConfirmationRequired": False,
    "Report": {"Enabled": False},
    "ClientRequestToken": "batchpipe-spec-validation",
    "Priority": 0,
    "RoleArn": "arn:aws:iam::111122223333:role/batchpipe-spec-validation",
    "Manifest": {
        "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
        "Location": {"ObjectArn": "arn:aws:s3:::batchpipe-placeholder/manifest.csv", "ETag": "placeholder"},
    },
}

# S3 allows at most 10 tags per object, with distinct keys (InvalidTag otherwise).
_MAX_OBJECT_TAGS = 10
_LAMBDA_SCHEMA_VERSIONS = ("1.0", "2.0")

_TYPE_NAMES = {
    "<class 'str'>": "a string",
    "<class 'int'>": "an integer",
    "<class 'bool'>": "a boolean",
    "<class 'float'>": "a number",
    "<class 'decimal.Decimal'>": "a number",
    "<class 'dict'>": "an object",
    "<class 'list'>": "a list",
    "<class 'tuple'>": "a list",
    # JSON has no datetime: a timestamp member takes a string botocore can parse.
    "<class 'datetime.datetime'>": "an ISO 8601 timestamp string",
    "timestamp-string": "an ISO 8601 timestamp string",
}


@functools.cache
def service_model(name: str) -> ServiceModel:
    """An AWS API as the installed botocore describes it, read from botocore's data files alone.

    ``botocore.session.get_session().get_service_model`` reads the profile first: an unknown
    AWS_PROFILE in the shell made checking a spec (or `local run`) fail with ProfileNotFound.
    """
    return ServiceModel(create_loader().load_service_model(name, "service-2"), service_name=name)


@functools.cache
def create_job_model() -> OperationModel:
    """The s3control CreateJob operation as the installed botocore knows it."""
    return service_model("s3control").operation_model("CreateJob")


def operation_names() -> tuple[str, ...]:
    """Every S3 Batch Operations operation the model knows (members of the JobOperation shape)."""
    return tuple(create_job_model().input_shape.members["Operation"].members)


def create_job_request_errors(params: Any) -> list[str]:
    """Everything wrong with a CreateJob request, one ``Path.To.Member: problem; fix`` line each."""
    shape = create_job_model().input_shape
    errors = [*_botocore_errors(params, shape), *_constraint_errors(params, shape, "")]
    if isinstance(params, dict):
        errors += _request_rules(params)
        if isinstance(params.get("Operation"), dict):
            errors += _operation_rules(params["Operation"], "Operation")
    return _in_path_order(errors)


def check_create_job_request(params: dict[str, Any]) -> None:
    """Raise botocore's own ParamValidationError when the request would be rejected by the model."""
    errors = create_job_request_errors(params)
    if errors:
        raise ParamValidationError(report="\n".join(errors))


def operation_errors(operation: Any) -> list[str]:
    """Everything wrong with the spec's ``operation``, as ``operation.<path>: problem; fix`` lines."""
    names = operation_names()
    if not isinstance(operation, dict):
        return [
            f"operation: must be an object with exactly one S3 Batch Operations operation, got "
            f"{_json_type(operation)}; use one of: {', '.join(names)}"
        ]
    if not operation:
        return [f"operation: is empty; give exactly one operation, one of: {', '.join(names)}"]
    if len(operation) > 1:
        return [
            f"operation: has {len(operation)} operations ({', '.join(operation)}); "
            "a job runs exactly one, keep one of them"
        ]
    request = {**copy.deepcopy(_PLACEHOLDER_REQUEST), "Operation": operation}
    return [
        "operation" + line.removeprefix("Operation")
        for line in create_job_request_errors(request)
        if line.startswith("Operation")
    ]


def validate_operation(operation: Any) -> dict[str, Any]:
    """The operation unchanged, or SpecValidationError listing every problem."""
    errors = operation_errors(operation)
    if errors:
        raise SpecValidationError("\n".join(errors))
    return operation


# ---------------------------------------------------------------- botocore's validator


def _botocore_errors(params: Any, shape: Shape) -> list[str]:
    # botocore's validator raises a bare RuntimeError on a timestamp it cannot convert (1e308, 2**63-1),
    # so such values are reported here by path and replaced by a valid one before it sees them.
    timestamp_errors: list[str] = []
    params = _without_bad_timestamps(params, shape, "", timestamp_errors)
    report = ParamValidator().validate(params, shape)
    # The report keeps structured (reason, name, details) tuples only in a private list; its public
    # text form is meant for people. Reading the tuples keeps field paths exact.
    return timestamp_errors + [
        _describe(reason, _path(name), details, shape) for reason, name, details in report._errors
    ]


# S3 documents no range for the timestamps of an operation (RetainUntilDate, ...). The request carries
# them as ISO 8601 text with a four-digit year (botocore's rest-xml serializer), so nothing after
# 9999-12-31T23:59:59Z can be sent; nothing before the Unix epoch is a date an S3 object lock or
# restore can mean, and botocore itself refuses negative epoch numbers.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
_TIMESTAMP_FIX = (
    "use ISO 8601 between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z, e.g. 2030-01-01T00:00:00Z"
)
_VALID_TIMESTAMP = "2030-01-01T00:00:00Z"


def _without_bad_timestamps(value: Any, shape: Shape, path: str, errors: list[str]) -> Any:
    """``value`` with every out-of-range timestamp member replaced (and reported in ``errors``)."""
    kind = shape.type_name
    if kind == "timestamp":
        problem = _timestamp_problem(value)
        if problem is None:
            return value
        errors.append(f"{_shown(path)}: {problem}; {_TIMESTAMP_FIX}")
        return _VALID_TIMESTAMP
    if kind == "structure" and isinstance(value, dict):
        return {
            name: _without_bad_timestamps(item, shape.members[name], _join(path, name), errors)
            if name in shape.members
            else item
            for name, item in value.items()
        }
    if kind == "list" and isinstance(value, list | tuple):
        return [
            _without_bad_timestamps(item, shape.member, f"{path}[{i}]", errors)
            for i, item in enumerate(value)
        ]
    if kind == "map" and isinstance(value, dict):
        return {
            k: _without_bad_timestamps(v, shape.value, _join(path, str(k)), errors) for k, v in value.items()
        }
    return value


def _timestamp_problem(value: Any) -> str | None:
    """Why ``value`` is not a timestamp S3 can be sent, or None; other types are botocore's to name."""
    if isinstance(value, bool):
        return f"{value!r} is not a timestamp"  # botocore would take True as 1970-01-01T00:00:01Z
    if not isinstance(value, str | int | float):
        return None
    label = shown(value) if isinstance(value, str) else shown(str(value)).strip("'")
    try:
        number = float(value)
    except ValueError:
        number = None
    except OverflowError:  # an integer too large for a float
        return f"{label} is out of range as epoch seconds"
    if number is not None:  # epoch seconds, as botocore reads a number or a numeric string
        if not math.isfinite(number) or not _EARLIEST.timestamp() <= number <= _LATEST.timestamp():
            return f"{label} is out of range as epoch seconds"
        return None
    try:
        parsed = parse_timestamp(value)
    except (RuntimeError, ValueError, OverflowError, OSError, TypeError):
        return f"{label} is not a timestamp"
    try:
        moment = parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except OverflowError:  # 9999-12-31T23:59:59-05:00 is in the year 10000 in UTC
        return f"{label} is out of range"
    if not _EARLIEST <= moment <= _LATEST:
        return f"{label} is out of range"
    return None


def _path(name: str) -> str:
    return name.removeprefix(".")


def _shown(path: str) -> str:
    return path or "input"


def _describe(reason: str, path: str, details: dict[str, Any], root: Shape) -> str:
    if reason == "missing required field":
        return f"{_join(path, details['required_name'])}: missing required field; add it"
    if reason == "unknown field":
        unknown, valid = _printable(details["unknown_param"]), list(details["valid_names"])
        if not valid:
            return f"{_join(path, unknown)}: unknown field; {path.rsplit('.', 1)[-1]} takes no parameters, use {{}}"
        what = "operation" if path == "Operation" else "field"
        return f"{_join(path, unknown)}: unknown {what}; {_suggest(unknown, valid)}"
    if reason == "invalid type" and "timestamp-string" in details["valid_types"]:
        return f"{_shown(path)}: {details['param']!r} is not a timestamp; use ISO 8601, e.g. 2030-01-01T00:00:00Z"
    if reason == "invalid type":
        expected = " or ".join(dict.fromkeys(_TYPE_NAMES.get(t, t) for t in details["valid_types"]))
        return f"{_shown(path)}: must be {expected}, got {_json_type(details['param'])}"
    if reason in ("invalid length", "invalid range"):
        value, minimum = details["param"], details["min_allowed"]
        if " (key: " in path:
            owner, key = path.split(" (key: ", 1)
            return f"{owner}: key {key[:-1]!r} is too short (length {value}); the minimum length is {minimum}"
        measure = "length" if reason == "invalid length" else "value"
        return f"{_shown(path)}: {measure} {value} is below the minimum {minimum}"
    if reason in ("more than one input", "empty input"):
        return f"{_shown(path)}: set exactly one of: {', '.join(details['members'])}"
    return f"{_shown(path)}: {reason}"


# ---------------------------------------------------------------- what the validator skips


def _constraint_errors(value: Any, shape: Shape, path: str) -> Iterator[str]:
    """Enums, maximums and patterns declared by the model (botocore's validator checks minimums only)."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                yield from _constraint_errors(value[name], member, _join(path, name))
    elif kind == "list" and isinstance(value, list | tuple):
        yield from _count_errors(len(value), shape, path, "items")
        for index, item in enumerate(value):
            yield from _constraint_errors(item, shape.member, f"{path}[{index}]")
    elif kind == "map" and isinstance(value, dict):
        yield from _count_errors(len(value), shape, path, "entries")
        for key, item in value.items():
            if isinstance(key, str):
                for problem in _string_problems(key, shape.key):
                    yield f"{path}: key {shown(key)} {problem}"
            yield from _constraint_errors(item, shape.value, _join(path, str(key)))
    elif kind == "string" and isinstance(value, str):
        for problem in _string_problems(value, shape):
            yield f"{path}: {problem}"
    elif kind in ("integer", "long") and isinstance(value, int) and not isinstance(value, bool):
        maximum = shape.metadata.get("max")
        if maximum is not None and value > maximum:
            yield f"{path}: value {value} exceeds the maximum {maximum}"


def _count_errors(count: int, shape: Shape, path: str, unit: str) -> Iterator[str]:
    maximum = shape.metadata.get("max")
    if maximum is not None and count > maximum:
        yield f"{path}: has {count} {unit}; the maximum is {maximum}"


def _string_problems(value: str, shape: Shape) -> Iterator[str]:
    enum = shape.metadata.get("enum")
    if enum and value not in enum:
        yield f"{shown(value)} is not valid; {_suggest(value, enum)}"
        return
    maximum = shape.metadata.get("max")
    if maximum is not None and len(value) > maximum:
        yield f"length {len(value)} exceeds the maximum {maximum}"
    pattern = shape.metadata.get("pattern")
    compiled = _compiled_pattern(pattern, value.isascii()) if pattern else None
    # Model patterns are unanchored (Smithy semantics), hence search rather than fullmatch.
    if compiled is not None and not compiled.search(value):
        yield f"{shown(value)} does not match the pattern {pattern} that S3 requires"


@functools.cache
def _compiled_pattern(pattern: str, ascii_only: bool = False) -> re.Pattern[str] | None:
    """The model's (Java-style) pattern in Python syntax, or None when it cannot be translated.

    ``ascii_only``: the pattern for ASCII values, its Unicode categories limited to their ASCII
    members, which decides an ASCII value exactly as the whole pattern does; listing a category's
    every code point takes about a second, paid only when a value needs it."""
    limit = 0x80 if ascii_only else sys.maxunicode + 1
    try:
        return re.compile(
            _PROPERTY_ESCAPE.sub(lambda match: _category_ranges(match.group(1), limit), pattern)
        )
    except (re.error, KeyError):
        return None


# \p{L}, \p{N}, \p{Z}, ... (Unicode general categories), which Python's re lacks.
_PROPERTY_ESCAPE = re.compile(r"\\p\{([A-Z][a-z]?)\}")


@functools.cache
def _category_ranges(category: str, limit: int) -> str:
    r"""Character-class ranges of every code point below ``limit`` in a Unicode general category
    (built once). The model uses them only inside a character class (e.g. [\p{L}\p{Z}\p{N}_.:/=+\-@])."""
    ranges: list[str] = []
    start = previous = None
    for code in range(limit):
        if unicodedata.category(chr(code)).startswith(category):
            if start is None:
                start = code
            previous = code
        elif start is not None:
            ranges.append(_char_range(start, previous))
            start = None
    if start is not None:
        ranges.append(_char_range(start, previous))
    if not ranges and limit <= sys.maxunicode:
        return _category_ranges(category, sys.maxunicode + 1)  # none below the limit: all of it
    if not ranges:
        raise KeyError(category)
    return "".join(ranges)


def _char_range(first: int, last: int | None) -> str:
    last = first if last is None else last
    return f"\\U{first:08x}" if first == last else f"\\U{first:08x}-\\U{last:08x}"


# ---------------------------------------------------------------- rules the model cannot express


def _request_rules(params: dict[str, Any]) -> list[str]:
    has_manifest, has_generator = "Manifest" in params, "ManifestGenerator" in params
    if has_manifest == has_generator:
        return ["Manifest: give exactly one of Manifest and ManifestGenerator"]
    return []


def _operation_rules(operation: dict[str, Any], path: str) -> list[str]:
    errors: list[str] = []
    lambda_invoke = operation.get("LambdaInvoke")
    if isinstance(lambda_invoke, dict):
        errors += _lambda_invoke_rules(lambda_invoke, f"{path}.LambdaInvoke")
    copy_object = operation.get("S3PutObjectCopy")
    if isinstance(copy_object, dict):
        if "TargetResource" not in copy_object:
            errors.append(
                f"{path}.S3PutObjectCopy.TargetResource: missing required field; "
                "give the destination bucket ARN, e.g. arn:aws:s3:::my-target-bucket"
            )
        errors += _tag_set_rules(
            copy_object.get("NewObjectTagging"), f"{path}.S3PutObjectCopy.NewObjectTagging"
        )
    tagging = operation.get("S3PutObjectTagging")
    if isinstance(tagging, dict):
        errors += _tag_set_rules(tagging.get("TagSet"), f"{path}.S3PutObjectTagging.TagSet")
    return errors


def _lambda_invoke_rules(invoke: dict[str, Any], path: str) -> list[str]:
    errors: list[str] = []
    if "FunctionArn" not in invoke:
        errors.append(
            f"{path}.FunctionArn: missing required field; give the ARN of the function to invoke per object"
        )
    version = invoke.get("InvocationSchemaVersion", "1.0")
    if isinstance(version, str) and version not in _LAMBDA_SCHEMA_VERSIONS:
        errors.append(f'{path}.InvocationSchemaVersion: {shown(version)} is not valid; use "1.0" or "2.0"')
    elif "UserArguments" in invoke and version != "2.0":
        errors.append(
            f'{path}.UserArguments: is only allowed with InvocationSchemaVersion "2.0"; '
            'set "InvocationSchemaVersion": "2.0" or remove UserArguments'
        )
    return errors


def _tag_set_rules(tags: Any, path: str) -> list[str]:
    if not isinstance(tags, list):
        return []
    errors: list[str] = []
    if len(tags) > _MAX_OBJECT_TAGS:
        errors.append(f"{path}: has {len(tags)} tags; S3 allows at most {_MAX_OBJECT_TAGS} per object")
    keys = [tag.get("Key") for tag in tags if isinstance(tag, dict) and isinstance(tag.get("Key"), str)]
    for key in dict.fromkeys(k for k in keys if keys.count(k) > 1):
        errors.append(f"{path}: tag key {shown(key)} appears more than once; keep one")
    return errors


# ---------------------------------------------------------------- helpers


def _printable(name: str) -> str:
    """User-given names quoted when they could break the one-line-per-problem form."""
    return name if name.isprintable() else json.dumps(name)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _suggest(value: str, valid: list[str] | tuple[str, ...]) -> str:
    same_letters = [name for name in valid if name.upper() == value.upper()]
    close = same_letters or difflib.get_close_matches(value, valid, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"{hint}use one of: {', '.join(valid)}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _in_path_order(lines: list[str]) -> list[str]:
    """Unique lines sorted by field path (list indices numerically), so output is stable and readable."""

    def path_key(line: str) -> list[tuple[int, int | str]]:
        path = line.split(": ", 1)[0]
        return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[.\[\]]+", path)]

    return sorted(dict.fromkeys(lines), key=path_key)
