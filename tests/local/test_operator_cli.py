"""The operator's loop, driven through the `batchpipe` command against a served embedded AWS.

`batchpipe local serve` runs in a child process on 127.0.0.1 (started and stopped here); the commands
run in this process as a user's shell would run them, with only boto3's own AWS_ENDPOINT_URL set.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError

from batchpipe.cli import main
from batchpipe.outcome import readable_cause
from batchpipe_core.s3uri import split_s3_uri

from ..serving import point_shell_at, serving

REPO = Path(__file__).resolve().parents[2]
SOURCE_BUCKET = "batchpipe-demo-source"
OBJECTS = 300
# The demo's faults: logs/ get one 503 (retried, then fine); backups/db/2019/ are 404 until "fixed".
GONE = "^backups/db/2019/"
FAULTS = [
    {"keyRegex": "^logs/", "httpStatus": 503, "errorCode": "SlowDown", "times": 1},
    {"keyRegex": GONE, "httpStatus": 404, "errorCode": "NoSuchKey"},
]
TAG_ALL = {
    "name": "retag-all",
    "operation": {"S3PutObjectTagging": {"TagSet": [{"Key": "stage", "Value": "one"}]}},
    "retry": {"backoffSeconds": 1},
}

pytestmark = pytest.mark.xdist_group("served-embedded-aws")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A `batchpipe local serve` child on a free loopback port; yields (endpoint, faults file)."""
    tmp = tmp_path_factory.mktemp("serve")
    faults = tmp / "faults.json"
    faults.write_text(json.dumps(FAULTS))
    with serving(
        "--objects", OBJECTS, "--faults", faults, "--out", tmp / "out", "--wait-timeout", 2, cwd=tmp
    ) as served:
        yield served.endpoint, faults
    rest = served.output
    assert served.returncode == 0, rest
    assert "stopped;" in rest
    assert (tmp / "out" / "summary.json").exists()
    # The served functions' logs name the service template.yaml gives them.
    service = yaml.load((REPO / "template.yaml").read_text(), Loader=yaml.BaseLoader)["Globals"]["Function"][
        "Environment"
    ]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    logs = [json.loads(line) for line in (tmp / "out" / "lambda-logs.jsonl").read_text().splitlines()]
    assert [r for r in logs if r["service"] != service] == []  # none when no test started a run


@pytest.fixture
def aws_env(served, monkeypatch):
    endpoint, _ = served
    point_shell_at(endpoint, monkeypatch)
    return endpoint


def _tags(endpoint: str, key: str) -> dict[str, str]:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=SOURCE_BUCKET, Key=key)["TagSet"]}


def _keys(endpoint: str) -> list[str]:
    """Keys whose tags GetObjectTagging reads (moto refuses it on archived objects; S3 does not)."""
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=SOURCE_BUCKET)
    archived = ("GLACIER", "DEEP_ARCHIVE")
    return [o["Key"] for page in pages for o in page.get("Contents", []) if o["StorageClass"] not in archived]


