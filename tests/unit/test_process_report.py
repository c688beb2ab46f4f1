"""ProcessReportFunction against moto S3, with completion reports in AWS's exact layout."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, unquote, unquote_plus

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from batchpipe_core.s3uri import split_s3_uri

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
if str(FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS))

from batchpipe_core import fanout  # noqa: E402
from batchpipe_core.errors import (  # noqa: E402
    AccountingError,
    BatchPipeError,
    JobPreparationFailedError,
    TransientError,
)
from batchpipe_core.jobs import token_key  # noqa: E402
from batchpipe_core.keys import encode_key  # noqa: E402
from batchpipe_core.multipart import Limits, MiB  # noqa: E402
from batchpipe_core.observability import metrics  # noqa: E402
from batchpipe_core.report import FAILURE_HEADER  # noqa: E402
from batchpipe_core.tokens import TokenTable  # noqa: E402
from plan_report import app as plan_app  # noqa: E402
from process_report import app  # noqa: E402
from report_part import app as part_app  # noqa: E402
from tests.unit.test_report_layout import (  # noqa: E402
    SPECIAL_KEYS,
    Task,
    failed,
    manifest_csv,
    succeeded,
    write_report,
)

EVENT_FILE = Path(__file__).resolve().parents[2] / "events" / "process_report.json"
BUCKET = "pipeline-bucket"
SOURCE = "source-bucket"
PREFIX = "runs/retag/exec-1/"
EXECUTION_ID = "arn:aws:states:us-east-1:123456789012:execution:sm:exec-1"
RUN_ID = EXECUTION_ID + "@20261120T150000.000Z"
ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "ACCOUNT_ID": "123456789012",
    "PIPELINE_BUCKET": BUCKET,
    "TOKEN_TABLE": "tokens",
    "INVENTORY_BUCKET": "inventory-bucket",
    "INVENTORY_PREFIX": "inventory/source-bucket/all",
    "INVENTORY_FORMAT": "CSV",
    "INVENTORY_VERSIONS": "Current",
    "INVENTORY_DATABASE": "db",
    "INVENTORY_TABLE": "inventory",
    "ATHENA_WORKGROUP": "wg",
    "BATCH_ROLE_ARN": "arn:aws:iam::123456789012:role/batch",
    "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:topic",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "BatchPipe",
    "POWERTOOLS_SERVICE_NAME": "batchpipe",
}


class Context:
    function_name = "ProcessReportFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ProcessReportFunction"
    aws_request_id = "req-1"


#: Bounds per invocation: one part per file, and tiny windows, partitions and packing steps (many
#: parts per file, a PackParts step per few part files).
PART_BOUNDS = {
    "one part": {},
    "many parts": {"REPORT_PART_ROWS": "4", "JOIN_PARTITION_ROWS": "3", "MANIFEST_PACK_BYTES": "300"},
    # The same, a join's partitions read through the regroup level (fan-in 2: groups of partitions
    # and batches of windows of two).
    "regrouped": {
        "REPORT_PART_ROWS": "4",
        "JOIN_PARTITION_ROWS": "3",
        "MANIFEST_PACK_BYTES": "300",
        "REGROUP_FAN_IN": "2",
    },
}


@pytest.fixture(params=list(PART_BOUNDS))
def s3(monkeypatch, request):
    for name, value in {**ENV, **PART_BOUNDS[request.param]}.items():
        monkeypatch.setenv(name, value)
    # Powertools reads the namespace when observability is imported, before this fixture runs.
    monkeypatch.setattr(metrics, "namespace", "BatchPipe")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName=ENV["TOKEN_TABLE"],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def pipeline_confirmed(attempt: int = 1) -> None:
    """The pipeline's record that it confirmed the attempt's job (ConfirmJob, after UpdateJobStatus Ready)."""
    table = TokenTable(ENV["TOKEN_TABLE"], boto3.client("dynamodb", region_name="us-east-1"))
    table.record_confirmed(token_key(RUN_ID, attempt))


def pipeline_cancelled(attempt: int = 1, reason: str = "the run ended early") -> None:
    """The pipeline's own record of a cancel, as its cancel paths write it before UpdateJobStatus."""
    table = TokenTable(ENV["TOKEN_TABLE"], boto3.client("dynamodb", region_name="us-east-1"))
    table.record_pipeline_cancel(token_key(RUN_ID, attempt), reason)


def run_attempt(
    s3,
    tasks: list[Task],
    *,
    attempt: int = 1,
    max_attempts: int = 3,
    status: str = "Complete",
    scope: str = "AllTasks",
    versions: bool = False,
    reported: list[Task] | None = None,
    order: str = "aws",
    job_counts: dict | None = None,
    write: bool = True,
    job_id: str = "job-1",
    prefix: str = PREFIX,
    stage: Callable[[dict], dict] | None = None,
) -> dict:
    """Writes the attempt's manifest and its report (``reported`` defaults to every task), then runs."""
    manifest_key = f"{prefix}attempt-{attempt}/manifest.csv" if attempt > 1 else f"{prefix}manifest.csv"
    put = s3.put_object(Bucket=BUCKET, Key=manifest_key, Body=manifest_csv(tasks, versions=versions))
    report_prefix = f"{prefix}attempt-{attempt}/report"
    if write:
        write_report(
            s3,
            BUCKET,
            report_prefix,
            job_id,
            tasks if reported is None else reported,
            order=order,
            scope=scope,
        )
    event = {
        "spec": {
            "name": "retag",
            "retry": {"maxAttempts": max_attempts, "backoffSeconds": 60},
            "report": {"scope": scope},
            "operation": {"S3PutObjectTagging": {"TagSet": []}},
        },
        "run": {
            "name": "retag",
            "executionId": EXECUTION_ID,
            "runId": RUN_ID,
            "executionName": "exec-1",
            "bucket": BUCKET,
            "prefix": prefix,
        },
        "current": {
            "attempt": attempt,
            "manifest": {
                "location": f"s3://{BUCKET}/{manifest_key}",
                "bucket": BUCKET,
                "key": manifest_key,
                "etag": put["ETag"].strip('"'),
                "objects": len(tasks),
                "fields": ["Bucket", "Key", "VersionId"] if versions else ["Bucket", "Key"],
            },
        },
        "job": {
            "jobId": job_id,
            "status": status,
            "terminal": True,
            **(job_counts or {}),
            "failureReasons": []
            if status == "Complete"
            else [{"code": "TaskFailureThresholdExceeded", "reason": "more than 50% failed"}],
            "statusUpdateReason": "" if status == "Complete" else "Job failed",
            "report": {"bucket": BUCKET, "prefix": report_prefix, "scope": scope},
        },
    }
    return (stage or run_stage)(event)


def run_stage(event: dict) -> dict:
    """The report stage as the state machine runs it: PlanReport; ReportPart over every file's
    windows in turn (ReadReportParts) and over every partition (JoinPartitions); PackParts until
    done; ProcessReport; and the whole again as a join when ProcessReport asks for it
    (MoreToRetry? -> JoinReport)."""
    for _ in range(2):
        ref = run_parts(event)
        pack_parts(ref)
        processed = app.handler({**event, "reportPlan": ref}, Context())
        if not processed["rejoin"]:
            return processed
        event = {**event, "current": {**event["current"], "joinReport": True}}
    raise AssertionError("ProcessReport asked for a second join")


def run_parts(event: dict) -> dict:
    """PlanReport, then every part of its plan; the plan's reference."""
    ref = plan_app.handler(event, Context())
    s3 = boto3.client("s3", region_name="us-east-1")
    for items in map_items(ref):
        for item in json.loads(s3.get_object(Bucket=ref["bucket"], Key=items)["Body"].read()):
            offset = 0
            while offset is not None:
                offset = part_app.handler({"plan": ref, "item": item, "offset": offset}, Context())["offset"]
    return ref


def map_items(ref: dict) -> list[str]:
    """The item files of the Maps the state machine runs, in order: ReadReportParts; then, as
    JoinNeeded? chooses, RegroupPartitions (only when the plan regroups) and JoinPartitions (only
    when there are partitions: their items are written only then)."""
    regroup = [ref["regroupItems"]] if ref["regroups"] else []
    return [ref["readItems"], *regroup, *([ref["joinItems"]] if ref["partitions"] else [])]


def pack_parts(ref: dict, max_steps: int = 1_000) -> list[dict]:
    """The PackParts loop: steps until done, each given the last one's cursor as the state machine
    passes it (ResultSelector into ``reportPlan.packing``)."""
    steps = []
    while not steps or not steps[-1]["done"]:
        steps.append(app.handler({"reportPlan": ref, "pack": True}, Context()))
        ref = {**ref, "packing": packing_cursor(steps[-1])}
        assert len(steps) <= max_steps, "packing did not end"
    return steps


def packing_cursor(step: dict) -> dict:
    """What PackParts' ResultSelector keeps of a step's answer (template's state machine)."""
    selector = pipeline_states()["PackParts"]["ResultSelector"]
    return {name.removesuffix(".$"): step[path.removeprefix("$.Payload.")] for name, path in selector.items()}


def pipeline_states() -> dict:
    return json.loads(
        (Path(__file__).resolve().parents[2] / "statemachine" / "pipeline.asl.json").read_text()
    )["States"]


def read(s3, uri: str) -> bytes:
    bucket, key = split_s3_uri(uri)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


def record_of(s3, output: dict) -> dict:
    return json.loads(read(s3, output["record"]))


# ------------------------------------------------------------------------------------ Complete jobs


MIXED = (
    [succeeded(SOURCE, key) for key in SPECIAL_KEYS]
    + [failed(SOURCE, f"slow/{key}", 503, "SlowDown") for key in SPECIAL_KEYS]
    + [
        failed(SOURCE, "gone, really/é+ä.txt", 404, "NoSuchKey"),
        failed(SOURCE, "tmp", 200, "TemporaryFailure"),
        failed(SOURCE, "who knows", 200, "BrandNewError"),
    ]
)


