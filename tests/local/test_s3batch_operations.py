"""Each operation changes the emulated objects as S3 would, and fails tasks with S3's answers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

OWNER_ID = "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a"  # moto's canonical owner
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


@pytest.fixture
def src(s3batch_env):
    s3batch_env.bucket("src-bkt")
    s3batch_env.put(
        "src-bkt",
        "docs/a.txt",
        b"hello",
        ContentType="text/plain",
        Metadata={"origin": "scan"},
        Tagging="old=1",
    )
    return s3batch_env


def _failed_lines(world, job) -> list[str]:
    return world.report_lines(job["JobId"]).get("failed", [])


def test_put_object_tagging_replaces_the_tag_set(src):
    operation = {
        "S3PutObjectTagging": {"TagSet": [{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "x"}]}
    }

    job = src.run(operation, src.manifest([["src-bkt", "docs/a.txt"], ["src-bkt", "docs/missing.txt"]]))

    assert src.tags("src-bkt", "docs/a.txt") == {"env": "prod", "team": "x"}
    assert _failed_lines(src, job) == [
        "src-bkt,docs/missing.txt,,failed,404,NoSuchKey,The specified key does not exist."
    ]


def test_put_object_tagging_over_ten_tags_is_s3s_bad_request(src):
    operation = {"S3PutObjectTagging": {"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]}}

    job = src.run(operation, src.manifest([["src-bkt", "docs/a.txt"]]))

    assert _failed_lines(src, job) == [
        "src-bkt,docs/a.txt,,failed,400,BadRequest,Object tags cannot be greater than 10"
    ]
    assert src.tags("src-bkt", "docs/a.txt") == {"old": "1"}


def test_a_missing_bucket_is_no_such_bucket(src):
    job = src.run({"S3DeleteObjectTagging": {}}, src.manifest([["no-such-bkt", "k"]]))

    assert _failed_lines(src, job) == [
        "no-such-bkt,k,,failed,404,NoSuchBucket,The specified bucket does not exist"
    ]


def test_delete_object_tagging_removes_every_tag(src):
    job = src.run({"S3DeleteObjectTagging": {}}, src.manifest([["src-bkt", "docs/a.txt"]]))

    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 1
    assert src.tags("src-bkt", "docs/a.txt") == {}


def test_copy_with_prefix_storage_class_replaced_metadata_tags_and_acl(src):
    src.bucket("dst-bkt")
    operation = {
        "S3PutObjectCopy": {
            "TargetResource": "arn:aws:s3:::dst-bkt",
            "TargetKeyPrefix": "archive",
            "StorageClass": "STANDARD_IA",
            "MetadataDirective": "REPLACE",
            "NewObjectMetadata": {"ContentType": "application/json", "UserMetadata": {"copied": "yes"}},
            "NewObjectTagging": [{"Key": "copy", "Value": "1"}],
            "CannedAccessControlList": "public-read",
        }
    }

    job = src.run(operation, src.manifest([["src-bkt", "docs/a.txt"]]))

    assert job["Status"] == "Complete"
    head = src.s3.head_object(Bucket="dst-bkt", Key="archive/docs/a.txt")
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {"copied": "yes"}
    assert src.read("dst-bkt", "archive/docs/a.txt") == b"hello"
    assert src.tags("dst-bkt", "archive/docs/a.txt") == {"copy": "1"}
    grants = src.s3.get_object_acl(Bucket="dst-bkt", Key="archive/docs/a.txt")["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"} in grants
    source = src.s3.head_object(Bucket="src-bkt", Key="docs/a.txt")
    assert (source["ContentType"], source["Metadata"]) == ("text/plain", {"origin": "scan"})


def test_copy_by_default_keeps_metadata_and_tags(src):
    src.bucket("dst-bkt")

    src.run(
        {"S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::dst-bkt"}},
        src.manifest([["src-bkt", "docs/a.txt"]]),
    )

    head = src.s3.head_object(Bucket="dst-bkt", Key="docs/a.txt")
    assert (head["ContentType"], head["Metadata"]) == ("text/plain", {"origin": "scan"})
    assert head.get("StorageClass", "STANDARD") == "STANDARD"
    assert src.tags("dst-bkt", "docs/a.txt") == {"old": "1"}


def test_copy_of_a_chosen_version_and_s3s_refusal_to_copy_onto_itself(src):
    src.bucket("ver-bkt", versioned=True)
    first = src.put("ver-bkt", "v", b"first")
    src.put("ver-bkt", "v", b"second")
    src.bucket("dst-bkt")
    manifest = src.manifest(
        [["ver-bkt", "v", first], ["src-bkt", "docs/a.txt", ""]], fields=("Bucket", "Key", "VersionId")
    )

    onto_source = src.run({"S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::src-bkt"}}, manifest)
    elsewhere = src.run({"S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::dst-bkt"}}, manifest)

    assert [line.split(",")[:6] for line in _failed_lines(src, onto_source)] == [
        ["src-bkt", "docs/a.txt", "", "failed", "400", "InvalidRequest"]
    ]
    assert src.read("src-bkt", "v") == b"first"
    assert elsewhere["ProgressSummary"]["NumberOfTasksSucceeded"] == 2
    assert src.read("dst-bkt", "v") == b"first"
    assert src.read("dst-bkt", "docs/a.txt") == b"hello"


def test_copy_features_moto_lacks_fail_as_not_supported(src):
    src.bucket("dst-bkt")
    operation = {"S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::dst-bkt", "ObjectLockEventHold": "ON"}}

    job = src.run(operation, src.manifest([["src-bkt", "docs/a.txt"]]))

    assert _failed_lines(src, job) == [
        "src-bkt,docs/a.txt,,failed,400,NotSupportedByLocalEngine,"
        "S3PutObjectCopy with ObjectLockEventHold is not supported by the local S3 Batch engine"
    ]
    assert src.s3.list_objects_v2(Bucket="dst-bkt")["KeyCount"] == 0


def test_put_object_acl_canned_and_explicit_grants(src):
    src.put("src-bkt", "docs/b.txt")
    canned = {"S3PutObjectAcl": {"AccessControlPolicy": {"CannedAccessControlList": "public-read"}}}
    explicit = {
        "S3PutObjectAcl": {
            "AccessControlPolicy": {
                "AccessControlList": {
                    "Owner": {"ID": OWNER_ID},
                    "Grants": [
                        {
                            "Grantee": {"TypeIdentifier": "id", "Identifier": OWNER_ID},
                            "Permission": "FULL_CONTROL",
                        },
                        {
                            "Grantee": {"TypeIdentifier": "uri", "Identifier": ALL_USERS},
                            "Permission": "READ_ACP",
                        },
                    ],
                }
            }
        }
    }

    src.run(canned, src.manifest([["src-bkt", "docs/a.txt"]]))
    src.run(explicit, src.manifest([["src-bkt", "docs/b.txt"]]))

    canned_grants = src.s3.get_object_acl(Bucket="src-bkt", Key="docs/a.txt")["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"} in canned_grants
    explicit_grants = src.s3.get_object_acl(Bucket="src-bkt", Key="docs/b.txt")["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ_ACP"} in explicit_grants
    assert {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"} not in explicit_grants


def test_initiate_restore_restores_archived_objects_only(src):
    src.put("src-bkt", "cold/archived", StorageClass="GLACIER")
    operation = {"S3InitiateRestoreObject": {"ExpirationInDays": 3, "GlacierJobTier": "BULK"}}

    job = src.run(operation, src.manifest([["src-bkt", "cold/archived"], ["src-bkt", "docs/a.txt"]]))

    assert 'ongoing-request="false"' in src.s3.head_object(Bucket="src-bkt", Key="cold/archived")["Restore"]
    assert [line.split(",")[3:6] for line in _failed_lines(src, job)] == [
        ["failed", "403", "InvalidObjectState"]
    ]


def test_legal_hold_on_an_object_lock_bucket(src):
    src.bucket("lock-bkt", object_lock=True)
    src.put("lock-bkt", "held")
    operation = {"S3PutObjectLegalHold": {"LegalHold": {"Status": "ON"}}}
    manifest = src.manifest([["lock-bkt", "held"], ["lock-bkt", "missing"], ["src-bkt", "docs/a.txt"]])

    job = src.run(operation, manifest)

    assert src.s3.head_object(Bucket="lock-bkt", Key="held")["ObjectLockLegalHoldStatus"] == "ON"
    assert _failed_lines(src, job) == [
        "lock-bkt,missing,,failed,404,NoSuchKey,The specified key does not exist.",
        "src-bkt,docs/a.txt,,failed,400,InvalidRequest,Bucket is missing ObjectLockConfiguration",
    ]


def test_retention_on_an_object_lock_bucket(src):
    src.bucket("lock-bkt", object_lock=True)
    version = src.put("lock-bkt", "kept")
    until = datetime(2031, 1, 1, tzinfo=UTC)
    operation = {"S3PutObjectRetention": {"Retention": {"Mode": "GOVERNANCE", "RetainUntilDate": until}}}

    job = src.run(
        operation, src.manifest([["lock-bkt", "kept", version]], fields=("Bucket", "Key", "VersionId"))
    )

    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 1
    head = src.s3.head_object(Bucket="lock-bkt", Key="kept", VersionId=version)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] == until


@pytest.mark.parametrize(
    "operation",
    [
        {"S3ReplicateObject": {}},
        {"S3ComputeObjectChecksum": {"ChecksumAlgorithm": "SHA256", "ChecksumType": "FULL_OBJECT"}},
        {"S3UpdateObjectEncryption": {}},
    ],
)
def test_operations_moto_cannot_perform_fail_every_task_plainly(src, operation):
    name = next(iter(operation))

    job = src.run(operation, src.manifest([["src-bkt", "docs/a.txt"], ["src-bkt", "docs/other"]]))

    assert job["Status"] == "Complete"
    assert job["ProgressSummary"]["NumberOfTasksFailed"] == 2
    assert _failed_lines(src, job)[0] == (
        f"src-bkt,docs/a.txt,,failed,400,NotSupportedByLocalEngine,"
        f"Operation {name} is not supported by the local S3 Batch engine"
    )
