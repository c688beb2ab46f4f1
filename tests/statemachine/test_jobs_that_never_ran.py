"""Jobs S3 fails before they run a task are never retried as if the failure were transient.

Real pipeline.asl.json and handlers on the embedded AWS. A job nobody confirmed that S3 fails after
30 days in Suspended (S3 user guide, "Creating a job"; the engine's expireSuspended rule) ends the
run UNCONFIRMED with its objects not run; a job S3 fails while preparing it (an ETag mismatch) ends
the run FAILED at once, naming S3's reason. Neither gets a second job.
"""

from __future__ import annotations

from tests.statemachine.test_cancel import failure_rows
from tests.statemachine.test_pipeline import KEYS, TAGGING, jobs, pipeline, tags_by_key

RETRY = {"maxAttempts": 3, "backoffSeconds": 1}


def test_a_job_failed_unconfirmed_in_suspended_ends_the_run_unconfirmed_without_a_new_job():
    spec = {"name": "expired", "operation": TAGGING, "retry": RETRY}
    with pipeline(faults=[{"expireSuspended": {"attempt": 1}}]) as stack:
        execution = stack.run(spec, name="expired")
        all_jobs = jobs(stack)
        tags = tags_by_key(stack)
        failures = failure_rows(stack, execution.output["permanentFailures"])

    summary = execution.output
    assert summary["status"] == "UNCONFIRMED"
    assert len(all_jobs) == 1  # no new job
    (attempt,) = summary["attempts"]
    assert attempt["jobStatus"] == "Failed"
    assert summary["totals"] == {
        "objects": len(KEYS),
        "succeeded": 0,
        "failedPermanent": 0,
        "failedRetriesExhausted": 0,
        "notRun": len(KEYS),
    }
    assert {row["key"] for row in failures} == set(KEYS)
    assert {row["errorCode"] for row in failures} == {"NotRun"}
    assert all(t == {} for t in tags.values())


def test_a_job_failed_while_preparing_ends_the_run_at_once_naming_s3s_reason():
    spec = {"name": "etag", "operation": TAGGING, "retry": RETRY}
    with pipeline() as stack:
        create_job = stack.functions.by_logical_id["CreateJobFunction"]
        real_load = create_job.load

        def manifest_changed_after_build(event, context):
            # The manifest is rewritten after BuildManifest took its ETag: S3 fails the job in Preparing.
            manifest = event["current"]["manifest"]
            stack.client("s3").put_object(Bucket=manifest["bucket"], Key=manifest["key"], Body=b"changed\n")
            return real_load()(event, context)

        create_job.load = lambda: manifest_changed_after_build
        execution = stack.run(spec, name="etag")
        all_jobs = jobs(stack)

    summary = execution.output
    assert summary["status"] == "FAILED"
    assert summary["error"] == "JobPreparationFailedError"
    assert "ManifestETagMismatch" in summary["cause"]
    assert len(all_jobs) == 1  # not retried maxAttempts times
    assert "ProcessReport" not in execution.states_entered
