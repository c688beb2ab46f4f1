"""The job operations, performed for real on moto's S3 (one call per task).

Copy, restore, legal hold and retention go through a boto3 ``s3`` client inside the same mock, so
moto's request handling and validation apply exactly as for any caller. The two tagging operations —
the bulk of real jobs — go straight to moto's S3 backend: a boto3 round trip costs about 1 ms, which
would put a 100,000-object job well past a minute. So does PutObjectAcl, whose moto handler ignores an
XML ACL and version IDs. On the backend path S3's errors (404 NoSuchKey/NoSuchVersion, 405 on a delete
marker, tag limits) come from moto's own exceptions and status table.

Whatever moto cannot do fails the task with ``NotSupportedByLocalEngine``; nothing is skipped silently.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from botocore.exceptions import ClientError, ParamValidationError
from moto.core.errors import get_error_model
from moto.core.exceptions import ServiceException
from moto.core.utils import get_service_model
from moto.s3.models import FakeAcl, FakeDeleteMarker, FakeGrant, FakeGrantee, get_canned_acl

from . import lambda_invoke
from .context import OperationContext
from .manifest import parse_bucket_arn
from .tasks import Task, TaskFailed, TaskOutcome

TaskRunner = Callable[[Task], TaskOutcome]

_COPY_UNSUPPORTED_FIELDS = ("AnnotationDirective", "ObjectLockEventHold", "ObjectLockEventHoldDuration")
_RETENTION_UNSUPPORTED_FIELDS = ("EventHold", "EventHoldDuration")
_MOTO_CHECKSUMS = frozenset({"CRC32", "CRC32C", "SHA1", "SHA256"})
_REPLACED_METADATA = {
    "CacheControl": "CacheControl",
    "ContentDisposition": "ContentDisposition",
    "ContentEncoding": "ContentEncoding",
    "ContentLanguage": "ContentLanguage",
    "ContentType": "ContentType",
    "HttpExpiresDate": "Expires",
}
_GRANT_PARAMETERS = {
    "FULL_CONTROL": "GrantFullControl",
    "READ": "GrantRead",
    "READ_ACP": "GrantReadACP",
    "WRITE_ACP": "GrantWriteACP",
}


def validate(operation: Mapping[str, Any]) -> str:
    """The operation's name; ValueError (message for BadRequestException) if CreateJob must refuse it."""
    if len(operation) != 1:
        raise ValueError(f"Operation must name exactly one operation, not {sorted(operation) or 'none'}")
    ((name, params),) = operation.items()
    params = params or {}
    if name == "S3PutObjectCopy" and not params.get("TargetResource"):
        raise ValueError("S3PutObjectCopy requires TargetResource (the target bucket ARN)")
    if name == "S3PutObjectAcl":
        policy = params.get("AccessControlPolicy") or {}
        if ("AccessControlList" in policy) == ("CannedAccessControlList" in policy):
            raise ValueError(
                "S3PutObjectAcl requires AccessControlPolicy with exactly one of "
                "AccessControlList and CannedAccessControlList"
            )
    if name == "LambdaInvoke":
        lambda_invoke.validate(params)
    return name


def build(operation: Mapping[str, Any], context: OperationContext) -> TaskRunner:
    """A function that performs the job's operation on one task and says what S3 answered."""
    ((name, params),) = operation.items()
    params = params or {}
    if name == "LambdaInvoke":
        perform = functools.partial(lambda_invoke.invoke, context, params)
        return functools.partial(_answered, perform)
    handler = _HANDLERS.get(name)
    if handler is None:
        outcome = TaskOutcome.not_supported(f"Operation {name}")
        return lambda _task: outcome
    return functools.partial(_answered, functools.partial(handler, context, params))


def _answered(perform: TaskRunner, task: Task) -> TaskOutcome:
    """Runs one task; every S3 error becomes the task's failure with S3's status and code."""
    try:
        return perform(task)
    except TaskFailed as failed:
        return failed.outcome
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
        return TaskOutcome.failure(status, str(error.get("Code", status)), error.get("Message", str(exc)))
    except ServiceException as exc:
        return _moto_failure(exc)
    except ParamValidationError as exc:
        return TaskOutcome.failure(400, "InvalidArgument", str(exc))


def _moto_failure(exc: ServiceException) -> TaskOutcome:
    """The answer moto's S3 would have serialised for an exception raised by its backend."""
    shape = get_error_model(exc, get_service_model("s3"))
    status = int(shape.metadata.get("error", {}).get("httpStatusCode", 400))
    return TaskOutcome.failure(status, exc.code, exc.message)


def _version(task: Task) -> dict[str, str]:
    return {"VersionId": task.version_id} if task.version_id else {}


