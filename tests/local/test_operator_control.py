"""`batchpipe stop | confirm | cancel | jobs | --version` against a served embedded AWS.

`batchpipe local serve` runs in a child process (started and stopped here); the commands run in this
process with only boto3's own AWS_ENDPOINT_URL set, as in a user's shell. The runs ask for
confirmation, so each waits, counted, for the command under test.
"""

from __future__ import annotations

import io
import json
import re
import time

import boto3
import pytest

from batchpipe import outcome
from batchpipe.cli import main

from ..serving import point_shell_at, serving
from .conftest import S3BATCH_ACCOUNT

OPERATION = {"S3PutObjectTagging": {"TagSet": [{"Key": "stage", "Value": "confirmed"}]}}
STACK = "batchpipe"

pytestmark = pytest.mark.xdist_group("served-embedded-aws")


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    with serving("--objects", 200, "--out", tmp / "out", "--wait-timeout", 2, cwd=tmp) as served:
        yield served.endpoint


@pytest.fixture
def shell(endpoint, monkeypatch):
    point_shell_at(endpoint, monkeypatch)
    return boto3.client("stepfunctions", region_name="us-east-1")


def _start_waiting_run(tmp_path, capsys, name: str) -> None:
    """A run whose job waits, counted, for a person; returns once `jobs` shows it Suspended."""
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "name": name,
                "filter": {"prefixes": ["photos/"]},
                "operation": OPERATION,
                "confirmationRequired": True,
            }
        )
    )
    assert main(["start", "--stack", STACK, "--spec", str(spec), "--name", name]) == 0
    capsys.readouterr()
    deadline = time.monotonic() + 300
    while True:
        assert main(["jobs", name, "--stack", STACK, "--output", "json"]) == 0
        jobs = json.loads(capsys.readouterr().out)
        if jobs and jobs[-1]["waitsForPerson"] and jobs[-1]["total"]:
            return
        assert time.monotonic() < deadline, jobs
        time.sleep(1)


def _ended(sfn, name: str) -> dict:
    arn = _arn(sfn, name)
    deadline = time.monotonic() + 300
    while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    return described


def _arn(sfn, name: str) -> str:
    (machine,) = sfn.list_state_machines()["stateMachines"]
    return machine["stateMachineArn"].replace(":stateMachine:", ":execution:") + f":{name}"


def test_confirm_runs_the_job_that_waits_for_a_person(shell, tmp_path, capsys):
    _start_waiting_run(tmp_path, capsys, "confirm-me")

    assert main(["confirm", "confirm-me", "--stack", STACK]) == 0

    assert re.match(r"confirmed job \S+ \(attempt 1, \d+ objects\): it runs now", capsys.readouterr().out)
    summary = json.loads(_ended(shell, "confirm-me")["output"])
    assert summary["status"] == "SUCCEEDED"
    assert summary["totals"]["succeeded"] == summary["totals"]["objects"] > 0
    assert main(["jobs", "confirm-me", "--stack", STACK]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:8] == [
        "attempt",
        "jobId",
        "status",
        "total",
        "succeeded",
        "failed",
        "created",
        "ended",
    ]
    assert table[1].split()[2] == "Complete"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", table[1].split()[6])


def test_cancel_ends_the_run_cancelled_with_its_objects_not_run(shell, tmp_path, capsys):
    _start_waiting_run(tmp_path, capsys, "cancel-me")

    assert main(["cancel", "cancel-me", "--stack", STACK]) == 0

    assert "cancelled job" in capsys.readouterr().out
    summary = json.loads(_ended(shell, "cancel-me")["output"])
    assert summary["status"] == "CANCELLED"
    assert summary["totals"]["notRun"] == summary["totals"]["objects"] > 0


def test_stop_aborts_the_run_with_the_reason_and_its_job_is_cancelled(shell, tmp_path, capsys):
    _start_waiting_run(tmp_path, capsys, "stop-me")

    assert main(["stop", "stop-me", "--stack", STACK, "--reason", "wrong tag value"]) == 0

    assert "stopped stop-me" in capsys.readouterr().out
    assert _ended(shell, "stop-me")["status"] == "ABORTED"
    events = shell.get_execution_history(executionArn=_arn(shell, "stop-me"))["events"]
    (aborted,) = [e for e in events if e["type"] == "ExecutionAborted"]
    assert aborted["executionAbortedEventDetails"]["cause"] == "wrong tag value"
    # The summary's headline gives the stop's reason, from the ExecutionAborted event when
    # DescribeExecution (whose error and cause are optional) gives none.
    assert main(["summary", "stop-me", "--stack", STACK]) == outcome.EXIT_NO_SUMMARY
    assert capsys.readouterr().out.strip() == (
        "ABORTED: the execution ended without a summary: StoppedByOperator wrong tag value"
    )
    deadline = time.monotonic() + 120
    while True:  # the pipeline's cleanup (the ABORTED status event) cancels the job
        assert main(["jobs", "stop-me", "--stack", STACK, "--output", "json"]) == 0
        if json.loads(capsys.readouterr().out)[-1]["status"] == "Cancelled":
            break
        assert time.monotonic() < deadline
        time.sleep(1)
    # Stopping it again is bad input: one line, status 2.
    assert main(["stop", "stop-me", "--stack", STACK, "--reason", "again"]) == 2
    assert capsys.readouterr().err.strip() == "batchpipe: stop-me already ended ABORTED: nothing to stop"


def test_confirm_with_nothing_waiting_says_so_in_one_line(shell, capsys):
    assert main(["confirm", "no-such-run", "--stack", STACK]) == 2

    err = capsys.readouterr().err
    assert err.startswith("batchpipe: no job of no-such-run waits for confirmation") and err.count("\n") == 1