@pytest.mark.parametrize("order", ["aws", "schema"])
def test_complete_job_splits_outcomes_into_files(s3, order):
    output = run_attempt(s3, MIXED, order=order)
    n = len(SPECIAL_KEYS)
    assert {
        k: output[k] for k in ("attempt", "total", "succeeded", "failedRetriable", "failedPermanent")
    } == {
        "attempt": 1,
        "total": len(MIXED),
        "succeeded": n,
        "failedRetriable": n + 1,
        "failedPermanent": 2,
    }
    assert output["record"] == f"s3://{BUCKET}/{PREFIX}attempt-1/record.json"
    assert output["backoffSeconds"] == 60

    retry = output["next"]
    assert retry["attempt"] == 2
    manifest = retry["manifest"]
    assert manifest["key"] == f"{PREFIX}attempt-1/retry-manifest.csv"
    assert manifest["location"] == f"s3://{BUCKET}/{manifest['key']}"
    assert manifest["etag"] == s3.head_object(Bucket=BUCKET, Key=manifest["key"])["ETag"].strip('"')
    assert manifest["objects"] == n + 1
    assert manifest["fields"] == ["Bucket", "Key"]  # the attempt's columns: CreateJob names them again
    rows = csv_rows(read(s3, manifest["location"]))
    # keys exactly as the report gave them (encoded once, never twice), two columns like the manifest
    assert sorted(rows) == sorted(
        [[SOURCE, encode_key(f"slow/{k}")] for k in SPECIAL_KEYS] + [[SOURCE, "tmp"]]
    )
    assert set(manifest["sample"]) <= {f"slow/{k}" for k in SPECIAL_KEYS} | {"tmp"}

    failures = csv_rows(read(s3, f"s3://{BUCKET}/{PREFIX}attempt-1/permanent-failures.csv"))
    assert failures[0] == ["bucket", "key", "versionId", "httpStatus", "errorCode", "message"]
    assert sorted(failures[1:]) == [
        [SOURCE, "gone, really/é+ä.txt", "", "404", "NoSuchKey", "NoSuchKey: it failed, badly\nsee logs"],
        [SOURCE, "who knows", "", "200", "BrandNewError", "BrandNewError: it failed, badly\nsee logs"],
    ]

    record = record_of(s3, output)
    assert record["errors"] == {
        "503 SlowDown": n,
        "404 NoSuchKey": 1,
        "200 TemporaryFailure": 1,
        "200 BrandNewError": 1,
    }
    assert record["unknownErrorCodes"] == {"200 BrandNewError": 1}
    assert record["report"] == f"s3://{BUCKET}/{PREFIX}attempt-1/report/job-job-1/manifest.json"
    assert record["retryManifest"] == manifest["location"]
    assert record["retriesExhausted"] is None
    assert record["jobStatus"] == "Complete" and record["jobId"] == "job-1"


@pytest.mark.parametrize("named", [True, False], ids=["fields-in-state", "fields-read"])
def test_versioned_manifest_keeps_versions_and_null(s3, reads, named):
    """The retry manifest has the manifest's columns: as the state names them (the fields CreateJob
    gave S3), without reading the manifest; in a state without them, as its first record has them
    (one ranged GET)."""
    tasks = [
        failed(SOURCE, "a b", 503, "SlowDown", version="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"),
        failed(SOURCE, "c", 500, "InternalError", version="null"),
        succeeded(SOURCE, "d", version="v2"),
    ]

    def stage(event: dict) -> dict:
        if not named:
            del event["current"]["manifest"]["fields"]
        return run_stage(event)

    output = run_attempt(s3, tasks, versions=True, stage=stage)
    rows = csv_rows(read(s3, output["next"]["manifest"]["location"]))
    assert sorted(rows) == [[SOURCE, "a%20b", "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"], [SOURCE, "c", "null"]]
    assert [key for key, _ in reads].count(f"{PREFIX}manifest.csv") == (0 if named else 1)


def test_last_attempt_reports_retries_exhausted(s3):
    tasks = [
        failed(SOURCE, "x y", 503, "SlowDown"),
        failed(SOURCE, "z", 404, "NoSuchKey"),
        succeeded(SOURCE, "ok"),
    ]
    output = run_attempt(s3, tasks, attempt=3, max_attempts=3)
    assert output["next"] is None
    record = record_of(s3, output)
    assert record["failedRetriesExhausted"] == 1 and record["retryManifest"] is None
    exhausted = csv_rows(read(s3, record["retriesExhausted"]))
    assert exhausted[1:] == [[SOURCE, "x y", "", "503", "SlowDown", "SlowDown: it failed, badly\nsee logs"]]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}attempt-3/")["Contents"]]
    assert f"{PREFIX}attempt-3/retry-manifest.csv" not in keys


def test_nothing_retriable_means_no_next_attempt_and_no_retry_manifest(s3):
    output = run_attempt(s3, [succeeded(SOURCE, "a"), failed(SOURCE, "b", 403, "AccessDenied")])
    assert output["next"] is None
    assert (output["succeeded"], output["failedPermanent"]) == (1, 1)
    assert record_of(s3, output)["retryManifest"] is None
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}attempt-1/retry-manifest.csv")


def test_unknown_errors_are_retried_when_configured(s3, monkeypatch):
    monkeypatch.setenv("UNKNOWN_ERROR_POLICY", "retriable")
    output = run_attempt(s3, [failed(SOURCE, "a", 200, "BrandNewError")])
    assert output["failedRetriable"] == 1 and output["next"]["manifest"]["objects"] == 1


def test_failed_tasks_only_report_counts_the_rest_as_succeeded(s3):
    tasks = [succeeded(SOURCE, f"k{i}") for i in range(5)] + [failed(SOURCE, "bad", 503, "SlowDown")]
    output = run_attempt(
        s3, tasks, scope="FailedTasksOnly", job_counts={"total": 6, "succeeded": 5, "failed": 1}
    )
    assert (output["succeeded"], output["failedRetriable"]) == (5, 1)
    assert csv_rows(read(s3, output["next"]["manifest"]["location"])) == [[SOURCE, "bad"]]


def test_a_task_reported_twice_is_counted_once(s3):
    tasks = [succeeded(SOURCE, "a"), succeeded(SOURCE, "b")]
    reported = [failed(SOURCE, "a", 503, "SlowDown"), *tasks]  # ran twice: throttled, then done
    output = run_attempt(s3, tasks, reported=reported)
    assert (output["total"], output["succeeded"], output["failedRetriable"]) == (2, 2, 0)
    assert output["next"] is None
    assert record_of(s3, output)["errors"] == {}
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_a_complete_report_missing_a_row_reruns_that_object(s3):
    tasks = [succeeded(SOURCE, "a"), succeeded(SOURCE, "b")]
    output = run_attempt(s3, tasks, reported=tasks[:1])
    assert (output["succeeded"], output["failedRetriable"]) == (1, 1)
    assert csv_rows(read(s3, output["next"]["manifest"]["location"])) == [[SOURCE, "b"]]


def test_a_blank_line_in_a_file_of_successes_is_joined_and_the_totals_stay_exact(s3):
    """The count of a file of successes counts newlines (report.count_succeeded_records), so a
    blank line - which Arrow skips and S3 is not documented to write - counts as one more record:
    more records than the job's objects, which the merge refuses, and the attempt is joined, where
    every row is parsed."""
    tasks = [succeeded(SOURCE, f"ok/{i}") for i in range(10)] + [
        failed(SOURCE, "slow", 503, "SlowDown"),
        failed(SOURCE, "gone", 404, "NoSuchKey"),
    ]
    rejoined = []

    def with_a_blank_line(event: dict) -> dict:
        first = next(r for r in report_results(s3, event) if r["TaskExecutionStatus"] == "succeeded")
        body = s3.get_object(Bucket=first["Bucket"], Key=first["Key"])["Body"].read()
        s3.put_object(Bucket=first["Bucket"], Key=first["Key"], Body=b"\n" + body)
        ref = run_parts(event)
        pack_parts(ref)
        rejoined.append(app.handler({**event, "reportPlan": ref}, Context())["rejoin"])
        return run_stage({**event, "current": {**event["current"], "joinReport": True}})

    output = run_attempt(s3, tasks, stage=with_a_blank_line)

    assert rejoined == [True]
    assert (output["total"], output["succeeded"], output["failedRetriable"], output["failedPermanent"]) == (
        12,
        10,
        1,
        1,
    )
    assert csv_rows(read(s3, output["next"]["manifest"]["location"])) == [[SOURCE, "slow"]]


