"""Runs from spec.source.metadataTable: the bucket's S3 Metadata live inventory table (issue #26 §1).

Real pipeline.asl.json and handlers on the embedded AWS: the table is a real Iceberg table that
pyiceberg writes from the emulated bucket (S3's backfill, batchpipe.local.metadata_table), and the
local Athena runs PlanQuery's statement over it. Keys need encoding (spaces, '+', '%', unicode), and
so do the tags and metadata compared. Outcomes asserted: objects' tags, the manifest, the summary.
"""

from __future__ import annotations

import csv
import io
from urllib.parse import unquote

from batchpipe.local.metadata_table import read_table
from batchpipe_core.accounting import estimate_cost_usd, estimate_transitions
from tests.statemachine.test_pipeline import (
    HAPPY_PATH,
    KEYS,
    TAGGING,
    jobs,
    pipeline,
    read_s3_uri,
    tags_by_key,
)

ATLAS = {
    "photos/2023/a b.jpg",
    "photos/2023/plus+sign.jpg",
    "photos/2023/100%.jpg",
    "photos/2023/ünïcödé/日本.jpg",
}
HELD = "photos/2023/100%.jpg"
OWNED = {"slow/two words.bin", "docs/readme.txt", "photos/2023/ünïcödé/日本.jpg"}
QUERY_STATES = HAPPY_PATH[HAPPY_PATH.index("RerunOfFailures?") :]


def label(stack) -> None:
    """Tags and user metadata a backfill then finds: a tag key with a space, tag values with '+', '/'
    and unicode (S3's tag alphabet), a metadata value with a space, '+' and '%' (ASCII, as S3 requires)."""
    s3 = stack.client("s3")
    bucket = stack.world.source_bucket
    for key in ATLAS:
        tags = [{"Key": "project", "Value": "atlas"}, {"Key": "cost centre", "Value": "r+d ünï/2"}]
        if key == HELD:
            tags.append({"Key": "legal hold", "Value": "ü"})
        s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": tags})
    s3.put_object_tagging(
        Bucket=bucket, Key="photos/2024/new.jpg", Tagging={"TagSet": [{"Key": "project", "Value": "atlas2"}]}
    )
    for key in OWNED:
        s3.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": bucket, "Key": key},
            Metadata={"owner": "team a+b 100%"},
            MetadataDirective="REPLACE",
        )
    return stack.write_metadata_table(bucket)


def spec(name: str, filter_: dict, **fields) -> dict:
    return {"name": name, "source": {"metadataTable": {}}, "filter": filter_, "operation": TAGGING} | fields


def manifest_keys(stack, execution) -> list[str]:
    rows = list(csv.reader(io.StringIO(read_s3_uri(stack, execution.output["manifest"]["location"]))))
    assert all("+" not in row[1] and " " not in row[1] for row in rows)
    return sorted(unquote(row[1]) for row in rows)


def test_a_tag_filter_tags_exactly_the_matching_objects_with_exact_totals():
    filter_ = {
        "tags": {
            "allOf": [{"key": "project", "value": "atlas"}, {"key": "cost centre"}],
            "absent": ["legal hold"],
        }
    }
    with pipeline() as stack:
        label(stack)
        execution = stack.run(spec("bytag", filter_), name="bytag")
        tags = tags_by_key(stack)
        keys = manifest_keys(stack, execution)
        sql = execution.task_outputs("PlanQuery")[0]["query"]["sql"]

    selected = sorted(ATLAS - {HELD})
    assert execution.status == "SUCCEEDED"
    entered = execution.states_entered
    assert entered[entered.index("RerunOfFailures?") :][: len(QUERY_STATES)] == QUERY_STATES
    assert '"s3tablescatalog/aws-s3"."b_batchpipe-demo-source"."inventory"' in sql
    summary = execution.output
    assert summary["status"] == "SUCCEEDED"
    assert summary["manifest"]["objects"] == len(selected) == 3
    assert summary["totals"] == {
        "objects": 3,
        "succeeded": 3,
        "failedPermanent": 0,
        "failedRetriesExhausted": 0,
    }
    assert keys == selected
    assert {k for k, t in tags.items() if t == {"batchpipe": "done"}} == set(selected)
    assert tags[HELD]["project"] == "atlas"  # left alone: it has the absent tag


def test_a_metadata_filter_with_a_dry_run_counts_and_samples_without_a_job():
    filter_ = {
        "metadata": {"anyOf": [{"key": "owner", "value": "team a+b 100%"}]},
        "prefixes": ["photos/", "docs/"],
    }
    with pipeline() as stack:
        table = read_table(label(stack))
        dry = stack.run(spec("bymeta", filter_, dryRun=True), name="bymeta-dry")
        execution = stack.run(spec("bymeta", filter_), name="bymeta")
        tags = tags_by_key(stack)

    selected = sorted(k for k in OWNED if k.startswith(("photos/", "docs/")))
    assert dry.output["status"] == "DRY_RUN"
    assert dry.output["manifest"]["objects"] == len(selected) == 2
    assert sorted(dry.output["manifest"]["sample"]) == selected
    # The estimate is the inventory's: one job, its objects, Athena's scan of the table's data files.
    assert 0 < dry.output["manifest"]["bytesScanned"] == table.bytes
    assert dry.output["estimatedCostUsd"] == estimate_cost_usd(
        jobs=1, objects_processed=2, athena_bytes_scanned=table.bytes, transitions=estimate_transitions(1)
    )
    assert execution.output["totals"]["succeeded"] == 2
    assert {k for k, t in tags.items() if t == {"batchpipe": "done"}} == set(selected)
    assert set(KEYS) - set(selected) == {k for k, t in tags.items() if t != {"batchpipe": "done"}}


