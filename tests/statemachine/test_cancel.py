"""Cancels: a person's cancel of the pipeline's job is final; the pipeline's own cancels are told apart.

Real pipeline.asl.json and handlers on the embedded AWS; the person is the local engine's cancelJob
fault rule, which calls UpdateJobStatus Cancelled with a reason as the console or the CLI would.
"""

from __future__ import annotations

import csv
import io
import time

from tests.statemachine.test_pipeline import (
    KEYS,
    TAGGING,
    jobs,
    pipeline,
    read_s3_uri,
    tags_by_key,
)

DONE = {"batchpipe": "done"}
RETRY = {"maxAttempts": 3, "backoffSeconds": 0}


def failure_rows(stack, uri: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(read_s3_uri(stack, uri))))


def test_a_persons_cancel_ends_the_run_cancelled_and_lists_the_unrun_objects_for_a_rerun():
    ran = 4
    with pipeline(faults=[{"cancelJob": {"attempt": 1, "afterTasks": ran}}]) as stack:
        execution = stack.run({"name": "stop", "operation": TAGGING, "retry": RETRY}, name="stop")
        jobs_after_cancel = jobs(stack)
        tagged = {k for k, t in tags_by_key(stack).items() if t == DONE}
        failures = failure_rows(stack, execution.output["permanentFailures"])
        rerun = stack.run(
            {
                "name": "stop-rerun",
                "operation": TAGGING,
                "rerun": {"failures": execution.output["permanentFailures"], "errorCodes": ["NotRun"]},
            },
            name="stop-rerun",
        )
        tagged_after_rerun = {k for k, t in tags_by_key(stack).items() if t == DONE}

    summary = execution.output
    assert execution.status == "SUCCEEDED"  # the execution ends normally; the run's status says what happened
    assert summary["status"] == "CANCELLED"
    assert len(jobs_after_cancel) == 1  # no further attempt
    (attempt,) = summary["attempts"]
    assert attempt["jobStatus"] == "Cancelled"
    assert attempt["cancelledBy"] == "operator"
    assert "operator" in attempt["statusUpdateReason"]
    assert summary["totals"] == {
        "objects": len(KEYS),
        "succeeded": ran,
        "failedPermanent": 0,
        "failedRetriesExhausted": 0,
        "notRun": len(KEYS) - ran,
    }
    assert len(tagged) == ran
    assert {row["key"] for row in failures} == set(KEYS) - tagged
    assert {row["errorCode"] for row in failures} == {"NotRun"}
    assert rerun.output["status"] == "SUCCEEDED"
    assert tagged_after_rerun == set(KEYS)


def _token_item(stack, execution_arn: str, attempt: int = 1) -> dict:
    """The attempt's item (key: the run's identity, the execution ARN plus its start stamp)."""
    items = stack.client("dynamodb").scan(TableName=stack.ref("TokenTable"))["Items"]
    (item,) = [
        i
        for i in items
        if i["pk"]["S"].startswith(f"{execution_arn}@") and i["pk"]["S"].endswith(f"#{attempt}")
    ]
    return item