@pytest.mark.parametrize(
    "job_counts",
    [{"total": 41, "succeeded": 40, "failed": 1}, {"total": 41, "failed": 1}],
    ids=["unread successes", "counted successes"],
)
def test_a_failed_record_inside_a_file_of_successes_is_joined_when_s3_counted_the_failures(s3, job_counts):
    """A file manifest.json lists as succeeded is counted by its record ends, its records' statuses
    taken from the listing (one record per block sampled), or with both of S3's counts not read at
    all. A failed record in it would pass as a success; where DescribeJob gave S3's own
    NumberOfTasksFailed, the merge requires it to equal the failures read, so the attempt is joined
    and every row parsed."""
    tasks = [succeeded(SOURCE, f"ok/{i}") for i in range(40)] + [failed(SOURCE, "gone", 404, "NoSuchKey")]
    rejoined = []

    def with_the_failure_among_successes(event: dict) -> dict:
        report = event["job"]["report"]
        manifest_key = f"{report['prefix']}/job-{event['job']['jobId']}/manifest.json"
        document = json.loads(read(s3, f"s3://{report['bucket']}/{manifest_key}"))
        successes = [r for r in document["Results"] if r["TaskExecutionStatus"] == "succeeded"]
        ok = successes[-1]
        body = s3.get_object(Bucket=ok["Bucket"], Key=ok["Key"])["Body"].read()
        # Unquoted, so the count's own checks pass it; last, so it is not the sampled record.
        failure = f"{SOURCE},gone,,failed,404,NoSuchKey,The specified key does not exist.\n".encode()
        s3.put_object(Bucket=ok["Bucket"], Key=ok["Key"], Body=body + failure)
        document["Results"] = successes
        s3.put_object(Bucket=report["bucket"], Key=manifest_key, Body=json.dumps(document).encode())
        ref = run_parts(event)
        pack_parts(ref)
        rejoined.append(app.handler({**event, "reportPlan": ref}, Context())["rejoin"])
        return run_stage({**event, "current": {**event["current"], "joinReport": True}})

    output = run_attempt(
        s3,
        tasks,
        stage=with_the_failure_among_successes,
        job_counts=job_counts,
    )

    assert rejoined == [True]
    assert (output["total"], output["succeeded"], output["failedRetriable"], output["failedPermanent"]) == (
        41,
        40,
        0,
        1,
    )


# ------------------------------------------------- files of successes S3's counts stand for


def five_percent_failed(objects: int = 200) -> list[Task]:
    """A Complete job's tasks, one in twenty failed (retriable and permanent), with hostile keys."""
    tasks = []
    for i in range(objects):
        key = f"{SPECIAL_KEYS[i % len(SPECIAL_KEYS)][:200]}/{i}"
        if i % 20 == 3:
            tasks.append(
                failed(SOURCE, key, 503, "SlowDown") if i % 40 == 3 else failed(SOURCE, key, 404, "NoSuchKey")
            )
        else:
            tasks.append(succeeded(SOURCE, key))
    return tasks


def s3_counts(tasks: list[Task], *, failed_off_by: int = 0, succeeded_off_by: int = 0) -> dict:
    """DescribeJob's ProgressSummary of a Complete job of ``tasks``, as the job outcome carries it."""
    failures = sum(task.status == "failed" for task in tasks)
    return {
        "total": len(tasks),
        "succeeded": len(tasks) - failures + succeeded_off_by,
        "failed": failures + failed_off_by,
    }


def success_files(s3, event: dict) -> set[str]:
    return {r["Key"] for r in report_results(s3, event) if r["TaskExecutionStatus"] == "succeeded"}


def outcomes(s3, output: dict, prefix: str) -> dict:
    """Everything an attempt hands on - its output, record, failure files' bytes and retry manifest -
    with its run prefix taken out and the record's time dropped, to compare attempts of two runs."""
    record = record_of(s3, output)
    files = {
        name: read(s3, record[name]) if record[name] else None
        for name in ("permanentFailures", "retryManifest", "retriesExhausted")
    }
    record.pop("recorded")
    text = json.dumps({"output": output, "record": record}, sort_keys=True).replace(prefix, "<run>/")
    return {"documents": json.loads(text), "files": files}


def staged(
    s3, reads: list, seen: dict, change: Callable[[dict], None] | None = None
) -> Callable[[dict], dict]:
    """The report stage, after ``change`` (to the report, say); records the files of successes, the
    report files read and whether the merge asked for a join."""

    def stage(event: dict) -> dict:
        if change:
            change(event)
        seen["successes"] = success_files(s3, event)
        del reads[:]
        ref = run_parts(event)
        pack_parts(ref)
        processed = app.handler({**event, "reportPlan": ref}, Context())
        seen["rejoin"] = processed["rejoin"]
        seen["read"] = {key for key, _ in reads if "/results/" in key}
        if processed["rejoin"]:
            return run_stage({**event, "current": {**event["current"], "joinReport": True}})
        return processed

    return stage


@pytest.mark.parametrize("scope", ["AllTasks", "FailedTasksOnly"])
def test_a_complete_job_s3_counted_is_processed_without_reading_its_files_of_successes(s3, reads, scope):
    """With both of S3's counts (DescribeJob's ProgressSummary) adding up to the manifest, the files of
    successes are never fetched, and every output is byte for byte what counting them gives."""
    tasks = five_percent_failed()
    seen_counted: dict = {}
    seen_unread: dict = {}

    counted = run_attempt(
        s3, tasks, scope=scope, prefix="runs/counted/", stage=staged(s3, reads, seen_counted)
    )
    unread = run_attempt(
        s3,
        tasks,
        scope=scope,
        prefix="runs/unread/",
        job_counts=s3_counts(tasks),
        stage=staged(s3, reads, seen_unread),
    )

    assert seen_unread["rejoin"] is seen_counted["rejoin"] is False
    assert not seen_unread["read"] & seen_unread["successes"]
    assert seen_unread["read"]  # the failures are read
    if scope == "AllTasks":
        assert seen_counted["successes"] <= seen_counted["read"]  # counted where S3 gave no count
    assert outcomes(s3, unread, "runs/unread/") == outcomes(s3, counted, "runs/counted/")
    assert (unread["total"], unread["succeeded"], unread["failedRetriable"], unread["failedPermanent"]) == (
        200,
        190,
        5,
        5,
    )


def without_a_failure_file(s3, dropped: list[list[str]]) -> Callable[[dict], None]:
    """Takes the report's first failure file out of its manifest.json (its rows go to ``dropped``):
    its failures are never read."""

    def change(event: dict) -> None:
        report = event["job"]["report"]
        key = f"{report['prefix']}/job-{event['job']['jobId']}/manifest.json"
        document = json.loads(read(s3, f"s3://{report['bucket']}/{key}"))
        first = next(i for i, r in enumerate(document["Results"]) if r["TaskExecutionStatus"] == "failed")
        gone = document["Results"].pop(first)
        dropped.extend(csv_rows(read(s3, f"s3://{gone['Bucket']}/{gone['Key']}")))
        s3.put_object(Bucket=report["bucket"], Key=key, Body=json.dumps(document).encode())

    return change


@pytest.mark.parametrize(
    "disagreement",
    [
        "a failure file missing from manifest.json",
        "NumberOfTasksFailed one too many",
        "NumberOfTasksFailed one too few",
        "succeeded + failed is not the objects",
    ],
)
def test_s3_counts_that_disagree_with_the_report_are_never_trusted_and_the_totals_stay_exact(
    s3, reads, disagreement
):
    """Counts the failures read disagree with send the attempt to the join, as a count that does not
    add up does; counts that do not add up to the manifest are not used: the files of successes are
    counted. Either way the totals are exact: the report's own, a failure nobody reported not run."""
    tasks = five_percent_failed()
    dropped: list[list[str]] = []
    change, counts = None, s3_counts(tasks)
    if disagreement.startswith("a failure file"):
        change = without_a_failure_file(s3, dropped)
    elif disagreement.endswith("too many"):
        counts = s3_counts(tasks, failed_off_by=1, succeeded_off_by=-1)
    elif disagreement.endswith("too few"):
        counts = s3_counts(tasks, failed_off_by=-1, succeeded_off_by=1)
    else:
        counts = s3_counts(tasks, succeeded_off_by=-1)
    seen: dict = {}

    output = run_attempt(s3, tasks, job_counts=counts, stage=staged(s3, reads, seen, change))

    assert seen["rejoin"] is not disagreement.startswith("succeeded + failed")
    if not seen["rejoin"]:
        assert seen["successes"] <= seen["read"]
    # A permanent failure the report does not name is not run: retried like a retriable one.
    unreported = sum(row[5] == "NoSuchKey" for row in dropped)
    assert change is None or dropped
    totals = (output["total"], output["succeeded"], output["failedRetriable"], output["failedPermanent"])
    assert totals == (200, 190, 5 + unreported, 5 - unreported)
    assert record_of(s3, output)["notRun"] == len(dropped)
    assert len(csv_rows(read(s3, output["next"]["manifest"]["location"]))) == 5 + unreported


def test_a_complete_job_s3_counted_without_failures_reads_no_report_file(s3, reads):
    """Nothing to read: the plan has no item (the Map runs over an empty list) and every object is a
    success; the permanent-failures file is its header alone."""
    tasks = [succeeded(SOURCE, f"{key}/{i}") for i, key in enumerate(SPECIAL_KEYS)]
    seen: dict = {}

    output = run_attempt(s3, tasks, job_counts=s3_counts(tasks), stage=staged(s3, reads, seen))

    assert seen["read"] == set() and seen["successes"]
    assert (output["total"], output["succeeded"], output["failedRetriable"], output["failedPermanent"]) == (
        len(tasks),
        len(tasks),
        0,
        0,
    )
    assert output["next"] is None
    record = record_of(s3, output)
    assert csv_rows(read(s3, record["permanentFailures"])) == [list(FAILURE_HEADER)]


def test_a_report_ended_by_crlf_is_counted_exactly_without_a_join(s3):
    """How a results record ends is not documented (the guide shows rows, not bytes); records ended
    by ``\r\n`` are counted by Arrow from the first carriage return, exactly."""
    tasks = [succeeded(SOURCE, f"ok/{i}") for i in range(10)] + [
        failed(SOURCE, "slow", 503, "SlowDown", "slow down")
    ]

    def with_crlf(event: dict) -> dict:
        for result in report_results(s3, event):
            body = s3.get_object(Bucket=result["Bucket"], Key=result["Key"])["Body"].read()
            s3.put_object(Bucket=result["Bucket"], Key=result["Key"], Body=body.replace(b"\n", b"\r\n"))
        return counted_without_a_join(event)

    output = run_attempt(s3, tasks, stage=with_crlf)

    assert (output["total"], output["succeeded"], output["failedRetriable"]) == (11, 10, 1)
    assert csv_rows(read(s3, output["next"]["manifest"]["location"])) == [[SOURCE, "slow"]]


