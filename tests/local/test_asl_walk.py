"""batchpipe.local.asl_walk, the interpreter `preview` walks the dry-run path with: on definitions of
Pass, Choice, Wait, Succeed and Fail states it ends as moto's Step Functions interpreter does (same
output, or same error); Retry, Catch and Task results follow the developer guide ("Handling errors",
"Processing input and output"); anything else is refused by name."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from moto import mock_aws

from batchpipe.local.asl_walk import StatesError, Walk, WalkUnsupported
from batchpipe.local.isolation import isolated_environment

ROLE = "arn:aws:iam::123456789012:role/sfn"

DEFINITIONS = {
    "paths and intrinsics": (
        {
            "StartAt": "Shape",
            "States": {
                "Shape": {
                    "Type": "Pass",
                    "Parameters": {
                        "name.$": "$$.Execution.Name",
                        "sum.$": "States.MathAdd($.n, 5)",
                        "text.$": "States.JsonToString($.doc)",
                        "hash.$": "States.Hash($.word, 'SHA-256')",
                        "label.$": "States.Format('{}-{}', $.word, $.n)",
                        "nested": {"word.$": "$.word", "fixed": [1, {"n.$": "$.n"}]},
                    },
                    "ResultPath": "$.shaped.deep",
                    "Next": "Keep",
                },
                "Keep": {"Type": "Pass", "Result": {"ignored": True}, "ResultPath": None, "Next": "Out"},
                "Out": {"Type": "Pass", "InputPath": "$.shaped", "OutputPath": "$.deep", "End": True},
            },
        },
        {"n": 2, "word": "photos/ü é", "doc": {"a": [1, 2], "b": "x y"}},
    ),
    "choices and a loop": (
        {
            "StartAt": "More?",
            "States": {
                "More?": {
                    "Type": "Choice",
                    "Choices": [
                        {
                            "And": [
                                {"Variable": "$.count", "NumericGreaterThanEquals": 3},
                                {"Not": {"Variable": "$.flag", "BooleanEquals": False}},
                            ],
                            "Next": "Named?",
                        },
                        {"Variable": "$.missing", "IsPresent": True, "Next": "Broken"},
                    ],
                    "Default": "Count",
                },
                "Count": {
                    "Type": "Pass",
                    "Parameters": {
                        "count.$": "States.MathAdd($.count, 1)",
                        "flag.$": "$.flag",
                        "name.$": "$.name",
                    },
                    "Next": "Pause",
                },
                "Pause": {"Type": "Wait", "SecondsPath": "$.count", "Next": "More?"},
                "Named?": {
                    "Type": "Choice",
                    "Choices": [
                        {
                            "Or": [
                                {"Variable": "$.name", "StringEquals": "nope"},
                                {"Variable": "$.name", "StringEquals": "retag"},
                            ],
                            "Next": "Done",
                        }
                    ],
                    "Default": "Broken",
                },
                "Broken": {"Type": "Fail", "Error": "Unexpected", "Cause": "a branch that must not be taken"},
                "Done": {"Type": "Succeed"},
            },
        },
        {"count": 0, "flag": True, "name": "retag"},
    ),
    "a Fail state": (
        {
            "StartAt": "Which?",
            "States": {
                "Which?": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.n", "NumericLessThan": 10, "Next": "Stop"}],
                    "Default": "Stop",
                },
                "Stop": {"Type": "Fail", "Error": "TooSmall", "Cause": "n below 10"},
            },
        },
        {"n": 1},
    ),
    "a path that selects nothing": (
        {
            "StartAt": "Shape",
            "States": {"Shape": {"Type": "Pass", "Parameters": {"x.$": "$.no.such"}, "End": True}},
        },
        {"n": 1},
    ),
}


def _on_moto(definition: dict, document: dict, name: str) -> dict:
    with isolated_environment(), mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        machine = sfn.create_state_machine(name="walk", definition=json.dumps(definition), roleArn=ROLE)
        arn = sfn.start_execution(
            stateMachineArn=machine["stateMachineArn"], name=name, input=json.dumps(document)
        )["executionArn"]
        deadline = time.monotonic() + 120
        while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            assert time.monotonic() < deadline, "moto's execution did not end"
            time.sleep(0.05)
    return described


def _walk(definition: dict, document: dict, name: str, task=None):
    context = {
        "Execution": {"Id": f"arn:aws:states:us-east-1:123456789012:execution:walk:{name}", "Name": name}
    }
    return Walk(definition, context, task or (lambda resource, parameters: None)).run(document)


def _task_machine(**work) -> dict:
    """One Lambda Task state, ``Work``, with the given fields, then a Pass state ``After``."""
    return {
        "StartAt": "Work",
        "States": {
            "Work": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", **work},
            "After": {"Type": "Pass", "End": True},
        },
    }


@pytest.mark.parametrize("case", DEFINITIONS)
def test_the_walk_ends_as_motos_interpreter_does(case):
    definition, document = DEFINITIONS[case]

    expected = _on_moto(definition, document, "walked")
    walked = _walk(definition, document, "walked")

    assert walked.status == expected["status"]
    if walked.status == "SUCCEEDED":
        assert walked.output == json.loads(expected["output"])
    else:
        assert walked.error == expected.get("error")


def test_no_matching_choice_without_default_fails_the_execution_as_documented():
    """States.NoChoiceMatched (Amazon States Language, "Errors"; moto's interpreter says States.Runtime)."""
    definition = {
        "StartAt": "Which?",
        "States": {
            "Which?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "StringEquals": "1", "Next": "End"}],
            },
            "End": {"Type": "Succeed"},
        },
    }

    walked = _walk(definition, {"n": 1}, "unmatched")

    assert (walked.status, walked.error) == ("FAILED", "States.NoChoiceMatched")