def test_latest_only_skips_deleted_keys_and_old_versions_and_pins_the_version_it_read():
    with pipeline(versions="All") as stack:
        s3 = stack.client("s3")
        bucket = stack.world.source_bucket
        # An older version tagged atlas under a newer one that is not; a key whose newest row is a
        # delete marker; a key tagged atlas twice (two versions), only the newest selected.
        s3.put_object_tagging(
            Bucket=bucket, Key="docs/readme.txt", Tagging={"TagSet": [{"Key": "project", "Value": "atlas"}]}
        )
        s3.put_object(Bucket=bucket, Key="docs/readme.txt", Body=b"newer")
        s3.put_object_tagging(
            Bucket=bucket, Key="slow/one.bin", Tagging={"TagSet": [{"Key": "project", "Value": "atlas"}]}
        )
        s3.delete_object(Bucket=bucket, Key="slow/one.bin")
        s3.put_object_tagging(
            Bucket=bucket,
            Key="photos/2023/a b.jpg",
            Tagging={"TagSet": [{"Key": "project", "Value": "atlas"}]},
        )
        s3.put_object(Bucket=bucket, Key="photos/2023/a b.jpg", Body=b"v2", Tagging="project=atlas")
        newest = s3.head_object(Bucket=bucket, Key="photos/2023/a b.jpg")["VersionId"]
        stack.write_metadata_table(bucket)
        latest = stack.run(
            spec("versions", {"tags": {"allOf": [{"key": "project", "value": "atlas"}]}}), name="latest"
        )
        rows = list(csv.reader(io.StringIO(read_s3_uri(stack, latest.output["manifest"]["location"]))))
        every = stack.run(
            spec(
                "versions",
                {"latestOnly": False, "tags": {"allOf": [{"key": "project", "value": "atlas"}]}},
                dryRun=True,
            ),
            name="every",
        )

    assert latest.output["totals"]["succeeded"] == 1
    assert [(unquote(row[1]), row[2]) for row in rows] == [("photos/2023/a b.jpg", newest)]
    # Every version tagged atlas: both of a b.jpg, the old readme and the deleted key's last version.
    assert every.output["manifest"]["objects"] == 4


def test_max_objects_stops_the_run_on_s3s_count_before_any_object_is_touched():
    with pipeline() as stack:
        label(stack)
        execution = stack.run(
            spec(
                "toomany",
                {"tags": {"allOf": [{"key": "project", "value": "atlas"}]}},
                maxObjects=len(ATLAS) - 1,
            ),
            name="toomany",
        )
        (job,) = jobs(stack)
        status = stack.client("s3control").describe_job(AccountId=stack.account_id, JobId=job["JobId"])["Job"]
        tags = tags_by_key(stack)

    assert execution.output["status"] == "FAILED"
    assert execution.output["error"] == "TooManyObjectsError"
    assert f"the pipeline counted {len(ATLAS)} objects" in execution.output["cause"]
    assert status["Status"] == "Cancelled"
    assert not any(t.get("batchpipe") for t in tags.values())


def test_a_rerun_of_its_failures_acts_on_exactly_the_pinned_versions_that_failed():
    """A metadata-table run pins versions, so its failures file carries them; the rerun (no query)
    tags exactly the failed keys (which need encoding) at those versions."""
    denied = sorted(ATLAS - {"photos/2023/a b.jpg"})
    faults = [
        {"keyRegex": "^photos/2023/(plus|100|ü)", "httpStatus": 403, "errorCode": "AccessDenied", "times": 1}
    ]
    rerun_tagging = {"S3PutObjectTagging": {"TagSet": [{"Key": "batchpipe", "Value": "rerun"}]}}
    with pipeline(faults=faults) as stack:
        label(stack)
        first = stack.run(
            spec("first", {"tags": {"allOf": [{"key": "project", "value": "atlas"}]}}), name="first"
        )
        failures = list(csv.DictReader(io.StringIO(read_s3_uri(stack, first.output["permanentFailures"]))))
        # The stack's inventory is Current: the rerun asks for the failures' versions by name.
        rerun = {
            "failures": first.output["permanentFailures"],
            "errorCodes": ["AccessDenied"],
            "versions": "pinned",
        }
        second = stack.run({"name": "fix", "rerun": rerun, "operation": rerun_tagging}, name="fix")
        rows = list(csv.reader(io.StringIO(read_s3_uri(stack, second.output["manifest"]["location"]))))
        tags = tags_by_key(stack)

    assert first.output["status"] == "PARTIAL"
    assert first.output["totals"]["failedPermanent"] == len(denied)
    assert sorted(f["key"] for f in failures) == denied
    assert all(f["versionId"] for f in failures)
    assert second.output["status"] == "SUCCEEDED"
    assert "PlanQuery" not in second.states_entered
    assert second.output["totals"] == {
        "objects": len(denied),
        "succeeded": len(denied),
        "failedPermanent": 0,
        "failedRetriesExhausted": 0,
    }
    assert sorted((unquote(r[1]), r[2]) for r in rows) == sorted((f["key"], f["versionId"]) for f in failures)
    assert {k for k, t in tags.items() if t.get("batchpipe") == "rerun"} == set(denied)
    assert tags["photos/2023/a b.jpg"]["batchpipe"] == "done"
