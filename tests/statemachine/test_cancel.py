"""Cancels: a person's cancel of the pipeline's job is final; the pipeline's own cancels are told apart.

Real pipeline.asl.json and handlers on the embedded AWS; the person is the local engine's cancelJob
fault rule, which calls UpdateJobStatus Cancelled with a reason as the console or the CLI would.
"""

from __future__ import annotations

import csv
import io

from tests.statemachine.test_pipeline import KEYS, TAGGING, jobs, pipeline, read_s3_uri, tags_by_key

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