def report_results(s3, event: dict) -> list[dict]:
    """The Results of the attempt's report manifest.json."""
    report = event["job"]["report"]
    key = f"{report['prefix']}/job-{event['job']['jobId']}/manifest.json"
    return json.loads(read(s3, f"s3://{report['bucket']}/{key}"))["Results"]


def counted_without_a_join(event: dict) -> dict:
    """The report stage of a Complete job, which must be counted: ProcessReport asks for no join."""
    ref = run_parts(event)
    pack_parts(ref)
    processed = app.handler({**event, "reportPlan": ref}, Context())
    assert not processed["rejoin"]
    return processed


def test_quoted_lambda_results_in_a_file_of_successes_are_counted_by_arrow(s3):
    """What the local engine writes for a LambdaInvoke job whose function returns result strings
    with commas, quotes, line breaks and a carriage return (ResultMessage is the function's
    resultString: S3 User Guide, "Invoke AWS Lambda function" and "Examples: S3 Batch Operations
    completion reports"): the succeeded file holds quoted fields, so its count falls back to Arrow
    from the first quote, and the Complete job is counted exactly, without a join."""
    from batchpipe.local.s3batch.report import ResultSpool
    from batchpipe.local.s3batch.report import write_report as engine_report
    from batchpipe.local.s3batch.tasks import Task as EngineTask
    from batchpipe.local.s3batch.tasks import TaskOutcome

    messages = ["Successful", "moved, then tagged", 'said "done"', "two\nlines", "cr\rhere", "ünïcode ✓"]
    tasks = [succeeded(SOURCE, f"lambda/{i}") for i in range(30)] + [failed(SOURCE, "gone", 404, "NoSuchKey")]
    report = {"Enabled": True, "Bucket": f"arn:aws:s3:::{BUCKET}", "Prefix": f"{PREFIX}attempt-1/report"}
    spool = ResultSpool({**report, "ReportScope": "AllTasks"})
    for i, task in enumerate(tasks):
        outcome = (
            TaskOutcome.success(messages[i % len(messages)])
            if task.status == "succeeded"
            else TaskOutcome.failure(404, "NoSuchKey", "gone")
        )
        spool.add(EngineTask(task.bucket, task.encoded_key, "", task.key, None), outcome)
    engine_report(s3, job_id="job-1", report=report, results=spool, created_at=datetime(2026, 1, 1))
    spool.close()
    manifest = json.loads(read(s3, f"s3://{BUCKET}/{PREFIX}attempt-1/report/job-job-1/manifest.json"))
    (successes,) = [r for r in manifest["Results"] if r["TaskExecutionStatus"] == "succeeded"]
    assert b'"' in read(s3, f"s3://{BUCKET}/{successes['Key']}")

    output = run_attempt(s3, tasks, write=False, stage=counted_without_a_join)

    assert (output["total"], output["succeeded"], output["failedPermanent"]) == (31, 30, 1)


def part_file_reads(reads: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """GetObjects of the parts' failure files (not their tally documents)."""
    return [(key, size) for key, size in reads if "/out/" in key and key.endswith(".csv")]


@pytest.mark.parametrize("status", ["Complete", "Failed"])
def test_packing_reads_each_part_file_once_within_its_budget_and_the_merge_only_files_left_alone(
    s3, reads, status
):
    """PackParts packs groups of two part files or more; a file alone in its group is not packed (its
    packed object would be its copy) and the merge reads it instead, if it must (a small file that is
    not the first joined is read from after its header). Either way each part file's bytes pass
    through a function once in the whole stage."""
    from batchpipe_core.fanout import KINDS

    tasks = (
        [failed(SOURCE, f"slow/{i:03d}", 503, "SlowDown") for i in range(12)]
        + [failed(SOURCE, f"gone/{i:03d}", 404, "NoSuchKey") for i in range(12)]
        + [succeeded(SOURCE, f"ok/{i:03d}") for i in range(12)]
    )
    ran = tasks if status == "Complete" else tasks[:30]
    seen: dict = {"steps": []}

    def staged(event: dict) -> dict:
        ref = run_parts(event)
        while not seen["steps"] or not seen["steps"][-1][0]["done"]:
            reads.clear()
            step = app.handler({"reportPlan": ref, "pack": True}, Context())
            seen["steps"].append((step, part_file_reads(reads)))
            ref = {**ref, "packing": packing_cursor(step)}
        reads.clear()
        processed = app.handler({**event, "reportPlan": ref}, Context())
        seen["merge"] = part_file_reads(reads)
        assert not processed["rejoin"]
        return processed

    output = run_attempt(
        s3,
        tasks,
        status=status,
        reported=ran,
        job_counts={"total": len(tasks), "succeeded": 6, "failed": 24},
        stage=staged,
    )

    budget = int(os.environ.get("MANIFEST_PACK_BYTES", 1 << 30))
    packed_reads = [read for _, step_reads in seen["steps"] for read in step_reads]
    assert len(seen["steps"]) >= (3 if budget < 1_000 else 1)  # tiny budgets: several steps
    every_read = packed_reads + seen["merge"]
    assert len(every_read) == len(set(every_read))  # each part file read once, by one step or the merge
    # Files under the budget: only a kind's last group can be a file alone, which the merge reads.
    assert len(seen["merge"]) <= len(KINDS)
    largest_file = max((size for _, size in packed_reads), default=0)
    assert all(sum(size for _, size in step) < budget + largest_file for _, step in seen["steps"])
    not_run = len(tasks) - len(ran)
    assert (output["succeeded"], output["failedRetriable"], output["failedPermanent"]) == (
        12 - not_run,
        12 + not_run,
        12,
    )
    rows = csv_rows(read(s3, output["next"]["manifest"]["location"]))
    assert sorted(rows) == sorted(
        [[SOURCE, f"slow/{i:03d}"] for i in range(12)]
        + [[SOURCE, f"ok/{i:03d}"] for i in range(12 - not_run, 12)]
    )
    failures = csv_rows(read(s3, f"s3://{BUCKET}/{PREFIX}attempt-1/permanent-failures.csv"))
    assert failures[0][0] == "bucket" and sorted(row[1] for row in failures[1:]) == [
        f"gone/{i:03d}" for i in range(12)
    ]


@pytest.mark.parametrize("s3", ["one part"], indirect=True)
def test_a_part_file_alone_in_its_group_is_not_packed_and_the_loop_is_one_step_without_a_copy(s3):
    """One part file per kind (each kind's failures in one results file): packing a group of one
    would copy the file to an object of the same bytes, which the merge can take the file for. The
    PackParts loop is one step that lists and copies nothing; the merge lists no packed objects and
    joins the part files themselves into the same attempt files. (A count has no join partitions:
    PlanReport writes no join items.)"""
    requests: list[tuple[str, str]] = []

    def record(model, params, **kwargs):
        requests.append((model.name, params.get("Key") or params.get("Prefix") or ""))

    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("provide-client-params.s3", record)
    # The report's two results files of failed tasks (write_report's shards) hold one kind each.
    tasks = [
        failed(SOURCE, f"slow/{i // 2:03d}", 503, "SlowDown")
        if i % 2 == 0
        else failed(SOURCE, f"gone/é {i // 2:03d}", 404, "NoSuchKey")
        for i in range(10)
    ]
    steps: list[dict] = []
    merge_requests: list[tuple[str, str]] = []

    def staged(event: dict) -> dict:
        ref = run_parts(event)
        requests.clear()
        steps.extend(pack_parts(ref))
        step_requests = list(requests)
        requests.clear()
        processed = app.handler({**event, "reportPlan": ref}, Context())
        merge_requests.extend(requests)
        steps[0]["requests"] = step_requests
        return processed

    try:
        output = run_attempt(s3, tasks, stage=staged)
    finally:
        boto3.DEFAULT_SESSION = None

    assert len(steps) == 1 and steps[0]["done"] and steps[0]["groups"] == 0
    # One listing of the part files for every kind (read to its end, kept for the next), and no
    # plan.json: the state's reportPlan holds all a step needs.
    assert [name for name, _ in steps[0]["requests"]] == ["ListObjectsV2"]
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)["Contents"]]
    assert not [key for key in keys if "/packed/" in key]
    assert not [key for key in keys if key.endswith("/join-items.json")]  # a count has no partitions
    assert not [prefix for name, prefix in merge_requests if name == "ListObjectsV2" and "/packed/" in prefix]
    rows = csv_rows(read(s3, output["next"]["manifest"]["location"]))
    assert sorted(row[1] for row in rows) == [f"slow/{i:03d}" for i in range(5)]
    failures = csv_rows(read(s3, f"s3://{BUCKET}/{PREFIX}attempt-1/permanent-failures.csv"))
    assert failures[0][0] == "bucket" and sorted(row[1] for row in failures[1:]) == [
        f"gone/é {i:03d}" for i in range(5)
    ]


