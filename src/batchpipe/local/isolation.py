"""The embedded AWS's process environment: none of the shell's AWS settings, nothing sent anywhere."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import boto3

REGION = "us-east-1"

# The embedded AWS never talks to AWS: fixed fake credentials keep botocore from looking for real ones,
# and every other AWS_* setting of the shell is removed while the stack runs (isolated_environment).
_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    # X-Ray has no daemon here; metrics would interleave EMF JSON with the CLI's output.
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    # No profile, credentials or config file of the user's is read: an endpoint_url in ~/.aws/config,
    # a profile's region or credential_process would otherwise reach past moto.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@contextmanager
def isolated_environment() -> Iterator[None]:
    """The process's AWS settings while an embedded stack runs: only _FAKE_ENV, whatever the shell set.

    moto answers only requests sent to AWS's own host names: AWS_ENDPOINT_URL (which the README's
    serve section exports), AWS_ENDPOINT_URL_<SERVICE>, AWS_PROFILE or a profile's endpoint would send
    the embedded stack's own calls out of the process. boto3's default session is also replaced, as
    it keeps whatever profile and region it was first made with; both come back on exit.
    """
    with mock.patch.dict(os.environ):
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            del os.environ[name]
        os.environ.update(_FAKE_ENV)
        saved, boto3.DEFAULT_SESSION = boto3.DEFAULT_SESSION, None
        try:
            yield
        finally:
            boto3.DEFAULT_SESSION = saved