def _existing_object(context: OperationContext, task: Task) -> Any:
    """moto's key of the task, or TaskFailed with S3's answer (moto's handlers crash on some)."""
    key = context.backend().get_object(
        task.bucket, task.object_key, version_id=task.version_id, return_delete_marker=True
    )
    if key is None and task.version_id is None:
        raise TaskFailed(404, "NoSuchKey", "The specified key does not exist.")
    if key is None:
        raise TaskFailed(404, "NoSuchVersion", "The specified version does not exist.")
    if isinstance(key, FakeDeleteMarker):
        if task.version_id is None:
            raise TaskFailed(404, "NoSuchKey", "The specified key does not exist.")
        raise TaskFailed(
            405, "MethodNotAllowed", "The specified method is not allowed against this resource."
        )
    return key


def put_object_tagging(context: OperationContext, params: Mapping[str, Any], task: Task) -> TaskOutcome:
    tags: dict[str, str] = {}
    for tag in params.get("TagSet") or []:
        if tag["Key"] in tags:
            raise TaskFailed(400, "InvalidTag", "Cannot provide multiple Tags with the same key")
        tags[tag["Key"]] = tag.get("Value", "")
    key = _existing_object(context, task)
    context.backend().put_object_tagging(key, tags)
    return TaskOutcome.success()


def delete_object_tagging(context: OperationContext, params: Mapping[str, Any], task: Task) -> TaskOutcome:
    _existing_object(context, task)
    context.backend().delete_object_tagging(task.bucket, task.object_key, version_id=task.version_id)
    return TaskOutcome.success()


def put_object_copy(context: OperationContext, params: Mapping[str, Any], task: Task) -> TaskOutcome:
    unsupported = [field for field in _COPY_UNSUPPORTED_FIELDS if field in params]
    if unsupported:
        return TaskOutcome.not_supported(f"S3PutObjectCopy with {', '.join(unsupported)}")
    checksum = params.get("ChecksumAlgorithm")
    if checksum and checksum not in _MOTO_CHECKSUMS:
        return TaskOutcome.not_supported(f"S3PutObjectCopy with ChecksumAlgorithm {checksum}")
    try:
        target_bucket = parse_bucket_arn(params["TargetResource"])
    except ValueError:
        return TaskOutcome.not_supported(f"S3PutObjectCopy to {params['TargetResource']}")
    context.s3.copy_object(**copy_request(params, task, target_bucket))
    return TaskOutcome.success()


def copy_target_key(prefix: str | None, key: str) -> str:
    """``TargetKeyPrefix`` is a folder: ``Folder2`` + ``a/b.txt`` -> ``Folder2/a/b.txt`` (aws/aws-sdk#355)."""
    return f"{prefix.rstrip('/')}/{key}" if prefix else key


def copy_request(params: Mapping[str, Any], task: Task, target_bucket: str) -> dict[str, Any]:
    """CopyObject parameters for S3PutObjectCopy on one task."""
    request: dict[str, Any] = {
        "Bucket": target_bucket,
        "Key": copy_target_key(params.get("TargetKeyPrefix"), task.object_key),
        "CopySource": {"Bucket": task.bucket, "Key": task.object_key, **_version(task)},
    }
    directive = params.get("MetadataDirective")
    if directive:
        request["MetadataDirective"] = directive
    metadata = params.get("NewObjectMetadata") or {}
    if directive == "REPLACE":
        for field, parameter in _REPLACED_METADATA.items():
            if field in metadata:
                request[parameter] = metadata[field]
        if "UserMetadata" in metadata:
            request["Metadata"] = dict(metadata["UserMetadata"])
    if metadata.get("SSEAlgorithm"):
        request["ServerSideEncryption"] = "aws:kms" if metadata["SSEAlgorithm"] == "KMS" else "AES256"
    if "NewObjectTagging" in params:
        request["TaggingDirective"] = "REPLACE"
        request["Tagging"] = urlencode(
            [(tag["Key"], tag.get("Value", "")) for tag in params["NewObjectTagging"]]
        )
    if params.get("CannedAccessControlList"):
        request["ACL"] = params["CannedAccessControlList"]
    request.update(_grant_headers(params.get("AccessControlGrants") or []))
    simple = {
        "StorageClass": "StorageClass",
        "RedirectLocation": "WebsiteRedirectLocation",
        "ModifiedSinceConstraint": "CopySourceIfModifiedSince",
        "UnModifiedSinceConstraint": "CopySourceIfUnmodifiedSince",
        "ObjectLockLegalHoldStatus": "ObjectLockLegalHoldStatus",
        "ObjectLockMode": "ObjectLockMode",
        "ObjectLockRetainUntilDate": "ObjectLockRetainUntilDate",
        "BucketKeyEnabled": "BucketKeyEnabled",
        "ChecksumAlgorithm": "ChecksumAlgorithm",
    }
    for field, parameter in simple.items():
        if params.get(field) is not None:
            request[parameter] = params[field]
    if params.get("SSEAwsKmsKeyId"):
        request["ServerSideEncryption"] = "aws:kms"
        request["SSEKMSKeyId"] = params["SSEAwsKmsKeyId"]
    if params.get("RequesterPays"):
        request["RequestPayer"] = "requester"
    return request