@pytest.mark.parametrize("s3", ["many parts"], indirect=True)
def test_the_packing_loop_lists_each_part_file_a_bounded_number_of_times_not_once_per_step(s3, monkeypatch):
    """Issue 23 §5: the PackParts loop carries a cursor (reportPlan.packing), so a step lists only
    from where the last one stopped: each part file is listed a few times in all (one pass per kind
    of file, and a look-ahead), however many steps the loop takes. Listing pages are 5 keys here
    instead of S3's 1,000, as the windows are 4 rows: a page holds fewer keys than the loop's files."""
    from batchpipe_core import multipart
    from batchpipe_core.fanout import KINDS

    monkeypatch.setattr(multipart, "LIST_PAGE_KEYS", 5)
    # Part files of 2 rows are under 500 bytes: groups of two, so the loop takes many steps (a
    # file alone in its group is not packed).
    monkeypatch.setenv("MANIFEST_PACK_BYTES", "500")

    listed: list[str] = []

    def record(parsed, **kwargs):
        listed.extend(item["Key"] for item in parsed.get("Contents", []) if "/out/" in item["Key"])

    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("after-call.s3.ListObjectsV2", record)
    tasks = [
        failed(SOURCE, f"slow/{i:03d}", 503, "SlowDown")
        if i % 2
        else failed(SOURCE, f"gone/{i:03d}", 404, "NoSuchKey")
        for i in range(240)
    ]
    steps: list[dict] = []

    def staged(event: dict) -> dict:
        ref = run_parts(event)
        listed.clear()
        steps.extend(pack_parts(ref))
        return app.handler({**event, "reportPlan": ref}, Context())

    output = run_attempt(s3, tasks, stage=staged)

    assert (output["failedRetriable"], output["failedPermanent"]) == (120, 120)
    rows = csv_rows(read(s3, output["next"]["manifest"]["location"]))
    assert sorted(row[1] for row in rows) == [f"slow/{i:03d}" for i in range(1, 240, 2)]
    part_files = {key for key in listed if not key.endswith("/tally.json")}
    most = max(listed.count(key) for key in part_files)
    # Re-listing per step would list some file once per step; the cursor bounds it by the kinds.
    assert most <= 6 * len(KINDS) < len(steps), f"a part file was listed {most} times in {len(steps)} steps"
    boto3.DEFAULT_SESSION = None


@pytest.mark.parametrize("status", ["Complete", "Failed"])
def test_report_parts_read_no_plan_their_items_carry_what_they_need(s3, reads, status):
    """ReportPart reads no plan.json (a GET per invocation): PlanReport writes the plan's fields a
    part needs, and its file, into every Map item. The parts' outputs are byte for byte those of
    items without them (items written before, which still read plan.json), and running every item
    again - a retried invocation gets the same item - overwrites them with the same bytes."""
    tasks = [
        failed(SOURCE, long_key("gone", i), 404, "NoSuchKey")
        if i % 10 == 3
        else failed(SOURCE, long_key("slow", i), 503, "SlowDown")
        if i % 10 == 7
        else succeeded(SOURCE, long_key("ok", i))
        for i in range(40)
    ]
    ran = tasks if status == "Complete" else tasks[:35]
    passes: dict[str, tuple[int, int, dict]] = {}

    def staged(event: dict) -> dict:
        ref = plan_app.handler(event, Context())
        items = [item for name in map_items(ref) for item in json.loads(read(s3, f"s3://{BUCKET}/{name}"))]
        assert all(item["plan"]["bucket"] == ref["bucket"] for item in items)
        # A bare item: as written before items carried the plan (a regroup item always names its batch).
        bare = {"side", "file", "partition", "group", "batch"}
        for name, keep in [("with plan", None), ("bare", bare), ("again", None)]:
            reads.clear()
            invocations = 0
            for item in items:
                regroup = "group" in item
                given = (
                    item
                    if keep is None
                    else {k: v for k, v in item.items() if k in keep or (regroup and k == "source")}
                )
                offset = 0
                while offset is not None:
                    answer = part_app.handler({"plan": ref, "item": given, "offset": offset}, Context())
                    offset, invocations = answer["offset"], invocations + 1
            plans = sum(1 for key, _ in reads if key.endswith("/plan.json"))
            listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{ref['prefix']}out/")["Contents"]
            passes[name] = (
                plans,
                invocations,
                {o["Key"]: read(s3, f"s3://{BUCKET}/{o['Key']}") for o in listed},
            )
        pack_parts(ref)
        return app.handler({**event, "reportPlan": ref}, Context())

    output = run_attempt(
        s3,
        tasks,
        status=status,
        reported=ran,
        job_counts={
            "total": 40,
            "succeeded": len(ran) - (8 if status == "Complete" else 7),
            "failed": 8 if status == "Complete" else 7,
        },
        stage=staged,
    )

    assert passes["with plan"][0] == passes["again"][0] == 0
    assert passes["bare"][0] == passes["bare"][1] > 0  # the old items: one GET an invocation
    assert passes["with plan"][2] == passes["bare"][2] == passes["again"][2]
    # A Failed job never ran the last 5 (one of which had failed retriably): NotRun, retriable.
    expected = (32, 4, 4) if status == "Complete" else (28, 3 + 5, 4)
    assert (output["succeeded"], output["failedRetriable"], output["failedPermanent"]) == expected


def test_part_files_written_without_a_header_before_a_deployment_still_merge_exactly(s3):
    """A part that ran before part files carried the header (its tally gives no ``head``) wrote its
    permanent failures without one: the merge takes such a file whole and puts the header in front,
    and a packed object is taken only for a group its digest names (PackParts' objects assume the
    header), so every row is there once and the header once, at the top."""
    from batchpipe_core.report import FAILURE_HEADER_LINE

    tasks = (
        [failed(SOURCE, f"slow/{i:03d}", 503, "SlowDown") for i in range(12)]
        + [failed(SOURCE, f"gone/{i:03d}", 404, "NoSuchKey") for i in range(12)]
        + [succeeded(SOURCE, f"ok/{i:03d}") for i in range(12)]
    )
    stripped: list[str] = []

    def staged(event: dict) -> dict:
        ref = run_parts(event)
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{ref['prefix']}out/")["Contents"]
        tallies = sorted(o["Key"] for o in listed if o["Key"].endswith("/tally.json"))
        for key in tallies[::2]:  # every other part, as if it had run before the deployment
            document = json.loads(read(s3, f"s3://{BUCKET}/{key}"))
            entry = document["files"]["permanent"]
            if entry is None:
                continue
            body = read(s3, f"s3://{BUCKET}/{entry['key']}")
            assert body.startswith(FAILURE_HEADER_LINE)
            put = s3.put_object(Bucket=BUCKET, Key=entry["key"], Body=body[len(FAILURE_HEADER_LINE) :])
            del entry["head"]
            entry.update(size=len(body) - len(FAILURE_HEADER_LINE), etag=put["ETag"].strip('"'))
            s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(document).encode())
            stripped.append(entry["key"])
        pack_parts(ref)
        return app.handler({**event, "reportPlan": ref}, Context())

    output = run_attempt(
        s3, tasks, job_counts={"total": len(tasks), "succeeded": 12, "failed": 24}, stage=staged
    )

    assert stripped
    body = read(s3, f"s3://{BUCKET}/{PREFIX}attempt-1/permanent-failures.csv")
    assert body.startswith(FAILURE_HEADER_LINE) and body.count(FAILURE_HEADER_LINE) == 1
    rows = csv_rows(body)[1:]
    assert sorted(row[1] for row in rows) == [f"gone/{i:03d}" for i in range(12)]
    assert all(row[3:5] == ["404", "NoSuchKey"] for row in rows)
    assert (output["succeeded"], output["failedRetriable"], output["failedPermanent"]) == (12, 12, 12)


def long_key(kind: str, i: int) -> str:
    """A realistic long key: unicode, a space, a plus and ~990 bytes (S3 allows 1,024)."""
    return f"{kind}/ünïcødé 日本+{i:06d}/" + "x" * 960


@pytest.mark.parametrize("s3", ["one part"], indirect=True)
@pytest.mark.parametrize(
    ("status", "max_parts"),
    [("Complete", 10_000), ("Failed", 10_000), ("Complete", 2)],
    ids=["Complete", "Failed", "Complete-past-the-part-limit"],
)
def test_failure_files_past_the_5_mib_part_minimum_merge_with_their_header(
    s3, reads, monkeypatch, status, max_parts
):
    """Issue 23 §1: a part's permanent-failures file of 5 MiB or more is copied into the attempt's
    file, the first with its header, the others from after theirs, and never read. Several windows
    per results file give part files on both sides of the minimum (the small ones are read). With a
    part limit of 2 (S3's is 10,000) and three parts (windows of 5,000 rows: two files of ~5.05 MiB
    and a small one) the merge joins the parts into intermediates first, the first one headed."""
    monkeypatch.setenv("REPORT_PART_ROWS", "11000" if max_parts == 10_000 else "5000")
    if max_parts != 10_000:  # the merge's limits, as ProcessReport's handler leaves them to default
        limits = Limits(max_parts=max_parts, max_part=16 * MiB)
        monkeypatch.setitem(fanout.merge_parts.__kwdefaults__, "limits", limits)
    tasks = [
        failed(SOURCE, long_key("gone", i), 404, "NoSuchKey")
        if i % 2
        else failed(SOURCE, long_key("slow", i), 503, "SlowDown")
        for i in range(24_000)
    ] + [succeeded(SOURCE, long_key("ok", i)) for i in range(500)]
    ran = tasks if status == "Complete" else tasks[:-200]  # a Failed job never ran the last 200
    counts = {"total": len(tasks), "succeeded": len(ran) - 24_000, "failed": 24_000}

    output = run_attempt(s3, tasks, status=status, reported=ran, job_counts=counts)

    assert (output["total"], output["succeeded"], output["failedRetriable"], output["failedPermanent"]) == (
        24_500,
        300 if status == "Failed" else 500,
        12_000 + (200 if status == "Failed" else 0),
        12_000,
    )
    part_files = [
        o["Size"]
        for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}attempt-1/parts/")["Contents"]
        if o["Key"].endswith("/permanent-failures.csv") and "/out/" in o["Key"]
    ]
    assert max(part_files) >= 5 * 1024**2  # the boundary this test is about was crossed
    large = {
        o["Key"]
        for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}attempt-1/parts/")["Contents"]
        if "/out/" in o["Key"] and o["Size"] >= 5 * 1024**2
    }
    assert not large & {key for key, _ in part_file_reads(reads)}  # copied inside S3, never read
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}attempt-1/parts/")["Contents"]
    intermediates = [o["Key"] for o in listed if "/scratch/permanent/" in o["Key"]]
    assert bool(intermediates) == (max_parts != 10_000)  # and so was the part limit, where it is 2
    body = read(s3, f"s3://{BUCKET}/{PREFIX}attempt-1/permanent-failures.csv")
    failures = csv_rows(body)
    assert failures[0] == ["bucket", "key", "versionId", "httpStatus", "errorCode", "message"]
    assert sorted(row[1] for row in failures[1:]) == sorted(long_key("gone", i) for i in range(1, 24_000, 2))
    assert all(row[3:5] == ["404", "NoSuchKey"] for row in failures[1:])
    retry = csv_rows(read(s3, output["next"]["manifest"]["location"]))
    expected_retry = [encode_key(long_key("slow", i)) for i in range(0, 24_000, 2)]
    if status == "Failed":
        expected_retry += [encode_key(long_key("ok", i)) for i in range(300, 500)]
    assert sorted(row[1] for row in retry) == sorted(expected_retry)
    assert len(read(s3, output["next"]["manifest"]["location"])) > 5 * 1024**2


