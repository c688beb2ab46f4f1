"""batchpipe_core.operation: the spec's operation and CreateJob requests against botocore's s3control model."""

from __future__ import annotations

import copy
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ParamValidationError
from botocore.model import Shape
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpipe_core.errors import SpecValidationError
from batchpipe_core.operation import (
    _compiled_pattern,
    check_create_job_request,
    create_job_request_errors,
    operation_errors,
    operation_names,
    validate_operation,
)

MODEL = botocore.session.get_session().get_service_model("s3control")
JOB_OPERATION = MODEL.operation_model("CreateJob").input_shape.members["Operation"]

# Values for patterned strings, by shape name (the model's patterns are not generated from).
PATTERNED_SAMPLES = {
    "FunctionArnString": "arn:aws:lambda:us-east-1:111122223333:function:tagger",
    "S3RegionalOrS3ExpressBucketArnString": "arn:aws:s3:::target-bucket",
    "NonEmptyKmsKeyArnString": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
}
# Members S3 needs although the model marks them optional (operation.py checks them).
SEMANTIC_REQUIRED = {
    "LambdaInvoke": {"FunctionArn": PATTERNED_SAMPLES["FunctionArnString"]},
    "S3PutObjectCopy": {"TargetResource": PATTERNED_SAMPLES["S3RegionalOrS3ExpressBucketArnString"]},
}
MEMBER_SAMPLES = {"InvocationSchemaVersion": "2.0"}

TAGGING = {"S3PutObjectTagging": {"TagSet": [{"Key": "environment", "Value": "production"}]}}
REQUEST = {
    "AccountId": "123456789012",
    "Operation": TAGGING,
    "Report": {
        "Bucket": "arn:aws:s3:::pipeline-bucket",
        "Format": "Report_CSV_20180820",
        "Enabled": True,
        "Prefix": "runs/retag/exec/attempt-1/report",
        "ReportScope": "AllTasks",
    },
    "ClientRequestToken": "batchpipe-0123456789abcdef",
    "Priority": 10,
    "RoleArn": "arn:aws:iam::123456789012:role/batch",
    "Manifest": {
        "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
        "Location": {"ObjectArn": "arn:aws:s3:::pipeline-bucket/runs/retag/exec/manifest.csv", "ETag": "abc"},
    },
}


def scalar_sample(shape: Shape, member_name: str | None) -> Any:
    if member_name in MEMBER_SAMPLES:
        return MEMBER_SAMPLES[member_name]
    if shape.type_name == "string":
        if shape.enum:
            return shape.enum[0]
        return PATTERNED_SAMPLES.get(shape.name, "x" * max(shape.metadata.get("min", 1), 1))
    if shape.type_name in ("integer", "long"):
        return max(shape.metadata.get("min", 1), 1)
    if shape.type_name == "boolean":
        return True
    if shape.type_name == "timestamp":
        return "2030-01-01T00:00:00Z"
    raise AssertionError(f"no sample for {shape.name} ({shape.type_name})")


def minimal_value(shape: Shape, member_name: str | None = None) -> Any:
    """Only what the model requires."""
    if shape.type_name == "structure":
        return {name: minimal_value(shape.members[name], name) for name in shape.required_members}
    if shape.type_name == "list":
        return [minimal_value(shape.member)] if shape.metadata.get("min", 0) else []
    if shape.type_name == "map":
        return {}
    return scalar_sample(shape, member_name)


def maximal_value(shape: Shape, member_name: str | None = None) -> Any:
    """Every member the model knows, filled."""
    if shape.type_name == "structure":
        return {name: maximal_value(member, name) for name, member in shape.members.items()}
    if shape.type_name == "list":
        return [maximal_value(shape.member)]
    if shape.type_name == "map":
        return {"k": maximal_value(shape.value)}
    return scalar_sample(shape, member_name)