def _grant_headers(grants: list[Mapping[str, Any]]) -> dict[str, str]:
    headers: dict[str, list[str]] = {}
    for grant in grants:
        permission = grant.get("Permission")
        parameter = _GRANT_PARAMETERS.get(permission or "")
        if parameter is None:
            raise TaskFailed(
                400, "InvalidArgument", f"{permission} is not a permission an object grant can give"
            )
        grantee = grant.get("Grantee") or {}
        headers.setdefault(parameter, []).append(
            f'{grantee.get("TypeIdentifier")}="{grantee.get("Identifier")}"'
        )
    return {parameter: ", ".join(values) for parameter, values in headers.items()}


def put_object_acl(context: OperationContext, params: Mapping[str, Any], task: Task) -> TaskOutcome:
    """Set on moto's key directly: moto's PutObjectAcl handler ignores an XML ACL and version IDs."""
    policy = params["AccessControlPolicy"]
    if "CannedAccessControlList" in policy:
        acl = get_canned_acl(policy["CannedAccessControlList"])
    else:
        grants = policy["AccessControlList"].get("Grants") or []
        if any((grant.get("Grantee") or {}).get("TypeIdentifier") == "emailAddress" for grant in grants):
            return TaskOutcome.not_supported("S3PutObjectAcl with an emailAddress grantee")
        acl = FakeAcl([_grant(grant) for grant in grants])
    _existing_object(context, task).set_acl(acl)
    return TaskOutcome.success()


def _grant(grant: Mapping[str, Any]) -> FakeGrant:
    grantee = grant.get("Grantee") or {}
    identifier = grantee.get("Identifier", "")
    by_id = grantee.get("TypeIdentifier") == "id"
    return FakeGrant(
        [
            FakeGrantee(
                grantee_id=identifier if by_id else "",
                uri="" if by_id else identifier,
                display_name=grantee.get("DisplayName", ""),
            )
        ],
        [grant["Permission"]],
    )


def initiate_restore_object(context: OperationContext, params: Mapping[str, Any], task: Task) -> TaskOutcome:
    restore: dict[str, Any] = {}
    if params.get("ExpirationInDays") is not None:
        restore["Days"] = params["ExpirationInDays"]
    if params.get("GlacierJobTier"):
        restore["GlacierJobParameters"] = {"Tier": params["GlacierJobTier"].capitalize()}
    context.s3.restore_object(
        Bucket=task.bucket, Key=task.object_key, RestoreRequest=restore, **_version(task)
    )
    return TaskOutcome.success()


def put_object_legal_hold(context: OperationContext, params: Mapping[str, Any], task: Task) -> TaskOutcome:
    _existing_object(context, task)
    context.s3.put_object_legal_hold(
        Bucket=task.bucket,
        Key=task.object_key,
        LegalHold={"Status": params["LegalHold"]["Status"]},
        **_version(task),
    )
    return TaskOutcome.success()


def put_object_retention(context: OperationContext, params: Mapping[str, Any], task: Task) -> TaskOutcome:
    retention = params.get("Retention") or {}
    unsupported = [field for field in _RETENTION_UNSUPPORTED_FIELDS if field in retention]
    if unsupported:
        return TaskOutcome.not_supported(f"S3PutObjectRetention with {', '.join(unsupported)}")
    _existing_object(context, task)
    request: dict[str, Any] = {
        "Bucket": task.bucket,
        "Key": task.object_key,
        "Retention": {k: retention[k] for k in ("Mode", "RetainUntilDate") if k in retention},
        **_version(task),
    }
    if params.get("BypassGovernanceRetention"):
        request["BypassGovernanceRetention"] = True
    context.s3.put_object_retention(**request)
    return TaskOutcome.success()


_HANDLERS: dict[str, Callable[[OperationContext, Mapping[str, Any], Task], TaskOutcome]] = {
    "S3PutObjectTagging": put_object_tagging,
    "S3DeleteObjectTagging": delete_object_tagging,
    "S3PutObjectCopy": put_object_copy,
    "S3PutObjectAcl": put_object_acl,
    "S3InitiateRestoreObject": initiate_restore_object,
    "S3PutObjectLegalHold": put_object_legal_hold,
    "S3PutObjectRetention": put_object_retention,
}
