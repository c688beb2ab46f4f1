"""Fixtures shared by the unit tests."""

from __future__ import annotations

import boto3
import pytest

from batchpipe.local.s3_rules import documented_s3_rules


@pytest.fixture(autouse=True)
def s3_as_documented():
    """moto S3 with the rules it lacks and the code relies on (batchpipe.local.s3_rules)."""
    with documented_s3_rules():
        yield


@pytest.fixture
def reads():
    """(key, bytes) of every successful GetObject made by any client created from now on."""
    seen: list[tuple[str, int]] = []

    def remember_key(params, context, **kwargs):
        context["batchpipe_key"] = params.get("Key")

    def record(http_response, parsed, context, **kwargs):
        if http_response.status_code < 300:
            seen.append((context.get("batchpipe_key"), int(parsed["ContentLength"])))

    # The handler's clients come from boto3's default session: a fresh one carries the hooks.
    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("provide-client-params.s3.GetObject", remember_key)
    boto3.DEFAULT_SESSION.events.register("after-call.s3.GetObject", record)
    yield seen
    boto3.DEFAULT_SESSION = None
