"""Manifests as S3 Batch reads them: ETag check, key decoding, version IDs, inventory reports."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json

import pytest

from batchpipe.local.s3batch import BatchEngine

TAG_RUN = {"S3PutObjectTagging": {"TagSet": [{"Key": "seen", "Value": "yes"}]}}


def test_manifest_etag_mismatch_fails_the_job_while_preparing(s3batch_env):
    s3batch_env.bucket("src-bkt")
    s3batch_env.put("src-bkt", "k")
    manifest = s3batch_env.manifest([["src-bkt", "k"]])
    manifest["Location"]["ETag"] = "0" * 32

    job = s3batch_env.run(TAG_RUN, manifest)

    assert job["Status"] == "Failed"
    assert [reason["FailureCode"] for reason in job["FailureReasons"]] == ["ManifestETagMismatch"]
    assert "does not match" in job["FailureReasons"][0]["FailureReason"]
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 0
    assert s3batch_env.statuses(job["JobId"]) == ["New", "Preparing", "Failed"]
    failed_event = s3batch_env.events[-1]["detail"]["serviceEventDetails"]
    assert failed_event["failureCodes"] == ["ManifestETagMismatch"]
    assert failed_event["statusChangeReason"] == [job["FailureReasons"][0]["FailureReason"]]
    assert s3batch_env.tags("src-bkt", "k") == {}
    assert s3batch_env.s3.list_objects_v2(Bucket="s3batch-reports").get("KeyCount") == 0


def test_quoted_manifest_etag_is_the_same_etag(s3batch_env):
    s3batch_env.bucket("src-bkt")
    s3batch_env.put("src-bkt", "k")
    manifest = s3batch_env.manifest([["src-bkt", "k"]])
    manifest["Location"]["ETag"] = f'"{manifest["Location"]["ETag"]}"'

    assert s3batch_env.run(TAG_RUN, manifest)["Status"] == "Complete"


def test_a_missing_manifest_fails_the_job(s3batch_env):
    manifest = {
        "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
        "Location": {"ObjectArn": "arn:aws:s3:::s3batch-manifests/nope.csv", "ETag": "abc"},
    }

    job = s3batch_env.run(TAG_RUN, manifest)

    assert job["Status"] == "Failed"
    assert job["FailureReasons"][0]["FailureCode"] == "ManifestNotReadable"
    assert "404 NoSuchKey" in job["FailureReasons"][0]["FailureReason"]


def test_a_row_with_the_wrong_number_of_fields_fails_the_job(s3batch_env):
    manifest = s3batch_env.manifest_text("src-bkt,a\nsrc-bkt,b,extra\n")

    job = s3batch_env.run(TAG_RUN, manifest)

    assert (job["Status"], job["FailureReasons"][0]["FailureCode"]) == ("Failed", "InvalidManifest")
    assert "row 2" in job["FailureReasons"][0]["FailureReason"]


# key as stored -> how a manifest may spell it
KEYS = {
    "dir/with space.txt": "dir/with%20space.txt",
    "a+b.txt": "a%2Bb.txt",
    "100%done": "100%25done",
    "unicodé/日本.txt": "unicod%C3%A9/%E6%97%A5%E6%9C%AC.txt",
    'comma,and"quote': "comma%2Cand%22quote",
}


@pytest.mark.parametrize("decoding", ["percent", "form"])
def test_encoded_keys_reach_their_objects_under_both_decodings(s3batch_world, decoding):
    s3batch_world.start(key_decoding=decoding)
    s3batch_world.bucket("src-bkt")
    for key in KEYS:
        s3batch_world.put("src-bkt", key)

    job = s3batch_world.run(
        TAG_RUN, s3batch_world.manifest([["src-bkt", encoded] for encoded in KEYS.values()])
    )

    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == len(KEYS)
    for key in KEYS:
        assert s3batch_world.tags("src-bkt", key) == {"seen": "yes"}
    lines = s3batch_world.report_lines(job["JobId"])["succeeded"]
    assert [line.split(",")[1] for line in lines] == list(KEYS.values())


@pytest.mark.parametrize(("decoding", "tagged"), [("percent", "a+b"), ("form", "a b")])
def test_a_bare_plus_depends_on_the_decoding_setting(s3batch_world, decoding, tagged):
    s3batch_world.start(key_decoding=decoding)
    s3batch_world.bucket("src-bkt")
    s3batch_world.put("src-bkt", "a+b")
    s3batch_world.put("src-bkt", "a b")

    job = s3batch_world.run(TAG_RUN, s3batch_world.manifest([["src-bkt", "a+b"]]))

    assert job["Status"] == "Complete"
    assert {key: s3batch_world.tags("src-bkt", key) for key in ("a+b", "a b")} == {
        "a+b": {"seen": "yes"} if tagged == "a+b" else {},
        "a b": {"seen": "yes"} if tagged == "a b" else {},
    }
    assert s3batch_world.report_lines(job["JobId"])["succeeded"] == ["src-bkt,a+b,,succeeded,200,,Successful"]


def test_unknown_key_decoding_is_refused():
    with pytest.raises(ValueError, match="key_decoding"):
        BatchEngine(key_decoding="plus")


def test_version_ids_address_versions_and_null_the_null_version(s3batch_env):
    s3batch_env.bucket("ver-bkt")
    s3batch_env.put("ver-bkt", "doc", b"null version, written before versioning")
    s3batch_env.s3.put_bucket_versioning(Bucket="ver-bkt", VersioningConfiguration={"Status": "Enabled"})
    first = s3batch_env.put("ver-bkt", "doc", b"v1")
    latest = s3batch_env.put("ver-bkt", "doc", b"v2")
    manifest = s3batch_env.manifest(
        [["ver-bkt", "doc", first], ["ver-bkt", "doc", "null"], ["ver-bkt", "doc", "no-such-version"]],
        fields=("Bucket", "Key", "VersionId"),
    )

    job = s3batch_env.run(TAG_RUN, manifest)

    assert s3batch_env.tags("ver-bkt", "doc", first) == {"seen": "yes"}
    assert s3batch_env.tags("ver-bkt", "doc", "null") == {"seen": "yes"}
    assert s3batch_env.tags("ver-bkt", "doc", latest) == {}
    assert s3batch_env.report_lines(job["JobId"]) == {
        "succeeded": [
            f"ver-bkt,doc,{first},succeeded,200,,Successful",
            "ver-bkt,doc,null,succeeded,200,,Successful",
        ],
        "failed": [
            "ver-bkt,doc,no-such-version,failed,404,NoSuchVersion,The specified version does not exist."
        ],
    }


def test_ignored_fields_are_skipped(s3batch_env):
    s3batch_env.bucket("src-bkt")
    s3batch_env.put("src-bkt", "k")
    manifest = s3batch_env.manifest([["whatever", "src-bkt", "k"]], fields=("Ignore", "Bucket", "Key"))

    job = s3batch_env.run(TAG_RUN, manifest)

    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 1
    assert s3batch_env.tags("src-bkt", "k") == {"seen": "yes"}


def _inventory_manifest(world, rows, schema) -> dict:
    """An S3 Inventory delivery (manifest.json + one CSV.gz data file) and the job's Manifest for it."""
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    data = gzip.compress(buffer.getvalue().encode())
    data_key = "inventory/src-bkt/daily/data/part-0.csv.gz"
    world.s3.put_object(Bucket="s3batch-manifests", Key=data_key, Body=data)
    report = {
        "sourceBucket": "src-bkt",
        "destinationBucket": "arn:aws:s3:::s3batch-manifests",
        "version": "2016-11-30",
        "creationTimestamp": "1700000000000",
        "fileFormat": "CSV",
        "fileSchema": schema,
        "files": [{"key": data_key, "size": len(data), "MD5checksum": hashlib.md5(data).hexdigest()}],
    }
    key = "inventory/src-bkt/daily/2026-01-01T01-00Z/manifest.json"
    etag = world.s3.put_object(Bucket="s3batch-manifests", Key=key, Body=json.dumps(report).encode())["ETag"]
    return {
        "Spec": {"Format": "S3InventoryReport_CSV_20161130"},
        "Location": {"ObjectArn": f"arn:aws:s3:::s3batch-manifests/{key}", "ETag": etag},
    }


