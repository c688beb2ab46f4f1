"""filter.versions through the real state machine: an all-versions inventory is a snapshot, and a key
may get a newer version after it was taken. "pinned" acts on the version the inventory listed,
"current" on the key's current version when the job runs. Asserted on each version's tags in S3."""

from __future__ import annotations

import pytest

from batchpipe.local.stack import LocalStack
from batchpipe.local.world import World

TAG = {"Key": "batchpipe", "Value": "done"}
TAGGING = {"S3PutObjectTagging": {"TagSet": [TAG]}}
KEYS = ["changed/after inventory.txt", "unchanged/still+current.txt"]

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


def version_tags(s3, bucket: str, key: str) -> dict[str, list[dict[str, str]]]:
    versions = s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    return {
        v["VersionId"]: s3.get_object_tagging(Bucket=bucket, Key=key, VersionId=v["VersionId"])["TagSet"]
        for v in versions
        if v["Key"] == key
    }


@pytest.mark.parametrize("choice", ["pinned", "current"])
def test_a_version_written_after_the_inventory(choice):
    world = World(versions="All")
    with LocalStack(parameters=world.parameters()) as stack:
        s3 = stack.client("s3")
        world.seed(s3, world.objects_with_keys(KEYS))
        bucket = world.source_bucket
        listed = {key: s3.head_object(Bucket=bucket, Key=key)["VersionId"] for key in KEYS}
        newer = s3.put_object(Bucket=bucket, Key=KEYS[0], Body=b"written after the inventory")["VersionId"]

        spec = {"name": "versions", "filter": {"versions": choice}, "operation": TAGGING}
        execution = stack.run(spec, name=f"versions-{choice}")

        assert execution.output["status"] == "SUCCEEDED", execution.output
        assert execution.output["totals"]["succeeded"] == len(KEYS)
        changed = version_tags(s3, bucket, KEYS[0])
        unchanged = version_tags(s3, bucket, KEYS[1])

    acted_on = listed[KEYS[0]] if choice == "pinned" else newer
    left_alone = newer if choice == "pinned" else listed[KEYS[0]]
    assert changed == {acted_on: [TAG], left_alone: []}
    assert unchanged == {listed[KEYS[1]]: [TAG]}


def test_a_rerun_of_a_current_run_acts_on_current_versions():
    """rerun.versions "current": the failures file's empty version IDs are not read as null versions."""
    world = World(versions="All")
    faults = [{"keyRegex": "^changed/", "httpStatus": 403, "errorCode": "AccessDenied", "times": 1}]
    with LocalStack(parameters=world.parameters(), faults=faults) as stack:
        s3 = stack.client("s3")
        world.seed(s3, world.objects_with_keys(KEYS))
        bucket = world.source_bucket
        listed = s3.head_object(Bucket=bucket, Key=KEYS[0])["VersionId"]
        spec = {"name": "first", "filter": {"versions": "current"}, "operation": TAGGING}
        first = stack.run(spec, name="first")
        newer = s3.put_object(Bucket=bucket, Key=KEYS[0], Body=b"written after the first run")["VersionId"]
        rerun = {"failures": first.output["permanentFailures"], "versions": "current"}
        second = stack.run({"name": "fix", "rerun": rerun, "operation": TAGGING}, name="fix")
        changed = version_tags(s3, bucket, KEYS[0])

    assert first.output["totals"]["failedPermanent"] == 1, first.output
    assert second.output["status"] == "SUCCEEDED", second.output
    assert changed == {newer: [TAG], listed: []}
