"""The s3control job API of the embedded engine, through ordinary boto3 clients inside mock_aws."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from moto.core import models as moto_models

from batchpipe.local.s3batch import KIND_ANSWERS

from .conftest import S3BATCH_ACCOUNT, S3BATCH_ROLE

TAGGING = {"S3PutObjectTagging": {"TagSet": [{"Key": "batch", "Value": "done"}]}}
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "job-status-changed-complete.json"


def _shape(value):
    """Keys and value types, recursively: what "the same shape" means for an event."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return type(value).__name__


@pytest.fixture
def one_object_manifest(s3batch_world):
    s3batch_world.bucket("src-bkt")
    s3batch_world.put("src-bkt", "photo.jpg")
    return s3batch_world.manifest([["src-bkt", "photo.jpg"]])


def test_job_runs_new_to_complete_and_describes_itself(s3batch_env, one_object_manifest):
    job = s3batch_env.run(
        TAGGING, one_object_manifest, Description="retag", Tags=[{"Key": "run", "Value": "1"}]
    )

    assert job["Status"] == "Complete"
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == 1
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 1
    assert job["ProgressSummary"]["NumberOfTasksFailed"] == 0
    assert job["JobArn"] == f"arn:aws:s3:us-east-1:{S3BATCH_ACCOUNT}:job/{job['JobId']}"
    assert job["Operation"] == TAGGING
    assert job["Manifest"] == one_object_manifest
    assert job["Description"] == "retag"
    assert job["RoleArn"] == S3BATCH_ROLE
    assert job["TerminationDate"] >= job["CreationTime"]
    assert "FailureReasons" not in job
    assert s3batch_env.statuses(job["JobId"]) == [
        "New",
        "Preparing",
        "Ready",
        "Active",
        "Completing",
        "Complete",
    ]
    assert s3batch_env.tags("src-bkt", "photo.jpg") == {"batch": "done"}


def test_status_events_have_the_fixture_shape_with_fresh_ids(s3batch_env, one_object_manifest):
    job = s3batch_env.run(TAGGING, one_object_manifest)
    fixture = json.loads(FIXTURE.read_text())

    complete = [e for e in s3batch_env.events if e["detail"]["serviceEventDetails"]["status"] == "Complete"]
    assert len(complete) == 1
    event = complete[0]
    assert _shape(event) == _shape(fixture)
    details = event["detail"]["serviceEventDetails"]
    assert details["jobId"] == job["JobId"]
    assert details["jobArn"] == job["JobArn"]
    assert (event["account"], event["region"]) == (S3BATCH_ACCOUNT, "us-east-1")
    assert event["detail"]["userIdentity"]["accountId"] == S3BATCH_ACCOUNT
    assert event["detail"]["awsRegion"] == "us-east-1"
    constant = ("version", "detail-type", "source", "resources")
    assert {k: event[k] for k in constant} == {k: fixture[k] for k in constant}
    for key in ("eventVersion", "eventSource", "eventName", "eventType", "readOnly", "userAgent"):
        assert event["detail"][key] == fixture["detail"][key]
    ids = [
        (e["id"], e["detail"]["eventID"], e["detail"]["serviceEventDetails"]["jobEventId"])
        for e in s3batch_env.events
    ]
    assert len(set(ids)) == len(ids)
    assert event["id"] != fixture["id"]
    assert len(details["jobEventId"]) == 32


def test_same_client_request_token_and_request_gives_the_same_job(s3batch_env, one_object_manifest):
    first = s3batch_env.create_job(TAGGING, one_object_manifest, ClientRequestToken="run-1-attempt-1")
    again = s3batch_env.create_job(TAGGING, one_object_manifest, ClientRequestToken="run-1-attempt-1")
    s3batch_env.engine.wait_idle(30)

    assert again == first
    listed = s3batch_env.s3control.list_jobs(AccountId=S3BATCH_ACCOUNT)["Jobs"]
    assert [job["JobId"] for job in listed] == [first]
    assert s3batch_env.statuses(first).count("New") == 1


def test_same_token_with_another_request_is_an_idempotency_error(s3batch_env, one_object_manifest):
    s3batch_env.create_job(TAGGING, one_object_manifest, ClientRequestToken="tok-1", Priority=10)

    with pytest.raises(s3batch_env.s3control.exceptions.IdempotencyException):
        s3batch_env.create_job(TAGGING, one_object_manifest, ClientRequestToken="tok-1", Priority=11)


