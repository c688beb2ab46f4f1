"""The embedded Step Functions fails a Map whose aggregated output passes 256 KiB, as AWS does.

Step Functions quotas: 256 KiB per state's input or output; a Map's output is its children's results
in one array. The error is States.DataLimitExceeded, which States.ALL does not catch (developer
guide, "Error handling"): the execution fails even though the Map has a Catch for States.ALL. Tested
on both sides of the limit with children that each return a 1,000-character result.
"""

from __future__ import annotations

import json

import pytest

from batchpipe.local.stack import STATE_PAYLOAD_LIMIT_BYTES, LocalStack

CHILD_RESULT_CHARS = 1000


def definition() -> dict:
    return {
        "StartAt": "Fan",
        "States": {
            "Fan": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Child",
                    "States": {
                        "Child": {"Type": "Pass", "Result": {"blob": "x" * CHILD_RESULT_CHARS}, "End": True}
                    },
                },
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Succeed"},
        },
    }


def children_for(total_bytes: int) -> int:
    # Each child adds its result, {"blob":"x..."} (CHILD_RESULT_CHARS + 11 bytes), and a comma.
    return total_bytes // (CHILD_RESULT_CHARS + 12)


@pytest.fixture(scope="module")
def stack():
    with LocalStack() as running:
        yield running


def run_map(stack: LocalStack, children: int, name: str):
    sfn = stack.client("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"map-limit-{name}",
        definition=json.dumps(definition()),
        roleArn=f"arn:aws:iam::{stack.account_id}:role/map-limit",
    )["stateMachineArn"]
    arn = sfn.start_execution(
        stateMachineArn=machine, name=name, input=json.dumps({"items": list(range(children))})
    )["executionArn"]
    return stack.wait(arn)


def test_a_map_output_just_under_256_kib_succeeds(stack: LocalStack) -> None:
    children = children_for(STATE_PAYLOAD_LIMIT_BYTES) - 1
    execution = run_map(stack, children, "under")
    assert execution.status == "SUCCEEDED"
    assert len(execution.output) == children


def test_a_map_output_over_256_kib_fails_the_execution_past_its_catch(stack: LocalStack) -> None:
    execution = run_map(stack, children_for(STATE_PAYLOAD_LIMIT_BYTES) + 2, "over")
    assert execution.status == "FAILED"
    assert execution.error == "States.DataLimitExceeded"
    assert "Caught" not in execution.states_entered