def test_version(capsys):
    assert main(["--version"]) == 0

    assert re.fullmatch(r"batchpipe \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


def test_debug_prints_each_aws_call_and_its_answer(shell, capsys):
    assert main(["runs", "--stack", STACK, "--max", "1", "--debug"]) == 0

    err = capsys.readouterr().err.splitlines()
    assert err[0] == 'aws: cloudformation DescribeStacks {"StackName": "batchpipe"}'
    assert re.fullmatch(r"aws: cloudformation DescribeStacks -> HTTP 200 in \d+\.\d\d s", err[1])
    assert any(line.startswith("aws: stepfunctions ListExecutions {") for line in err)


def test_watch_stamps_each_line_hides_choices_unless_verbose_and_tells_each_job(shell, tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps({"name": "watched", "filter": {"prefixes": ["logs/"]}, "operation": OPERATION})
    )
    assert main(["start", "--stack", STACK, "--spec", str(spec), "--name", "watched-1", "--watch"]) == 0
    quiet = capsys.readouterr().out.splitlines()
    assert main(["watch", "watched-1", "--stack", STACK, "--verbose"]) == 0
    verbose = capsys.readouterr().out.splitlines()

    told = [line for line in quiet if re.match(r"\d\d:\d\d:\d\dZ \+\d+:\d\d:\d\d ", line)]
    assert told and told == [line for line in quiet if not line.startswith(("started ", "console: "))]
    assert not any("AnythingToDo?" in line for line in quiet)
    assert any("▶ AnythingToDo?" in line for line in verbose)
    assert any(re.search(r"manifest written: Athena scanned [\d,]+ bytes", line) for line in quiet)
    # The embedded S3 withholds the counts of tasks done, as AWS may (docs/LOCAL.md, "Unkind answers").
    done = r"job \S+ \(attempt 1\) Complete: \d+ tasks \(S3 gives no count of those done\)"
    assert any(re.search(done, line) for line in quiet)


def test_watch_tells_a_confirmation_wait_with_its_command_and_a_skip_names_the_holder(
    shell, tmp_path, capsys
):
    from batchpipe.ops.aws import Aws
    from batchpipe.ops.commands import Watcher, watch
    from batchpipe.ops.stack import stack_of

    _start_waiting_run(tmp_path, capsys, "held")
    holder = _arn(shell, "held")
    out = io.StringIO()
    assert watch(Aws(debug=True), holder, out=out, interval=0.5, timeout=5) == 0
    calls = [line.split(" {")[0] for line in capsys.readouterr().err.splitlines() if " -> " not in line]
    assert f"waits for a person to confirm it: batchpipe confirm {holder}" in out.getvalue()
    # The job's status and count come from DescribeJob, by the job ID the run's history and attempt
    # record give, not from listing every job of the account.
    assert re.search(r"job \S+ \(attempt 1\) Suspended: \? tasks \(S3 gives no count", out.getvalue())
    assert "aws: s3control DescribeJob" in calls and "aws: s3control ListJobs" not in calls
    # Before the pipeline first checks a new job, only the attempt's record in the stack's TokenTable
    # names it: a watcher that knows the waiting attempt and nothing else finds the job there.
    (waiting,) = [
        json.loads(e["stateEnteredEventDetails"]["input"])
        for e in shell.get_execution_history(executionArn=holder)["events"]
        if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "CreateJobAndWait"
    ][:1]
    fresh = io.StringIO()
    watcher = Watcher(Aws(), holder, fresh, token_table=stack_of(Aws(), holder).token_table)
    watcher.current_state, watcher.waiting = "CreateJobAndWait", (waiting["run"]["runId"], 1)
    watcher.progress()
    assert re.search(r"job \S+ \(attempt 1\) Suspended: ", fresh.getvalue()), fresh.getvalue()

    skipped = tmp_path / "skip.json"
    skipped.write_text(json.dumps({"name": "held", "operation": OPERATION}))
    assert main(["start", "--stack", STACK, "--spec", str(skipped), "--name", "held-again", "--watch"]) == 6
    headline = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.search(
        rf"SKIPPED \(busy\): .+; the run holding the name: {re.escape(holder)} \(since ", headline
    )
    assert main(["cancel", "held", "--stack", STACK]) == 0


def test_watch_takes_a_new_jobs_not_found_for_not_visible_yet(s3batch_env):
    """S3 may not find a job right after CreateJob (the embedded engine's first DescribeJob of a job
    answers NotFound, as AWS's troubleshooting guide allows): watch says so and reads it next poll."""
    from batchpipe.ops.aws import Aws
    from batchpipe.ops.commands import Watcher

    s3batch_env.bucket("src-bkt")
    s3batch_env.put("src-bkt", "photo.jpg")
    manifest = s3batch_env.manifest([["src-bkt", "photo.jpg"]])
    job_id = s3batch_env.create_job(OPERATION, manifest, ConfirmationRequired=True)
    assert s3batch_env.engine.wait_idle(30)
    out = io.StringIO()
    arn = f"arn:aws:states:us-east-1:{S3BATCH_ACCOUNT}:execution:batchpipe-pipeline:new-job"
    watcher = Watcher(Aws(region="us-east-1"), arn, out)
    watcher.jobs[job_id] = 1

    watcher.progress()
    watcher.progress()
    watcher.progress()

    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == [
        f"  job {job_id} created; S3 does not show it yet",
        f"  job {job_id} (attempt 1) Suspended: [{'.' * 30}] 0/0 tasks (0 failed)",
    ]
