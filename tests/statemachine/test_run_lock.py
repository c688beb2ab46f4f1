"""One active run per run name, on the real pipeline.asl.json and the embedded AWS: runs started
together, every way a run ends releasing the name, an expired lease, duplicated scheduler deliveries,
and the "wait" and "force" modes. Assertions are on the executions' outputs and history, the lock
items in TokenTable, the jobs that exist and the SNS notification."""

from __future__ import annotations

import itertools
import json
import time

import pytest

from batchpipe.local.template import load_template
from batchpipe_core.runlock import LOCK_POLL_SECONDS, LOCK_PREFIX, SCHEDULED_TIME_PLACEHOLDER, RunLock
from tests.statemachine.test_pipeline import ONE_SECOND_WAITS, TAGGING, jobs, pipeline

SKIPPED_PATH = ["ValidateSpec", "AcquireRunLock", "RunLockTaken?", "Summarize"]
OTHER_RUN = "arn:aws:states:us-east-1:123456789012:execution:batchpipe-pipeline:still-running"


def run_lock(stack) -> RunLock:
    return RunLock(stack.ref("TokenTable"), stack.client("dynamodb"))


def lock_item(stack, name: str) -> dict | None:
    return (
        stack.client("dynamodb")
        .get_item(
            TableName=stack.ref("TokenTable"), Key={"pk": {"S": LOCK_PREFIX + name}}, ConsistentRead=True
        )
        .get("Item")
    )


def scheduler_input(stack, scheduled_time: str, spec: dict) -> dict:
    """What EventBridge Scheduler sends: the template's ScheduleV2 Input with its context attribute
    filled in (the template is the one source of the input's shape)."""
    schedule = stack.template["Resources"]["PipelineStateMachine"]["Properties"]["Events"]["Schedule"]
    resolver = stack.resolver
    text = resolver.resolve(schedule["Properties"]["Input"])
    assert SCHEDULED_TIME_PLACEHOLDER in text
    document = json.loads(text.replace(SCHEDULED_TIME_PLACEHOLDER, scheduled_time))
    return document | {"spec": spec}


def subscribe_queue(stack) -> str:
    """An SQS queue subscribed to the notification topic, as an operator's tooling would read it."""
    sqs = stack.client("sqs")
    url = sqs.create_queue(QueueName="run-notifications")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stack.client("sns").subscribe(TopicArn=stack.ref("NotificationTopic"), Protocol="sqs", Endpoint=arn)
    return url


