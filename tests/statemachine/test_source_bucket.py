"""Runs from spec.source: no inventory, S3 Batch's manifest generator lists the bucket (issue #26 §2).

Real pipeline.asl.json and handlers on the embedded AWS, whose S3 Batch engine runs the generator over
the emulated bucket. The bucket's S3 Inventory is deliberately left out of the question: the run never
queries Athena. Outcomes asserted: objects' tags, the run's manifest and failures file, the summary.
"""

from __future__ import annotations

import csv
import io
from urllib.parse import unquote

import pytest

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
# AWS documents neither whether a Suspended generator job shows its count nor whether its generated
# manifest exists before confirmation; the pipeline must work with either answer (the engine's default
# gives neither: test_neither_count_nor_manifest_refuses_to_confirm).
MANIFEST_AT_SUSPENDED = {"engine_options": {"generated_manifest_before_run": True}}  # count withheld
COUNT_AT_SUSPENDED = {"engine_options": {"withhold_total": False}}  # manifest written once the job runs
EITHER_ANSWER = pytest.mark.parametrize(
    "answers",
    [MANIFEST_AT_SUSPENDED, COUNT_AT_SUSPENDED],
    ids=["manifest-at-suspended", "count-at-suspended"],
)


def all_succeeded(objects: int) -> dict:
    return {"objects": objects, "succeeded": objects, "failedPermanent": 0, "failedRetriesExhausted": 0}


def source_spec(stack, name: str, **fields) -> dict:
    return {"name": name, "source": {"bucket": stack.world.source_bucket}, "operation": TAGGING} | fields


@EITHER_ANSWER
def test_a_source_run_tags_exactly_the_keys_under_its_prefix_with_exact_totals(answers):
    # The prefix itself needs encoding in a manifest (a space, '+', '%', unicode below it).
    with pipeline(**answers) as stack:
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
    assert summary["totals"] == all_succeeded(len(selected))
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
    with pipeline(faults=faults, **MANIFEST_AT_SUSPENDED) as stack:
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


@pytest.mark.parametrize(
    ("answers", "fields", "error", "cause"),
    [
        *[
            (
                answers,
                {"maxObjects": len(KEYS) - 1},
                "TooManyObjectsError",
                f"{len(KEYS)} objects, more than maxObjects ({len(KEYS) - 1})",
            )
            for answers in (MANIFEST_AT_SUSPENDED, COUNT_AT_SUSPENDED)
        ],
        # The engine's default, the least S3 promises: no count and no generated manifest while Suspended.
        ({}, {}, "UncountedJobError", "maxObjects (1000000000) cannot be checked"),
    ],
    ids=["over-manifest-at-suspended", "over-count-at-suspended", "neither-count-nor-manifest"],
)
def test_a_job_that_breaks_max_objects_or_cannot_be_counted_is_cancelled_untouched(
    answers, fields, error, cause
):
    with pipeline(**answers) as stack:
        execution = stack.run(source_spec(stack, "gencount", **fields), name="gencount")
        (job,) = jobs(stack)
        tags = tags_by_key(stack)

    assert execution.output["status"] == "FAILED"
    assert execution.output["error"] == error
    assert cause in execution.output["cause"]
    assert job["Status"] == "Cancelled"
    assert all(t == {} for t in tags.values())


@EITHER_ANSWER
def test_a_source_run_that_selects_nothing_ends_nothing_to_do(answers):
    with pipeline(**answers) as stack:
        execution = stack.run(
            source_spec(stack, "gennone", filter={"prefixes": ["no/such/"]}), name="gennone"
        )
        tags = tags_by_key(stack)

    summary = execution.output
    assert execution.status == "SUCCEEDED"
    assert summary["status"] == "NOTHING_TO_DO"
    assert summary["manifest"]["objects"] == 0
    assert summary["totals"] == all_succeeded(0)
    assert all(t == {} for t in tags.values())


@EITHER_ANSWER
def test_a_source_dry_run_counts_and_samples_inside_a_cancelled_job(answers):
    with pipeline(**answers) as stack:
        execution = stack.run(
            source_spec(stack, "gendry", dryRun=True, filter={"prefixes": ["photos/2023/"]}), name="gendry"
        )
        (job,) = jobs(stack)
        tags = tags_by_key(stack)

    selected = sorted(k for k in KEYS if k.startswith("photos/2023/"))
    summary = execution.output
    assert summary["status"] == "DRY_RUN"
    assert summary["manifest"]["objects"] == len(selected)
    # The sample is read from the generated manifest when S3 wrote it before confirmation (decoded keys).
    expected_sample = selected if answers is MANIFEST_AT_SUSPENDED else []
    assert sorted(summary["manifest"]["sample"]) == expected_sample
    assert summary["estimatedCostUsd"] > 0
    assert job["Status"] == "Cancelled"
    assert all(t == {} for t in tags.values())
    assert "CreateJobAndWait" in execution.states_entered
    assert execution.states_entered[-3:-1] == ["DryRunCounted?", "DryRunManifest"] or (
        "DryRunManifest" in execution.states_entered
    )