# ------------------------------------------------------------------------------------ Failed / Cancelled


def stopped_job(objects: int, every: int, ran: int) -> tuple[list[Task], list[Task], dict]:
    """A stopped job's tasks with long unicode keys: of every ``every``, one failed permanently (404)
    and one retriably (503), the rest succeeded; the job ran the first ``ran`` and never the rest."""
    tasks = [
        failed(SOURCE, long_key("gone", i), 404, "NoSuchKey")
        if i % every == 3
        else failed(SOURCE, long_key("slow", i), 503, "SlowDown")
        if i % every == 7
        else succeeded(SOURCE, long_key("ok", i))
        for i in range(objects)
    ]
    failures = 2 * len(range(3, ran, every))
    return tasks, tasks[:ran], {"total": objects, "succeeded": ran - failures, "failed": failures}


@pytest.mark.parametrize("s3", ["one part"], indirect=True)
def test_a_join_plan_lists_the_results_files_sizes_instead_of_a_head_each(s3):
    """PlanReport sizes a join's partitions by the report's bytes: the results files are listed (one
    ListObjectsV2 page for their folder) instead of one HeadObject each; only the manifest is HEADed."""
    requests: list[tuple[str, str]] = []
    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register(
        "provide-client-params.s3",
        lambda model, params, **_: requests.append((model.name, params.get("Key", ""))),
    )
    tasks, ran, counts = stopped_job(400, every=10, ran=300)
    planned: list[dict] = []

    def staged(event: dict) -> dict:
        requests.clear()
        planned.append(plan_app.handler(event, Context()))
        planning = list(requests)
        output = run_stage(event)
        planned.append(planning)
        return output

    try:
        output = run_attempt(s3, tasks, status="Failed", reported=ran, job_counts=counts, stage=staged)
    finally:
        boto3.DEFAULT_SESSION = None
    ref, planning = planned
    results = [r["key"] for r in json.loads(read(s3, f"s3://{BUCKET}/{ref['prefix']}plan.json"))["results"]]
    assert ref["mode"] == "join" and len(results) > 1
    heads = [key for name, key in planning if name == "HeadObject"]
    assert len(heads) == 1 and not set(heads) & set(results)  # the manifest's alone
    assert [name for name, _ in planning].count("ListObjectsV2") == 1
    assert_stopped_job_outcomes(s3, output, tasks, 300, every=10)


@pytest.mark.parametrize("s3", ["one part"], indirect=True)
@pytest.mark.parametrize("case", ["listed", "crowded folder", "no folder", "missing"])
def test_results_files_sizes_come_from_a_listing_or_a_head_each(s3, monkeypatch, case):
    monkeypatch.setattr(fanout, "LISTING_SLACK_KEYS", 3)
    folder = "report/job-1/results/" if case != "no folder" else ""
    bodies = {f"{folder}{name}.csv": b"x" * size for name, size in (("b", 7), ("d", 11), ("f", 1))}
    for key, body in bodies.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    others = 5 if case == "crowded folder" else 1
    for i in range(others):  # other keys among them (the listing passes over them)
        s3.put_object(Bucket=BUCKET, Key=f"{folder}c{i}.csv", Body=b"y")
    files = [fanout.FileRef(bucket=BUCKET, key=key) for key in sorted(bodies, reverse=True)]
    if case == "missing":
        files.append(fanout.FileRef(bucket=BUCKET, key=f"{folder}g.csv"))
    operations: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: operations.append(model.name))

    if case == "missing":
        with pytest.raises(s3.exceptions.ClientError, match=r"404|Not Found"):
            fanout._file_sizes(s3, files)
        return
    assert fanout._file_sizes(s3, files) == [len(bodies[f.key]) for f in files]
    heads = operations.count("HeadObject")
    # Crowded: b is listed, then the listing passes 4 other keys (more than 3) and stops: d and f are HEADed.
    assert heads == {"listed": 0, "crowded folder": 2, "no folder": 3}[case]


def assert_stopped_job_outcomes(s3, output: dict, tasks: list[Task], ran: int, every: int) -> None:
    """Exact counts, failures file and retry manifest of ``stopped_job``'s attempt."""
    gone, slow = range(3, ran, every), range(7, ran, every)
    never = len(tasks) - ran
    assert (output["total"], output["succeeded"], output["failedRetriable"], output["failedPermanent"]) == (
        len(tasks),
        ran - len(gone) - len(slow),
        len(slow) + never,
        len(gone),
    )
    assert record_of(s3, output)["notRun"] == never
    failures = csv_rows(read(s3, f"s3://{BUCKET}/{PREFIX}attempt-1/permanent-failures.csv"))
    assert sorted(row[1] for row in failures[1:]) == sorted(long_key("gone", i) for i in gone)
    retry = [row[1] for row in csv_rows(read(s3, output["next"]["manifest"]["location"]))]
    expected = [encode_key(long_key("slow", i)) for i in slow] + [
        encode_key(task.key) for task in tasks[ran:]
    ]
    assert sorted(retry) == sorted(expected)


@pytest.mark.parametrize("s3", ["one part"], indirect=True)
@pytest.mark.parametrize("layout", ["stride", "indexed"])
def test_a_stopped_jobs_join_writes_one_object_per_window_past_the_part_size_and_spills(
    s3, reads, monkeypatch, layout
):
    """Issue 23 §3: a scatter window writes one object (its rows by partition), not one per
    partition, so PUTs grow with the report and not with its square; the window's rows are spilled
    to a local file in runs past SCATTER_SPILL_CHARS. Windows here are larger than the upload's
    8 MiB part (multipart, its first part past the 5 MiB minimum) and there are 47 partitions, so
    partitions' ranges lie in every part, across part boundaries too. Strided (every partition's
    rows padded to one stretch), a partition reads each window with one GET; indexed (the layout of
    a window whose padding would be too large, forced here), with two."""
    from batchpipe_core import fanout

    monkeypatch.setenv("REPORT_PART_ROWS", "12000")
    monkeypatch.setenv("JOIN_PARTITION_ROWS", "800")  # 30,000 objects / (800 x 0.8) -> 47 partitions
    monkeypatch.setattr(fanout, "SCATTER_SPILL_CHARS", 3 << 20)
    monkeypatch.setattr(fanout.CsvUpload, "SINGLE_PUT_BYTES", fanout.CsvUpload.PART_BYTES)  # multipart
    if layout == "indexed":
        monkeypatch.setattr(fanout, "SCATTER_PAD_SHARE", 0)
        monkeypatch.setattr(fanout, "SCATTER_PAD_BYTES", 0)
    tasks, ran, counts = stopped_job(30_000, every=10, ran=26_000)  # the job never ran the last 4,000

    output = run_attempt(s3, tasks, status="Failed", reported=ran, job_counts=counts)

    assert_stopped_job_outcomes(s3, output, tasks, 26_000, every=10)
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}attempt-1/parts/join/")["Contents"]
    scatter = [o for o in listed if "/scatter/" in o["Key"]]
    windows = [o for o in listed if "/scattered/" in o["Key"]]
    partitions = [o for o in listed if o["Key"].endswith("/tally.json")]
    assert len(partitions) == 47 and len(windows) >= 6  # 3 windows of the manifest, 3+ of the report
    assert len(scatter) == len(windows)  # one object per window, whatever the partitions
    assert max(o["Size"] for o in scatter) > fanout.CsvUpload.PART_BYTES  # a multipart upload
    assert all(f".{layout}" in o["Key"] for o in scatter)
    gets = sum(1 for key, _ in reads if "/scatter/" in key)
    if layout == "stride":
        assert gets == len(scatter) * len(partitions)
        for o in scatter:  # P stretches of the key's stride, each its rows' length first; padded by little
            stride = int(o["Key"].rsplit(".stride-", 1)[1].removesuffix(".bin"))
            body = s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
            lengths = [int.from_bytes(body[p * stride : p * stride + 8], "little") for p in range(47)]
            assert len(body) == 47 * stride and max(lengths) == stride - 8
            assert len(body) - 8 * 47 - sum(lengths) <= sum(lengths) * fanout.SCATTER_PAD_SHARE + MiB
    else:
        assert len(scatter) * len(partitions) < gets <= 2 * len(scatter) * len(partitions)