def test_describing_an_unknown_job_is_not_found_404(s3batch_env):
    with pytest.raises(ClientError) as raised:
        s3batch_env.describe(str(uuid.uuid4()))

    assert raised.value.response["Error"]["Code"] == "NotFoundException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert isinstance(raised.value, s3batch_env.s3control.exceptions.NotFoundException)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"Operation": {}}, "exactly one operation"),
        (
            {
                "Operation": {
                    "LambdaInvoke": {
                        "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:f",
                        "UserArguments": {"a": "b"},
                    }
                }
            },
            "2.0",
        ),
        (
            {"Report": {"Enabled": True, "Format": "Report_CSV_20180820", "Bucket": "not-an-arn"}},
            "Report.Bucket",
        ),
        ({"Operation": {"S3PutObjectAcl": {"AccessControlPolicy": {}}}}, "exactly one"),
    ],
)
def test_create_job_refuses_requests_aws_would_refuse(s3batch_env, one_object_manifest, change, message):
    request = {"Operation": TAGGING, "Manifest": one_object_manifest} | change
    operation, manifest = request.pop("Operation"), request.pop("Manifest")

    with pytest.raises(s3batch_env.s3control.exceptions.BadRequestException, match=message):
        s3batch_env.create_job(operation, manifest, **request)


def test_a_manifest_generator_without_output_runs_and_leaves_no_manifest(s3batch_env):
    """tests/local/test_s3batch_generator.py covers the generator; here: EnableManifestOutput false."""
    s3batch_env.bucket("src-bkt")
    s3batch_env.put("src-bkt", "photo.jpg")
    job_id = s3batch_env.s3control.create_job(
        AccountId=S3BATCH_ACCOUNT,
        Operation=TAGGING,
        Report={"Enabled": False},
        ClientRequestToken="t",
        Priority=1,
        RoleArn=S3BATCH_ROLE,
        ConfirmationRequired=False,
        ManifestGenerator={
            "S3JobManifestGenerator": {"SourceBucket": "arn:aws:s3:::src-bkt", "EnableManifestOutput": False}
        },
    )["JobId"]
    assert s3batch_env.engine.wait_idle(30)

    job = s3batch_env.describe(job_id)
    assert (job["Status"], job["ProgressSummary"]["NumberOfTasksSucceeded"]) == ("Complete", 1)
    assert "GeneratedManifestDescriptor" not in job
    assert s3batch_env.tags("src-bkt", "photo.jpg") == {"batch": "done"}


def test_by_default_a_new_job_answers_as_unkindly_as_aws_may(s3batch_world, one_object_manifest):
    s3batch_env = s3batch_world
    s3batch_env.start(engine_defaults=True)
    job_id = s3batch_env.create_job(TAGGING, one_object_manifest, ConfirmationRequired=True)
    assert s3batch_env.engine.wait_idle(30)

    # Not registered yet for its first DescribeJob (S3 troubleshooting guide, "Timing issues").
    with pytest.raises(s3batch_env.s3control.exceptions.NotFoundException):
        s3batch_env.s3control.describe_job(AccountId=S3BATCH_ACCOUNT, JobId=job_id)
    suspended = s3batch_env.describe(job_id)
    listed = s3batch_env.s3control.list_jobs(AccountId=S3BATCH_ACCOUNT)["Jobs"]
    s3batch_env.s3control.update_job_status(
        AccountId=S3BATCH_ACCOUNT, JobId=job_id, RequestedJobStatus="Ready", StatusUpdateReason="go"
    )
    assert s3batch_env.engine.wait_idle(30)
    done = s3batch_env.describe(job_id)

    assert suspended["Status"] == "Suspended"
    # JobProgressSummary's members are all optional: the count is withheld until the job runs.
    assert "TotalNumberOfTasks" not in suspended["ProgressSummary"]
    assert "TotalNumberOfTasks" not in listed[0]["ProgressSummary"]
    assert done["ProgressSummary"]["TotalNumberOfTasks"] == 1
    # Nor are the tasks that succeeded and failed ever counted, not even once the job is Complete.
    for summary in (
        suspended,
        listed[0],
        done,
        s3batch_env.s3control.list_jobs(AccountId=S3BATCH_ACCOUNT)["Jobs"][0],
    ):
        assert not {"NumberOfTasksSucceeded", "NumberOfTasksFailed"} & set(summary["ProgressSummary"])
    # No event says Suspended (the S3 guide does not list it among the statuses it emits).
    assert "Suspended" not in s3batch_env.statuses(job_id)
    assert s3batch_env.statuses(job_id)[-1] == "Complete"