def test_rehearsal_start_watch_list_fix_and_rerun(aws_env, served, tmp_path, capsys):
    _, faults = served
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(TAG_ALL))

    code = main(["start", "--stack", "batchpipe", "--spec", str(spec), "--name", "rehearsal-1", "--watch"])

    captured = capsys.readouterr()
    printed = captured.out
    assert code == 3, printed + captured.err  # PARTIAL: the 404s never succeed
    assert "started arn:aws:states:us-east-1:" in printed and "console: https://" in printed
    assert "▶ CreateJobAndWait  attempt 2" in printed
    assert re.search(r"PARTIAL: \d+ of 300 objects succeeded in 2 attempt\(s\); \d+ did not", printed)
    gone = [k for k in _keys(aws_env) if re.search(GONE, k)]
    assert gone and all("stage" not in _tags(aws_env, k) for k in gone)

    assert main(["runs", "--stack", "batchpipe", "--counts", "--output", "json"]) == 0
    (row,) = [r for r in json.loads(capsys.readouterr().out) if r["execution"] == "rehearsal-1"]
    assert row["status"] == "SUCCEEDED" and row["outcome"] == "PARTIAL"  # the execution, then the run
    assert row["name"] == "retag-all" and row["objects"] == OBJECTS and row["failed"] >= len(gone)
    assert row["succeeded"] == OBJECTS - row["failed"]
    assert main(["runs", "--stack", "batchpipe"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split() == ["execution", "status", "start", "stop"]
    assert re.search(
        r"^rehearsal-1 +SUCCEEDED +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ +\S+Z$", "\n".join(lines), re.M
    )

    failures = tmp_path / "failed.csv"
    assert main(["summary", "rehearsal-1", "--stack", "batchpipe", "--failures", str(failures)]) == 0
    text = capsys.readouterr().out
    assert main(["summary", "rehearsal-1", "--stack", "batchpipe", "--output", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "PARTIAL"
    # The text view: the headline, the counts per outcome and per error code, the cost, the files.
    assert text.startswith(f"PARTIAL: {row['succeeded']} of {OBJECTS} objects succeeded in 2 attempt(s); ")
    assert f"Objects: {OBJECTS} - succeeded {row['succeeded']}, failed permanently " in text
    assert re.search(r"Attempt 1: job \S+ Complete, \d+/300 succeeded \(.*404 NoSuchKey x\d+", text)
    assert f"Failures: {summary['permanentFailures']}" in text
    assert f"Estimated cost: ${summary['estimatedCostUsd']:.4f}" in text and "Run page: https://" in text
    rows = failures.read_text().splitlines()[1:]
    assert set(gone) <= {r.split(",")[1] for r in rows} and len(rows) == row["failed"]
    assert all(",404,NoSuchKey," in r for r in rows)

    faults.write_text("[]")  # the cause is fixed: the objects are back
    time.sleep(0.05)
    code = main(
        ["rerun", "rehearsal-1", "--stack", "batchpipe", "--name", "rehearsal-1-fix", "--yes", "--watch"]
    )

    printed = capsys.readouterr().out
    assert code == 0, printed
    failed = row["failed"]
    assert f"{failed} objects ({failed} NoSuchKey)" in printed
    assert f"in buckets: {SOURCE_BUCKET} ({failed})" in printed  # shown before it starts
    assert f"SUCCEEDED: {failed} of {failed} objects succeeded" in printed
    assert all(_tags(aws_env, k) == {"stage": "one"} for k in gone)


PLANTED = {
    "latin-1": (
        b"bucket,key,versionId,httpStatus,errorCode,message\nsrc,caf\xe9,,404,NoSuchKey,x\n",
        "line 2: byte 8 is not UTF-8",
    ),
    "huge-field": (
        b"bucket,key,versionId,httpStatus,errorCode,message\n" + b"m" * 200_000,
        "line 2: longer than 131072 bytes",
    ),
}


def test_rerun_of_a_failures_file_that_is_not_one_says_so_in_one_line(aws_env, served, tmp_path, capsys):
    _, faults = served
    kept = faults.read_text()
    faults.write_text(json.dumps(FAULTS))  # its own failures, whichever test ran before
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**TAG_ALL, "name": "planted", "filter": {"prefixes": ["backups/db/2019/"]}}))
    try:
        code = main(["start", "--stack", "batchpipe", "--spec", str(spec), "--name", "planted-1", "--watch"])
    finally:
        faults.write_text(kept)
    assert code == 3, capsys.readouterr()
    capsys.readouterr()
    assert main(["summary", "planted-1", "--stack", "batchpipe", "--output", "json"]) == 0
    uri = json.loads(capsys.readouterr().out)["permanentFailures"]
    bucket, key = split_s3_uri(uri)
    s3 = boto3.client("s3")

    for planted, culprit in PLANTED.values():
        s3.put_object(Bucket=bucket, Key=key, Body=planted)
        code = main(["rerun", "planted-1", "--stack", "batchpipe", "--name", "never-rerun", "--yes"])

        err = capsys.readouterr().err
        assert code == 2
        assert err.count("\n") == 1 and f"{uri} {culprit}" in err and "Traceback" not in err


def test_watch_on_a_terminal_that_cannot_show_its_symbols_still_ends_with_the_headline(aws_env, served):
    # cp1252 has no ▶ or ✗: the command used to die with UnicodeEncodeError after the first state.
    env = {**os.environ, "PYTHONIOENCODING": "cp1252"}
    command = [sys.executable, "-m", "batchpipe.cli", "start", "--stack", "batchpipe", "--watch"]
    spec = Path(served[1]).parent / "nothing.json"
    spec.write_text(json.dumps({**TAG_ALL, "name": "cp1252", "filter": {"prefixes": ["no-such-prefix/"]}}))

    done = subprocess.run(
        [*command, "--spec", str(spec), "--name", "cp1252-1"],
        env=env,
        capture_output=True,
        timeout=300,
    )

    printed = done.stdout.decode("cp1252")
    assert done.returncode == 0, done.stderr.decode("cp1252", "replace")[-2000:]
    assert "? ValidateSpec" in printed and "NOTHING_TO_DO" in printed
    assert b"Traceback" not in done.stderr


def test_a_bad_spec_never_reaches_aws(aws_env, tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**TAG_ALL, "priorty": 3}))

    code = main(["start", "--stack", "batchpipe", "--spec", str(spec), "--name", "never-started"])

    err = capsys.readouterr().err
    assert code == 2
    assert "priorty" in err and "Traceback" not in err
    assert main(["runs", "--stack", "batchpipe", "--json"]) == 0
    assert "never-started" not in capsys.readouterr().out


