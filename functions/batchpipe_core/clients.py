"""AWS SDK clients kept for the life of the execution environment, for the report stage's handlers.

A report is read by many short invocations of the same functions (ReportPart once per window, the
PackParts loop once per group), and a new S3 client builds S3's endpoint rule set each time: about
a third of the report stage's CPU in ``benchmarks/bench_report.py``'s handler chain (issue 23).
AWS's advice for Lambda is to create SDK clients outside the handler so warm invocations reuse them
(Lambda Developer Guide, "Best practices for working with AWS Lambda functions": "Initialize SDK
clients and database connections outside of the function handler"). botocore clients are
thread-safe (boto3 docs, "Multithreading or multiprocessing with clients").

A client is kept per configuration it was created under - boto3's default session (a new one, with
its own event handlers, gets its own client), the environment variables boto3 reads for region,
endpoint and credentials, and the handlers botocore registers on every new client (a library that
adds one, as moto does when imported, gets a client of its own) - so a process whose environment
changes (the local engine, tests) never gets a client configured for another.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from botocore.config import Config
from botocore.handlers import BUILTIN_HANDLERS

#: What boto3 reads from the environment when it creates a client (boto3 docs, "Configuration" and
#: "Credentials": environment variables).
_CLIENT_ENVIRONMENT = (
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


def s3_client() -> Any:
    """The process's S3 client for the current configuration, created on first use: what
    ``boto3.client("s3")`` would make now."""
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    configuration = tuple(os.environ.get(name) for name in _CLIENT_ENVIRONMENT)
    return _s3_client(boto3.DEFAULT_SESSION, configuration, len(BUILTIN_HANDLERS))


#: The report stage's uploads carry their own CRC32 (``csv_upload.CsvUpload``) and are sent unsigned
#: (``UNSIGNED-PAYLOAD``), which S3 accepts over HTTPS (S3 API reference, "Authenticating Requests:
#: Using the Authorization Header (AWS Signature Version 4)" - "Signature Calculations for the
#: Authorization Header: Transferring Payload in a Single Chunk"); the pipeline bucket refuses any
#: request that is not (``aws:SecureTransport``). botocore does the same by default over HTTPS for
#: an upload without a checksum given (a trailing CRC32 after the body, re-framed in aws-chunked
#: encoding: a copy of every body); given the checksum, it would instead SHA-256 the whole body to
#: sign it unless payload signing is off (``botocore.auth.S3SigV4Auth``, boto3 docs "Config
#: reference": ``s3.payload_signing_enabled``). So the body goes as it is: one CRC32 pass, no hash,
#: no re-framing.
UPLOAD_CONFIG = Config(s3={"payload_signing_enabled": False})


@functools.lru_cache(maxsize=4)
def _s3_client(session: Any, configuration: tuple[str | None, ...], handlers: int) -> Any:
    return session.client("s3", config=UPLOAD_CONFIG)
