"""A run stays inside Step Functions' 25,000-event execution history however long its job runs.

Standard workflows last at most one year and keep at most 25,000 history events (Step Functions
developer guide, "Step Functions service quotas"). The events a run spends while it waits on a job
are measured here on the real definition, then multiplied out to a year at the smallest
``JobWaitTimeoutSeconds`` the template accepts.
"""

from __future__ import annotations

import itertools
import json

from batchpipe_local.template import load_template
from tests.statemachine.test_pipeline import TAGGING, pipeline

HISTORY_LIMIT = 25_000
YEAR_SECONDS = 365 * 24 * 3600
# Kept for everything but the waits: ValidateSpec and the query (~100 events with growing polls), up
# to 10 attempts of ~40 events each, Lambda retries: 4,000 is several times that.
OTHER_EVENTS_RESERVE = 4_000


def _entries(history: list[dict], state: str) -> list[int]:
    return [
        i
        for i, e in enumerate(history)
        if e["type"].endswith("StateEntered") and e["stateEnteredEventDetails"]["name"] == state
    ]


def _lost_events_run(polls_before_done: int = 1):
    lost = {"event_delivery": "drop", "parameters": {"JobWaitTimeoutSeconds": "1"}}
    with pipeline(**lost, engine_options={"active_seconds": 3.5}) as stack:
        stack.athena.polls_before_done = polls_before_done
        return stack.run({"name": "budget", "operation": TAGGING}, name="budget")


# What a wait that times out on a running job goes through before the next wait; the one detour
# through ConfirmJob (S3's count, once per job) is part of the reserve, not of every wait.
WAIT_LOOP = {"CheckJob", "JobFinished?"}


def _wait_loop_gaps(history: list[dict]) -> list[int]:
    """Events between consecutive CreateJobAndWait entries that only went round the wait loop."""
    entries = _entries(history, "CreateJobAndWait")
    gaps = []
    for a, b in itertools.pairwise(entries):
        between = {
            e["stateEnteredEventDetails"]["name"]
            for e in history[a + 1 : b]
            if e["type"].endswith("StateEntered")
        }
        if between <= WAIT_LOOP:
            gaps.append(b - a)
    return gaps


def test_a_year_of_job_waits_at_the_minimum_timeout_fits_the_history():
    execution = _lost_events_run()
    entries = _entries(execution.history, "CreateJobAndWait")
    gaps = _wait_loop_gaps(execution.history)
    assert gaps, "the run never went round the wait loop: raise active_seconds"
    per_wait = max(gaps)
    minimum = int(load_template()["Parameters"]["JobWaitTimeoutSeconds"]["MinValue"])

    waits_in_a_year = -(-YEAR_SECONDS // minimum)
    assert execution.output["status"] == "SUCCEEDED" and len(entries) >= 3
    assert waits_in_a_year * per_wait <= HISTORY_LIMIT - OTHER_EVENTS_RESERVE, (
        f"{per_wait} events per wait x {waits_in_a_year} waits of {minimum} s in a year exceed the budget: "
        "raise JobWaitTimeoutSeconds' MinValue (and docs/LIMITS.md)"
    )


def test_athena_is_polled_with_growing_waits():
    execution = _lost_events_run(polls_before_done=8)
    waits = [
        json.loads(e["stateEnteredEventDetails"]["input"])["query"]["execution"]["waitSeconds"]
        for e in execution.history
        if e["type"] == "WaitStateEntered" and e["stateEnteredEventDetails"]["name"] == "WaitForQuery"
    ]
    assert waits[:6] == [2, 4, 8, 16, 32, 64]
    assert set(waits[6:]) <= {64}
    assert execution.output["status"] == "SUCCEEDED"