# Specs the model accepts and this stack refuses (its SourceBuckets and InventoryPrefix, its current-version
# inventory, its pipeline bucket): what ValidateSpec finds with the stack's settings.
REFUSED_BY_THE_STACK = {
    "source-bucket": (
        {"source": {"bucket": "someone-elses-bucket"}},
        "source.bucket: 'someone-elses-bucket'",
    ),
    "versions": ({"filter": {"versions": "pinned"}}, 'filter.versions: "pinned" needs an inventory'),
    "rerun-elsewhere": (
        {"rerun": {"failures": "s3://someone-elses-bucket/failures.csv"}},
        "rerun.failures: is in bucket 'someone-elses-bucket'",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED_BY_THE_STACK))
def test_start_refuses_what_the_stack_would_refuse_in_validate_specs_words(aws_env, tmp_path, capsys, case):
    change, says = REFUSED_BY_THE_STACK[case]
    spec = {**TAG_ALL, "name": f"stack-{case}", **change}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))

    code = main(["start", "--stack", "batchpipe", "--spec", str(path), "--name", f"never-{case}"])

    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"batchpipe: spec {path} is not valid: {says}")
    # The same spec started past the command line: ValidateSpec fails it with the same words.
    sfn = boto3.client("stepfunctions")
    (machine,) = sfn.list_state_machines()["stateMachines"]
    arn = sfn.start_execution(
        stateMachineArn=machine["stateMachineArn"], name=f"direct-{case}", input=json.dumps(spec)
    )["executionArn"]
    deadline = time.monotonic() + 120
    while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert described["status"] == "FAILED" and described["error"] == "SpecValidationError"
    assert err.strip() == f"batchpipe: spec {path} is not valid: {readable_cause(described['cause'])}"
    assert main(["runs", "--stack", "batchpipe", "--output", "json"]) == 0
    assert f"never-{case}" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["runs", "--stack", "no-such-stack"], "stack 'no-such-stack' not found in us-east-1"),
        (["watch", "nope"], "no stack: pass --stack, set BATCHPIPE_STACK"),
        (["summary", "no-such-run", "--stack", "batchpipe"], "no execution arn:aws:states:"),
        (["watch", "arn:aws:states:us-east-1:123:execution:x"], "is not a Step Functions execution ARN"),
        (["start", "--stack", "batchpipe", "--spec", "/nonexistent.json"], "spec file not found"),
    ],
)
def test_user_errors_are_one_line(aws_env, capsys, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no samconfig.toml to name a stack
    monkeypatch.delenv("BATCHPIPE_STACK", raising=False)

    code = main(argv)

    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unsigned_requests_are_refused(served):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(served[0] + "/", timeout=10)
    assert refused.value.code == 400
    assert b"SigV4" in refused.value.read()


def _raw(endpoint: str, request: bytes) -> tuple[int, bytes]:
    """One raw HTTP exchange with the served endpoint: (status, body)."""
    import socket

    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request.replace(b"{port}", port.encode()))
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head)[1])
        while len(body) < length:
            chunk = connection.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(head.split(b" ", 2)[1]), body


SIGNED = (
    b"Authorization: AWS4-HMAC-SHA256 Credential=testing/20261206/us-east-1/s3/aws4_request, "
    b"SignedHeaders=host, Signature=00\r\n"
)


