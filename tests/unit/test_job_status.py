"""JobStatusFunction: status events of the embedded S3 Batch engine complete real waiting executions.

Events are the engine's own (the shape of events/job_status.json), delivered by the test in whatever
order, number and timing the case needs.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from batchpipe.local.s3batch.events import job_status_changed
from batchpipe_core import jobs
from tests.unit.test_create_job import (
    ACCOUNT,
    REGION,
    SOURCE_BUCKET,
    TAGGING,
    Pipeline,
    Waiting,
    context,
    pipeline_world,
)
from tests.unit.test_tokens import WaitingTasks

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = REPO / "functions"
if str(FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS))

from job_status import app as job_status_app  # noqa: E402


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    with pipeline_world() as world:
        yield world


def deliver(event: dict) -> str:
    """Invokes JobStatusFunction as the EventBridge rule would; returns what it did."""
    return job_status_app.handler(json.loads(json.dumps(event)), context("JobStatusFunction"))["result"]


def terminal_events(pipeline: Pipeline, job_id: str) -> list[dict]:
    """The events the rule in template.yaml lets through (Complete, Failed, Cancelled)."""
    return [
        e
        for e in pipeline.status_events(job_id)
        if e["detail"]["serviceEventDetails"]["status"] in jobs.TERMINAL_STATUSES
    ]


def ended_job(pipeline: Pipeline, name: str = "run-1", **run: object) -> tuple[Waiting, str]:
    waiting = pipeline.start_run(name, **run)
    job_id = pipeline.create_job(waiting)
    pipeline.run_jobs()
    return waiting, job_id


def test_the_status_event_completes_the_waiting_task(pipeline: Pipeline) -> None:
    waiting, job_id = ended_job(pipeline)
    (event,) = terminal_events(pipeline, job_id)

    assert deliver(event) == "completed"

    finished = pipeline.finished(waiting)
    assert finished["status"] == "SUCCEEDED"
    outcome = json.loads(finished["output"])
    assert outcome["jobId"] == job_id and outcome["status"] == "Complete" and outcome["terminal"] is True
    # The embedded S3 withholds the counts of tasks done, as AWS may: unknown (None), never 0.
    assert (outcome["total"], outcome["succeeded"], outcome["failed"]) == (2, None, None)
    assert pipeline.item(waiting.key)["completedBy"]["S"] == f"job_status:{event['id']}"


def test_the_engine_event_has_the_shape_of_the_shipped_sample() -> None:
    sample = json.loads((REPO / "events" / "job_status.json").read_text())
    generated = job_status_changed(
        account_id=ACCOUNT, region=REGION, job_id="j", job_arn="arn", status="Complete", at=_moment()
    )
    assert _shape(generated) == _shape(sample)
    # The shipped sample is the S3 user guide's documented event itself, not a made-up one.
    assert sample == json.loads(
        (REPO / "tests" / "fixtures" / "job-status-changed-complete.json").read_text()
    )


def test_duplicated_and_shuffled_events_complete_the_task_once(pipeline: Pipeline) -> None:
    waiting, job_id = ended_job(pipeline)
    every_status = pipeline.status_events(job_id)  # New ... Complete, more than the rule lets through
    deliveries = every_status * 3
    random.Random(7).shuffle(deliveries)

    results = [deliver(event) for event in deliveries]

    assert results.count("completed") == 1
    assert set(results) <= {"completed", "already-completed", "not-terminal"}
    assert pipeline.finished(waiting)["status"] == "SUCCEEDED"


def test_a_stale_event_is_checked_against_describe_job(pipeline: Pipeline) -> None:
    waiting = pipeline.start_run()
    job_id = pipeline.create_job(waiting)
    # A "Complete" event for a job that DescribeJob says is still New (e.g. an event of a past status).
    stale = job_status_changed(
        account_id=ACCOUNT, region=REGION, job_id=job_id, job_arn="arn", status="Complete", at=_moment()
    )
    assert deliver(stale) == "not-terminal"
    assert pipeline.execution(waiting)["status"] == "RUNNING"

    pipeline.run_jobs()
    (real,) = terminal_events(pipeline, job_id)
    assert deliver(real) == "completed"
    # A status from before the end, arriving after it, changes nothing.
    (active,) = [
        e for e in pipeline.status_events(job_id) if e["detail"]["serviceEventDetails"]["status"] == "Active"
    ]
    assert deliver(active) == "already-completed"
    assert json.loads(pipeline.finished(waiting)["output"])["status"] == "Complete"


def test_a_failed_job_completes_the_task_with_its_reasons(pipeline: Pipeline) -> None:
    waiting = pipeline.start_run()
    manifest = waiting.event["current"]["manifest"]
    pipeline.s3.put_object(Bucket=manifest["bucket"], Key=manifest["key"], Body=b"changed\n")  # ETag mismatch
    job_id = pipeline.create_job(waiting)
    pipeline.run_jobs()
    (event,) = terminal_events(pipeline, job_id)
    assert event["detail"]["serviceEventDetails"]["status"] == "Failed"

    assert deliver(event) == "completed"

    finished = pipeline.finished(waiting)
    assert finished["status"] == "SUCCEEDED"  # SendTaskSuccess: the state machine decides
    outcome = json.loads(finished["output"])
    assert outcome["status"] == "Failed" and outcome["terminal"] is True
    assert outcome["failureReasons"] == [
        {"code": r["FailureCode"], "reason": r["FailureReason"]}
        for r in pipeline.describe(job_id)["FailureReasons"]
    ]


def test_a_cancelled_job_completes_the_task(pipeline: Pipeline) -> None:
    waiting = pipeline.start_run(spec={"name": "retag", "operation": TAGGING, "confirmationRequired": True})
    job_id = pipeline.create_job(waiting)
    pipeline.run_jobs(confirm=False)
    assert pipeline.describe(job_id)["Status"] == "Suspended"
    pipeline.s3control.update_job_status(
        AccountId=ACCOUNT, JobId=job_id, RequestedJobStatus="Cancelled", StatusUpdateReason="not today"
    )
    (event,) = terminal_events(pipeline, job_id)

    assert deliver(event) == "completed"
    outcome = json.loads(pipeline.finished(waiting)["output"])
    assert outcome["status"] == "Cancelled"
    # The job never ran: S3 withholds its counts (optional members), which are unknown, never 0.
    assert (outcome["total"], outcome["succeeded"], outcome["failed"]) == (None, None, None)


def test_events_of_foreign_jobs_are_ignored(pipeline: Pipeline) -> None:
    waiting = pipeline.start_run()
    ours = pipeline.create_job(waiting)
    manifest = waiting.event["current"]["manifest"]
    request = {
        "AccountId": ACCOUNT,
        "Operation": TAGGING,
        "Report": {"Enabled": False},
        "Priority": 1,
        "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/someone-else",
        "Manifest": {
            "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
            "Location": {
                "ObjectArn": f"arn:aws:s3:::{manifest['bucket']}/{manifest['key']}",
                "ETag": manifest["etag"],
            },
        },
    }
    untagged = pipeline.s3control.create_job(**request, ClientRequestToken="untagged")["JobId"]
    # Another batchpipe stack in the account: same tags, its own state machine name and table.
    other_stack = pipeline.s3control.create_job(
        **request,
        ClientRequestToken="other-stack",
        Tags=[
            {"Key": "batchpipe:pipeline", "Value": "other-pipeline"},
            {"Key": "batchpipe:ref", "Value": "f" * 64},
        ],
    )["JobId"]
    # A job that looks like ours but whose ref this table never stored.
    unknown_ref = pipeline.s3control.create_job(
        **request,
        ClientRequestToken="unknown-ref",
        Tags=[
            {"Key": "batchpipe:pipeline", "Value": "batchpipe-pipeline"},
            {"Key": "batchpipe:ref", "Value": "e" * 64},
        ],
    )["JobId"]
    pipeline.run_jobs()

    for job_id in (untagged, other_stack, unknown_ref):
        (event,) = terminal_events(pipeline, job_id)
        assert deliver(event) == "ignored-foreign"
    gone = job_status_changed(
        account_id=ACCOUNT,
        region=REGION,
        job_id="no-such-job",
        job_arn="arn",
        status="Complete",
        at=_moment(),
    )
    assert deliver(gone) == "ignored-foreign"
    other_account = job_status_changed(
        account_id="210987654321", region=REGION, job_id=ours, job_arn="arn", status="Complete", at=_moment()
    )
    assert deliver(other_account) == "ignored-foreign"
    assert pipeline.execution(waiting)["status"] == "RUNNING"  # none of them touched our task


def test_a_malformed_event_is_logged_not_retried(pipeline: Pipeline) -> None:
    event = job_status_changed(
        account_id=ACCOUNT, region=REGION, job_id="j", job_arn="arn", status="Complete", at=_moment()
    )
    event["detail"]["eventName"] = "JobCreated"
    assert deliver(event) == "ignored-malformed"


def test_an_event_after_the_wait_timed_out_is_harmless(pipeline: Pipeline) -> None:
    short = WaitingTasks.create(timeout_seconds=1, name="short-wait")
    execution_arn, token = short.start("times-out")
    waiting = pipeline.start_run()
    waiting = Waiting(execution_arn, {**waiting.event, "taskToken": token})
    job_id = pipeline.create_job(waiting)
    pipeline.run_jobs()
    assert short.finished(execution_arn)["status"] == "FAILED"  # States.Timeout: CheckJob's turn

    (event,) = terminal_events(pipeline, job_id)
    assert deliver(event) == "task-gone"
    assert deliver(event) == "already-completed"


def test_an_event_that_overtakes_create_job_completes_the_task_once(pipeline: Pipeline) -> None:
    """The job ends and its event is handled between CreateJob and the recording of its ID."""
    waiting = pipeline.start_run()
    results: list[str] = []

    def job_ends_at_once(**_: object) -> None:
        pipeline.run_jobs()
        (job_id,) = pipeline.job_ids()
        pipeline.describe(job_id)  # S3 has registered the job by the time its end is announced
        results.extend(deliver(event) for event in terminal_events(pipeline, job_id))

    session_events = boto3._get_default_session().events
    session_events.register("after-call.s3-control.CreateJob", job_ends_at_once)
    try:
        job_id = pipeline.create_job(waiting)  # records the job, DescribeJob: Complete, claim fails
    finally:
        session_events.unregister("after-call.s3-control.CreateJob", job_ends_at_once)

    assert results == ["completed"]
    assert pipeline.item(waiting.key)["jobId"]["S"] == job_id
    assert pipeline.item(waiting.key)["completedBy"]["S"].startswith("job_status:")
    assert json.loads(pipeline.finished(waiting)["output"])["jobId"] == job_id


def test_objects_were_really_tagged(pipeline: Pipeline) -> None:
    ended_job(pipeline)
    tags = pipeline.s3.get_object_tagging(Bucket=SOURCE_BUCKET, Key="a.jpg")["TagSet"]
    assert tags == [{"Key": "environment", "Value": "production"}]


# ------------------------------------------------------------------ helpers


def _moment() -> datetime:
    return datetime(2026, 11, 20, 15, 26, 42, tzinfo=UTC)


def _shape(value: object) -> object:
    """Keys and value types, recursively: what a parser depends on."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def test_the_sample_event_parses_with_the_handler_model() -> None:
    sample = json.loads((REPO / "events" / "job_status.json").read_text())
    parsed = job_status_app.JobStatusChangedEvent.model_validate(sample)
    assert parsed.detail.serviceEventDetails.status == "Complete"
    assert parsed.detail.serviceEventDetails.jobId == "3f6b1c2e-9d4a-4e7b-8c1f-2a5d6e7f8091"
