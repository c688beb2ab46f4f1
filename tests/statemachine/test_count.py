"""The run's object count is S3 Batch Operations' own: jobs are created with confirmation required and
checked while Suspended (ProgressSummary.TotalNumberOfTasks); Athena's statistics never count.

Real pipeline.asl.json and handlers on the embedded AWS, whose Athena reports no OutputRows for an
UNLOAD (as documented for AWS) and whose engine counts the manifest while Preparing.
"""

from __future__ import annotations

from tests.statemachine.test_pipeline import KEYS, TAGGING, jobs, pipeline, tags_by_key


def test_max_objects_is_enforced_on_s3s_count_and_the_job_is_cancelled_before_it_runs():
    spec = {"name": "toomany", "operation": TAGGING, "maxObjects": len(KEYS) - 1}
    with pipeline() as stack:
        execution = stack.run(spec, name="toomany")
        (job,) = jobs(stack)
        described = stack.client("s3control").describe_job(AccountId=stack.account_id, JobId=job["JobId"])[
            "Job"
        ]
        tags = tags_by_key(stack)

    summary = execution.output
    assert summary["status"] == "FAILED"
    assert summary["error"] == "TooManyObjectsError"
    # The engine, as AWS may, gives no TotalNumberOfTasks before a job runs: the pipeline counted.
    assert f"the pipeline counted {len(KEYS)} objects" in summary["cause"]
    assert described["Status"] == "Cancelled"
    assert "TotalNumberOfTasks" not in described["ProgressSummary"]
    # Nor counts of tasks done (withheld as AWS may): the untouched objects show that none ran.
    assert not {"NumberOfTasksSucceeded", "NumberOfTasksFailed"} & set(described["ProgressSummary"])
    assert described["StatusUpdateReason"].startswith("batchpipe: ")
    assert all(t == {} for t in tags.values())  # no object was touched
    assert "ConfirmJob" in execution.states_entered


def test_the_summary_counts_what_s3_counted_not_athenas_statistics():
    spec = {"name": "counted", "filter": {"prefixes": ["photos/"]}, "operation": TAGGING}
    with pipeline() as stack:
        execution = stack.run(spec, name="counted")
        manifest = execution.task_outputs("BuildManifest")[0]["manifest"]

    selected = sum(k.startswith("photos/") for k in KEYS)
    # BuildManifest does not know the count (the emulated Athena, like AWS's documentation, gives no
    # OutputRows for an UNLOAD); S3 counted it while the job was Suspended.
    assert manifest["objects"] is None and manifest["empty"] is False
    assert manifest["estimatedObjects"] is None
    assert execution.output["status"] == "SUCCEEDED"
    assert execution.output["manifest"]["objects"] == selected
    assert execution.output["totals"]["objects"] == selected