@pytest.mark.parametrize(
    ("request_bytes", "status", "says"),
    [
        # A page on any site can send this form POST (no Authorization header, scope in the query).
        (
            b"POST /batchpipe-demo-source?X-Amz-Credential=testing%2F20261206%2Fus-east-1%2Fs3%2Faws4_request "
            b"HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 0\r\n\r\n",
            400,
            b"SigV4 Authorization header",
        ),
        # DNS rebinding: the page's own name in Host.
        (
            b"GET / HTTP/1.1\r\nHost: attacker.example:{port}\r\n" + SIGNED + b"\r\n",
            403,
            b"not this endpoint",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: abc\r\n" + SIGNED + b"\r\n",
            400,
            b"Content-Length",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: -1\r\n" + SIGNED + b"\r\n",
            400,
            b"Content-Length",
        ),
        (
            b"PUT /b/k HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n"
            + SIGNED
            + b"\r\n",
            411,
            b"Content-Length",
        ),
        # A 1 GiB body is refused from its header alone: nothing is read or held.
        (
            b"PUT /batchpipe-demo-source/big HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 1073741824\r\n"
            + SIGNED
            + b"\r\n",
            413,
            b"upload it in parts",
        ),
        # With "Expect: 100-continue" (boto3's S3 bodies) the refusal is the final answer, not "100 Continue".
        (
            b"PUT /batchpipe-demo-source/big HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 67108865\r\n"
            b"Expect: 100-continue\r\n" + SIGNED + b"\r\n",
            413,
            b"<Code>EntityTooLarge</Code>",
        ),
        (b"NONSENSE\r\n\r\n", 400, b""),
    ],
    ids=[
        "form-post",
        "rebinding-host",
        "length-word",
        "length-negative",
        "chunked",
        "1-GiB-body",
        "over-limit-expect-continue",
        "garbage",
    ],
)
def test_the_served_endpoint_refuses_what_is_not_a_local_aws_client(served, request_bytes, status, says):
    got, body = _raw(served[0], request_bytes)

    assert got == status
    assert says in body and b"Traceback" not in body


def test_a_body_over_the_limit_is_refused_in_one_line_and_the_server_stays_up(aws_env):
    from batchpipe.local.serve import MAX_BODY_BYTES

    s3 = boto3.client("s3", region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket=SOURCE_BUCKET, Key="too-big", Body=b"x" * (MAX_BODY_BYTES + 1))

    error = raised.value.response["Error"]
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert error["Code"] == "EntityTooLarge"
    assert error["Message"].startswith(
        f"a {MAX_BODY_BYTES + 1}-byte body is more than the embedded AWS reads"
    )
    assert "upload it in parts" in error["Message"]
    s3.put_object(Bucket=SOURCE_BUCKET, Key="after-the-refusal", Body=b"small")
    assert s3.get_object(Bucket=SOURCE_BUCKET, Key="after-the-refusal")["Body"].read() == b"small"
    assert "Contents" not in s3.list_objects_v2(Bucket=SOURCE_BUCKET, Prefix="too-big")
    s3.delete_object(Bucket=SOURCE_BUCKET, Key="after-the-refusal")


def test_a_refused_form_post_wrote_nothing(aws_env):
    body = b'--b\r\nContent-Disposition: form-data; name="key"\r\n\r\nplanted.txt\r\n--b--\r\n'
    status, _ = _raw(
        aws_env,
        b"POST /batchpipe-demo-source?X-Amz-Credential=testing%2F20261206%2Fus-east-1%2Fs3%2Faws4_request HTTP/1.1\r\n"
        b"Host: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body,
    )

    assert status == 400
    s3 = boto3.client("s3", region_name="us-east-1")
    assert "Contents" not in s3.list_objects_v2(Bucket="batchpipe-demo-source", Prefix="planted")


def test_serve_binds_ipv6_loopback_and_a_port_in_use_is_one_line():
    from batchpipe.inputs import UsageError
    from batchpipe.local.serve import bind

    server = bind("::1", 0)
    try:
        assert server.server_address[0] == "::1"
        with pytest.raises(UsageError, match=rf"--port {server.server_address[1]}: already in use on ::1"):
            bind("::1", server.server_address[1])
    finally:
        server.server_close()


def test_serve_listens_on_loopback_only(capsys):
    code = main(["local", "serve", "--host", "0.0.0.0", "--port", "0"])

    assert code == 2
    assert "loopback only" in capsys.readouterr().err


def test_environment_is_not_needed_for_the_endpoint_flag(served, monkeypatch, capsys):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    code = main(["runs", "--stack", "batchpipe", "--region", "us-east-1", "--endpoint-url", served[0]])

    assert code == 0
    assert capsys.readouterr().out.startswith("execution")


def test_served_endpoint_is_what_boto3_users_expect(aws_env):
    """Plain boto3 (no batchpipe code) sees the served stack through AWS_ENDPOINT_URL alone."""
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in cfn.describe_stacks(StackName="batchpipe")["Stacks"][0]["Outputs"]
    }
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    assert sfn.describe_state_machine(stateMachineArn=outputs["StateMachineArn"])["status"] == "ACTIVE"
    assert os.environ["AWS_ENDPOINT_URL"] == aws_env


def test_s3control_reaches_the_served_engine(aws_env):
    """botocore's s3control endpoint rules prefix the account ID to any host; the commands' clients
    strip it, so `watch` can follow jobs on the served endpoint."""
    from batchpipe.ops.aws import Aws

    s3control = Aws(region="us-east-1").client("s3control")

    jobs = s3control.list_jobs(AccountId="123456789012")["Jobs"]

    assert isinstance(jobs, list)
