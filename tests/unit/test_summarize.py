"""SummarizeFunction against moto: attempt records written by the real ProcessReport handler, the
run summary for every status, the run-level failures file, SNS (read back through a subscribed SQS
queue) and the EMF metrics."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
if str(FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS))

from batchpipe_core.accounting import estimate_transitions  # noqa: E402
from batchpipe_core.errors import AccountingError  # noqa: E402
from batchpipe_core.observability import metrics  # noqa: E402
from batchpipe_core.runlock import RunLock  # noqa: E402
from batchpipe_core.summary import SummarizeInput  # noqa: E402
from summarize import app  # noqa: E402
from tests.unit.test_process_report import (  # noqa: E402
    BUCKET,
    ENV,
    PREFIX,
    SOURCE,
    csv_rows,
    pipeline_confirmed,
    read,
    run_attempt,
)
from tests.unit.test_report_layout import failed, succeeded  # noqa: E402

EVENT_FILE = Path(__file__).resolve().parents[2] / "events" / "summarize.json"
EXECUTION_ID = "arn:aws:states:us-east-1:123456789012:execution:sm:exec-1"
FAILURES_HEADER = ["bucket", "key", "versionId", "httpStatus", "errorCode", "message"]


class Context:
    function_name = "SummarizeFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:SummarizeFunction"
    aws_request_id = "req-2"


class Aws:
    def __init__(self):
        self.s3 = boto3.client("s3", region_name="us-east-1")
        self.s3.create_bucket(Bucket=BUCKET)
        self.sqs = boto3.client("sqs", region_name="us-east-1")
        sns = boto3.client("sns", region_name="us-east-1")
        topic = sns.create_topic(Name="topic")["TopicArn"]
        assert topic == ENV["NOTIFICATION_TOPIC_ARN"]
        self.queue_url = self.sqs.create_queue(QueueName="summaries")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        self.dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        self.dynamodb.create_table(
            TableName=ENV["TOKEN_TABLE"],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self.lock = RunLock(ENV["TOKEN_TABLE"], self.dynamodb)

    def notifications(self) -> list[dict]:
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        return [json.loads(m["Body"]) for m in messages]


@pytest.fixture
def aws(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(metrics, "namespace", "BatchPipe")
    with mock_aws():
        yield Aws()


def state(objects: int, **extra) -> dict:
    document = {
        "spec": {"name": "retag", "dryRun": False, "retry": {"maxAttempts": 3, "backoffSeconds": 60}},
        "run": {
            "name": "retag",
            "executionId": EXECUTION_ID,
            "executionName": "exec-1",
            "startTime": "2026-01-01T00:00:00.000Z",
            "bucket": BUCKET,
            "prefix": PREFIX,
        },
        "query": {
            "execution": {"id": "q-1"},
            "status": {"state": "SUCCEEDED", "status": {"State": "SUCCEEDED"}},
        },
        "manifest": {
            "location": f"s3://{BUCKET}/{PREFIX}manifest.csv",
            "bucket": BUCKET,
            "key": f"{PREFIX}manifest.csv",
            "etag": "e",
            "objects": objects,
            "sizeBytes": 10,
            "bytesScanned": 123_456_789,
            "sample": ["a", "b"],
        },
    }
    document.update(extra)
    return document


def emitted_metrics(capsys) -> dict[str, float]:
    values = {}
    for line in capsys.readouterr().out.splitlines():
        if '"_aws"' in line:
            document = json.loads(line)
            for definition in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                value = document[definition["Name"]]
                values[definition["Name"]] = value[0] if isinstance(value, list) else value
    return values


def test_succeeded_after_a_retry(aws, capsys):
    first = run_attempt(
        aws.s3,
        [
            succeeded(SOURCE, "a"),
            failed(SOURCE, "b c", 503, "SlowDown"),
            failed(SOURCE, "d", 503, "SlowDown"),
        ],
    )
    second = run_attempt(
        aws.s3, [succeeded(SOURCE, "b c"), succeeded(SOURCE, "d")], attempt=2, job_id="job-2"
    )
    assert first["next"]["manifest"]["objects"] == second["total"] == 2
    capsys.readouterr()

    summary = app.handler(state(3, processed=second), Context())

    assert summary == {
        "name": "retag",
        "executionId": EXECUTION_ID,
        "status": "SUCCEEDED",
        "manifest": {"location": f"s3://{BUCKET}/{PREFIX}manifest.csv", "objects": 3},
        "attempts": [
            {
                "attempt": 1,
                "jobId": "job-1",
                "jobStatus": "Complete",
                "total": 3,
                "succeeded": 1,
                "failedRetriable": 2,
                "failedPermanent": 0,
                "errors": {"503 SlowDown": 2},
                "report": f"s3://{BUCKET}/{PREFIX}attempt-1/report/job-job-1/manifest.json",
            },
            {
                "attempt": 2,
                "jobId": "job-2",
                "jobStatus": "Complete",
                "total": 2,
                "succeeded": 2,
                "failedRetriable": 0,
                "failedPermanent": 0,
                "errors": {},
                "report": f"s3://{BUCKET}/{PREFIX}attempt-2/report/job-job-2/manifest.json",
            },
        ],
        "totals": {"objects": 3, "succeeded": 3, "failedPermanent": 0, "failedRetriesExhausted": 0},
        "permanentFailures": f"s3://{BUCKET}/{PREFIX}permanent-failures.csv",
        "report": f"s3://{BUCKET}/{PREFIX}report.html",
        "estimatedCostUsd": summary["estimatedCostUsd"],
    }
    assert 0.50 < summary["estimatedCostUsd"] < 0.51  # two jobs, five tasks, 124 MB scanned, ~30 transitions
    assert json.loads(read(aws.s3, f"s3://{BUCKET}/{PREFIX}summary.json")) == summary
    assert csv_rows(read(aws.s3, summary["permanentFailures"])) == [FAILURES_HEADER]

    (note,) = aws.notifications()
    assert note["Subject"] == "batchpipe retag: SUCCEEDED"
    assert "Objects: 3 - succeeded 3, failed permanently 0, retries exhausted 0" in note["Message"]
    assert f"Summary: s3://{BUCKET}/{PREFIX}summary.json" in note["Message"]
    # The run page, beside the summary, linked through the S3 console (a presigned URL would die
    # with the Lambda role's session that signed it).
    page = aws.s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}report.html")
    assert page["ContentType"] == "text/html; charset=utf-8"
    assert "SUCCEEDED" in page["Body"].read().decode()
    assert (
        "Run page: https://us-east-1.console.aws.amazon.com/s3/object/pipeline-bucket?region=us-east-1"
        f"&bucketType=general&prefix={PREFIX.replace('/', '%2F')}report.html" in note["Message"]
    )
    assert "Attempt 1: job job-1 Complete, 1/3 succeeded (503 SlowDown x2)" in note["Message"]

    emitted = emitted_metrics(capsys)
    assert emitted["ObjectsSucceeded"] == 3
    assert emitted["ObjectsRetried"] == 2
    assert emitted["Attempts"] == 2
    assert emitted["RunsSucceeded"] == 1
    assert emitted["RunDurationSeconds"] > 0


def test_partial_when_objects_fail_for_good_or_retries_run_out(aws, capsys):
    run_attempt(
        aws.s3,
        [
            succeeded(SOURCE, "ok"),
            failed(SOURCE, "gone, é", 404, "NoSuchKey"),
            failed(SOURCE, "slow", 503, "SlowDown"),
        ],
        max_attempts=2,
    )
    last = run_attempt(
        aws.s3,
        [failed(SOURCE, "slow", 503, "SlowDown", message="still slow")],
        attempt=2,
        max_attempts=2,
        job_id="job-2",
    )
    assert last["next"] is None

    summary = app.handler(state(3, processed=last), Context())

    assert summary["status"] == "PARTIAL"
    assert summary["totals"] == {
        "objects": 3,
        "succeeded": 1,
        "failedPermanent": 1,
        "failedRetriesExhausted": 1,
    }
    assert csv_rows(read(aws.s3, summary["permanentFailures"])) == [
        FAILURES_HEADER,
        [SOURCE, "gone, é", "", "404", "NoSuchKey", "NoSuchKey: it failed, badly\nsee logs"],
        [SOURCE, "slow", "", "503", "SlowDown", "still slow"],
    ]
    (note,) = aws.notifications()
    assert note["Subject"] == "batchpipe retag: PARTIAL"
    assert f"Failures: {summary['permanentFailures']}" in note["Message"]
    emitted = emitted_metrics(capsys)
    assert emitted["RunsPartial"] == 1 and emitted["ObjectsFailedPermanent"] == 1
    assert emitted["ObjectsRetriesExhausted"] == 1


def test_a_run_page_that_cannot_be_drawn_costs_the_run_nothing_but_the_page(aws, monkeypatch):
    run_attempt(aws.s3, [succeeded(SOURCE, "a")])

    def broken(*args):
        raise ValueError("a bug in the page")

    monkeypatch.setattr(app, "run_page", broken)
    summary = app.handler(state(1, processed={"attempt": 1}), Context())

    assert summary["status"] == "SUCCEEDED" and "report" not in summary
    assert json.loads(read(aws.s3, f"s3://{BUCKET}/{PREFIX}summary.json")) == summary
    assert "report.html" not in str(aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX).get("Contents"))
    (note,) = aws.notifications()
    assert "Run page:" not in note["Message"]


def test_nothing_to_do(aws):
    summary = app.handler(state(0), Context())
    assert summary["status"] == "NOTHING_TO_DO"
    assert summary["attempts"] == []
    assert summary["totals"] == {
        "objects": 0,
        "succeeded": 0,
        "failedPermanent": 0,
        "failedRetriesExhausted": 0,
    }
    assert "permanentFailures" not in summary
    assert aws.notifications()[0]["Subject"] == "batchpipe retag: NOTHING_TO_DO"


def test_summarize_releases_the_run_name_it_held(aws):
    assert aws.lock.acquire("retag", EXECUTION_ID, "exec-1", 600, now=1000.0) is None

    app.handler(state(0), Context())

    assert aws.lock.holder("retag") is None
    assert aws.lock.acquire("retag", "arn:next", "next", 600, now=1001.0) is None


def test_skipped_names_the_active_run_and_keeps_its_lock(aws, capsys):
    active = "arn:aws:states:us-east-1:123456789012:execution:sm:nightly-1"
    assert aws.lock.acquire("retag", active, "nightly-1", 600, now=1000.0) is None
    lock = {
        "next": "skip",
        "held": False,
        "reason": "busy",
        "message": f"run name 'retag' is held by execution {active} since 1970-01-01T00:16:40Z; skipped",
        "activeExecution": active,
        "activeSince": "1970-01-01T00:16:40Z",
        "waitedSeconds": 0,
        "pollSeconds": 0,
    }
    document = {k: v for k, v in state(0).items() if k in ("spec", "run")} | {"lock": lock}
    capsys.readouterr()

    summary = app.handler(document, Context())

    assert summary["status"] == "SKIPPED"
    assert summary["skipped"] == {
        "reason": "busy",
        "activeExecution": active,
        "activeSince": "1970-01-01T00:16:40Z",
        "message": lock["message"],
    }
    assert summary["attempts"] == [] and summary["manifest"] is None
    note = aws.notifications()[0]
    assert note["Subject"] == "batchpipe retag: SKIPPED"
    assert f"Skipped (busy): {lock['message']}" in note["Message"]
    assert f"Active run: {active}" in note["Message"]
    assert emitted_metrics(capsys)["RunsSkipped"] == 1
    assert aws.lock.holder("retag").execution_id == active


def test_dry_run_reports_what_a_run_would_do(aws):
    document = state(2_000_000)
    document["spec"]["dryRun"] = True
    summary = app.handler(document, Context())
    assert summary["status"] == "DRY_RUN"
    assert summary["manifest"] == {
        "location": f"s3://{BUCKET}/{PREFIX}manifest.csv",
        "objects": 2_000_000,
        "sample": ["a", "b"],
        "bytesScanned": 123_456_789,
    }
    # one job on 2M objects, plus the query that already ran (124 MB) and the transitions
    assert summary["estimatedCostUsd"] == pytest.approx(
        0.25 + 2.00 + 124e6 / 1e12 * 5 + estimate_transitions(1) * 0.025 / 1000, abs=1e-4
    )
    assert "totals" not in summary
    assert "Sample: a, b" in aws.notifications()[0]["Message"]


def test_a_rerun_names_the_failures_file_it_reran(aws):
    failures = f"s3://{BUCKET}/runs/retag/exec-0/permanent-failures.csv"
    document = state(2)
    document["spec"]["dryRun"] = True
    document["spec"]["rerun"] = {"failures": failures, "errorCodes": ["AccessDenied"]}
    del document["query"]  # a rerun runs no query
    document["manifest"]["bytesScanned"] = 0

    summary = app.handler(document, Context())

    assert summary["rerunOf"] == failures
    assert f"Rerun of: {failures}" in aws.notifications()[0]["Message"]
    # one job on 2 objects and the transitions (no query ran)
    assert summary["estimatedCostUsd"] == pytest.approx(
        0.25 + 2 / 1e6 + estimate_transitions(1) * 0.025 / 1000, abs=1e-4
    )


def test_failed_before_any_manifest(aws, capsys):
    document = state(
        0, failure={"Error": "AthenaQueryFailed", "Cause": '{"State": "FAILED", "x": "' + "y" * 9000}
    )
    del document["manifest"]
    summary = app.handler(document, Context())
    assert summary["status"] == "FAILED"
    assert summary["error"] == "AthenaQueryFailed"
    assert summary["cause"].startswith('{"State": "FAILED"') and len(summary["cause"]) == 4000
    assert summary["manifest"] is None and "totals" not in summary
    assert "Error: AthenaQueryFailed" in aws.notifications()[0]["Message"]
    assert emitted_metrics(capsys)["RunsFailed"] == 1


def test_failed_mid_run_reports_unresolved_objects(aws):
    first = run_attempt(aws.s3, [succeeded(SOURCE, "a"), failed(SOURCE, "b", 503, "SlowDown")])
    failure = {"Error": "S3Control.TooManyRequestsException", "Cause": "rate exceeded"}
    summary = app.handler(state(2, processed=first, failure=failure), Context())
    assert summary["status"] == "FAILED"
    assert summary["totals"] == {
        "objects": 2,
        "succeeded": 1,
        "failedPermanent": 0,
        "failedRetriesExhausted": 0,
        "unresolved": 1,
    }
    assert len(summary["attempts"]) == 1


def test_failure_reasons_of_a_failed_job_reach_the_summary(aws):
    tasks = [succeeded(SOURCE, "a"), succeeded(SOURCE, "b")]
    pipeline_confirmed()
    last = run_attempt(
        aws.s3,
        tasks,
        status="Failed",
        write=False,
        attempt=1,
        max_attempts=1,
        # Confirmed by the pipeline (it was Suspended), then failed before running a task.
        job_counts={"total": 0, "succeeded": 0, "failed": 0, "suspended": True},
    )
    summary = app.handler(state(2, processed=last), Context())
    assert summary["status"] == "PARTIAL"
    assert summary["attempts"][0]["failureReasons"] == [
        {"code": "TaskFailureThresholdExceeded", "reason": "more than 50% failed"}
    ]
    assert summary["attempts"][0]["errors"] == {"NotRun": 2}
    assert summary["totals"]["failedRetriesExhausted"] == 2


def test_a_record_that_does_not_add_up_fails_the_summary(aws):
    first = run_attempt(aws.s3, [succeeded(SOURCE, "a"), failed(SOURCE, "b", 404, "NoSuchKey")])
    key = f"{PREFIX}attempt-1/record.json"
    record = json.loads(aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    record["succeeded"] = 2
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(record).encode())
    with pytest.raises(AccountingError, match="but the attempt had 2 objects"):
        app.handler(state(2, processed=first), Context())


def test_a_missing_record_fails_the_summary(aws):
    first = run_attempt(aws.s3, [succeeded(SOURCE, "a")])
    with pytest.raises(AccountingError, match="ProcessReport handled attempt 2"):
        app.handler(state(1, processed={**first, "attempt": 2}), Context())


def test_output_stays_small_with_many_error_codes(aws):
    tasks = [failed(SOURCE, f"k{i}", 400, f"Code{i:03d}") for i in range(300)]
    last = run_attempt(aws.s3, tasks, max_attempts=1)
    summary = app.handler(state(300, processed=last), Context())
    errors = summary["attempts"][0]["errors"]
    assert len(errors) == 50 and errors["other"] == 251
    assert len(json.dumps(summary)) < 5_000
    assert len(csv_rows(read(aws.s3, summary["permanentFailures"]))) == 301


def test_the_sample_event_parses(aws):
    event = json.loads(EVENT_FILE.read_text())
    parsed = SummarizeInput.model_validate(event)
    assert parsed.processed is not None and parsed.processed.attempt == 2
    assert parsed.manifest is not None and parsed.manifest.objects == 123
