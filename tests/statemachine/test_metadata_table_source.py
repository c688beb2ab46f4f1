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

from tests.statemachine.test_pipeline import HAPPY_PATH, KEYS, TAGGING, pipeline, read_s3_uri, tags_by_key

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
    stack.write_metadata_table(bucket)


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
        label(stack)
        dry = stack.run(spec("bymeta", filter_, dryRun=True), name="bymeta-dry")
        execution = stack.run(spec("bymeta", filter_), name="bymeta")
        tags = tags_by_key(stack)

    selected = sorted(k for k in OWNED if k.startswith(("photos/", "docs/")))
    assert dry.output["status"] == "DRY_RUN"
    assert dry.output["manifest"]["objects"] == len(selected) == 2
    assert sorted(dry.output["manifest"]["sample"]) == selected
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