def test_inventory_report_manifest_lists_the_tasks(s3batch_env):
    s3batch_env.bucket("src-bkt")
    s3batch_env.put("src-bkt", "photos/a b.jpg")
    s3batch_env.put("src-bkt", "photos/c.jpg")
    rows = [
        ["src-bkt", "photos/a%20b.jpg", "12", "2026-01-01T00:00:00.000Z", "STANDARD"],
        ["src-bkt", "photos/c.jpg", "4", "2026-01-01T00:00:00.000Z", "STANDARD"],
    ]
    manifest = _inventory_manifest(s3batch_env, rows, "Bucket, Key, Size, LastModifiedDate, StorageClass")

    job = s3batch_env.run(TAG_RUN, manifest)

    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 2
    assert s3batch_env.tags("src-bkt", "photos/a b.jpg") == {"seen": "yes"}
    assert s3batch_env.report_lines(job["JobId"])["succeeded"][0] == (
        "src-bkt,photos/a%20b.jpg,,succeeded,200,,Successful"
    )


def test_all_versions_inventory_reads_an_empty_version_id_as_the_null_version(s3batch_env):
    s3batch_env.bucket("ver-bkt")
    s3batch_env.put("ver-bkt", "doc", b"null version")
    s3batch_env.s3.put_bucket_versioning(Bucket="ver-bkt", VersioningConfiguration={"Status": "Enabled"})
    current = s3batch_env.put("ver-bkt", "doc", b"v1")
    rows = [["ver-bkt", "doc", "", "false", "false"], ["ver-bkt", "doc", current, "true", "false"]]
    manifest = _inventory_manifest(s3batch_env, rows, "Bucket, Key, VersionId, IsLatest, IsDeleteMarker")

    job = s3batch_env.run(TAG_RUN, manifest)

    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 2
    assert s3batch_env.tags("ver-bkt", "doc", "null") == {"seen": "yes"}
    assert s3batch_env.tags("ver-bkt", "doc", current) == {"seen": "yes"}
    assert s3batch_env.report_lines(job["JobId"])["succeeded"][0] == "ver-bkt,doc,,succeeded,200,,Successful"