def test_confirmation_required_waits_suspended_until_ready(s3batch_world, one_object_manifest):
    s3batch_env = s3batch_world
    s3batch_env.start(**KIND_ANSWERS)
    job_id = s3batch_env.create_job(TAGGING, one_object_manifest, ConfirmationRequired=True)
    assert s3batch_env.engine.wait_idle(30)

    suspended = s3batch_env.describe(job_id)
    assert suspended["Status"] == "Suspended"
    assert suspended["ConfirmationRequired"] is True
    assert "SuspendedDate" in suspended
    assert suspended["ProgressSummary"]["TotalNumberOfTasks"] == 1
    assert s3batch_env.tags("src-bkt", "photo.jpg") == {}

    updated = s3batch_env.s3control.update_job_status(
        AccountId=S3BATCH_ACCOUNT, JobId=job_id, RequestedJobStatus="Ready", StatusUpdateReason="looks right"
    )
    assert (updated["JobId"], updated["StatusUpdateReason"]) == (job_id, "looks right")
    assert updated["Status"] in ("Ready", "Active", "Completing", "Complete")
    assert s3batch_env.engine.wait_idle(30)

    assert s3batch_env.describe(job_id)["Status"] == "Complete"
    assert s3batch_env.statuses(job_id) == [
        "New",
        "Preparing",
        "Suspended",
        "Ready",
        "Active",
        "Completing",
        "Complete",
    ]
    assert s3batch_env.tags("src-bkt", "photo.jpg") == {"batch": "done"}


def test_only_a_suspended_job_can_be_confirmed(s3batch_env, one_object_manifest):
    job = s3batch_env.run(TAGGING, one_object_manifest)

    with pytest.raises(s3batch_env.s3control.exceptions.JobStatusException):
        s3batch_env.s3control.update_job_status(
            AccountId=S3BATCH_ACCOUNT, JobId=job["JobId"], RequestedJobStatus="Ready"
        )
    with pytest.raises(s3batch_env.s3control.exceptions.JobStatusException):
        s3batch_env.s3control.update_job_status(
            AccountId=S3BATCH_ACCOUNT, JobId=job["JobId"], RequestedJobStatus="Cancelled"
        )


def test_ready_jobs_run_by_priority_and_priority_can_change(s3batch_world):
    engine = s3batch_world.start(background=False)
    s3batch_world.bucket("src-bkt")
    s3batch_world.put("src-bkt", "k")
    manifest = s3batch_world.manifest([["src-bkt", "k"]])
    low = s3batch_world.create_job(TAGGING, manifest, Priority=1)
    high = s3batch_world.create_job(TAGGING, manifest, Priority=50)
    middle = s3batch_world.create_job(TAGGING, manifest, Priority=20)
    raised = s3batch_world.s3control.update_job_priority(AccountId=S3BATCH_ACCOUNT, JobId=low, Priority=100)
    assert raised == {"JobId": low, "Priority": 100, "ResponseMetadata": raised["ResponseMetadata"]}

    engine.run_pending()

    started = [
        e["detail"]["serviceEventDetails"]["jobId"]
        for e in s3batch_world.events
        if e["detail"]["serviceEventDetails"]["status"] == "Active"
    ]
    assert started == [low, high, middle]
    assert s3batch_world.describe(low)["Priority"] == 100


def test_cancelling_a_queued_job_ends_it_without_running_a_task(s3batch_world, one_object_manifest):
    engine = s3batch_world.start(background=False)
    job_id = s3batch_world.create_job(TAGGING, one_object_manifest)

    answer = s3batch_world.s3control.update_job_status(
        AccountId=S3BATCH_ACCOUNT,
        JobId=job_id,
        RequestedJobStatus="Cancelled",
        StatusUpdateReason="not today",
    )
    engine.run_pending()

    assert answer["Status"] == "Cancelled"
    job = s3batch_world.describe(job_id)
    assert job["Status"] == "Cancelled"
    assert job["StatusUpdateReason"] == "not today"
    assert "TerminationDate" in job
    assert s3batch_world.statuses(job_id) == ["New", "Cancelled"]
    assert s3batch_world.tags("src-bkt", "photo.jpg") == {}
    listed = s3batch_world.s3.list_objects_v2(Bucket="s3batch-reports").get("Contents", [])
    assert listed == []