@pytest.mark.parametrize("s3", ["one part"], indirect=True)
def test_a_stopped_jobs_join_past_its_byte_bounds_spills_and_stays_exact(s3, reads, monkeypatch):
    """Issue 23 §3: the join's windows and partitions are bounded by time (records) and by what
    they put in /tmp (bytes), not by memory. With keys of ~1 KiB the byte bounds bind first: every
    window ends past WINDOW_MAX_BYTES (scaled down here), the plan makes as many partitions as
    JOIN_PARTITION_BYTES of manifest and report need although one would hold every row, and each
    partition's join spills to disk (memory_rows scaled down). Outcomes stay exact."""
    from batchpipe_core import reconciliation

    monkeypatch.setenv("REPORT_PART_ROWS", "1000000")
    monkeypatch.setenv("JOIN_PARTITION_ROWS", "1000000")  # by rows: one partition
    monkeypatch.setattr(fanout, "WINDOW_MAX_BYTES", 3 * MiB)
    monkeypatch.setattr(fanout, "JOIN_PARTITION_BYTES", 2 * MiB)
    monkeypatch.setitem(reconciliation.Reconciliation.__init__.__kwdefaults__, "memory_rows", 300)
    spilled = []
    partition = reconciliation._partition
    monkeypatch.setattr(
        reconciliation, "_partition", lambda *a, **k: spilled.append(a[1]) or partition(*a, **k)
    )
    tasks, ran, counts = stopped_job(12_000, every=20, ran=10_800)  # the job never ran the last 1,200

    output = run_attempt(s3, tasks, status="Failed", reported=ran, job_counts=counts)

    assert_stopped_job_outcomes(s3, output, tasks, 10_800, every=20)
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}attempt-1/parts/join/")["Contents"]
    windows = [json.loads(read(s3, f"s3://{BUCKET}/{o['Key']}")) for o in listed if "/scattered/" in o["Key"]]
    for window in windows:  # every window but each file's last ended at the byte bound, not the rows'
        if window["end"] < window["size"]:
            assert window["end"] - window["offset"] >= 3 * MiB and window["rows"] < 1_000_000
    assert sum(1 for w in windows if w["side"] == "manifest") >= 4
    plan = json.loads(read(s3, f"s3://{BUCKET}/{PREFIX}attempt-1/parts/join/plan.json"))
    inputs = sum(w["size"] for w in windows if w["offset"] == 0)  # each file's size, once
    assert plan["partitions"] == -(-inputs // (2 * MiB)) > 1
    tallies = [o for o in listed if o["Key"].endswith("/tally.json")]
    assert len(tallies) == plan["partitions"]
    assert len(spilled) >= 2 * plan["partitions"]  # every partition's join went to disk, both sides
    scatter_gets = sum(1 for key, _ in reads if "/scatter/" in key)
    assert scatter_gets == len(windows) * plan["partitions"]  # strided: one GET a window a partition


def test_join_partitions_at_the_default_bounds():
    """The plan's arithmetic (docs/PERFORMANCE.md, "At 1e9 and 2e10 objects"): 4 million rows a
    partition (template.yaml's default), planned 10 standard deviations under the bound; bytes bound
    it only past 3 GiB of manifest and report a partition."""
    from batchpipe.local.template import load_template

    rows = int(load_template()["Parameters"]["JoinPartitionRows"]["Default"])
    assert rows == 4_000_000
    mean = rows * fanout.partition_fill(rows)
    assert mean + 10 * mean**0.5 <= rows and mean > 0.99 * rows
    assert fanout.partition_fill(1_000) == fanout.PARTITION_FILL  # the tests' small bounds as before
    assert fanout.join_partitions(10**9, 161 * 10**9, rows) == 252  # realistic rows: 68 B + 93 B
    assert fanout.join_partitions(2 * 10**10, 3_220 * 10**9, rows) == 5_026
    assert fanout.join_partitions(10**9, 2_200 * 10**9, rows) == 683  # 1 KiB keys: bound by /tmp


@pytest.mark.parametrize("status", ["Failed", "Cancelled"])
def test_tasks_a_stopped_job_never_ran_go_to_the_next_attempt(s3, status):
    if status == "Cancelled":
        pipeline_cancelled()  # only the pipeline's own cancel is retried
    tasks = [
        succeeded(SOURCE, "done"),
        failed(SOURCE, "gone", 404, "NoSuchKey"),
        failed(SOURCE, "slow", 503, "SlowDown"),
    ] + [succeeded(SOURCE, f"never/{k}") for k in SPECIAL_KEYS]
    output = run_attempt(
        s3,
        tasks,
        status=status,
        reported=tasks[:3],
        job_counts={"total": len(tasks), "succeeded": 1, "failed": 2},
    )
    n = len(SPECIAL_KEYS)
    assert (output["succeeded"], output["failedRetriable"], output["failedPermanent"]) == (1, n + 1, 1)
    rows = csv_rows(read(s3, output["next"]["manifest"]["location"]))
    assert sorted(rows) == sorted(
        [[SOURCE, "slow"]] + [[SOURCE, encode_key(f"never/{k}")] for k in SPECIAL_KEYS]
    )
    record = record_of(s3, output)
    assert record["notRun"] == n
    assert record["errors"] == {"NotRun": n, "503 SlowDown": 1, "404 NoSuchKey": 1}
    assert record["failureReasons"] == [
        {"code": "TaskFailureThresholdExceeded", "reason": "more than 50% failed"}
    ]
    assert record["jobStatus"] == status


def test_a_job_a_person_cancelled_is_the_last_attempt_and_its_unrun_objects_are_listed(s3):
    tasks = [
        succeeded(SOURCE, "done"),
        failed(SOURCE, "gone", 404, "NoSuchKey"),
        failed(SOURCE, "slow", 503, "SlowDown"),
    ] + [succeeded(SOURCE, f"never/{k}") for k in SPECIAL_KEYS]
    output = run_attempt(
        s3,
        tasks,
        status="Cancelled",
        reported=tasks[:3],
        job_counts={"total": len(tasks), "succeeded": 1, "failed": 2},
    )

    n = len(SPECIAL_KEYS)
    assert output["next"] is None  # attempts were left (maxAttempts 3): a person's cancel is final
    assert (output["succeeded"], output["failedRetriable"], output["failedPermanent"]) == (1, n + 1, 1)
    record = record_of(s3, output)
    assert (record["cancelledBy"], record["notRun"], record["failedRetriesExhausted"]) == ("operator", n, 1)
    assert record["retryManifest"] is None
    listed = csv_rows(read(s3, record["retriesExhausted"]))
    assert listed[0] == ["bucket", "key", "versionId", "httpStatus", "errorCode", "message"]
    assert sorted((row[1], row[4]) for row in listed[1:]) == sorted(
        [("slow", "SlowDown")] + [(f"never/{k}", "NotRun") for k in SPECIAL_KEYS]
    )


def test_a_job_that_ran_nothing_has_no_report_and_every_object_is_not_run(s3):
    """A job the pipeline confirmed (it was Suspended, then Ready) that failed before running a task."""
    tasks = [succeeded(SOURCE, k) for k in SPECIAL_KEYS]
    counts = {"total": 0, "succeeded": 0, "failed": 0, "suspended": True}
    pipeline_confirmed()
    output = run_attempt(s3, tasks, status="Failed", write=False, job_counts=counts)
    assert output["failedRetriable"] == len(tasks) and output["succeeded"] == 0
    assert sorted(csv_rows(read(s3, output["next"]["manifest"]["location"]))) == sorted(
        [SOURCE, encode_key(k)] for k in SPECIAL_KEYS
    )
    record = record_of(s3, output)
    assert record["report"] is None and record["notRun"] == len(tasks)


def test_a_missing_report_of_a_job_that_ran_tasks_is_transient(s3):
    with pytest.raises(TransientError, match="is not there yet"):
        run_attempt(
            s3, [succeeded(SOURCE, "a")], write=False, job_counts={"total": 1, "succeeded": 1, "failed": 0}
        )


def test_failed_tasks_only_of_a_stopped_job_reruns_what_it_cannot_tell(s3):
    tasks = [succeeded(SOURCE, "a"), succeeded(SOURCE, "b"), failed(SOURCE, "c", 404, "NoSuchKey")]
    counts = {"total": 3, "succeeded": 1, "failed": 1}  # one success, but which one? and b may never have run
    output = run_attempt(
        s3, tasks, status="Cancelled", scope="FailedTasksOnly", reported=tasks, job_counts=counts
    )
    assert (output["succeeded"], output["failedRetriable"], output["failedPermanent"]) == (0, 2, 1)
    # ...but when every task ran, the unreported ones are the successes
    all_ran = {"total": 3, "succeeded": 2, "failed": 1}
    output = run_attempt(
        s3, tasks, status="Failed", scope="FailedTasksOnly", job_counts=all_ran, job_id="job-2"
    )
    assert (output["succeeded"], output["failedRetriable"], output["failedPermanent"]) == (2, 0, 1)


def test_a_manifest_count_that_disagrees_is_an_accounting_error(s3):
    tasks = [succeeded(SOURCE, "a"), succeeded(SOURCE, "b")]
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}manifest.csv", Body=manifest_csv(tasks, versions=False))
    write_report(s3, BUCKET, f"{PREFIX}attempt-1/report", "job-1", tasks)
    event = json.loads(EVENT_FILE.read_text())
    event["run"].update(bucket=BUCKET, prefix=PREFIX)
    event["current"]["manifest"].update(bucket=BUCKET, key=f"{PREFIX}manifest.csv", objects=3)
    event["job"].update(
        jobId="job-1",
        status="Failed",
        report={"bucket": BUCKET, "prefix": f"{PREFIX}attempt-1/report", "scope": "AllTasks"},
    )
    with pytest.raises(AccountingError, match="the manifest has 2 rows; S3 counted 3 objects"):
        run_stage(event)


def test_a_job_still_running_is_refused(s3):
    with pytest.raises(BatchPipeError, match="needs a terminal job"):
        run_attempt(s3, [succeeded(SOURCE, "a")], status="Active")