def minimal_operation(name: str) -> dict[str, Any]:
    body = minimal_value(JOB_OPERATION.members[name])
    return {name: {**body, **SEMANTIC_REQUIRED.get(name, {})}}


# ---------------------------------------------------------------- every operation in the model


def test_operation_names_come_from_the_installed_model():
    assert operation_names() == tuple(JOB_OPERATION.members)
    assert {"LambdaInvoke", "S3PutObjectTagging", "S3PutObjectCopy", "S3ReplicateObject"} <= set(
        operation_names()
    )


@pytest.mark.parametrize("name", list(JOB_OPERATION.members))
def test_every_operation_is_accepted_in_its_minimal_form(name):
    operation = minimal_operation(name)

    assert operation_errors(operation) == []
    assert validate_operation(operation) == operation


@pytest.mark.parametrize("name", list(JOB_OPERATION.members))
def test_every_operation_is_accepted_with_every_member_filled(name):
    operation = {name: maximal_value(JOB_OPERATION.members[name])}

    assert operation_errors(operation) == []


def test_every_pattern_in_the_create_job_model_is_checked():
    patterns = set()

    def collect(shape: Shape, seen: frozenset[str]) -> None:
        if shape.name in seen:
            return
        if "pattern" in shape.metadata:
            patterns.add(shape.metadata["pattern"])
        children = {
            "structure": lambda: shape.members.values(),
            "list": lambda: [shape.member],
            "map": lambda: [shape.key, shape.value],
        }.get(shape.type_name, lambda: [])()
        for child in children:
            collect(child, seen | {shape.name})

    collect(MODEL.operation_model("CreateJob").input_shape, frozenset())

    assert patterns
    assert all(_compiled_pattern(pattern) is not None for pattern in patterns)


def test_tag_patterns_accept_unicode_letters_and_reject_other_symbols():
    assert (
        operation_errors({"S3PutObjectTagging": {"TagSet": [{"Key": "Größe 1", "Value": "日本 é+-=._:/@"}]}})
        == []
    )
    assert operation_errors({"S3PutObjectTagging": {"TagSet": [{"Key": "a*b", "Value": "x"}]}}) == [
        "operation.S3PutObjectTagging.TagSet[0].Key: 'a*b' does not match the pattern "
        "^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)$ that S3 requires"
    ]


# ---------------------------------------------------------------- exact messages

OPERATION_NAMES = ", ".join(JOB_OPERATION.members)

