"""The report stage's S3 client is kept for the process, one per configuration it was made under."""

from __future__ import annotations

from batchpipe_core.clients import s3_client


def test_warm_invocations_share_one_client_and_a_changed_environment_gets_its_own(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    first = s3_client()
    assert s3_client() is first
    assert first.meta.region_name == "us-east-1"

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    moved = s3_client()
    assert moved is not first and moved.meta.region_name == "eu-west-3"

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")
    assert s3_client().meta.endpoint_url == "http://127.0.0.1:1"

    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert s3_client() is first  # the earlier configuration's client again