def _replicated_photos(stack) -> None:
    """A replication configuration on the source bucket whose one Enabled rule takes photos/2023/."""
    s3 = stack.client("s3")
    bucket = stack.world.source_bucket
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.create_bucket(Bucket="replica-bucket")
    s3.put_bucket_versioning(Bucket="replica-bucket", VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_replication(
        Bucket=bucket,
        ReplicationConfiguration={
            "Role": "arn:aws:iam::123456789012:role/replication",
            "Rules": [
                {
                    "ID": prefix,
                    "Priority": priority,
                    "Status": status,
                    "Filter": {"Prefix": prefix},
                    "DeleteMarkerReplication": {"Status": "Disabled"},
                    "Destination": {"Bucket": "arn:aws:s3:::replica-bucket"},
                }
                for priority, (prefix, status) in enumerate(
                    [("photos/2023/", "Enabled"), ("docs/", "Disabled")], start=1
                )
            ],
        },
    )


# Each new generator filter, on keys that need encoding in a manifest: compared as the key reads
# (raw, case-sensitive), with exact totals.
NEW_FILTERS = [
    ({"suffixes": ["%.jpg"]}, lambda k: k.endswith("%.jpg")),
    ({"suffixes": [".JPG"]}, lambda k: False),  # case-sensitive: nothing
    ({"substrings": ["+"]}, lambda k: "+" in k),
    ({"substrings": ["ünïcödé/日"]}, lambda k: "ünïcödé/日" in k),
    (
        {"prefixes": ["photos/"], "substrings": [" "], "suffixes": [".jpg"]},
        lambda k: k == "photos/2023/a b.jpg",
    ),
    ({"replicationStatuses": ["NONE"]}, lambda k: True),  # nothing here was ever replicated
    ({"replicationStatuses": ["FAILED", "COMPLETED"]}, lambda k: False),
    ({"eligibleForReplication": True}, lambda k: k.startswith("photos/2023/")),
]


@pytest.mark.parametrize(("filter_", "selects"), NEW_FILTERS, ids=[str(f) for f, _ in NEW_FILTERS])
def test_each_generator_filter_selects_exactly_its_keys_end_to_end(filter_, selects):
    with pipeline(**MANIFEST_AT_SUSPENDED) as stack:
        if "eligibleForReplication" in filter_:
            _replicated_photos(stack)
        execution = stack.run(source_spec(stack, "genfilter", filter=filter_), name="genfilter")
        tags = tags_by_key(stack)
        (job,) = jobs(stack)

    selected = sorted(k for k in KEYS if selects(k))
    summary = execution.output
    assert execution.status == "SUCCEEDED"
    assert summary["status"] == ("SUCCEEDED" if selected else "NOTHING_TO_DO")
    assert summary["manifest"]["objects"] == len(selected)
    assert summary["totals"] == all_succeeded(len(selected))
    assert sorted(k for k, t in tags.items() if t == {"batchpipe": "done"}) == selected
    assert job["Status"] == "Complete"


@pytest.mark.parametrize(
    "filter_",
    [{"suffixes": ["%.jpg", ".bin"]}, {"substrings": ["+", "ünïcödé/日"]}, {"replicationStatuses": ["NONE"]}],
    ids=["suffixes", "substrings", "replicationStatuses"],
)
def test_the_inventory_selects_what_the_generator_does(filter_):
    # The same fields on the inventory (Athena over its decoded keys): the same keys. The generator
    # takes one string per key constraint, so each of its runs is one value; together they match.
    values = next(iter(filter_.values()))
    name = next(iter(filter_))
    with pipeline(**MANIFEST_AT_SUSPENDED) as stack:
        inventory = stack.run(
            {"name": "invsel", "filter": filter_, "operation": TAGGING, "dryRun": True}, name="invsel"
        )
        generated = set()
        singles = [values] if name == "replicationStatuses" else [[value] for value in values]
        for number, single in enumerate(singles):
            run = stack.run(
                source_spec(stack, f"gensel{number}", dryRun=True, filter={name: single}),
                name=f"gensel{number}",
            )
            assert run.output["status"] in ("DRY_RUN", "NOTHING_TO_DO")
            generated |= set(run.output["manifest"].get("sample", []))

    assert inventory.output["status"] == "DRY_RUN"
    assert set(inventory.output["manifest"]["sample"]) == generated
    assert inventory.output["manifest"]["objects"] == len(generated) > 0
