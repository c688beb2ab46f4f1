"""A Distributed Map child that fails fails its Map Run, as on AWS: the tolerated failures default to
none, the Map state fails with States.ExceedToleratedFailureThreshold and its Catch ends the run with
that error, instead of going on with a report part missing."""

from __future__ import annotations

from batchpipe_core.runlock import RunLock
from tests.statemachine.test_pipeline import TAGGING, jobs, pipeline

EXCEEDED = "States.ExceedToleratedFailureThreshold"


def test_a_failed_report_part_fails_the_map_and_the_run_says_so():
    with pipeline(["a.bin", "b.bin", "c.bin"]) as stack:
        report_part = stack.functions.by_logical_id["ReportPartFunction"]
        real_load = report_part.load
        calls = []

        def fails_once(event, context):
            calls.append(event["item"])
            if len(calls) == 1:
                raise RuntimeError("a report part that cannot be read")  # no Retry takes it
            return real_load()(event, context)

        report_part.load = lambda: fails_once
        execution = stack.run({"name": "part", "operation": TAGGING}, name="part")
        lock = RunLock(stack.ref("TokenTable"), stack.client("dynamodb")).holder("part")
        created = jobs(stack)

    summary = execution.output
    assert execution.status == "SUCCEEDED"  # the Catch took it: the summary says what happened
    assert (summary["status"], summary["error"]) == ("FAILED", EXCEEDED)
    entered = execution.states_entered
    assert entered[entered.index("ReadReportParts") + 1] == "Summarize"
    assert "ProcessReport" not in entered
    map_run_failed = [e for e in execution.history if e["type"] == "MapRunFailed"]
    assert [e["mapRunFailedEventDetails"]["error"] for e in map_run_failed] == [EXCEEDED]
    assert len(created) == 1 and lock is None
