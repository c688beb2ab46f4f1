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


def test_a_new_default_session_gets_a_new_client_with_its_event_handlers(monkeypatch):
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    before = s3_client()
    boto3.setup_default_session()
    seen = []
    boto3.DEFAULT_SESSION.events.register("batchpipe-test", lambda **kwargs: seen.append(1))
    try:
        after = s3_client()
        assert after is not before and s3_client() is after
        after.meta.events.emit("batchpipe-test")  # the session's handlers, copied into its clients
        assert seen == [1]
    finally:
        boto3.DEFAULT_SESSION = None
