"""The ``LambdaInvoke`` operation: one invocation per task, in the event shape S3 sends.

Schema 1.0 tasks carry ``s3BucketArn``; schema 2.0 tasks carry ``s3Bucket`` and the job carries
``userArguments``. ``s3Key`` is the key as the manifest wrote it (URL-encoded), which is why handlers
decode it. The function answers a result code per task: ``Succeeded``, ``PermanentFailure``, or
``TemporaryFailure``, which S3 redrives within the job and reports failed if it is still temporary
at the last redrive. A function error (the handler raised) is a permanent failure.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping
from typing import Any

from .context import OperationContext
from .tasks import Task, TaskOutcome

SCHEMA_VERSIONS = ("1.0", "2.0")
RESULT_CODES = ("Succeeded", "TemporaryFailure", "PermanentFailure")
#: Used when the response names no result for the task and no ``treatMissingKeysAs`` (our choice).
MISSING_RESULT_DEFAULT = "PermanentFailure"


def validate(params: Mapping[str, Any]) -> None:
    if not params.get("FunctionArn"):
        raise ValueError("LambdaInvoke requires FunctionArn")
    schema = params.get("InvocationSchemaVersion", "1.0")
    if schema not in SCHEMA_VERSIONS:
        raise ValueError(f"LambdaInvoke InvocationSchemaVersion must be 1.0 or 2.0, not {schema!r}")
    if params.get("UserArguments") and schema != "2.0":
        raise ValueError("LambdaInvoke UserArguments requires InvocationSchemaVersion 2.0")
    if len(params.get("UserArguments") or {}) > 10:
        raise ValueError("LambdaInvoke UserArguments takes at most 10 entries")


def _opaque_id() -> str:
    return base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def invocation_event(params: Mapping[str, Any], job_id: str, task: Task, task_id: str) -> dict:
    schema = params.get("InvocationSchemaVersion", "1.0")
    job: dict[str, Any] = {"id": job_id}
    entry: dict[str, Any] = {"taskId": task_id, "s3Key": task.key, "s3VersionId": task.version_id}
    if schema == "2.0":
        job["userArguments"] = dict(params.get("UserArguments") or {})
        entry["s3Bucket"] = task.bucket
    else:
        entry["s3BucketArn"] = f"arn:aws:s3:::{task.bucket}"
    return {"invocationSchemaVersion": schema, "invocationId": _opaque_id(), "job": job, "tasks": [entry]}


def invoke(context: OperationContext, params: Mapping[str, Any], task: Task) -> TaskOutcome:
    if context.lambda_invoker is None:
        return TaskOutcome.not_supported("LambdaInvoke without a Lambda invoker")
    task_id = _opaque_id()
    for redrive in range(context.lambda_redrives + 1):
        event = invocation_event(params, context.job_id, task, task_id)
        try:
            response = context.lambda_invoker(params["FunctionArn"], event)
        except Exception as exc:  # noqa: BLE001 - any handler error is Lambda's function error
            detail = json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__})
            return TaskOutcome.failure(200, "PermanentFailure", f"Lambda returned function error: {detail}")
        code, message = task_result(response, task_id)
        if code == "TemporaryFailure" and redrive < context.lambda_redrives:
            continue
        if code == "Succeeded":
            return TaskOutcome.success(message)
        return TaskOutcome.failure(200, code, message)
    raise AssertionError("unreachable: the last redrive returns")


def task_result(response: Any, task_id: str) -> tuple[str, str]:
    """(resultCode, resultString) the function gave for the task."""
    if isinstance(response, (bytes, str)):
        try:
            response = json.loads(response)
        except ValueError:
            return "PermanentFailure", "Lambda returned a response that is not JSON"
    if not isinstance(response, dict):
        return "PermanentFailure", "Lambda returned a response that is not a JSON object"
    for result in response.get("results") or []:
        if isinstance(result, dict) and result.get("taskId") == task_id:
            code = result.get("resultCode")
            message = "" if result.get("resultString") is None else str(result["resultString"])
            if code not in RESULT_CODES:
                return "PermanentFailure", f"Lambda returned an invalid resultCode {code!r}"
            return code, message
    missing = response.get("treatMissingKeysAs") or MISSING_RESULT_DEFAULT
    if missing not in RESULT_CODES:
        missing = MISSING_RESULT_DEFAULT
    return missing, "Lambda response has no result for the task"
