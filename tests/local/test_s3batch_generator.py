"""CreateJob with a ManifestGenerator: the engine lists the source bucket itself while Preparing.

The requests are the pipeline's own (``batchpipe_core.generator`` over ``jobs.build_create_job_request``),
so these tests also pin what the pipeline asks S3 for; the outcomes checked are S3's: tags on objects,
DescribeJob's counts, the generated manifest in the run's prefix and the completion report.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from batchpipe.local.s3batch import KIND_ANSWERS
from batchpipe_core.generator import manifest_generator, with_manifest_generator
from batchpipe_core.jobs import CurrentAttempt, JobRunRef, JobSettings, SpecView, build_create_job_request
from batchpipe_core.keys import decode_key, encode_key

from .conftest import S3BATCH_ACCOUNT, S3BATCH_ROLE

TAG = {"S3PutObjectTagging": {"TagSet": [{"Key": "seen", "Value": "yes"}]}}
PIPELINE_BUCKET = "s3batch-reports"
RUN_PREFIX = "runs/gen/exec-1/20261206T000000Z/"
# Keys that need encoding in a manifest: unicode, spaces, '+', '%', and look-alikes of the prefix.
KEYS = [
    "photos/日本 café.jpg",
    "photos/a+b.jpg",
    "photos/100%done.jpg",
    "photos/plain.jpg",
    "photos/with space/x.txt",
    "photos%2Fencoded.jpg",  # the prefix spelled encoded is another key: it must not match
    "other/photos/a.jpg",
    "Photos/upper.jpg",
]


def _settings() -> JobSettings:
    return JobSettings(
        account_id=S3BATCH_ACCOUNT,
        pipeline_bucket=PIPELINE_BUCKET,
        batch_role_arn=S3BATCH_ROLE,
        inventory_versions="Current",
        pipeline_name="batchpipe-test",
        default_priority=10,
        default_report_scope="AllTasks",
    )


def _request(filter_spec: dict, *, source: str = "src-bkt", confirm: bool = False) -> dict:
    run = JobRunRef(executionId="arn:exec", executionName="exec-1", prefix=RUN_PREFIX, runId="run-1")
    # The placeholder manifest is what ManifestGenerator replaces: it never reaches CreateJob.
    current = CurrentAttempt(attempt=1, manifest={"bucket": "x", "key": "x", "etag": "x"})
    spec = SpecView(operation=TAG, report={"scope": "AllTasks"})
    request = build_create_job_request(spec, run, current, _settings())
    request = with_manifest_generator(
        request, manifest_generator(source, filter_spec, RUN_PREFIX, _settings())
    )
    request["ConfirmationRequired"] = confirm
    # Several jobs of one test are several runs: the run's token would make S3 refuse the second.
    request["ClientRequestToken"] = uuid.uuid4().hex
    return request


def _run(env, request: dict) -> dict:
    job_id = env.s3control.create_job(**request)["JobId"]
    assert env.engine.wait_idle(60)
    return env.describe(job_id)


def _tagged(env, bucket: str = "src-bkt") -> set[str]:
    keys = [o["Key"] for o in env.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {key for key in keys if env.tags(bucket, key) == {"seen": "yes"}}


def _generated_keys(env, job: dict) -> list[str]:
    location = job["GeneratedManifestDescriptor"]["Location"]["ObjectArn"]
    bucket, key = location.split(":::", 1)[1].split("/", 1)
    document = json.loads(env.read(bucket, key))
    assert document["fileFormat"] == "CSV"
    rows = []
    for entry in document["files"]:
        text = gzip.decompress(env.read(bucket, entry["key"])).decode()
        rows += list(csv.reader(io.StringIO(text)))
    assert {row[0] for row in rows} <= {"src-bkt"}
    return [row[1] for row in rows]


def test_a_prefix_run_acts_on_exactly_the_raw_keys_it_names(s3batch_env):
    s3batch_env.bucket("src-bkt")
    for key in KEYS:
        s3batch_env.put("src-bkt", key)

    job = _run(s3batch_env, _request({"prefixes": ["photos/"]}))

    wanted = {key for key in KEYS if key.startswith("photos/")}
    assert job["Status"] == "Complete"
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == len(wanted) == 5
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 5
    assert _tagged(s3batch_env) == wanted
    # The generated manifest is in the run's prefix, keys encoded with no bare '+', and decodes back.
    descriptor = job["GeneratedManifestDescriptor"]
    assert descriptor["Format"] == "S3InventoryReport_CSV_20211130"
    assert descriptor["Location"]["ObjectArn"].startswith(
        f"arn:aws:s3:::{PIPELINE_BUCKET}/{RUN_PREFIX}generated-manifest/job-{job['JobId']}/"
    )
    listed = _generated_keys(s3batch_env, job)
    assert sorted(listed) == sorted(encode_key(key) for key in wanted)
    assert not any("+" in key or " " in key for key in listed)
    assert (
        {decode_key(key) for key in listed}
        == {decode_key(key, plus_is_space=True) for key in listed}
        == wanted
    )
    # The completion report repeats the manifest's spelling: one row per object.
    lines = s3batch_env.report_lines(job["JobId"], prefix=f"{RUN_PREFIX}attempt-1/report")
    assert sorted(row[1] for row in csv.reader(lines["succeeded"])) == sorted(listed)


@pytest.mark.parametrize(
    ("filter_spec", "expected"),
    [
        ({"prefixes": ["photos/a+"]}, {"photos/a+b.jpg"}),
        ({"prefixes": ["photos/100%"]}, {"photos/100%done.jpg"}),
        ({"prefixes": ["photos/日本 "]}, {"photos/日本 café.jpg"}),
        ({"prefixes": ["photos/with space/"]}, {"photos/with space/x.txt"}),
        ({"prefixes": ["photos%2F"]}, {"photos%2Fencoded.jpg"}),
        ({"prefixes": ["photos"]}, {k for k in KEYS if k.startswith("photos")}),
        ({"suffixes": ["%done.jpg"]}, {"photos/100%done.jpg"}),
        ({"suffixes": [" café.jpg"]}, {"photos/日本 café.jpg"}),
        ({"suffixes": ["A.JPG"]}, set()),  # case-sensitive
        ({"substrings": ["+"]}, {"photos/a+b.jpg"}),
        ({"substrings": ["%2F"]}, {"photos%2Fencoded.jpg"}),  # the raw key's characters, not decoded
        ({"substrings": ["hotos/"]}, {k for k in KEYS if "hotos/" in k}),
        (
            {"prefixes": ["photos/"], "suffixes": [".jpg"], "substrings": ["a"]},
            {"photos/a+b.jpg", "photos/plain.jpg", "photos/日本 café.jpg"},
        ),
        ({"replicationStatuses": ["NONE"]}, set(KEYS)),
        ({"replicationStatuses": ["COMPLETED", "FAILED", "REPLICA"]}, set()),
    ],
)
def test_key_constraints_and_replication_statuses_match_the_key_as_stored(s3batch_env, filter_spec, expected):
    s3batch_env.bucket("src-bkt")
    for key in KEYS:
        s3batch_env.put("src-bkt", key)

    job = _run(s3batch_env, _request(filter_spec))

    assert job["ProgressSummary"]["TotalNumberOfTasks"] == len(expected)
    assert _tagged(s3batch_env) == expected


def test_size_bounds_are_inclusive_in_the_spec_and_strict_in_the_request(s3batch_env):
    s3batch_env.bucket("src-bkt")
    for size in (0, 1, 2, 3, 4):
        s3batch_env.put("src-bkt", f"size-{size}", b"x" * size)

    job = _run(s3batch_env, _request({"minSizeBytes": 1, "maxSizeBytes": 3}))

    assert job["ProgressSummary"]["TotalNumberOfTasks"] == 3
    assert _tagged(s3batch_env) == {"size-1", "size-2", "size-3"}


def test_storage_class_and_encryption_select_by_what_s3_stored(s3batch_env):
    s3batch_env.bucket("src-bkt")
    s3batch_env.put("src-bkt", "std")
    s3batch_env.put("src-bkt", "ia", StorageClass="STANDARD_IA")
    s3batch_env.put("src-bkt", "ia-kms", StorageClass="STANDARD_IA", ServerSideEncryption="aws:kms")

    assert (
        _run(s3batch_env, _request({"storageClasses": ["STANDARD_IA"]}))["ProgressSummary"][
            "TotalNumberOfTasks"
        ]
        == 2
    )
    job = _run(s3batch_env, _request({"storageClasses": ["STANDARD_IA"], "encryptionStatuses": ["SSE-KMS"]}))
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == 1
    assert _generated_keys(s3batch_env, job) == ["ia-kms"]


def test_creation_time_bounds_follow_the_spec(s3batch_env):
    s3batch_env.bucket("src-bkt")
    s3batch_env.put("src-bkt", "old")
    created = s3batch_env.s3.head_object(Bucket="src-bkt", Key="old")["LastModified"].astimezone(UTC)
    stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    later = (created + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    # modifiedAfter is inclusive: an object created at that very second is in.
    assert _run(s3batch_env, _request({"modifiedAfter": stamp}))["ProgressSummary"]["TotalNumberOfTasks"] == 1
    # modifiedBefore is exclusive: an object created at that very second is out.
    job = _run(s3batch_env, _request({"modifiedBefore": stamp}))
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == 0
    assert (
        _run(s3batch_env, _request({"modifiedBefore": later}))["ProgressSummary"]["TotalNumberOfTasks"] == 1
    )
    assert _run(s3batch_env, _request({"modifiedAfter": later}))["ProgressSummary"]["TotalNumberOfTasks"] == 0
    assert created < datetime.now(UTC) + timedelta(seconds=5)


def test_by_default_a_suspended_generator_job_shows_neither_count_nor_manifest(s3batch_env):
    # The least S3 documents: GeneratedManifestDescriptor is filled "after execution of the
    # ManifestGenerator" and TotalNumberOfTasks is optional; both appear once the job runs.
    s3batch_env.bucket("src-bkt")
    for key in KEYS:
        s3batch_env.put("src-bkt", key)

    suspended = _run(s3batch_env, _request({"prefixes": ["photos/"]}, confirm=True))

    assert suspended["Status"] == "Suspended"
    assert "TotalNumberOfTasks" not in suspended["ProgressSummary"]
    assert "GeneratedManifestDescriptor" not in suspended
    written = s3batch_env.s3.list_objects_v2(Bucket=PIPELINE_BUCKET, Prefix=f"{RUN_PREFIX}generated-manifest")
    assert written["KeyCount"] == 0
    assert _tagged(s3batch_env) == set()

    s3batch_env.s3control.update_job_status(
        AccountId=S3BATCH_ACCOUNT, JobId=suspended["JobId"], RequestedJobStatus="Ready"
    )
    assert s3batch_env.engine.wait_idle(60)
    done = s3batch_env.describe(suspended["JobId"])
    assert done["Status"] == "Complete"
    assert done["ProgressSummary"]["TotalNumberOfTasks"] == 5
    assert len(_generated_keys(s3batch_env, done)) == 5


def test_kind_answers_count_and_write_the_manifest_before_confirmation(s3batch_world):
    s3batch_world.start(**KIND_ANSWERS)
    s3batch_world.bucket("src-bkt")
    for key in KEYS:
        s3batch_world.put("src-bkt", key)

    job = _run(s3batch_world, _request({"prefixes": ["photos/"]}, confirm=True))

    assert job["Status"] == "Suspended"
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == 5
    assert len(_generated_keys(s3batch_world, job)) == 5
    assert _tagged(s3batch_world) == set()


def test_eligible_for_replication_follows_the_buckets_enabled_rules(s3batch_env):
    s3batch_env.bucket("src-bkt", versioned=True)
    s3batch_env.bucket("replica-bkt", versioned=True)
    for key in KEYS:
        s3batch_env.put("src-bkt", key)
    s3batch_env.s3.put_object_tagging(
        Bucket="src-bkt",
        Key="other/photos/a.jpg",
        Tagging={"TagSet": [{"Key": "copy me", "Value": "yes 1"}]},
    )
    off = {"Status": "Disabled"}
    to_replica = {"DeleteMarkerReplication": off, "Destination": {"Bucket": "arn:aws:s3:::replica-bkt"}}
    rules = [
        {"ID": "a", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": "photos/a"}} | to_replica,
        {
            "ID": "b",
            "Priority": 2,
            "Status": "Enabled",
            "Filter": {"And": {"Prefix": "other/", "Tags": [{"Key": "copy me", "Value": "yes 1"}]}},
        }
        | to_replica,
        {"ID": "c", "Priority": 3, "Status": "Disabled", "Filter": {"Prefix": "Photos/"}} | to_replica,
    ]
    s3batch_env.s3.put_bucket_replication(
        Bucket="src-bkt",
        ReplicationConfiguration={"Role": f"arn:aws:iam::{S3BATCH_ACCOUNT}:role/replication", "Rules": rules},
    )

    job = _run(s3batch_env, _request({"eligibleForReplication": True}))

    assert _tagged(s3batch_env) == {"photos/a+b.jpg", "other/photos/a.jpg"}
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == 2


def test_a_bucket_without_replication_configuration_has_nothing_eligible(s3batch_env):
    s3batch_env.bucket("src-bkt")
    s3batch_env.put("src-bkt", "a")

    job = _run(s3batch_env, _request({"eligibleForReplication": True}))

    assert job["Status"] == "Complete"
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == 0


def test_an_empty_selection_writes_an_empty_manifest_and_runs_nothing(s3batch_env):
    s3batch_env.bucket("src-bkt")
    s3batch_env.put("src-bkt", "a")

    job = _run(s3batch_env, _request({"prefixes": ["nothing/"]}))

    assert job["Status"] == "Complete"
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == 0
    assert _generated_keys(s3batch_env, job) == []
    assert _tagged(s3batch_env) == set()


def test_a_missing_source_bucket_fails_the_job_while_preparing(s3batch_env):
    job = _run(s3batch_env, _request({}, source="no-such-bucket"))

    assert job["Status"] == "Failed"
    assert job["FailureReasons"][0]["FailureCode"] == "ManifestGenerationFailed"
    assert "NoSuchBucket" in job["FailureReasons"][0]["FailureReason"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda r: r.update(
                Manifest={"Spec": {"Format": "x"}, "Location": {"ObjectArn": "x", "ETag": "x"}}
            ),
            "not both",
        ),
        (
            lambda r: r["ManifestGenerator"]["S3JobManifestGenerator"].update(
                Filter={"KeyNameConstraint": {"MatchAnyPrefix": ["a", "b"]}}
            ),
            "exactly 1",
        ),
        (
            lambda r: r["ManifestGenerator"]["S3JobManifestGenerator"].update(
                Filter={"KeyNameConstraint": {"MatchAnySuffix": ["x" * 1025]}}
            ),
            "1 to 1024 characters",
        ),
        (
            lambda r: r["ManifestGenerator"]["S3JobManifestGenerator"].pop("ManifestOutputLocation"),
            "ManifestOutputLocation",
        ),
    ],
)
def test_create_job_refuses_generators_it_cannot_run(s3batch_env, change, message):
    request = _request({})
    change(request)

    with pytest.raises(ClientError) as raised:
        s3batch_env.s3control.create_job(**request)

    assert raised.value.response["Error"]["Code"] == "BadRequestException"
    assert message in raised.value.response["Error"]["Message"]