def test_a_task_is_retried_then_caught_into_its_result_path():
    calls = []

    def task(resource, parameters):
        calls.append(parameters)
        raise StatesError("Custom.Flaky", '{"errorMessage": "no"}')

    definition = _task_machine(
        Parameters={"Payload.$": "$.input"},
        Retry=[
            {"ErrorEquals": ["Other"], "MaxAttempts": 5},
            {"ErrorEquals": ["Custom.Flaky"], "MaxAttempts": 2},
        ],
        Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "After"}],
        Next="After",
    )

    walked = _walk(definition, {"input": {"k": 1}}, "retried", task)

    assert len(calls) == 3  # the first try and MaxAttempts retries
    assert calls[0] == {"Payload": {"k": 1}}
    assert walked.status == "SUCCEEDED"
    assert walked.output == {
        "input": {"k": 1},
        "failure": {"Error": "Custom.Flaky", "Cause": '{"errorMessage": "no"}'},
    }


def test_a_task_result_goes_through_result_selector_and_result_path():
    definition = _task_machine(
        Parameters={"Payload.$": "$"},
        ResultSelector={"count.$": "$.Payload.count"},
        ResultPath="$.result",
        OutputPath="$.result",
        End=True,
    )

    walked = _walk(
        definition, {"a": 1}, "selected", lambda resource, parameters: {"Payload": {"count": 7, "x": 1}}
    )

    assert walked.output == {"count": 7}
    exited = [e for e in walked.history if e["type"] == "TaskStateExited"]
    assert json.loads(exited[0]["stateExitedEventDetails"]["output"]) == {"count": 7}


def test_states_all_does_not_catch_a_runtime_error():
    definition = _task_machine(
        ResultSelector={"x.$": "$.Payload.absent"},
        Catch=[{"ErrorEquals": ["States.ALL"], "Next": "After"}],
        Next="After",
    )

    walked = _walk(definition, {}, "runtime", lambda resource, parameters: {"Payload": {}})

    assert walked.status == "FAILED"
    assert walked.error == "States.Runtime"


@pytest.mark.parametrize(
    "state",
    [
        {"Type": "Map", "ItemProcessor": {}, "End": True},
        {"Type": "Pass", "Parameters": {"x.$": "$.items[0]"}, "End": True},
        {"Type": "Pass", "Parameters": {"x.$": "States.ArrayLength($.items)"}, "End": True},
        {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "TimeoutSeconds": 5, "End": True},
    ],
    ids=["a Map state", "a filter path", "another intrinsic", "a task timeout"],
)
def test_what_the_walk_does_not_evaluate_is_refused_by_name(state):
    with pytest.raises(WalkUnsupported, match="state Only"):
        _walk({"StartAt": "Only", "States": {"Only": state}}, {"items": [1]}, "refused")
