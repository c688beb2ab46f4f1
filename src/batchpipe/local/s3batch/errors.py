"""Errors the s3control job API answers with, in the shapes of the botocore ``s3control`` model.

The code of each class is an error shape of the model, so botocore turns the response into the
client's modeled exception (``client.exceptions.NotFoundException`` ...). The model carries no HTTP
statuses for them, so each class names its own.
"""

from __future__ import annotations

from moto.core.exceptions import ServiceException


class S3ControlError(ServiceException):
    http_status = 400


class BadRequestException(S3ControlError):
    code = "BadRequestException"


class NotFoundException(S3ControlError):
    code = "NotFoundException"
    http_status = 404


class IdempotencyException(S3ControlError):
    code = "IdempotencyException"


class JobStatusException(S3ControlError):
    code = "JobStatusException"


class TooManyTagsException(S3ControlError):
    code = "TooManyTagsException"


class InvalidRequestException(S3ControlError):
    code = "InvalidRequestException"


class InvalidNextTokenException(S3ControlError):
    code = "InvalidNextTokenException"


class InternalServiceException(S3ControlError):
    code = "InternalServiceException"
    http_status = 500
