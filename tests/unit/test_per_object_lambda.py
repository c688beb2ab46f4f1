"""examples/per_object_lambda: the result codes a LambdaInvoke job's function must give S3."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

APP = Path(__file__).resolve().parents[2] / "examples" / "per_object_lambda" / "app.py"
BUCKET = "my-source-bucket"


def load_app():
    spec = importlib.util.spec_from_file_location("per_object_lambda_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


app = load_app()


class Context:
    function_name = "batchpipe-per-object"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:batchpipe-per-object"
    aws_request_id = "req-1"


def batch_event(key: str, *, version_id: str | None = None, user_arguments: dict | None = None) -> dict:
    """Invocation schema 2.0, as the S3 user guide shows it (one task per invocation)."""
    return {
        "invocationSchemaVersion": "2.0",
        "invocationId": "YXNkbGZqYWRmaiBhc2RmdW9hZHNmZGpmaGFzbGtkaGZza2RmaAo",
        "job": {
            "id": "f3cc4f60-61f6-4a2b-8a21-d07600c373ce",
            "userArguments": user_arguments
            if user_arguments is not None
            else {"expectedContentTypePrefix": "image/"},
        },
        "tasks": [
            {"taskId": "dGFza2lkZ29lc2hlcmUK", "s3Key": key, "s3VersionId": version_id, "s3Bucket": BUCKET}
        ],
    }


@pytest.fixture
def s3() -> Iterator[object]:
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with mock.patch.dict(os.environ, env), mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


def result_of(response: dict) -> tuple[str, str]:
    (result,) = response["results"]
    assert result["taskId"] == "dGFza2lkZ29lc2hlcmUK"
    assert response["invocationId"] == "YXNkbGZqYWRmaiBhc2RmdW9hZHNmZGpmaGFzbGtkaGZza2RmaAo"
    assert response["invocationSchemaVersion"] == "2.0"
    return result["resultCode"], result["resultString"]


def test_an_existing_image_succeeds(s3) -> None:
    s3.put_object(Bucket=BUCKET, Key="photos/a b+c.jpg", Body=b"x" * 10, ContentType="image/jpeg")
    # Keys arrive URL-encoded the way batchpipe writes manifests (space %20, plus %2B).
    code, message = result_of(app.handler(batch_event("photos/a%20b%2Bc.jpg"), Context()))
    assert (code, message) == ("Succeeded", "image/jpeg 10 bytes")


def test_a_missing_object_is_a_permanent_failure(s3) -> None:
    code, message = result_of(app.handler(batch_event("photos/gone.jpg"), Context()))
    assert code == "PermanentFailure"
    assert message.startswith("404 ")


def test_a_missing_version_is_a_permanent_failure(s3) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=BUCKET, Key="photos/v.jpg", Body=b"x", ContentType="image/jpeg")
    event = batch_event("photos/v.jpg", version_id="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")
    code, _ = result_of(app.handler(event, Context()))
    assert code == "PermanentFailure"


def test_an_unexpected_content_type_is_a_permanent_failure(s3) -> None:
    s3.put_object(Bucket=BUCKET, Key="photos/a.txt", Body=b"x", ContentType="text/plain")
    code, message = result_of(app.handler(batch_event("photos/a.txt"), Context()))
    assert code == "PermanentFailure"
    assert "text/plain" in message


def test_throttling_is_a_temporary_failure(s3, monkeypatch) -> None:
    s3.put_object(Bucket=BUCKET, Key="photos/a.jpg", Body=b"x", ContentType="image/jpeg")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no retry sleeps inside the test

    def slow_down(request, **_):
        # What S3 answers under load: HTTP 503 SlowDown (no body for HEAD).
        return AWSResponse(request.url, 503, {"x-amz-request-id": "r"}, _EmptyRaw())

    # First in line, ahead of moto: the handler's own client gets S3's throttling answer.
    session_events = boto3._get_default_session().events
    session_events.register_first("before-send.s3.HeadObject", slow_down)
    try:
        code, message = result_of(app.handler(batch_event("photos/a.jpg"), Context()))
    finally:
        session_events.unregister("before-send.s3.HeadObject", slow_down)
    assert code == "TemporaryFailure"
    assert message.startswith("503 ")


class _EmptyRaw:
    def stream(self, **_):
        yield b""