def test_cancelling_an_active_job_stops_it_and_reports_what_ran(s3batch_world):
    s3batch_world.bucket("src-bkt")
    job_ids: list[str] = []
    invoked: list[str] = []

    def invoker(function_arn: str, event: dict) -> dict:
        invoked.append(event["tasks"][0]["s3Key"])
        if len(invoked) == 2:
            s3batch_world.s3control.update_job_status(
                AccountId=S3BATCH_ACCOUNT, JobId=job_ids[0], RequestedJobStatus="Cancelled"
            )
        task = event["tasks"][0]
        return {
            "invocationSchemaVersion": "1.0",
            "invocationId": event["invocationId"],
            "results": [{"taskId": task["taskId"], "resultCode": "Succeeded", "resultString": "ok"}],
        }

    s3batch_world.start(lambda_invoker=invoker)
    operation = {"LambdaInvoke": {"FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:f"}}
    manifest = s3batch_world.manifest([["src-bkt", f"k{i}"] for i in range(5)])
    job_ids.append(s3batch_world.create_job(operation, manifest))
    assert s3batch_world.engine.wait_idle(30)

    job = s3batch_world.describe(job_ids[0])
    assert job["Status"] == "Cancelled"
    assert invoked == ["k0", "k1"]
    assert job["ProgressSummary"] == job["ProgressSummary"] | {
        "TotalNumberOfTasks": 5,
        "NumberOfTasksSucceeded": 2,
    }
    assert s3batch_world.statuses(job_ids[0])[-2:] == ["Cancelling", "Cancelled"]
    assert s3batch_world.report_lines(job_ids[0]) == {
        "succeeded": ["src-bkt,k0,,succeeded,200,,ok", "src-bkt,k1,,succeeded,200,,ok"]
    }


def test_list_jobs_filters_by_status_and_pages(s3batch_env, one_object_manifest):
    done = s3batch_env.run(TAGGING, one_object_manifest)["JobId"]
    waiting = s3batch_env.create_job(TAGGING, one_object_manifest, ConfirmationRequired=True)
    assert s3batch_env.engine.wait_idle(30)
    control = s3batch_env.s3control

    suspended = control.list_jobs(AccountId=S3BATCH_ACCOUNT, JobStatuses=["Suspended"])["Jobs"]
    assert [job["JobId"] for job in suspended] == [waiting]
    assert suspended[0]["Operation"] == "S3PutObjectTagging"
    assert suspended[0]["Status"] == "Suspended"

    first = control.list_jobs(AccountId=S3BATCH_ACCOUNT, MaxResults=1)
    second = control.list_jobs(AccountId=S3BATCH_ACCOUNT, MaxResults=1, NextToken=first["NextToken"])
    assert [first["Jobs"][0]["JobId"], second["Jobs"][0]["JobId"]] == [waiting, done]
    assert "NextToken" not in second
    assert second["Jobs"][0]["ProgressSummary"]["NumberOfTasksSucceeded"] == 1


def test_job_tags_can_be_read_replaced_and_deleted(s3batch_env, one_object_manifest):
    job_id = s3batch_env.create_job(TAGGING, one_object_manifest, Tags=[{"Key": "pipeline", "Value": "p1"}])
    control = s3batch_env.s3control

    assert control.get_job_tagging(AccountId=S3BATCH_ACCOUNT, JobId=job_id)["Tags"] == [
        {"Key": "pipeline", "Value": "p1"}
    ]
    control.put_job_tagging(AccountId=S3BATCH_ACCOUNT, JobId=job_id, Tags=[{"Key": "attempt", "Value": "2"}])
    assert control.get_job_tagging(AccountId=S3BATCH_ACCOUNT, JobId=job_id)["Tags"] == [
        {"Key": "attempt", "Value": "2"}
    ]
    control.delete_job_tagging(AccountId=S3BATCH_ACCOUNT, JobId=job_id)
    assert control.get_job_tagging(AccountId=S3BATCH_ACCOUNT, JobId=job_id)["Tags"] == []
    with pytest.raises(control.exceptions.TooManyTagsException):
        control.put_job_tagging(
            AccountId=S3BATCH_ACCOUNT, JobId=job_id, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)]
        )


def test_other_s3control_calls_still_reach_moto_and_uninstall_restores_it(s3batch_world):
    s3batch_world.start()
    control = s3batch_world.s3control
    control.put_public_access_block(
        AccountId=S3BATCH_ACCOUNT, PublicAccessBlockConfiguration={"BlockPublicAcls": True}
    )
    assert control.get_public_access_block(AccountId=S3BATCH_ACCOUNT)["PublicAccessBlockConfiguration"][
        "BlockPublicAcls"
    ]

    s3batch_world.engine.close()
    s3batch_world.engine.uninstall()

    assert "process_request" not in vars(moto_models.botocore_stubber)
    with pytest.raises(ClientError):
        control.list_jobs(AccountId=S3BATCH_ACCOUNT)


def test_jobs_of_another_account_are_refused(s3batch_env, one_object_manifest):
    with pytest.raises(s3batch_env.s3control.exceptions.BadRequestException, match="account"):
        s3batch_env.s3control.create_job(
            AccountId="210987654321",
            Operation=TAGGING,
            Manifest=one_object_manifest,
            Report={"Enabled": False},
            ClientRequestToken="t",
            Priority=1,
            RoleArn=S3BATCH_ROLE,
        )
