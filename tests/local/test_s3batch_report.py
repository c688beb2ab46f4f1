"""The completion report in AWS's layout, byte for byte, and the job failure threshold."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

TAGGING = {"S3PutObjectTagging": {"TagSet": [{"Key": "k", "Value": "v"}]}}
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:f"
SCHEMA = "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"


def _keys_under(world, prefix: str) -> list[str]:
    listed = world.s3.list_objects_v2(Bucket="s3batch-reports", Prefix=prefix).get("Contents", [])
    return sorted(item["Key"] for item in listed)


def test_report_layout_byte_for_byte(s3batch_env):
    s3batch_env.bucket("src-bkt")
    s3batch_env.put("src-bkt", "a b.txt")
    s3batch_env.put("src-bkt", "c.txt")
    manifest = s3batch_env.manifest([["src-bkt", "a%20b.txt"], ["src-bkt", "gone"], ["src-bkt", "c.txt"]])

    job_id = s3batch_env.run(TAGGING, manifest, Report=s3batch_env.report(prefix="runs/r1/report"))["JobId"]

    base = f"runs/r1/report/job-{job_id}"
    raw_manifest = s3batch_env.read("s3batch-reports", f"{base}/manifest.json")
    manifest_json = json.loads(raw_manifest)
    assert list(manifest_json) == ["Format", "ReportCreationDate", "Results", "ReportSchema"]
    assert manifest_json["Format"] == "Report_CSV_20180820"
    assert manifest_json["ReportSchema"] == SCHEMA
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", manifest_json["ReportCreationDate"])
    succeeded, failed = manifest_json["Results"]
    for result, status in ((succeeded, "succeeded"), (failed, "failed")):
        assert list(result) == ["TaskExecutionStatus", "Bucket", "MD5Checksum", "Key"]
        assert result["TaskExecutionStatus"] == status
        assert result["Bucket"] == "s3batch-reports"
        assert re.fullmatch(rf"{re.escape(base)}/results/[0-9a-f]{{40}}\.csv", result["Key"])
    assert succeeded["Key"] != failed["Key"]
    assert _keys_under(s3batch_env, base) == sorted(
        [f"{base}/manifest.json", succeeded["Key"], failed["Key"]]
    )

    succeeded_csv = s3batch_env.read("s3batch-reports", succeeded["Key"])
    failed_csv = s3batch_env.read("s3batch-reports", failed["Key"])
    assert succeeded_csv == (
        b"src-bkt,a%20b.txt,,succeeded,200,,Successful\nsrc-bkt,c.txt,,succeeded,200,,Successful\n"
    )
    assert failed_csv == b"src-bkt,gone,,failed,404,NoSuchKey,The specified key does not exist.\n"
    assert succeeded["MD5Checksum"] == hashlib.md5(succeeded_csv).hexdigest()
    assert failed["MD5Checksum"] == hashlib.md5(failed_csv).hexdigest()
    assert raw_manifest == json.dumps(manifest_json).encode()
    head = s3batch_env.s3.head_object(Bucket="s3batch-reports", Key=f"{base}/manifest.json")
    assert head["ServerSideEncryption"] == "AES256"


def test_result_messages_are_csv_quoted(s3batch_world):
    def answer(function_arn, event):
        task = event["tasks"][0]
        message = 'moved to s3://x/y, then "tagged"\nsecond line'
        return {"results": [{"taskId": task["taskId"], "resultCode": "Succeeded", "resultString": message}]}

    s3batch_world.start(lambda_invoker=answer)
    s3batch_world.bucket("src-bkt")
    manifest = s3batch_world.manifest([["src-bkt", "odd%2Ckey"]])

    job_id = s3batch_world.run({"LambdaInvoke": {"FunctionArn": FUNCTION}}, manifest)["JobId"]

    (result,) = s3batch_world.report_manifest(job_id)["Results"]
    assert s3batch_world.read("s3batch-reports", result["Key"]) == (
        b'src-bkt,odd%2Ckey,,succeeded,200,,"moved to s3://x/y, then ""tagged""\nsecond line"\n'
    )


def test_failed_tasks_only_lists_only_failures(s3batch_env):
    s3batch_env.bucket("src-bkt")
    s3batch_env.put("src-bkt", "ok")
    manifest = s3batch_env.manifest([["src-bkt", "ok"], ["src-bkt", "gone"]])

    job_id = s3batch_env.run(TAGGING, manifest, Report=s3batch_env.report(scope="FailedTasksOnly"))["JobId"]

    (result,) = s3batch_env.report_manifest(job_id)["Results"]
    assert result["TaskExecutionStatus"] == "failed"
    assert s3batch_env.report_lines(job_id) == {
        "failed": ["src-bkt,gone,,failed,404,NoSuchKey,The specified key does not exist."]
    }


def test_failed_tasks_only_without_failures_has_no_results_file(s3batch_env):
    s3batch_env.bucket("src-bkt")
    s3batch_env.put("src-bkt", "ok")

    job_id = s3batch_env.run(
        TAGGING, s3batch_env.manifest([["src-bkt", "ok"]]), Report=s3batch_env.report(scope="FailedTasksOnly")
    )["JobId"]

    assert s3batch_env.report_manifest(job_id)["Results"] == []
    assert _keys_under(s3batch_env, f"reports/job-{job_id}/") == [f"reports/job-{job_id}/manifest.json"]


def test_report_without_prefix_sits_at_the_bucket_root(s3batch_env):
    s3batch_env.bucket("src-bkt")
    report = s3batch_env.report()
    del report["Prefix"]

    job_id = s3batch_env.run(TAGGING, s3batch_env.manifest([["src-bkt", "gone"]]), Report=report)["JobId"]

    assert f"job-{job_id}/manifest.json" in _keys_under(s3batch_env, "job-")


def test_disabled_report_writes_nothing(s3batch_env):
    s3batch_env.bucket("src-bkt")

    job = s3batch_env.run(TAGGING, s3batch_env.manifest([["src-bkt", "gone"]]), Report={"Enabled": False})

    assert job["Status"] == "Complete"
    assert _keys_under(s3batch_env, "") == []


def test_more_than_half_failed_after_1000_tasks_fails_the_job(s3batch_env):
    s3batch_env.bucket("src-bkt")
    manifest = s3batch_env.manifest([["src-bkt", f"missing/{i}"] for i in range(1500)])

    job = s3batch_env.run(TAGGING, manifest)

    assert job["Status"] == "Failed"
    assert job["ProgressSummary"] == job["ProgressSummary"] | {
        "TotalNumberOfTasks": 1500,
        "NumberOfTasksSucceeded": 0,
        "NumberOfTasksFailed": 1000,
    }
    assert [reason["FailureCode"] for reason in job["FailureReasons"]] == ["TaskFailureThresholdExceeded"]
    assert s3batch_env.statuses(job["JobId"])[-3:] == ["Active", "Failing", "Failed"]
    failed_event = s3batch_env.events[-1]["detail"]["serviceEventDetails"]
    assert failed_event["failureCodes"] == ["TaskFailureThresholdExceeded"]
    lines = s3batch_env.report_lines(job["JobId"])
    assert list(lines) == ["failed"]
    assert len(lines["failed"]) == 1000
    assert (
        lines["failed"][-1] == "src-bkt,missing/999,,failed,404,NoSuchKey,The specified key does not exist."
    )


@pytest.mark.parametrize(("tasks", "failing_every"), [(1000, 2), (999, 1)])
def test_half_failed_or_fewer_than_1000_tasks_completes(s3batch_world, tasks, failing_every):
    def answer(function_arn, event):
        task = event["tasks"][0]
        number = int(task["s3Key"])
        code = "PermanentFailure" if number % failing_every == 0 else "Succeeded"
        return {"results": [{"taskId": task["taskId"], "resultCode": code, "resultString": ""}]}

    s3batch_world.start(lambda_invoker=answer)
    manifest = s3batch_world.manifest([["src-bkt", str(i)] for i in range(tasks)])

    job = s3batch_world.run({"LambdaInvoke": {"FunctionArn": FUNCTION}}, manifest)

    assert job["Status"] == "Complete"
    summary = job["ProgressSummary"]
    assert summary["NumberOfTasksSucceeded"] + summary["NumberOfTasksFailed"] == tasks
    assert summary["NumberOfTasksFailed"] == tasks // failing_every