REJECTED = [
    (
        {"S3PutObjectTagging": {"TagSet": [{"Value": "production"}]}},
        ["operation.S3PutObjectTagging.TagSet[0].Key: missing required field; add it"],
    ),
    (
        {"S3PutObjectTaging": {"TagSet": []}},
        [
            "operation.S3PutObjectTaging: unknown operation; did you mean S3PutObjectTagging? "
            f"use one of: {OPERATION_NAMES}"
        ],
    ),
    (
        {"S3PutObjectTagging": {"TagSet": [{"Key": "a", "Value": "b", "Colour": "red"}]}},
        ["operation.S3PutObjectTagging.TagSet[0].Colour: unknown field; use one of: Key, Value"],
    ),
    (
        {"S3DeleteObjectTagging": {"TagSet": []}},
        [
            "operation.S3DeleteObjectTagging.TagSet: unknown field; S3DeleteObjectTagging takes no parameters, use {}"
        ],
    ),
    (
        {"S3PutObjectTagging": {"TagSet": {"Key": "a", "Value": "b"}}},
        ["operation.S3PutObjectTagging.TagSet: must be a list, got an object"],
    ),
    (
        {"S3PutObjectTagging": {"TagSet": [{"Key": "", "Value": "b"}]}},
        ["operation.S3PutObjectTagging.TagSet[0].Key: length 0 is below the minimum 1"],
    ),
    (
        {"S3PutObjectTagging": {"TagSet": [{"Key": "k" * 129, "Value": "b"}]}},
        ["operation.S3PutObjectTagging.TagSet[0].Key: length 129 exceeds the maximum 128"],
    ),
    (
        {"S3PutObjectTagging": {"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]}},
        ["operation.S3PutObjectTagging.TagSet: has 11 tags; S3 allows at most 10 per object"],
    ),
    (
        {"S3PutObjectTagging": {"TagSet": [{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}]}},
        ["operation.S3PutObjectTagging.TagSet: tag key 'k' appears more than once; keep one"],
    ),
    (
        {"S3InitiateRestoreObject": {"ExpirationInDays": -1, "GlacierJobTier": "Bulk"}},
        [
            "operation.S3InitiateRestoreObject.ExpirationInDays: value -1 is below the minimum 0",
            "operation.S3InitiateRestoreObject.GlacierJobTier: 'Bulk' is not valid; did you mean BULK? "
            "use one of: BULK, STANDARD",
        ],
    ),
    (
        {"S3InitiateRestoreObject": {"ExpirationInDays": "7"}},
        ["operation.S3InitiateRestoreObject.ExpirationInDays: must be an integer, got a string"],
    ),
    (
        {"S3PutObjectLegalHold": {}},
        ["operation.S3PutObjectLegalHold.LegalHold: missing required field; add it"],
    ),
    (
        {"S3PutObjectRetention": {"Retention": {"RetainUntilDate": "next week", "Mode": "GOVERNANCE"}}},
        [
            "operation.S3PutObjectRetention.Retention.RetainUntilDate: 'next week' is not a timestamp; "
            "use ISO 8601 between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z, e.g. 2030-01-01T00:00:00Z"
        ],
    ),
    (
        {"S3PutObjectCopy": {"StorageClass": "GLACIER"}},
        [
            "operation.S3PutObjectCopy.TargetResource: missing required field; "
            "give the destination bucket ARN, e.g. arn:aws:s3:::my-target-bucket"
        ],
    ),
    (
        {"S3PutObjectCopy": {"TargetResource": "my-bucket", "ObjectLockEventHoldDuration": {"Years": 101}}},
        [
            "operation.S3PutObjectCopy.ObjectLockEventHoldDuration.Years: value 101 exceeds the maximum 100",
            "operation.S3PutObjectCopy.TargetResource: 'my-bucket' does not match the pattern "
            "arn:[^:]+:(s3|s3express):.* that S3 requires",
        ],
    ),
    (
        {"LambdaInvoke": {"InvocationSchemaVersion": "1.0"}},
        [
            "operation.LambdaInvoke.FunctionArn: missing required field; "
            "give the ARN of the function to invoke per object"
        ],
    ),
    (
        {
            "LambdaInvoke": {
                "FunctionArn": "arn:aws:lambda:us-east-1:111122223333:function:f",
                "UserArguments": {"a": "b"},
            }
        },
        [
            'operation.LambdaInvoke.UserArguments: is only allowed with InvocationSchemaVersion "2.0"; '
            'set "InvocationSchemaVersion": "2.0" or remove UserArguments'
        ],
    ),
    (
        {
            "LambdaInvoke": {
                "FunctionArn": "arn:aws:lambda:us-east-1:111122223333:function:f",
                "InvocationSchemaVersion": "3.0",
            }
        },
        ['operation.LambdaInvoke.InvocationSchemaVersion: \'3.0\' is not valid; use "1.0" or "2.0"'],
    ),
    (
        {
            "LambdaInvoke": {
                "FunctionArn": "arn:aws:lambda:us-east-1:111122223333:function:f",
                "InvocationSchemaVersion": "2.0",
                "UserArguments": {f"k{i}": "v" for i in range(11)},
            }
        },
        ["operation.LambdaInvoke.UserArguments: has 11 entries; the maximum is 10"],
    ),
    (
        {
            "LambdaInvoke": {
                "FunctionArn": "arn:aws:lambda:us-east-1:111122223333:function:f",
                "InvocationSchemaVersion": "2.0",
                "UserArguments": {"": "v"},
            }
        },
        ["operation.LambdaInvoke.UserArguments: key '' is too short (length 0); the minimum length is 1"],
    ),
    (
        {
            "S3UpdateObjectEncryption": {
                "ObjectEncryption": {"SSEKMS": {"KMSKeyArn": "alias/my-key-alias-name"}}
            }
        },
        [
            "operation.S3UpdateObjectEncryption.ObjectEncryption.SSEKMS.KMSKeyArn: 'alias/my-key-alias-name' "
            "does not match the pattern arn:aws[a-zA-Z0-9-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[a-zA-Z0-9-]+ "
            "that S3 requires"
        ],
    ),
    (
        {"S3DeleteObjectTagging": None},
        ["operation.S3DeleteObjectTagging: must be an object, got null"],
    ),
    (
        {},
        [f"operation: is empty; give exactly one operation, one of: {OPERATION_NAMES}"],
    ),
    (
        {"S3ReplicateObject": {}, "S3DeleteObjectTagging": {}},
        [
            "operation: has 2 operations (S3ReplicateObject, S3DeleteObjectTagging); a job runs exactly one, keep one of them"
        ],
    ),
    (
        "S3ReplicateObject",
        [
            "operation: must be an object with exactly one S3 Batch Operations operation, got a string; "
            f"use one of: {OPERATION_NAMES}"
        ],
    ),
]


@pytest.mark.parametrize(("operation", "expected"), REJECTED, ids=[str(i) for i in range(len(REJECTED))])
def test_invalid_operations_are_rejected_with_exact_messages(operation, expected):
    assert operation_errors(operation) == expected
    with pytest.raises(SpecValidationError) as raised:
        validate_operation(operation)
    assert str(raised.value) == "\n".join(expected)


def test_problems_are_listed_in_field_order_with_numeric_indices():
    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(10)] + [{"Value": "v"}]
    tags[2] = {"Key": "k2"}

    assert operation_errors({"S3PutObjectTagging": {"TagSet": tags}}) == [
        "operation.S3PutObjectTagging.TagSet: has 11 tags; S3 allows at most 10 per object",
        "operation.S3PutObjectTagging.TagSet[2].Value: missing required field; add it",
        "operation.S3PutObjectTagging.TagSet[10].Key: missing required field; add it",
    ]


def test_validation_does_not_change_the_operation():
    operation = {
        "S3PutObjectCopy": {
            "TargetResource": "arn:aws:s3:::t",
            "NewObjectTagging": [{"Key": "a", "Value": "b"}],
        }
    }
    before = copy.deepcopy(operation)

    assert validate_operation(operation) is operation
    assert operation == before


# ---------------------------------------------------------------- whole CreateJob requests


def test_a_complete_create_job_request_has_no_errors():
    assert create_job_request_errors(REQUEST) == []
    check_create_job_request(REQUEST)


def test_create_job_request_errors_use_the_request_paths():
    request = copy.deepcopy(REQUEST)
    del request["RoleArn"]
    request["Priority"] = -1
    request["Report"]["ReportScope"] = "Everything"
    request["ManifestGenerator"] = {
        "S3JobManifestGenerator": {"SourceBucket": "arn:aws:s3:::b", "EnableManifestOutput": False}
    }

    assert create_job_request_errors(request) == [
        "Manifest: give exactly one of Manifest and ManifestGenerator",
        "Priority: value -1 is below the minimum 0",
        "Report.ReportScope: 'Everything' is not valid; use one of: AllTasks, FailedTasksOnly",
        "RoleArn: missing required field; add it",
    ]


def test_check_create_job_request_raises_botocores_own_error():
    request = {
        **REQUEST,
        "AccountId": "12345",
        "Operation": {"S3PutObjectTagging": {"TagSet": [{"Key": "k"}]}},
    }

    with pytest.raises(ParamValidationError) as raised:
        check_create_job_request(request)

    assert "AccountId: '12345' does not match the pattern ^\\d{12}$ that S3 requires" in str(raised.value)
    assert "Operation.S3PutObjectTagging.TagSet[0].Value: missing required field; add it" in str(raised.value)


def test_the_request_checks_describe_non_object_requests():
    assert create_job_request_errors([]) == ["input: must be an object, got a list"]


RANGE_FIX = "use ISO 8601 between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z, e.g. 2030-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("1e308", "'1e308' is out of range as epoch seconds"),
        (1e20, "1e+20 is out of range as epoch seconds"),
        (2**63 - 1, "9223372036854775807 is out of range as epoch seconds"),
        (10**400, "is out of range as epoch seconds"),
        (-1, "-1 is out of range as epoch seconds"),
        ("nan", "'nan' is out of range as epoch seconds"),
        ("-inf", "'-inf' is out of range as epoch seconds"),
        ("0001-01-01T00:00:00Z", "'0001-01-01T00:00:00Z' is out of range"),
        ("9999-12-31T23:59:59-05:00", "'9999-12-31T23:59:59-05:00' is out of range"),
        ("10000-01-01T00:00:00Z", "'10000-01-01T00:00:00Z' is not a timestamp"),
        (True, "True is not a timestamp"),
    ],
)
def test_a_timestamp_out_of_range_is_refused_by_name_not_a_runtime_error(value, problem):
    operation = {"S3PutObjectRetention": {"Retention": {"RetainUntilDate": value, "Mode": "GOVERNANCE"}}}

    errors = operation_errors(operation)

    assert len(errors) == 1
    assert errors[0].startswith("operation.S3PutObjectRetention.Retention.RetainUntilDate: ")
    assert problem in errors[0] and errors[0].endswith(RANGE_FIX)


