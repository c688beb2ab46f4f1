"""An asynchronous invocation that fails for good is kept, with its error, where an alarm sees it.

EventBridge invokes its Lambda targets asynchronously (the job status rule, the execution-ended rule,
the hourly sweep's schedule): a function error is retried by Lambda and then, without an on-failure
destination, dropped. The template gives every such function one (AsyncFailureQueue); the embedded
AWS retries as Lambda does and sends Lambda's invocation record there, so these tests read the
record a person would read.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchpipe.local.stack import LocalStack
from batchpipe.local.template import function_properties, load_template, resources_of_type

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "job-status-changed-complete.json"
ASYNC_EVENT_TYPES = ("EventBridgeRule", "Schedule")


def _async_functions() -> list[str]:
    """Functions EventBridge invokes: every function with an EventBridgeRule or Schedule event."""
    template = load_template()
    return sorted(
        logical_id
        for logical_id, resource in resources_of_type(template, "AWS::Serverless::Function").items()
        if any(e["Type"] in ASYNC_EVENT_TYPES for e in resource["Properties"].get("Events", {}).values())
    )


def _failures(stack: LocalStack) -> list[dict]:
    sqs = stack.client("sqs")
    url = sqs.get_queue_url(QueueName=stack._attr("AsyncFailureQueue", "QueueName"))["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
        "Messages", []
    )
    return [json.loads(message["Body"]) for message in messages]


def _broken(stack: LocalStack, logical_id: str, calls: list[dict]) -> None:
    """The function fails every invocation, as one does whose dependency is down."""

    def handler(event: dict, context: object) -> dict:
        calls.append(event)
        raise RuntimeError(f"{logical_id}: DynamoDB is unavailable")

    stack.functions.by_logical_id[logical_id].load = lambda: handler


def _trigger(stack: LocalStack, logical_id: str) -> dict:
    """One asynchronous invocation of the function, the way EventBridge makes it; returns the event."""
    (rule,) = [rule for rule in stack.router.rules if rule.target == logical_id]
    if rule.pattern is None:
        stack.fire_schedule(rule.name)
        return stack.router.received[-1]
    if logical_id == "JobStatusFunction":
        event = json.loads(FIXTURE.read_text())
    else:
        event = {
            "version": "0",
            "id": "0b7f4d7e-6c1a-4c38-9a55-4f0d3a9f1e21",
            "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states",
            "account": stack.account_id,
            "time": "2026-12-06T12:00:00Z",
            "region": stack.region,
            "resources": [f"arn:aws:states:{stack.region}:{stack.account_id}:execution:x:gone"],
            "detail": {
                "executionArn": f"{stack.state_machine_arn.replace(':stateMachine:', ':execution:')}:gone",
                "stateMachineArn": stack.state_machine_arn,
                "name": "gone",
                "status": "ABORTED",
                "startDate": 1_765_000_000_000,
            },
        }
    assert rule.matches(event)
    stack.router.put_event(event)
    return event


def test_every_function_eventbridge_invokes_has_an_on_failure_destination_and_a_dead_letter_queue():
    template = load_template()
    functions = _async_functions()
    assert {"JobStatusFunction", "CancelJobsFunction", "SweepJobsFunction"} <= set(functions)
    for logical_id in functions:
        properties = function_properties(template, logical_id)
        on_failure = properties["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
        assert on_failure == {"Type": "SQS", "Destination": {"Fn::GetAtt": ["AsyncFailureQueue", "Arn"]}}, (
            logical_id
        )
        for event in properties["Events"].values():
            # The rule's own dead-letter queue: events EventBridge could not hand to Lambda at all.
            assert event["Properties"]["DeadLetterConfig"] == {
                "Arn": {"Fn::GetAtt": ["AsyncFailureQueue", "Arn"]}
            }


def test_the_failure_queue_has_an_alarm_that_notifies():
    alarms = resources_of_type(load_template(), "AWS::CloudWatch::Alarm")
    watching = [
        alarm["Properties"]
        for alarm in alarms.values()
        if alarm["Properties"].get("Namespace") == "AWS/SQS"
        and alarm["Properties"]["Dimensions"]
        == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["AsyncFailureQueue", "QueueName"]}}]
    ]
    (alarm,) = watching
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


@pytest.mark.parametrize("logical_id", _async_functions())
def test_an_invocation_that_fails_every_try_lands_in_the_failure_queue_with_its_event_and_error(logical_id):
    calls: list[dict] = []
    with LocalStack() as stack:
        _broken(stack, logical_id, calls)
        event = _trigger(stack, logical_id)
        stack.router.flush()
        failures = _failures(stack)
        retries = function_properties(stack.template, logical_id)["EventInvokeConfig"]["MaximumRetryAttempts"]
        function_arn = stack.arn(logical_id)

    assert len(calls) == 1 + retries  # Lambda's retries, then the record
    (record,) = failures
    assert record["requestPayload"] == event
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 1 + retries
    assert record["requestContext"]["functionArn"] == f"{function_arn}:$LATEST"
    assert record["responsePayload"]["errorType"] == "RuntimeError"
    assert "DynamoDB is unavailable" in record["responsePayload"]["errorMessage"]


def test_an_invocation_that_succeeds_on_a_retry_leaves_nothing_in_the_failure_queue():
    calls: list[dict] = []
    with LocalStack() as stack:
        function = stack.functions.by_logical_id["JobStatusFunction"]
        real = function.load()

        def flaky(event: dict, context: object) -> dict:
            calls.append(event)
            if len(calls) == 1:
                raise RuntimeError("DynamoDB is unavailable")
            return real(event, context)

        function.load = lambda: flaky
        _trigger(stack, "JobStatusFunction")
        stack.router.flush()
        failures = _failures(stack)

    assert len(calls) == 2
    assert failures == []