def _wait_for_job(stack, statuses=("Ready", "Active"), timeout=60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        running = [job for job in jobs(stack) if job["Status"] in statuses]
        if running:
            return running[0]
        assert time.monotonic() < deadline, f"no job reached {statuses}"
        time.sleep(0.05)


def _wait_until_waiting_on_the_job(stack, arn: str, timeout=60.0) -> None:
    """Until the execution is back in CreateJobAndWait after ConfirmJob: blocked on its task token
    while the job runs, the case where a stop must not wait for the job."""
    sfn = stack.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while True:
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        entered = [
            e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")
        ]
        # Choice states (named "...?") in between, such as DryRunCounted?, decide nothing here.
        tasks = [name for name in entered if not name.endswith("?")]
        if tasks[-2:] == ["ConfirmJob", "CreateJobAndWait"] and events[-1]["type"] == "TaskSubmitted":
            return
        assert time.monotonic() < deadline, f"never waited on the job: {entered}"
        time.sleep(0.05)


def test_a_stopped_execution_leaves_no_job_running():
    # The job waits 30 s in Ready before it runs; the stop comes while the execution waits on its
    # token, and the cleanup must cancel the job long before it would run.
    with pipeline(engine_options={"active_seconds": 30}) as stack:
        arn = stack.start({"name": "stopped", "operation": TAGGING}, "stopped")
        job = _wait_for_job(stack)
        _wait_until_waiting_on_the_job(stack, arn)
        stack.client("stepfunctions").stop_execution(executionArn=arn, cause="stopped by a test")
        execution = stack.wait(arn)
        deadline = time.monotonic() + 30
        while (described := _describe(stack, job["JobId"]))["Status"] not in ("Cancelled", "Complete"):
            assert time.monotonic() < deadline, "the job was never cancelled"
            time.sleep(0.05)
        # The cleanup cancels the job first, then releases the name: wait for the release as well.
        while "Item" in (
            lock := stack.client("dynamodb").get_item(
                TableName=stack.ref("TokenTable"), Key={"pk": {"S": "lock#stopped"}}, ConsistentRead=True
            )
        ):
            assert time.monotonic() < deadline, "the run's name was never released"
            time.sleep(0.05)
        item = _token_item(stack, arn)
        tags = tags_by_key(stack)

    assert execution.status == "ABORTED"  # at once, not when the job would have ended
    assert described["Status"] == "Cancelled"
    assert described["StatusUpdateReason"].startswith(f"batchpipe: the execution ended {execution.status}")
    assert item["pipelineCancelReason"]["S"] == described["StatusUpdateReason"]  # the pipeline's record
    # The token item is closed. Which closer gets there first is a race, and each is right: the
    # cleanup itself, the status event of the cancel the cleanup asked for, or a CreateJobAndWait the
    # stop overtook, which saw the job already ended and completed its own token.
    closed_by = item["completedBy"]["S"]
    assert closed_by in ("cleanup", "create_job") or closed_by.startswith("job_status:")
    assert all(t == {} for t in tags.values())  # cancelled before it touched an object
    assert "Item" not in lock  # the run's name is free again (no Summarize released it)


def test_a_catch_path_taken_while_the_job_runs_cancels_it_and_the_summary_says_why():
    # The first wait (JobCountWaitSeconds, a real second) lets S3 prepare the job before CheckJob fails.
    stack_options = {"engine_options": {"active_seconds": 5}}
    with pipeline(**stack_options) as stack:
        check_job = stack.functions.by_logical_id["CheckJobFunction"]

        def broken(event, context):
            raise RuntimeError("CheckJob is broken")

        check_job.load = lambda: broken
        execution = stack.run({"name": "broken", "operation": TAGGING}, name="broken")
        (job,) = jobs(stack)
        described = _describe(stack, job["JobId"])

    summary = execution.output
    assert summary["status"] == "FAILED" and summary["error"] == "RuntimeError"
    assert described["Status"] == "Cancelled"
    assert described["StatusUpdateReason"].startswith("batchpipe: the run failed (RuntimeError")
    (cancelled,) = summary["cancelledJobs"]
    assert cancelled["jobId"] == job["JobId"] and cancelled["by"] == "pipeline" and cancelled["attempt"] == 1
    assert cancelled["reason"] == described["StatusUpdateReason"]
    assert execution.states_entered[-2:] == ["CancelJobs", "Summarize"]


def _describe(stack, job_id: str) -> dict:
    return stack.client("s3control").describe_job(AccountId=stack.account_id, JobId=job_id)["Job"]


def test_a_stopped_execution_stops_its_athena_query_too():
    with pipeline(time_scale=1.0) as stack:
        stack.athena.polls_before_done = 1_000  # the query runs for as long as the test needs
        arn = stack.start({"name": "stopped-query", "operation": TAGGING}, "stopped-query")
        deadline = time.monotonic() + 60
        while "GetQueryStatus" not in _states_entered(stack, arn):
            assert time.monotonic() < deadline, "the query was never polled"
            time.sleep(0.05)
        stack.client("stepfunctions").stop_execution(executionArn=arn, cause="stopped by a test")
        execution = stack.wait(arn)
        stack.router.flush()
        (query_id,) = stack.client("athena").list_query_executions()["QueryExecutionIds"]
        status = stack.client("athena").get_query_execution(QueryExecutionId=query_id)["QueryExecution"][
            "Status"
        ]
        created = jobs(stack)

    assert execution.status == "ABORTED"
    assert status["State"] == "CANCELLED"  # it would have run on, writing a manifest nobody reads
    assert created == []


def _states_entered(stack, arn: str) -> list[str]:
    events = stack.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]