@pytest.mark.parametrize(
    "value",
    ["2030-01-01T00:00:00Z", "2030-01-01", "9999-12-31T23:59:59Z", "1970-01-01T00:00:00Z", 1_900_000_000],
)
def test_a_timestamp_in_range_is_accepted(value):
    assert (
        operation_errors(
            {"S3PutObjectRetention": {"Retention": {"RetainUntilDate": value, "Mode": "GOVERNANCE"}}}
        )
        == []
    )


def test_every_timestamp_member_of_every_operation_is_range_checked():
    # Found from the model, so an operation added to botocore later is covered without a change here.
    def timestamp_paths(shape, path):
        if shape.type_name == "timestamp":
            yield path
        elif shape.type_name == "structure":
            for name, member in shape.members.items():
                yield from timestamp_paths(member, (*path, name))

    paths = [p for name in operation_names() for p in timestamp_paths(JOB_OPERATION.members[name], (name,))]
    assert paths  # RetainUntilDate, ObjectLockRetainUntilDate, ModifiedSinceConstraint, ...
    for path in paths:
        operation: dict = {}
        node = operation
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = "1e308"
        assert any(
            line.startswith("operation." + ".".join(path) + ": '1e308' is out of range")
            for line in operation_errors(operation)
        ), path


UNICODE_PATTERNS = sorted(
    {
        pattern
        for name in MODEL.shape_names
        if "\\p{" in (pattern := MODEL.shape_for(name).metadata.get("pattern") or "")
    }
)


@pytest.mark.parametrize("pattern", UNICODE_PATTERNS)
@settings(max_examples=300, deadline=None)
@given(value=st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=40))
def test_an_ascii_value_is_decided_as_the_whole_unicode_pattern_decides_it(pattern, value):
    """The ASCII-only translation (categories limited to their ASCII members, no listing of every code
    point) accepts and refuses an ASCII value exactly as the full translation does."""
    ascii_only, full = _compiled_pattern(pattern, True), _compiled_pattern(pattern, False)

    assert ascii_only is not None and full is not None
    assert bool(ascii_only.search(value)) == bool(full.search(value))
