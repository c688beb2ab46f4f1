"""`batchpipe local serve` rehearses what the real thing does: a stop at any moment, a run that waits
for its name in time (--speed), the AWS CLI's way to reach s3control, the printed exports.

One served child on a free loopback port (started and stopped here), with waits at 1/100 of their
time; the clients are plain boto3, configured as the AWS CLI configures botocore.
"""

from __future__ import annotations

import json
import re
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError

from batchpipe.local.serve import Refused, origin_form

from ..serving import serving

ACCOUNT = "123456789012"
SPEED = 100
OPERATION = {"S3PutObjectTagging": {"TagSet": [{"Key": "stage", "Value": "rehearsed"}]}}

pytestmark = pytest.mark.xdist_group("served-embedded-aws")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Yields (endpoint, the lines serve printed before serving)."""
    tmp = tmp_path_factory.mktemp("serve")
    args = ("--objects", 200, "--out", tmp / "out", "--wait-timeout", 2, "--speed", SPEED)
    with serving(*args, cwd=tmp) as child:
        yield child.endpoint, child.banner


def _client(service: str, endpoint: str, **config: object) -> object:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, **config),
    )


def _state_machine(sfn: object) -> str:
    (machine,) = sfn.list_state_machines()["stateMachines"]
    return machine["stateMachineArn"]


def _finished(sfn: object, arn: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"{arn} still running"
        time.sleep(0.5)
    return described


def test_the_printed_exports_name_the_region_both_ways(served):
    _, printed = served

    exports = re.search(r"export (.*)", printed)[1].split()

    assert {"AWS_REGION=us-east-1", "AWS_DEFAULT_REGION=us-east-1"} <= set(exports)
    assert f"HTTP_PROXY={served[0]} aws s3control" in printed
    assert f"1/{SPEED}" in printed


@pytest.mark.parametrize("delay", [0.0, 0.3, 1.0])
def test_a_stop_in_the_first_second_ends_the_run_with_its_cause_and_frees_the_name(served, delay):
    endpoint, _ = served
    sfn = _client("stepfunctions", endpoint)
    machine = _state_machine(sfn)
    name = f"stopped-{int(delay * 10)}"
    spec = {"name": name, "operation": OPERATION}
    arn = sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(spec))["executionArn"]
    time.sleep(delay)

    stopped = sfn.stop_execution(executionArn=arn, error="Operator", cause="wrong bucket, stopped by hand")

    assert "stopDate" in stopped
    assert _finished(sfn, arn)["status"] == "ABORTED"
    events = sorted(sfn.get_execution_history(executionArn=arn)["events"], key=lambda e: e["id"])
    assert events[-1]["type"] == "ExecutionAborted"
    assert events[-1]["executionAbortedEventDetails"] == {
        "error": "Operator",
        "cause": "wrong bucket, stopped by hand",
    }
    # The name is free again: a run of it is not SKIPPED by the stopped one.
    again = sfn.start_execution(
        stateMachineArn=machine, name=f"{name}-again", input=json.dumps({**spec, "dryRun": True})
    )["executionArn"]
    assert json.loads(_finished(sfn, again)["output"])["status"] == "DRY_RUN"


def test_the_aws_cli_way_reaches_s3control_through_the_endpoint_as_a_proxy(served):
    """botocore puts the account ID in front of the endpoint's host (123456789012.127.0.0.1), a name
    no resolver knows; with HTTP_PROXY set to the endpoint the request goes there unresolved."""
    endpoint, _ = served
    direct = _client("s3control", endpoint)
    with pytest.raises(EndpointConnectionError, match=f"{ACCOUNT}.127.0.0.1"):
        direct.list_jobs(AccountId=ACCOUNT)

    proxied = _client("s3control", endpoint, proxies={"http": endpoint})

    assert isinstance(proxied.list_jobs(AccountId=ACCOUNT)["Jobs"], list)


def test_a_waiting_run_starts_when_the_holder_ends_in_time(served):
    """concurrency "wait" rehearsed: the holder's job waits for a person (confirmationRequired); the
    second run of its name polls (300 s a poll, 3 s at --speed 100) until the holder, once its job is
    confirmed, ends and frees the name; then it runs, rather than skipping after 144 instant polls."""
    endpoint, _ = served
    sfn = _client("stepfunctions", endpoint)
    s3control = _client("s3control", endpoint, proxies={"http": endpoint})
    machine = _state_machine(sfn)
    spec = {"name": "nightly", "filter": {"prefixes": ["photos/"]}, "operation": OPERATION}
    holder = sfn.start_execution(
        stateMachineArn=machine, name="nightly-1", input=json.dumps({**spec, "confirmationRequired": True})
    )["executionArn"]
    job = _job_waiting_for_a_person(s3control, "nightly-1")
    waiter = sfn.start_execution(
        stateMachineArn=machine, name="nightly-2", input=json.dumps({**spec, "concurrency": "wait"})
    )["executionArn"]
    _until(lambda: _entered(sfn, waiter, "WaitForRunLock") >= 2, "the waiter polls for the name")

    s3control.update_job_status(
        AccountId=ACCOUNT, JobId=job, RequestedJobStatus="Ready", StatusUpdateReason="rehearsal"
    )

    assert json.loads(_finished(sfn, holder)["output"])["status"] == "SUCCEEDED"
    waited = json.loads(_finished(sfn, waiter)["output"])
    assert waited["status"] == "SUCCEEDED", waited
    assert _entered(sfn, waiter, "AcquireRunLock") >= 2


def _job_waiting_for_a_person(s3control: object, execution_name: str) -> str:
    found: list[str] = []

    def suspended() -> bool:
        jobs = s3control.list_jobs(AccountId=ACCOUNT, JobStatuses=["Suspended"])["Jobs"]
        found[:] = [j["JobId"] for j in jobs if f"({execution_name})" in j.get("Description", "")]
        return bool(found)

    _until(suspended, f"{execution_name}'s job waits for confirmation")
    # The pipeline tags a job it leaves for a person once it checked S3's count.
    _until(
        lambda: any(
            t["Key"] == "batchpipe:confirmation"
            for t in s3control.get_job_tagging(AccountId=ACCOUNT, JobId=found[0])["Tags"]
        ),
        "the job is left for a person",
    )
    return found[0]


def _entered(sfn: object, arn: str, state: str) -> int:
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
    return sum(
        1
        for page in pages
        for event in page["events"]
        if event.get("stateEnteredEventDetails", {}).get("name") == state
    )


def _until(condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.5)


@pytest.mark.parametrize(
    ("target", "host", "path"),
    [
        ("/v20180820/jobs", "127.0.0.1:4566", "/v20180820/jobs"),
        (
            "http://123456789012.127.0.0.1:4566/v20180820/jobs?x=1",
            "123456789012.127.0.0.1:4566",
            "/v20180820/jobs?x=1",
        ),
    ],
)
def test_a_request_in_proxy_form_is_answered_for_its_own_host(target, host, path):
    assert origin_form(target, host) == path


@pytest.mark.parametrize(
    ("target", "host"),
    [
        ("http://example.com/", "127.0.0.1:4566"),  # another site: the endpoint is no proxy
        ("ftp://127.0.0.1:4566/x", "127.0.0.1:4566"),
        ("http://127.0.0.1:4566", "127.0.0.1:4566"),
    ],
)
def test_a_request_in_proxy_form_for_elsewhere_is_refused(target, host):
    with pytest.raises(Refused):
        origin_form(target, host)