def sent_notifications(stack, url: str) -> list[tuple[str, str]]:
    sqs, received = stack.client("sqs"), []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            body = json.loads(message["Body"])
            received.append((body.get("Subject"), body["Message"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return received


def wait_for_suspended_job(stack, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        suspended = [j for j in jobs(stack) if j["Status"] == "Suspended"]
        if suspended:
            return suspended[0]
        assert time.monotonic() < deadline, "the job never reached Suspended"
        time.sleep(0.1)


def first_to_end(stack, arns: list[str], timeout: float = 120) -> str:
    sfn = stack.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while True:
        for arn in arns:
            if sfn.describe_execution(executionArn=arn)["status"] != "RUNNING":
                return arn
        assert time.monotonic() < deadline, "no execution ended"
        time.sleep(0.05)


def test_two_runs_of_one_name_started_together_one_runs_and_one_is_skipped():
    # The job waits for confirmation, so whichever run takes the name still holds it when the other asks.
    spec = {"name": "nightly", "operation": TAGGING, "confirmationRequired": True}
    with pipeline(timeout_scale=ONE_SECOND_WAITS) as stack:
        queue = subscribe_queue(stack)
        arns = [stack.start(spec, "nightly-a"), stack.start(spec, "nightly-b")]
        loser_arn = first_to_end(stack, arns)
        (winner_arn,) = [arn for arn in arns if arn != loser_arn]
        skipped = stack.wait(loser_arn)
        job = wait_for_suspended_job(stack)
        stack.client("s3control").update_job_status(
            AccountId=stack.account_id, JobId=job["JobId"], RequestedJobStatus="Ready"
        )
        winner = stack.wait(winner_arn)
        all_jobs = jobs(stack)
        notifications = sent_notifications(stack, queue)
        left = lock_item(stack, "nightly")

    assert winner.output["status"] == "SUCCEEDED"
    assert skipped.status == "SUCCEEDED"
    assert skipped.output["status"] == "SKIPPED"
    assert skipped.output["skipped"]["reason"] == "busy"
    assert skipped.output["skipped"]["activeExecution"] == winner_arn
    assert winner_arn in skipped.output["skipped"]["message"]
    assert skipped.states_entered == SKIPPED_PATH
    assert skipped.output["attempts"] == [] and skipped.output["manifest"] is None
    assert len(all_jobs) == 1
    message = next(m for s, m in notifications if s == "batchpipe nightly: SKIPPED")
    assert f"Active run: {winner_arn}" in message
    assert "Skipped (busy): run name 'nightly' is held by execution" in message
    assert left is None, "the winner released the name when it ended"


@pytest.mark.parametrize(
    ("extra", "faults", "status"),
    [
        ({}, [], "SUCCEEDED"),
        ({"dryRun": True}, [], "DRY_RUN"),
        ({"filter": {"prefixes": ["no/such/prefix/"]}}, [], "NOTHING_TO_DO"),
        # A person cancels the job: the run ends with no further attempt.
        ({}, [{"cancelJob": {"attempt": 1, "afterTasks": 1}}], "CANCELLED"),
        # BuildManifest raises TooManyObjectsError: a Catch path into Summarize.
        ({"maxObjects": 1}, [], "FAILED"),
        # The Athena query fails: the QueryFailed path into Summarize.
        ({"inventory": {"table": "no_such_table"}}, [], "FAILED"),
    ],
)
def test_a_run_releases_its_name_however_it_ends_and_the_next_one_runs(extra, faults, status):
    spec = {"name": "ends", "operation": TAGGING, **extra}
    with pipeline(faults=faults) as stack:
        first = stack.run(spec, name="ends-1")
        left = lock_item(stack, "ends")
        second = stack.run(spec, name="ends-2")

    assert first.output["status"] == status
    assert left is None
    assert second.output["status"] != "SKIPPED"  # (the cancel rule acts once: the second run succeeds)
    assert second.task_outputs("AcquireRunLock")[0]["lock"]["held"] is True


def test_a_skipped_run_leaves_the_active_runs_lock_alone():
    with pipeline() as stack:
        assert run_lock(stack).acquire("busy", OTHER_RUN, "still-running", 3600, now=time.time()) is None
        skipped = stack.run({"name": "busy", "operation": TAGGING}, name="busy-1")
        left = lock_item(stack, "busy")
        all_jobs = jobs(stack)

    assert skipped.output["status"] == "SKIPPED"
    assert skipped.output["skipped"]["activeExecution"] == OTHER_RUN
    assert left["owner"]["S"] == OTHER_RUN
    assert all_jobs == []


def test_an_expired_lease_is_taken_over():
    # A run that died without any release: its lease ended an hour ago.
    with pipeline() as stack:
        lock = run_lock(stack)
        assert lock.acquire("stale", OTHER_RUN, "still-running", 60, now=time.time() - 3600) is None
        execution = stack.run({"name": "stale", "operation": TAGGING}, name="stale-1")
        left = lock_item(stack, "stale")

    assert execution.output["status"] == "SUCCEEDED"
    assert execution.task_outputs("AcquireRunLock")[0]["lock"]["held"] is True
    assert left is None


def test_a_duplicated_scheduler_delivery_is_skipped_even_after_the_first_ended():
    spec = {"name": "weekly", "operation": TAGGING}
    with pipeline() as stack:
        tick = scheduler_input(stack, "2026-12-06T03:00:00Z", spec)
        first = stack.run(tick, name="sched-1")
        duplicate = stack.run(tick, name="sched-1-again")
        next_tick = stack.run(scheduler_input(stack, "2026-12-13T03:00:00Z", spec), name="sched-2")
        all_jobs = jobs(stack)

    assert first.output["status"] == "SUCCEEDED"
    assert duplicate.output["status"] == "SKIPPED"
    assert duplicate.output["skipped"]["reason"] == "duplicate"
    assert duplicate.output["skipped"]["activeExecution"] == first.arn
    assert "2026-12-06T03:00:00Z" in duplicate.output["skipped"]["message"]
    assert duplicate.states_entered == SKIPPED_PATH
    assert next_tick.output["status"] == "SUCCEEDED"
    assert len(all_jobs) == 2


def test_a_duplicated_scheduler_delivery_started_together_runs_once():
    spec = {"name": "daily", "operation": TAGGING, "concurrency": "force"}
    with pipeline() as stack:
        tick = scheduler_input(stack, "2026-12-02T03:00:00Z", spec)
        # Even "force" does not run one scheduled time twice.
        executions = [stack.wait(arn) for arn in [stack.start(tick, "daily-a"), stack.start(tick, "daily-b")]]
        all_jobs = jobs(stack)

    assert sorted(e.output["status"] for e in executions) == ["SKIPPED", "SUCCEEDED"]
    assert len(all_jobs) == 1


def test_wait_starts_once_the_active_run_lets_go():
    # Each WaitForRunLock lasts 300 s x 0.01; the other run's lease ends after about two of them.
    spec = {"name": "patient", "operation": TAGGING, "concurrency": "wait"}
    with pipeline(time_scale=0.01) as stack:
        assert run_lock(stack).acquire("patient", OTHER_RUN, "still-running", 5, now=time.time()) is None
        execution = stack.run(spec, name="patient-1")

    assert execution.output["status"] == "SUCCEEDED"
    assert "WaitForRunLock" in execution.states_entered
    decisions = [output["lock"] for output in execution.task_outputs("AcquireRunLock")]
    assert decisions[0]["next"] == "wait" and decisions[0]["activeExecution"] == OTHER_RUN
    assert decisions[-1]["next"] == "run" and decisions[-1]["held"] is True


def test_wait_is_bounded_then_skips():
    spec = {"name": "bounded", "operation": TAGGING, "concurrency": "wait"}
    with pipeline(parameters={"ConcurrencyWaitSeconds": "900"}) as stack:
        assert run_lock(stack).acquire("bounded", OTHER_RUN, "still-running", 86400, now=time.time()) is None
        execution = stack.run(spec, name="bounded-1")
        all_jobs = jobs(stack)

    assert execution.output["status"] == "SKIPPED"
    assert execution.output["skipped"]["reason"] == "waitExpired"
    assert execution.states_entered.count("WaitForRunLock") == 3  # 900 s in polls of 300 s
    assert all_jobs == []
    # The longest wait the template allows stays within the history kept for all but the job waits
    # (tests/statemachine/test_history_budget.py keeps 4,000 events; the rest of a run needs ~500).
    entries = [
        i
        for i, e in enumerate(execution.history)
        if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "AcquireRunLock"
    ]
    per_poll = max(b - a for a, b in itertools.pairwise(entries))
    longest = int(load_template()["Parameters"]["ConcurrencyWaitSeconds"]["MaxValue"])
    assert -(-longest // LOCK_POLL_SECONDS) * per_poll <= 3_000


def test_force_runs_alongside_the_active_run_without_taking_its_name():
    spec = {"name": "forced", "operation": TAGGING, "concurrency": "force"}
    with pipeline() as stack:
        queue = subscribe_queue(stack)
        assert run_lock(stack).acquire("forced", OTHER_RUN, "still-running", 86400, now=time.time()) is None
        execution = stack.run(spec, name="forced-1")
        left = lock_item(stack, "forced")
        notifications = sent_notifications(stack, queue)

    assert execution.output["status"] == "SUCCEEDED"
    assert execution.output["forcedPast"] == OTHER_RUN
    assert left["owner"]["S"] == OTHER_RUN
    assert any(OTHER_RUN in message and "force" in message for _, message in notifications)
