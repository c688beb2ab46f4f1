"""A run stays inside Step Functions' 25,000-event execution history however long its job runs.

Standard workflows last at most one year and keep at most 25,000 history events (Step Functions
developer guide, "Step Functions service quotas"). The events a run spends while it waits on a job
are measured here on the real definition, then multiplied out to a year at the smallest
``JobWaitTimeoutSeconds`` the template accepts, with every attempt's doubling waits for S3's count
from the smallest ``JobCountWaitSeconds`` (each such wait goes round the same loop).
"""

from __future__ import annotations

import itertools
import json

from batchpipe.local.template import load_template
from batchpipe_core.jobs import MAX_ATTEMPTS_LIMIT
from check_job.app import next_wait
from tests.statemachine.test_pipeline import ONE_SECOND_WAITS, TAGGING, pipeline

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
    lost = {"event_delivery": "drop", "timeout_scale": ONE_SECOND_WAITS}
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


def count_waits(first: int, longest: int) -> list[int]:
    """The waits of one attempt while S3 has not counted its job, shorter than the long wait: the
    first is JobCountWaitSeconds, each next one CheckJob's own choice (check_job.app.next_wait)."""
    event = {
        "run": {"jobWaitTimeoutSeconds": longest, "countWaitSeconds": first},
        "current": {"waitSeconds": first},
    }
    waits = [first]
    while waits[-1] < longest:
        event["current"]["waitSeconds"] = next_wait(event, counted=False)
        waits.append(event["current"]["waitSeconds"])
    return waits[:-1]


def waits_in_a_year(longest: int, first_count_wait: int) -> int:
    """The most job waits one execution can go through in its year: every attempt (at most
    MAX_ATTEMPTS_LIMIT) first waits for its count with the doubling short waits, every other second
    is spent in waits of ``longest``. Short waits only add waits: the year is spread over more of them."""
    short = count_waits(first_count_wait, longest)
    counting = MAX_ATTEMPTS_LIMIT * sum(short)
    return MAX_ATTEMPTS_LIMIT * len(short) + -(-(YEAR_SECONDS - counting) // longest)


def _bounds() -> tuple[int, int]:
    parameters = load_template()["Parameters"]
    return (
        int(parameters["JobWaitTimeoutSeconds"]["MinValue"]),
        int(parameters["JobCountWaitSeconds"]["MinValue"]),
    )


def test_count_waits_double_up_to_the_long_wait():
    assert count_waits(60, 25_200) == [60, 120, 240, 480, 960, 1920, 3840, 7680, 15360]
    assert count_waits(25_200, 25_200) == []


def test_a_year_of_job_waits_at_the_minimum_timeouts_fits_the_history():
    execution = _lost_events_run()
    entries = _entries(execution.history, "CreateJobAndWait")
    gaps = _wait_loop_gaps(execution.history)
    assert gaps, "the run never went round the wait loop: raise active_seconds"
    per_wait = max(gaps)
    longest, first = _bounds()

    waits = waits_in_a_year(longest, first)
    assert execution.output["status"] == "SUCCEEDED" and len(entries) >= 3
    assert waits * per_wait <= HISTORY_LIMIT - OTHER_EVENTS_RESERVE, (
        f"{per_wait} events per wait x {waits} waits in a year (waits of {longest} s, and {MAX_ATTEMPTS_LIMIT} "
        f"attempts' count waits from {first} s) exceed the budget: raise JobWaitTimeoutSeconds' or "
        "JobCountWaitSeconds' MinValue (and docs/LIMITS.md)"
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
