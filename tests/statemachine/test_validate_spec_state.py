"""ValidateSpec is the first state: a bad spec fails the execution there, naming the field."""

from __future__ import annotations

import json

from batchpipe_core.identity import start_stamp


def test_valid_spec_passes_validate_spec_with_defaults_filled(stack):
    spec = {"name": "retag", "operation": {"S3PutObjectTagging": {"TagSet": [{"Key": "k", "Value": "v"}]}}}

    execution = stack.run(spec, name="valid-spec")

    assert execution.states_entered[0] == "ValidateSpec"
    (validated,) = execution.task_outputs("ValidateSpec")
    assert validated["spec"]["operation"] == spec["operation"]
    assert validated["spec"]["report"] == {"scope": "AllTasks"}
    assert validated["spec"]["retry"]["maxAttempts"] == int(stack.parameter_values["MaxAttempts"])
    assert validated["run"]["executionName"] == "valid-spec"
    started = validated["run"]["startTime"]
    assert validated["run"]["prefix"] == f"runs/retag/valid-spec/{start_stamp(started)}/"
    assert validated["run"]["runId"] == f"{execution.arn}@{start_stamp(started)}"
    assert validated["run"]["bucket"] == stack.pipeline_bucket
    # The run went on past the first state.
    assert len(execution.states_entered) > 1


def test_invalid_spec_fails_at_validate_spec_naming_the_field(stack):
    spec = {
        "operation": {"S3PutObjectTagging": {"TagSet": [{"Key": "k", "Value": "v"}]}},
        "filter": {"keyRegex": "(unclosed"},
    }

    execution = stack.run(spec, name="invalid-spec")

    assert execution.status == "FAILED"
    assert execution.states_entered == ["ValidateSpec"]
    assert execution.error == "SpecValidationError"
    assert "filter.keyRegex" in json.loads(execution.cause)["errorMessage"]


def test_unknown_field_fails_at_validate_spec(stack):
    spec = {"operation": {"S3DeleteObjectTagging": {}}, "dryrun": True}

    execution = stack.run(spec, name="typo")

    assert execution.status == "FAILED"
    assert execution.error == "SpecValidationError"
    assert "dryrun" in json.loads(execution.cause)["errorMessage"]


def test_missing_operation_fails_at_validate_spec(stack):
    execution = stack.run({"name": "no-op"}, name="no-operation")

    assert execution.status == "FAILED"
    assert execution.error == "SpecValidationError"
    assert "operation" in json.loads(execution.cause)["errorMessage"]