def test_the_sample_event_parses_and_runs(s3):
    event = json.loads(EVENT_FILE.read_text())
    tasks = [succeeded(SOURCE, f"photos/2023/{i}.jpg") for i in range(120)] + [
        failed(SOURCE, "photos/2023/c.jpg", 503, "SlowDown"),
        failed(SOURCE, "photos/2023/d.jpg", 503, "SlowDown"),
        failed(SOURCE, "photos/2023/e.jpg", 404, "NoSuchKey"),
    ]
    s3.create_bucket(Bucket=event["run"]["bucket"])
    s3.put_object(
        Bucket=event["run"]["bucket"],
        Key=event["current"]["manifest"]["key"],
        Body=manifest_csv(tasks, versions=False),
    )
    write_report(
        s3, event["job"]["report"]["bucket"], event["job"]["report"]["prefix"], event["job"]["jobId"], tasks
    )
    output = run_stage(event)
    assert (output["total"], output["succeeded"], output["failedRetriable"], output["failedPermanent"]) == (
        123,
        120,
        2,
        1,
    )
    assert len(json.dumps(output)) < 2_000


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"side": "report", "file": 7}, "report file 7 is not in the plan's 2"),
        ({"side": "manifest", "file": 1}, "manifest file 1 is not in the plan's 1"),
        ({"partition": 0}, "partition 0 is not in the plan's 0"),
        ({"side": "elsewhere", "file": 0}, "item"),
        ({"side": "report", "file": -1}, "item"),
        ({"side": "report", "file": 0, "partition": 1}, "item"),
        ({}, "item"),
    ],
)
def test_a_part_item_the_plan_does_not_have_is_refused_by_name(s3, item, message):
    tasks = [succeeded(SOURCE, "a"), failed(SOURCE, "b", 503, "SlowDown")]
    event = {}
    run_attempt(s3, tasks, stage=lambda e: event.update(e) or {})
    ref = plan_app.handler(event, Context())
    with pytest.raises((BatchPipeError, ValueError), match=message):
        part_app.handler({"plan": ref, "item": item, "offset": 0}, Context())


# ------------------------------------------------------------------------------------ property


OUTCOMES = st.sampled_from(
    [
        "succeeded",
        "notrun",
        (503, "SlowDown"),
        (500, "InternalError"),
        (200, "TemporaryFailure"),
        (400, "RequestTimeout"),
        (404, "NoSuchKey"),
        (403, "AccessDenied"),
        (200, "PermanentFailure"),
        (403, "InvalidObjectState"),
    ]
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    outcomes=st.lists(OUTCOMES, min_size=1, max_size=30),
    scope=st.sampled_from(["AllTasks", "FailedTasksOnly"]),
    versions=st.booleans(),
    order=st.sampled_from(["aws", "schema"]),
)
def test_handler_accounts_for_every_object(s3, outcomes, scope, versions, order):
    tasks, reported = [], []
    for index, outcome in enumerate(outcomes):
        key = SPECIAL_KEYS[index % len(SPECIAL_KEYS)] + f"/{index}"
        version = f"v{index}" if versions else ""
        task = (
            succeeded(SOURCE, key, version)
            if outcome in ("succeeded", "notrun")
            else failed(SOURCE, key, outcome[0], outcome[1], version=version)
        )
        tasks.append(task)
        if outcome != "notrun":
            reported.append(task)
    any_not_run = len(reported) < len(tasks)
    status = "Failed" if any_not_run else "Complete"
    failures = sum(1 for t in reported if t.status == "failed")
    counts = {"total": len(tasks), "succeeded": len(reported) - failures, "failed": failures}
    # every hypothesis example gets its own run prefix: the bucket outlives examples
    prefix = f"runs/prop/{uuid.uuid4()}/"
    output = run_attempt(
        s3,
        tasks,
        status=status,
        scope=scope,
        versions=versions,
        order=order,
        reported=reported,
        job_counts=counts,
        prefix=prefix,
    )

    assert output["succeeded"] + output["failedRetriable"] + output["failedPermanent"] == len(tasks)
    retriable = {
        (t.bucket, t.encoded_key)
        for t, o in zip(tasks, outcomes, strict=True)
        if o == "notrun" or o[1] in ("SlowDown", "InternalError", "TemporaryFailure", "RequestTimeout")
    }
    if scope == "FailedTasksOnly" and any_not_run:
        # a success and a task never run look alike in a FailedTasksOnly report of a stopped job
        retriable |= {
            (t.bucket, t.encoded_key) for t, o in zip(tasks, outcomes, strict=True) if o == "succeeded"
        }
    if output["next"] is None:
        assert not retriable
    else:
        rows = csv_rows(read(s3, output["next"]["manifest"]["location"]))
        assert {(r[0], r[1]) for r in rows} == retriable and len(rows) == len(retriable)
        assert all(len(r) == (3 if versions else 2) for r in rows)
        assert output["next"]["manifest"]["objects"] == output["failedRetriable"] == len(retriable)


def test_a_job_nobody_confirmed_that_failed_in_suspended_is_final_and_not_run(s3):
    """S3 fails a job left Suspended for over 30 days (S3 user guide, "Creating a job")."""
    tasks = [succeeded(SOURCE, k) for k in ("a", "b", "c")]
    counts = {"total": None, "succeeded": 0, "failed": 0, "suspended": True}
    output = run_attempt(s3, tasks, status="Failed", write=False, job_counts=counts, max_attempts=3)

    record = record_of(s3, output)
    assert output["next"] is None  # no new job, whatever maxAttempts allows
    assert (record["notRun"], record["failedRetriable"], record["neverConfirmed"]) == (3, 3, True)
    assert record["failedRetriesExhausted"] == 0  # counted as notRun, listed in the same file


def test_a_job_s3_failed_while_preparing_ends_the_run_naming_s3s_reason(s3):
    tasks = [succeeded(SOURCE, "a")]
    counts = {"total": None, "succeeded": None, "failed": None}  # never Suspended: failed in Preparing
    with pytest.raises(JobPreparationFailedError, match="TaskFailureThresholdExceeded: more than 50% failed"):
        run_attempt(s3, tasks, status="Failed", write=False, job_counts=counts)


# ------------------------------------------------------------------ retry manifests keep the report's spelling


@dataclass(frozen=True)
class SpelledTask(Task):
    """A task whose manifest (and so its report) spells the key ``spelled``, not ``encode_key``'s way."""

    spelled: str = ""

    @property
    def encoded_key(self) -> str:
        return self.spelled


def athena_spelling(key: str) -> str:
    """BuildManifest's spelling: Athena's ``replace(url_encode(key), '+', '%20')`` (``/`` as ``%2F``)."""
    return quote(key, safe="-_.*")


def spelled(task: Task, spelling: str) -> SpelledTask:
    return SpelledTask(**{**task.__dict__, "spelled": spelling})


def test_a_retry_manifest_keeps_the_reports_spelling_and_attempt_2_joins_against_it(s3):
    """Attempt 1's retry manifest writes each key as its report spelled it when percent- and
    form-decoding read that alike (``%2F`` stays), else re-encodes it (a form-style ``+`` for a
    space, a bare ``%``); attempt 2 runs that manifest, stops early, and its report is joined
    against it: every key matches (decoded on both sides), the tasks never run are NotRun."""
    keys = [f"slow/{k}" for k in SPECIAL_KEYS]
    first = [spelled(failed(SOURCE, k, 503, "SlowDown"), athena_spelling(k)) for k in keys]
    first += [
        spelled(failed(SOURCE, "lower/é.txt", 500, "InternalError"), "lower%2f%c3%a9.txt"),
        spelled(failed(SOURCE, "form/a b.txt", 503, "SlowDown"), "form/a+b.txt"),
        spelled(failed(SOURCE, "bare/100%.txt", 503, "SlowDown"), "bare%2F100%.txt"),
        spelled(succeeded(SOURCE, "ok/a b"), athena_spelling("ok/a b")),
        spelled(failed(SOURCE, "gone/x", 404, "NoSuchKey"), "gone%2Fx"),
    ]
    output = run_attempt(s3, first)
    retry = csv_rows(read(s3, output["next"]["manifest"]["location"]))
    retriable = [t for t in first if t.status == "failed" and t.code != "NoSuchKey"]
    assert sorted(row[1] for row in retry) == sorted(
        [athena_spelling(k) for k in keys]
        + ["lower%2f%c3%a9.txt", encode_key("form/a b.txt"), encode_key("bare/100%.txt")]
    )
    for _, key in retry:
        assert unquote(key) == unquote_plus(key) and unquote(key) in {t.key for t in retriable}

    # Attempt 2 runs the retry manifest as written; its job stops after the first half of the tasks.
    second = [succeeded(SOURCE, unquote(key)) for _, key in retry]
    second = [spelled(t, key) for t, (_, key) in zip(second, retry, strict=True)]
    ran = len(second) // 2
    reported = [spelled(failed(SOURCE, second[0].key, 503, "SlowDown"), second[0].spelled), *second[1:ran]]
    output = run_attempt(
        s3,
        second,
        attempt=2,
        status="Failed",
        reported=reported,
        job_counts={"total": len(second), "succeeded": ran - 1, "failed": 1},
    )
    record = record_of(s3, output)
    assert record["unmatchedReportRows"] == 0
    assert (output["total"], output["succeeded"], output["failedRetriable"]) == (
        len(second),
        ran - 1,
        len(second) - ran + 1,
    )
    assert record["notRun"] == len(second) - ran
    again = [row[1] for row in csv_rows(read(s3, output["next"]["manifest"]["location"]))]
    assert sorted(again) == sorted(key for _, key in [retry[0], *retry[ran:]])
