"""The hourly job sweep cancels the jobs of executions that are no longer running, and nothing else.

The backstop for a lost execution status event: the stack's jobs are stopped by CancelJobs when the
execution ends early, through an event EventBridge delivers best effort. Here every event is
dropped (``event_delivery="drop"``: the runs finish through DescribeJob, the stop's cleanup never
comes), so only the sweep can stop the job of the execution that was stopped.
"""

from __future__ import annotations

import time

from tests.statemachine.test_cancel import _describe, _token_item, _wait_until_waiting_on_the_job
from tests.statemachine.test_pipeline import TAGGING, jobs, pipeline, tags_by_key

SWEEP_RULE = "SweepJobsFunctionHourly"
STACK = {"event_delivery": "drop"}
# Each job is counted and left Suspended for a person, so both are still going when the sweep looks
# (and the engine's one worker is free for the next job).
SPEC = {"operation": TAGGING, "confirmationRequired": True}


def _job_of(stack, execution_arn: str) -> dict:
    item = _token_item(stack, execution_arn)
    return _describe(stack, item["jobId"]["S"])


def _sweep(stack) -> dict:
    stack.fire_schedule(SWEEP_RULE)
    stack.router.flush()
    (delivery,) = [d for d in stack.router.deliveries if d.rule == SWEEP_RULE][-1:]
    assert delivery.status == "delivered", delivery.error
    return stack.functions.by_logical_id["SweepJobsFunction"].last_result


def _foreign_job(stack, model: dict) -> str:
    """A job of another stack in the same account: the same request but another pipeline's tag."""
    request = dict(stack.engine.job(model["JobId"]).request)
    request["ClientRequestToken"] = "another-stack-" + request["ClientRequestToken"][:40]
    request["Tags"] = [
        {**tag, "Value": "another-stack-pipeline"} if tag["Key"] == "batchpipe:pipeline" else tag
        for tag in request["Tags"]
    ]
    return stack.client("s3control").create_job(**request)["JobId"]


def test_the_sweep_cancels_a_stopped_executions_job_and_leaves_running_and_foreign_jobs_alone():
    with pipeline(**STACK) as stack:
        stopped = stack.start({**SPEC, "name": "stopped"}, "stopped")
        _wait_until_waiting_on_the_job(stack, stopped)
        running = stack.start({**SPEC, "name": "running"}, "running")
        _wait_until_waiting_on_the_job(stack, running)
        foreign = _foreign_job(stack, _job_of(stack, running))
        stack.client("stepfunctions").stop_execution(executionArn=stopped, cause="stopped by a test")
        assert stack.wait(stopped).status == "ABORTED"
        time.sleep(0.2)
        before = _job_of(stack, stopped)

        first = _sweep(stack)
        stopped_job, running_job = _job_of(stack, stopped), _job_of(stack, running)
        foreign_status = stack.engine.job(foreign).status
        item = _token_item(stack, stopped)
        second = _sweep(stack)
        after_second = _job_of(stack, stopped)
        tags = tags_by_key(stack)
        listed = len(jobs(stack))

    assert before["Status"] == "Suspended"  # the lost event left it waiting for a person
    assert stopped_job["Status"] == "Cancelled"
    assert stopped_job["StatusUpdateReason"] == "batchpipe: the execution is ABORTED, found by the job sweep"
    assert item["pipelineCancelReason"]["S"] == stopped_job["StatusUpdateReason"]  # the pipeline's own record
    assert item["completedBy"]["S"] == "cleanup"  # its waiting token closed
    assert running_job["Status"] == "Suspended"  # its execution still runs
    assert foreign_status == "Suspended"  # another stack's job: counted, waiting for confirmation
    assert all(t == {} for t in tags.values())  # the stopped run's job never touched an object
    assert listed == 3
    assert first["foreign"] == 1 and first["running"] == 1 and first["unknown"] == []
    (cancelled,) = first["cancelled"]
    assert cancelled["jobId"] == stopped_job["JobId"] and cancelled["executionStatus"] == "ABORTED"
    # Idempotent: the cancelled job is no longer listed, nothing more is done.
    assert second["cancelled"] == [] and second["running"] == 1 and second["foreign"] == 1
    assert after_second["StatusUpdateReason"] == stopped_job["StatusUpdateReason"]


def test_the_sweep_cancels_the_job_of_a_forgotten_execution_and_reports_one_it_cannot_trace():
    with pipeline(**STACK) as stack:
        forgotten = stack.start({**SPEC, "name": "forgotten"}, "forgotten")
        _wait_until_waiting_on_the_job(stack, forgotten)
        untraced = stack.start({**SPEC, "name": "untraced"}, "untraced")
        _wait_until_waiting_on_the_job(stack, untraced)
        sfn = stack.client("stepfunctions")
        for arn in (forgotten, untraced):
            sfn.stop_execution(executionArn=arn, cause="stopped by a test")
            assert stack.wait(arn).status == "ABORTED"
        # Step Functions forgets an ended execution 90 days after its end; TTL deletes a ref item 30
        # days after its run's last wait.
        stack.forget_execution(forgotten)
        untraced_item = _token_item(stack, untraced)
        stack.client("dynamodb").delete_item(
            TableName=stack.ref("TokenTable"), Key={"pk": {"S": "ref#" + untraced_item["ref"]["S"]}}
        )

        report = _sweep(stack)
        forgotten_job, untraced_job = _job_of(stack, forgotten), _job_of(stack, untraced)

    assert forgotten_job["Status"] == "Cancelled"
    assert (
        forgotten_job["StatusUpdateReason"]
        == "batchpipe: the execution no longer exists, found by the job sweep"
    )
    (cancelled,) = report["cancelled"]
    assert cancelled["jobId"] == forgotten_job["JobId"] and cancelled["executionStatus"] == "GONE"
    assert report["unknown"] == [untraced_job["JobId"]]
    assert untraced_job["Status"] == "Suspended"  # left for a person: the sweep cannot tell its run
