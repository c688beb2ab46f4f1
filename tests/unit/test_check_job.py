"""CheckJobFunction: the DescribeJob fallback when no status event completed the wait in time."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchpipe.local.s3batch import FaultInjector
from batchpipe_core import jobs
from batchpipe_core.tokens import TokenTable
from tests.unit.test_create_job import ACCOUNT, TABLE, TAGGING, Pipeline, Waiting, context, pipeline_world

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = REPO / "functions"
if str(FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS))

from check_job import app as check_job_app  # noqa: E402


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    with pipeline_world() as world:
        yield world


def checked(waiting: Waiting) -> dict:
    """CheckJob's whole answer (``current`` with the next wait, ``job``); its payload is what the ASL
    passes: run and current only."""
    event = {"run": waiting.event["run"], "current": waiting.event["current"]}
    answer = check_job_app.handler(json.loads(json.dumps(event)), context("CheckJobFunction"))
    json.dumps(answer)  # the state's result must be JSON
    return answer


def check(waiting: Waiting) -> dict:
    """The job outcome CheckJob reports."""
    return checked(waiting)["job"]


def test_no_job_yet_is_not_terminal(pipeline: Pipeline) -> None:
    waiting = pipeline.start_run()
    outcome = check(waiting)  # CreateJobFunction never ran (or died before storing anything)
    assert (outcome["jobId"], outcome["status"], outcome["terminal"]) == (None, "Unknown", False)

    TokenTable(TABLE, pipeline.ddb).store_token(waiting.key, "0" * 64, waiting.event["taskToken"])
    assert check(waiting)["terminal"] is False  # the token is there, the job is not


def test_a_running_job_is_not_terminal(pipeline: Pipeline) -> None:
    waiting = pipeline.start_run()
    job_id = pipeline.create_job(waiting)
    outcome = check(waiting)
    assert (outcome["jobId"], outcome["status"], outcome["terminal"]) == (job_id, "New", False)


def test_a_finished_job_gives_the_outcome_the_event_would_have(pipeline: Pipeline) -> None:
    waiting = pipeline.start_run(keys=("a.jpg", "b.jpg", "c.jpg"))
    job_id = pipeline.create_job(waiting)
    pipeline.run_jobs()

    outcome = check(waiting)

    assert outcome == jobs.job_outcome(pipeline.describe(job_id))  # one builder for both paths
    assert outcome["terminal"] is True and outcome["status"] == "Complete"
    # The embedded S3 withholds the counts of tasks done, as AWS may: unknown (None), never 0.
    assert (outcome["total"], outcome["succeeded"], outcome["failed"]) == (3, None, None)
    assert outcome["report"]["prefix"] == "runs/retag/run-1/attempt-1/report"
    # The report is where ProcessReport will look for it.
    report_key = f"runs/retag/run-1/attempt-1/report/job-{job_id}/manifest.json"
    assert pipeline.s3.head_object(Bucket=outcome["report"]["bucket"], Key=report_key)


def test_a_job_waiting_for_confirmation_is_not_terminal_until_it_ends(pipeline: Pipeline) -> None:
    waiting = pipeline.start_run(spec={"name": "retag", "operation": TAGGING, "confirmationRequired": True})
    job_id = pipeline.create_job(waiting)
    pipeline.run_jobs(confirm=False)

    suspended = check(waiting)
    assert (suspended["status"], suspended["terminal"]) == ("Suspended", False)
    assert suspended["needsCount"] is True  # S3 has counted it; ConfirmJob has not checked it yet

    pipeline.s3control.update_job_status(AccountId=ACCOUNT, JobId=job_id, RequestedJobStatus="Ready")
    pipeline.run_jobs()
    confirmed = check(waiting)
    assert (confirmed["status"], confirmed["terminal"], confirmed["total"]) == ("Complete", True, 2)


def test_a_failed_job_is_terminal_with_its_reasons(pipeline: Pipeline) -> None:
    waiting = pipeline.start_run()
    manifest = waiting.event["current"]["manifest"]
    pipeline.s3.put_object(Bucket=manifest["bucket"], Key=manifest["key"], Body=b"changed\n")
    pipeline.create_job(waiting)
    pipeline.run_jobs()

    outcome = check(waiting)
    assert (outcome["status"], outcome["terminal"]) == ("Failed", True)
    assert outcome["failureReasons"] and outcome["failureReasons"][0]["code"]


def test_each_attempt_is_checked_on_its_own_job(pipeline: Pipeline) -> None:
    first = pipeline.start_run()
    first_job = pipeline.create_job(first)
    pipeline.run_jobs()
    second = pipeline.reenter(first, "attempt-2")
    second.event["current"] = {**first.event["current"], "attempt": 2}
    second_job = pipeline.create_job(second)

    assert second_job != first_job
    assert (check(first)["jobId"], check(first)["terminal"]) == (first_job, True)
    assert (check(second)["jobId"], check(second)["terminal"]) == (second_job, False)


def test_a_recorded_job_that_s3_no_longer_knows_ends_the_wait_as_failed(pipeline: Pipeline) -> None:
    """S3 deletes jobs 90 days after they end; DescribeJob then answers NotFound."""
    waiting = pipeline.start_run()
    table = TokenTable(TABLE, pipeline.ddb)
    table.store_token(waiting.key, "0" * 64, waiting.event["taskToken"])
    # Recorded 91 days ago: S3 may have deleted it (90 days after it ended), so not found = gone.
    table.record_job(waiting.key, "00000000-0000-0000-0000-000000000000", now=time.time() - 91 * 86400)

    outcome = check(waiting)

    assert (outcome["jobId"], outcome["status"], outcome["terminal"]) == (
        "00000000-0000-0000-0000-000000000000",
        "Failed",
        True,
    )
    assert "no longer exists" in outcome["statusUpdateReason"]
    assert outcome["report"]["prefix"] == "runs/retag/run-1/attempt-1/report"


def test_a_new_job_s3_does_not_find_yet_is_waited_for_not_replaced(pipeline: Pipeline) -> None:
    """S3 troubleshooting guide, NoSuchJobException "Timing issues": DescribeJob may miss a new job."""
    waiting = pipeline.start_run()
    job_id = pipeline.create_job(waiting)  # its own DescribeJob: not found (the engine's default)
    pipeline.engine.faults = FaultInjector([{"describeJobNotFound": {"attempt": 1, "times": 3}}])

    first, second = check(waiting), check(waiting)  # DescribeJob calls 2 and 3: still not found
    pipeline.run_jobs()
    third = check(waiting)

    assert [o["jobId"] for o in (first, second, third)] == [job_id] * 3
    assert [o["terminal"] for o in (first, second)] == [False, False]
    assert "not find the new job yet" in first["statusUpdateReason"]
    assert (third["status"], third["terminal"]) == ("Complete", True)
    assert pipeline.job_ids() == [job_id]  # never a second job


def test_the_next_wait_doubles_until_the_job_is_counted_then_is_the_long_wait(pipeline: Pipeline) -> None:
    """No event says a job was counted (Suspended), so waits start short and double until it is."""
    waiting = pipeline.start_run()
    waiting.event["run"] |= {"countWaitSeconds": 60, "jobWaitTimeoutSeconds": 25200}
    waiting.event["current"]["waitSeconds"] = 60
    pipeline.create_job(waiting)
    waits = []
    for _ in range(10):
        answer = checked(waiting)
        waiting.event["current"] = answer["current"]
        waits.append(answer["current"]["waitSeconds"])
    assert waits == [120, 240, 480, 960, 1920, 3840, 7680, 15360, 25200, 25200]
    assert answer["current"]["attempt"] == 1 and answer["current"]["manifest"]["key"].endswith("manifest.csv")

    pipeline.run_jobs()  # counted and confirmed (the helper plays ConfirmJob)
    assert checked(waiting)["current"]["waitSeconds"] == 25200
