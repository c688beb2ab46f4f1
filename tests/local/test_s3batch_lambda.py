"""LambdaInvoke: the events S3 sends (schema 1.0 and 2.0) and how result codes are honoured."""

from __future__ import annotations

import pytest

FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:batch-worker"


class RecordingFunction:
    """A Lambda handler in-process: answers each task with the next scripted result code."""

    def __init__(self, *codes: str, result_string: str = "done") -> None:
        self.codes = list(codes)
        self.result_string = result_string
        self.events: list[dict] = []

    def __call__(self, function_arn: str, event: dict) -> dict:
        assert function_arn == FUNCTION
        self.events.append(event)
        code = self.codes.pop(0) if len(self.codes) > 1 else self.codes[0]
        return {
            "invocationSchemaVersion": event["invocationSchemaVersion"],
            "treatMissingKeysAs": "PermanentFailure",
            "invocationId": event["invocationId"],
            "results": [
                {"taskId": task["taskId"], "resultCode": code, "resultString": self.result_string}
                for task in event["tasks"]
            ],
        }


def _world(s3batch_world, function):
    s3batch_world.start(lambda_invoker=function)
    s3batch_world.bucket("src-bkt", versioned=True)
    return s3batch_world


def test_schema_1_0_event_shape(s3batch_world):
    function = RecordingFunction("Succeeded")
    world = _world(s3batch_world, function)
    version = world.put("src-bkt", "in dir/a b.txt")
    manifest = world.manifest(
        [["src-bkt", "in%20dir/a%20b.txt", version]], fields=("Bucket", "Key", "VersionId")
    )

    job = world.run({"LambdaInvoke": {"FunctionArn": FUNCTION}}, manifest)

    (event,) = function.events
    assert set(event) == {"invocationSchemaVersion", "invocationId", "job", "tasks"}
    assert event["invocationSchemaVersion"] == "1.0"
    assert event["job"] == {"id": job["JobId"]}
    (task,) = event["tasks"]
    assert set(task) == {"taskId", "s3Key", "s3VersionId", "s3BucketArn"}
    assert task["s3Key"] == "in%20dir/a%20b.txt"
    assert task["s3VersionId"] == version
    assert task["s3BucketArn"] == "arn:aws:s3:::src-bkt"
    assert isinstance(event["invocationId"], str) and event["invocationId"]
    assert world.report_lines(job["JobId"]) == {
        "succeeded": [f"src-bkt,in%20dir/a%20b.txt,{version},succeeded,200,,done"]
    }


def test_schema_2_0_event_carries_user_arguments_and_bucket_name(s3batch_world):
    function = RecordingFunction("Succeeded")
    world = _world(s3batch_world, function)
    operation = {
        "LambdaInvoke": {
            "FunctionArn": FUNCTION,
            "InvocationSchemaVersion": "2.0",
            "UserArguments": {"mode": "dry", "limit": "5"},
        }
    }

    job = world.run(operation, world.manifest([["src-bkt", "k"]]))

    (event,) = function.events
    assert event["invocationSchemaVersion"] == "2.0"
    assert event["job"] == {"id": job["JobId"], "userArguments": {"mode": "dry", "limit": "5"}}
    assert event["tasks"] == [
        {"taskId": event["tasks"][0]["taskId"], "s3Key": "k", "s3VersionId": None, "s3Bucket": "src-bkt"}
    ]


def test_permanent_failure_is_reported_with_the_result_string(s3batch_world):
    world = _world(s3batch_world, RecordingFunction("PermanentFailure", result_string="bad input"))

    job = world.run({"LambdaInvoke": {"FunctionArn": FUNCTION}}, world.manifest([["src-bkt", "k"]]))

    assert job["Status"] == "Complete"
    assert world.report_lines(job["JobId"]) == {
        "failed": ["src-bkt,k,,failed,200,PermanentFailure,bad input"]
    }


def test_temporary_failure_is_redriven_within_the_job(s3batch_world):
    function = RecordingFunction("TemporaryFailure", "TemporaryFailure", "Succeeded")
    world = _world(s3batch_world, function)

    job = world.run({"LambdaInvoke": {"FunctionArn": FUNCTION}}, world.manifest([["src-bkt", "k"]]))

    assert len(function.events) == 3
    assert len({event["tasks"][0]["taskId"] for event in function.events}) == 1
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 1


def test_temporary_failure_at_the_last_redrive_is_reported_failed(s3batch_world):
    function = RecordingFunction("TemporaryFailure", result_string="busy")
    world = _world(s3batch_world, function)

    job = world.run({"LambdaInvoke": {"FunctionArn": FUNCTION}}, world.manifest([["src-bkt", "k"]]))

    assert len(function.events) == 1 + world.engine.lambda_redrives
    assert world.report_lines(job["JobId"]) == {"failed": ["src-bkt,k,,failed,200,TemporaryFailure,busy"]}


def test_a_function_error_is_a_permanent_failure(s3batch_world):
    def crashing(function_arn: str, event: dict) -> dict:
        raise RuntimeError("Task timed out after 3.00 seconds")

    world = _world(s3batch_world, crashing)

    job = world.run({"LambdaInvoke": {"FunctionArn": FUNCTION}}, world.manifest([["src-bkt", "k"]]))

    assert world.report_lines(job["JobId"]) == {
        "failed": [
            'src-bkt,k,,failed,200,PermanentFailure,"Lambda returned function error: '
            '{""errorMessage"": ""Task timed out after 3.00 seconds"", ""errorType"": ""RuntimeError""}"'
        ]
    }


@pytest.mark.parametrize(
    ("response", "code"),
    [
        ({"results": []}, "PermanentFailure"),
        ({"results": [], "treatMissingKeysAs": "TemporaryFailure"}, "TemporaryFailure"),
        ("not json", "PermanentFailure"),
    ],
)
def test_a_response_without_the_tasks_result(s3batch_world, response, code):
    world = _world(s3batch_world, lambda arn, event: response)

    job = world.run({"LambdaInvoke": {"FunctionArn": FUNCTION}}, world.manifest([["src-bkt", "k"]]))

    (line,) = world.report_lines(job["JobId"])["failed"]
    assert line.split(",")[3:6] == ["failed", "200", code]


def test_without_an_invoker_tasks_fail_as_not_supported(s3batch_env):
    s3batch_env.bucket("src-bkt")

    job = s3batch_env.run(
        {"LambdaInvoke": {"FunctionArn": FUNCTION}}, s3batch_env.manifest([["src-bkt", "k"]])
    )

    (line,) = s3batch_env.report_lines(job["JobId"])["failed"]
    assert line.split(",")[3:6] == ["failed", "400", "NotSupportedByLocalEngine"]
