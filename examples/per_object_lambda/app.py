"""A sample per-object Lambda for LambdaInvoke jobs (invocation schema 2.0, see examples/lambda-invoke.json).

It checks that each object exists and that its content type starts with the job's
``expectedContentTypePrefix`` user argument. What it demonstrates is the result codes batchpipe's
retry loop depends on:

- ``TemporaryFailure`` for throttling and 5xx: S3 redrives the task within the job, and if it still
  fails batchpipe reruns it in the next attempt;
- ``PermanentFailure`` for a missing object (or any other client error): never retried;
- ``Succeeded`` otherwise, with a short result string that lands in the completion report.

Deploy it on its own and list its ARN in the stack's LambdaInvokeFunctionArns parameter.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import (
    S3BatchOperationEvent,
    S3BatchOperationResponse,
    event_source,
)
from aws_lambda_powertools.utilities.data_classes.s3_batch_operation_event import (
    S3BatchOperationResponseRecord,
    S3BatchOperationTask,
)
from botocore.exceptions import BotoCoreError, ClientError

logger = Logger(service="batchpipe-per-object")

RETRIABLE_ERROR_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
    }
)
MISSING_OBJECT_ERROR_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "NotFound", "404"})


def classify_error(exc: ClientError) -> tuple[str, str]:
    """(result code, result string) for an S3 error: throttling/5xx retriable, the rest permanent."""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    if code in RETRIABLE_ERROR_CODES or status == 429 or status >= 500:
        return "TemporaryFailure", f"{status} {code}: retry later"
    if code in MISSING_OBJECT_ERROR_CODES or status == 404:
        return "PermanentFailure", f"404 {code or 'NoSuchKey'}: object is gone"
    return "PermanentFailure", f"{status} {code}"


def check_object(s3: Any, task: S3BatchOperationTask, expected_prefix: str) -> S3BatchOperationResponseRecord:
    request = {"Bucket": task.s3_bucket, "Key": task.s3_key}
    if task.s3_version_id:
        request["VersionId"] = task.s3_version_id
    try:
        head = s3.head_object(**request)
    except ClientError as exc:
        result_code, result_string = classify_error(exc)
        return task.build_task_batch_response(result_code, result_string)
    except BotoCoreError as exc:  # connection dropped, read timeout: worth another try
        return task.build_task_batch_response("TemporaryFailure", type(exc).__name__)
    content_type = head.get("ContentType", "")
    if not content_type.startswith(expected_prefix):
        return task.build_task_batch_response(
            "PermanentFailure", f"content type {content_type!r} does not start with {expected_prefix!r}"
        )
    return task.build_task_batch_response("Succeeded", f"{content_type} {head.get('ContentLength', 0)} bytes")


@logger.inject_lambda_context
@event_source(data_class=S3BatchOperationEvent)
def handler(event: S3BatchOperationEvent, context: Any) -> dict:
    # Tasks S3 sends but we somehow did not answer are retried rather than silently passed.
    response = S3BatchOperationResponse(
        event.invocation_schema_version, event.invocation_id, treat_missing_keys_as="TemporaryFailure"
    )
    expected_prefix = event.job.user_arguments.get("expectedContentTypePrefix", "")
    # S3 Batch Operations sends exactly one task per invocation (the response must hold one result).
    task = event.task
    result = check_object(boto3.client("s3"), task, expected_prefix)
    logger.info("task done", extra={"key": task.s3_key, "resultCode": result.result_code})
    response.add_result(result)
    return response.asdict()
