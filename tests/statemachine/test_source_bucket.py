"""Runs from spec.source: no inventory, S3 Batch's manifest generator lists the bucket (issue #26 §2).

Real pipeline.asl.json and handlers on the embedded AWS, whose S3 Batch engine runs the generator over
the emulated bucket. The bucket's S3 Inventory is deliberately left out of the question: the run never
queries Athena. Outcomes asserted: objects' tags, the run's manifest and failures file, the summary.
"""

from __future__ import annotations

import csv
import io
from urllib.parse import unquote

from tests.statemachine.test_pipeline import (
    GONE,
    KEYS,
    SLOW,
    TAGGING,
    jobs,
    pipeline,
    read_s3_uri,
    tags_by_key,
)

FIRST_STATES = ["ValidateSpec", "AcquireRunLock", "RunLockTaken?", "RerunOfFailures?", "ListSourceBucket"]


def source_spec(stack, name: str, **fields) -> dict:
    return {"name": name, "source": {"bucket": stack.world.source_bucket}, "operation": TAGGING} | fields


def test_a_source_run_tags_exactly_the_keys_under_its_prefix_with_exact_totals():
    # The prefix itself needs encoding in a manifest (a space, '+', '%', unicode below it).
    with pipeline() as stack:
        execution = stack.run(source_spec(stack, "gen", filter={"prefixes": ["photos/2023/"]}), name="gen")
        tags = tags_by_key(stack)
        manifest = read_s3_uri(stack, execution.output["manifest"]["location"])
        (job,) = jobs(stack)

    selected = sorted(k for k in KEYS if k.startswith("photos/2023/"))
    assert execution.status == "SUCCEEDED"
    assert execution.states_entered[: len(FIRST_STATES)] == FIRST_STATES
    assert "StartQuery" not in execution.states_entered
    summary = execution.output
    assert summary["status"] == "SUCCEEDED"
    assert summary["manifest"]["objects"] == len(selected) == 5
    assert summary["totals"] == {
        "objects": len(selected),
        "succeeded": len(selected),
        "failedPermanent": 0,
        "failedRetriesExhausted": 0,
    }
    assert {k for k, t in tags.items() if t == {"batchpipe": "done"}} == set(selected)
    assert all(tags[k] == {} for k in KEYS if k not in selected)
    # The run's manifest is the one S3 generated, in the run's folder, keys encoded without a bare '+'.
    rows = list(csv.reader(io.StringIO(manifest)))
    assert sorted(unquote(row[1]) for row in rows) == selected
    assert all("+" not in row[1] and " " not in row[1] for row in rows)
    assert job["Status"] == "Complete"


def test_a_source_run_retries_retriable_failures_and_reports_permanent_ones():
    faults = [
        {"keyRegex": "^slow/", "httpStatus": 503, "errorCode": "SlowDown", "times": 1},
        {"keyRegex": "^gone/", "httpStatus": 404, "errorCode": "NoSuchKey"},
    ]
    with pipeline(faults=faults) as stack:
        execution = stack.run(source_spec(stack, "genfaults"), name="genfaults")
        failures = list(
            csv.DictReader(io.StringIO(read_s3_uri(stack, execution.output["permanentFailures"])))
        )
        tags = tags_by_key(stack)
        rerun = stack.run(
            {
                "name": "genfaults",
                "rerun": {"failures": execution.output["permanentFailures"]},
                "operation": TAGGING,
            },
            name="genfaults-rerun",
        )

    summary = execution.output
    first, second = summary["attempts"]
    assert summary["status"] == "PARTIAL"
    assert (first["total"], first["failedRetriable"], first["failedPermanent"]) == (
        len(KEYS),
        len(SLOW),
        len(GONE),
    )
    assert (second["total"], second["succeeded"]) == (len(SLOW), len(SLOW))
    assert summary["totals"] == {
        "objects": len(KEYS),
        "succeeded": len(KEYS) - len(GONE),
        "failedPermanent": len(GONE),
        "failedRetriesExhausted": 0,
    }
    assert sorted(f["key"] for f in failures) == sorted(GONE)
    assert all(tags[k] == {"batchpipe": "done"} for k in KEYS if k not in GONE)
    assert all(tags[k] == {} for k in GONE)
    # A rerun of the failures file works as for any run: the missing objects fail again, counted once.
    assert rerun.output["totals"]["objects"] == len(GONE)
    assert rerun.output["totals"]["failedPermanent"] == len(GONE)


def test_max_objects_cancels_a_source_run_on_s3s_count_before_any_object_is_touched():
    with pipeline() as stack:
        execution = stack.run(source_spec(stack, "gentoomany", maxObjects=len(KEYS) - 1), name="gentoomany")
        (job,) = jobs(stack)
        tags = tags_by_key(stack)

    assert execution.output["status"] == "FAILED"
    assert execution.output["error"] == "TooManyObjectsError"
    assert f"counted {len(KEYS)} objects" in execution.output["cause"]
    assert job["Status"] == "Cancelled"
    assert all(t == {} for t in tags.values())


def test_a_source_run_that_selects_nothing_ends_nothing_to_do():
    with pipeline() as stack:
        execution = stack.run(
            source_spec(stack, "gennone", filter={"prefixes": ["no/such/"]}), name="gennone"
        )
        tags = tags_by_key(stack)

    summary = execution.output
    assert execution.status == "SUCCEEDED"
    assert summary["status"] == "NOTHING_TO_DO"
    assert summary["manifest"]["objects"] == 0
    assert summary["totals"] == {
        "objects": 0,
        "succeeded": 0,
        "failedPermanent": 0,
        "failedRetriesExhausted": 0,
    }
    assert all(t == {} for t in tags.values())
