"""A Lambda may die anywhere: every Lambda Task state survives an invocation that did all its work and
then timed out (the ``lambdaTimeout`` fault rule), so the state's Retry ran it a second time.

One run per Lambda Task state of pipeline.asl.json (read from the definition), each with its state's
first invocation timing out, on the first of a few small scenarios that reaches that state. The run
must end with the same summary as the scenario without the fault, one job per attempt, and the
run lock released.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from typing import Any

import pytest

from batchpipe.local.lambda_faults import (
    LAMBDA_TIMEOUT_ERROR,
    all_states,
    shipped_definition,
    shipped_lambda_task_states,
)
from batchpipe_core.jobs import TAG_REF
from batchpipe_core.runlock import RunLock
from tests.statemachine.test_pipeline import ONE_SECOND_WAITS, TAGGING, jobs, pipeline, read_s3_uri

KEYS = ["ok/a.bin", "ok/b c.bin", "gone/g.bin"]
# A permanent failure, so that every run writes a failures file to compare.
TASK_FAULTS = [{"keyRegex": "^gone/", "httpStatus": 404, "errorCode": "NoSuchKey"}]
RETRY = {"maxAttempts": 3, "backoffSeconds": 1}


def spec(name: str, **extra: Any) -> dict:
    return {"name": name, "operation": TAGGING, "retry": RETRY, **extra}


# Each scenario: (stack options, runs); a run is a spec, or a function of the previous summaries.
SCENARIOS: dict[str, tuple[dict, list[Any]]] = {
    # One job, a permanent 404: the main path (a second attempt would only repeat its states).
    "main": ({"faults": TASK_FAULTS}, [spec("main")]),
    # No status event ever arrives and the job outlasts the wait: the DescribeJob fallback.
    "lost-events": (
        {
            "event_delivery": "drop",
            "timeout_scale": ONE_SECOND_WAITS,
            "engine_options": {"active_seconds": 1.5},
        },
        [spec("lost")],
    ),
    # A person cancels the job: its manifest and report are joined to find what never ran.
    "cancelled": ({"faults": [{"cancelJob": {"attempt": 1, "afterTasks": 1}}]}, [spec("cancelled")]),
    # S3 counts more objects than maxObjects: the run fails while its job exists and cancels it.
    "too-many": ({}, [spec("too-many", maxObjects=1)]),
    # A cancelled job's join past the regroup fan-in (more windows than RegroupFanIn, several
    # partitions): RegroupPartitions runs between the scatter and the join.
    "regrouped": (
        {
            "keys": [f"many/{n:02d} ü+.bin" for n in range(40)] + ["gone/g.bin"],
            "faults": [{"cancelJob": {"attempt": 1, "afterTasks": 10}}, *TASK_FAULTS],
            "parameters": {"ReportPartRows": "2", "JoinPartitionRows": "2", "RegroupFanIn": "2"},
        },
        [spec("regrouped")],
    ),
    # A rerun of the first run's failures: its manifest comes from the failures file.
    "rerun": (
        {"faults": TASK_FAULTS},
        [
            spec("first"),
            lambda summaries: spec("again", rerun={"failures": summaries[0]["permanentFailures"]}),
        ],
    ),
}

# Whatever differs between two runs of the same scenario: job IDs, start stamps in keys, UUIDs.
_VARYING = re.compile(r"\d{8}T\d{6}\.\d{3}Z|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def comparable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, str):
        return _VARYING.sub("*", value)
    return value


def run_scenario(name: str, lambda_timeout: str | None = None) -> dict:
    options, runs = SCENARIOS[name]
    keys = options.get("keys", KEYS)
    faults = list(options.get("faults", []))
    if lambda_timeout is not None:
        faults.append({"lambdaTimeout": {"state": lambda_timeout, "times": 1}})
    options = {option: value for option, value in options.items() if option != "keys"}
    with pipeline(keys, **{**options, "faults": faults}) as stack:
        summaries, failures = [], []
        for index, run in enumerate(runs):
            document = run(summaries) if callable(run) else run
            execution = stack.run(document, name=f"{name}-{index}")
            assert execution.status == "SUCCEEDED", execution.message
            summaries.append(execution.output)
            uri = execution.output.get("permanentFailures")
            rows = csv.DictReader(io.StringIO(read_s3_uri(stack, uri))) if uri else []
            failures.append(sorted((row["key"], row["errorCode"]) for row in rows))
            lock = RunLock(stack.ref("TokenTable"), stack.client("dynamodb"))
            assert lock.holder(document["name"]) is None, "the run lock was not released"
        timeouts = stack.lambda_timeouts
        return {
            "summaries": summaries,
            "failures": failures,
            "jobs": job_refs(stack),
            "invoked": dict(timeouts.invoked),
            "timedOut": dict(timeouts.timed_out),
            "errors": [payload["errorType"] for _, payload in stack.functions.errors],
        }


def job_refs(stack) -> list[str]:
    """The (run, attempt) each job in the engine was created for, from the tag CreateJob gives it."""
    s3control = stack.client("s3control")
    refs = []
    for job in jobs(stack):
        tags = s3control.get_job_tagging(AccountId=stack.account_id, JobId=job["JobId"])["Tags"]
        refs += [tag["Value"] for tag in tags if tag["Key"] == TAG_REF]
    return sorted(refs)


@functools.cache
def baseline(name: str) -> dict:
    """The scenario without a Lambda timeout (computed once per test process)."""
    return run_scenario(name)


def scenario_reaching(state: str) -> str:
    for name in SCENARIOS:
        if baseline(name)["invoked"].get(state):
            return name
    raise AssertionError(f"no scenario reaches {state}: add one that does")


@pytest.mark.parametrize("state", shipped_lambda_task_states())
def test_a_lambda_timeout_after_the_work_changes_nothing(state):
    name = scenario_reaching(state)
    expected = baseline(name)

    result = run_scenario(name, lambda_timeout=state)

    assert result["timedOut"] == {state: 1}
    assert comparable(result["summaries"]) == comparable(expected["summaries"])
    assert result["failures"] == expected["failures"]
    # One job per attempt (as many as without the timeout, never two for one attempt).
    assert len(result["jobs"]) == len(set(result["jobs"])) == len(expected["jobs"])


def test_every_lambda_task_state_retries_the_error_a_lambda_timeout_gives():
    """The runs above need the Retry; this says every Lambda Task has it, not only the ones they reach."""
    states = all_states(shipped_definition())
    for name in shipped_lambda_task_states():
        retried = [error for retrier in states[name].get("Retry", []) for error in retrier["ErrorEquals"]]
        assert LAMBDA_TIMEOUT_ERROR in retried, name
