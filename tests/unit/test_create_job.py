"""CreateJobFunction on moto + the embedded S3 Batch engine, completing real waiting executions.

The ``pipeline`` fixture and its helpers are shared with test_job_status.py and test_check_job.py.
The engine runs with ``background=False``: a job moves only when a test calls ``run_jobs()``, so
every ordering (job ends before or after the token, event early or late) is set up on purpose.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from batchpipe.local.lambdas import LambdaContext
from batchpipe.local.s3batch import BatchEngine
from batchpipe_core import jobs
from batchpipe_core.config import Config
from batchpipe_core.runlock import RunLock
from batchpipe_core.spec import normalize_spec
from batchpipe_core.tokens import TokenTable
from tests.unit.test_tokens import REGION, WaitingTasks, create_token_table

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = REPO / "functions"
if str(FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS))

from create_job import app as create_job_app  # noqa: E402

ACCOUNT = "123456789012"  # moto's default account, the engine's too
PIPELINE_BUCKET = "batchpipe-pipelinebucket"
SOURCE_BUCKET = "my-source-bucket"
TABLE = "batchpipe-TokenTable"
EXAMPLES = sorted((REPO / "examples").glob("*.json"))
TAGGING = {"S3PutObjectTagging": {"TagSet": [{"Key": "environment", "Value": "production"}]}}

ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "batchpipe",
    "ACCOUNT_ID": ACCOUNT,
    "PIPELINE_BUCKET": PIPELINE_BUCKET,
    "TOKEN_TABLE": TABLE,
    "INVENTORY_BUCKET": "my-inventory-destination-bucket",
    "INVENTORY_PREFIX": "inventory/my-source-bucket/all-objects",
    "INVENTORY_FORMAT": "CSV",
    "INVENTORY_VERSIONS": "Current",
    "INVENTORY_DATABASE": "batchpipe_inventory",
    "INVENTORY_TABLE": "inventory",
    "ATHENA_WORKGROUP": "batchpipe-batchpipe",
    "BATCH_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/batchpipe-BatchOperationsRole",
    "NOTIFICATION_TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:batchpipe-NotificationTopic",
    "SOURCE_BUCKETS": SOURCE_BUCKET,
    "STATE_MACHINE_NAME": "batchpipe-pipeline",
    "JOB_WAIT_TIMEOUT_SECONDS": "3600",
}


def context(name: str) -> LambdaContext:
    return LambdaContext(name, f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")


@dataclass
class Waiting:
    """One entry into CreateJobAndWait: the waiting execution and the CreateJob Lambda's event."""

    execution_arn: str
    event: dict

    @property
    def key(self) -> str:
        return jobs.token_key(self.event["run"]["runId"], self.event["current"]["attempt"])


class Pipeline:
    """moto (S3, DynamoDB, SQS, Step Functions) + the S3 Batch engine + the token table."""

    def __init__(self) -> None:
        self.s3 = boto3.client("s3", region_name=REGION)
        self.s3control = boto3.client("s3control", region_name=REGION)
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        self.s3.create_bucket(Bucket=PIPELINE_BUCKET)
        self.s3.create_bucket(Bucket=SOURCE_BUCKET)
        create_token_table(TABLE)
        self.tasks = WaitingTasks.create()
        self.events: list[dict] = []
        self.engine = BatchEngine(
            account_id=ACCOUNT, region=REGION, event_sink=self.events.append, background=False
        )
        self.engine.install()
        self.engine.start()
        self.config = Config.from_env()

    def close(self) -> None:
        self.tasks.close()
        self.engine.close()
        self.engine.uninstall()

    # ------------------------------------------------------------------ set-up
    def start_run(
        self, name: str = "run-1", spec: dict | None = None, keys: tuple[str, ...] = ("a.jpg", "b.jpg")
    ) -> Waiting:
        """A validated spec, a manifest of ``keys`` (objects created) and a waiting execution."""
        normalized = normalize_spec(spec or {"name": "retag", "operation": TAGGING}, self.config)
        execution_arn, token = self.tasks.start(name)
        prefix = f"runs/{normalized['name']}/{name}/"
        run = {
            "name": normalized["name"],
            "executionId": execution_arn,
            "runId": f"{execution_arn}@20261120T150000.000Z",
            "executionName": name,
            "startTime": "2026-11-20T15:00:00.000Z",
            "bucket": PIPELINE_BUCKET,
            "prefix": prefix,
            "jobWaitTimeoutSeconds": 3600,
        }
        current = {"attempt": 1, "manifest": self.manifest(prefix + "manifest.csv", keys)}
        # AcquireRunLock ran before any job wait (a renewal never takes the name).
        RunLock(TABLE, self.ddb).acquire(normalized["name"], execution_arn, name, 86400, now=time.time())
        return Waiting(
            execution_arn, {"taskToken": token, "spec": normalized, "run": run, "current": current}
        )

    def manifest(self, key: str, keys: tuple[str, ...]) -> dict:
        buffer = io.StringIO()
        for object_key in keys:
            self.s3.put_object(Bucket=SOURCE_BUCKET, Key=object_key, Body=b"x", ContentType="image/jpeg")
            csv.writer(buffer, lineterminator="\n").writerow([SOURCE_BUCKET, object_key])
        etag = self.s3.put_object(Bucket=PIPELINE_BUCKET, Key=key, Body=buffer.getvalue().encode())["ETag"]
        return {
            "location": f"s3://{PIPELINE_BUCKET}/{key}",
            "bucket": PIPELINE_BUCKET,
            "key": key,
            "etag": etag,
            "objects": len(keys),
            "sizeBytes": len(buffer.getvalue()),
            "bytesScanned": 0,
            "sample": list(keys),
        }

    def reenter(self, waiting: Waiting, name: str) -> Waiting:
        """CreateJobAndWait entered again (after a wait timeout): same run and attempt, a new token."""
        execution_arn, token = self.tasks.start(name)
        return Waiting(execution_arn, {**waiting.event, "taskToken": token})

    # ------------------------------------------------------------------ actions
    def create_job(self, waiting: Waiting) -> str:
        return create_job_app.handler(json.loads(json.dumps(waiting.event)), context("CreateJobFunction"))[
            "jobId"
        ]

    def run_jobs(self, *, confirm: bool = True) -> None:
        """Runs the engine's pending work; ``confirm`` plays ConfirmJob for every job S3 has counted
        (jobs are created with ConfirmationRequired and stop in Suspended after Preparing)."""
        self.engine.run_pending()
        if not confirm:
            return
        suspended = [
            j["JobId"] for j in self.s3control.list_jobs(AccountId=ACCOUNT, JobStatuses=["Suspended"])["Jobs"]
        ]
        table = TokenTable(TABLE, self.ddb)
        for item in self.ddb.scan(TableName=TABLE)["Items"]:
            if item.get("jobId", {}).get("S") in suspended:
                table.record_count(item["pk"]["S"], self.manifest_rows(item["jobId"]["S"]))
        for job_id in suspended:
            self.s3control.update_job_status(AccountId=ACCOUNT, JobId=job_id, RequestedJobStatus="Ready")
        self.engine.run_pending()

    # ------------------------------------------------------------------ observations
    def job_ids(self) -> list[str]:
        return [job["JobId"] for job in self.s3control.list_jobs(AccountId=ACCOUNT)["Jobs"]]

    def describe(self, job_id: str) -> dict:
        """DescribeJob, retried while S3 does not find the new job yet (the engine's default answer)."""
        for _ in range(3):
            try:
                return self.s3control.describe_job(AccountId=ACCOUNT, JobId=job_id)["Job"]
            except self.s3control.exceptions.NotFoundException:
                continue
        return self.s3control.describe_job(AccountId=ACCOUNT, JobId=job_id)["Job"]

    def manifest_rows(self, job_id: str) -> int:
        """The rows of the job's manifest: the count ConfirmJob records when S3 withholds its own."""
        arn = self.describe(job_id)["Manifest"]["Location"]["ObjectArn"]
        bucket, key = arn.split(":::", 1)[1].split("/", 1)
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read().count(b"\n")

    def item(self, key: str) -> dict:
        return self.ddb.get_item(TableName=TABLE, Key={"pk": {"S": key}}).get("Item", {})

    def status_events(self, job_id: str) -> list[dict]:
        return [e for e in self.events if e["detail"]["serviceEventDetails"]["jobId"] == job_id]

    def execution(self, waiting: Waiting) -> dict:
        return self.tasks.sfn.describe_execution(executionArn=waiting.execution_arn)

    def finished(self, waiting: Waiting) -> dict:
        return self.tasks.finished(waiting.execution_arn)


@contextmanager
def pipeline_world() -> Iterator[Pipeline]:
    with (
        mock.patch.dict(os.environ, ENV),
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}}),
    ):
        world = Pipeline()
        try:
            yield world
        finally:
            world.close()


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    with pipeline_world() as world:
        yield world


# ------------------------------------------------------------------ tests


def test_the_token_is_stored_before_create_job_is_called(pipeline: Pipeline) -> None:
    waiting = pipeline.start_run()
    seen_at_create: list[dict] = []

    def snapshot_table(**_: Any) -> None:
        seen_at_create.append(pipeline.item(waiting.key))

    # A hook on the session the handler's clients are made from: it runs just before the request.
    session_events = boto3._get_default_session().events
    session_events.register("before-call.s3-control.CreateJob", snapshot_table)
    try:
        pipeline.create_job(waiting)
    finally:
        session_events.unregister("before-call.s3-control.CreateJob", snapshot_table)

    (item,) = seen_at_create
    assert item["taskToken"]["S"] == waiting.event["taskToken"]
    assert "jobId" not in item


def test_creates_one_job_tagged_back_to_the_token(pipeline: Pipeline) -> None:
    waiting = pipeline.start_run()
    job_id = pipeline.create_job(waiting)

    assert pipeline.job_ids() == [job_id]
    assert pipeline.item(waiting.key)["jobId"]["S"] == job_id
    tags = pipeline.s3control.get_job_tagging(AccountId=ACCOUNT, JobId=job_id)["Tags"]
    ref = jobs.pipeline_ref(tags, "batchpipe-pipeline")
    assert pipeline.item(f"ref#{ref}")["tokenKey"]["S"] == waiting.key
    job = pipeline.describe(job_id)
    assert job["Report"]["Prefix"] == "runs/retag/run-1/attempt-1/report"
    assert job["Status"] == "New"
    assert pipeline.execution(waiting)["status"] == "RUNNING"  # the job has not ended: keep waiting


def test_a_retried_lambda_gets_the_same_job(pipeline: Pipeline) -> None:
    waiting = pipeline.start_run()
    first = pipeline.create_job(waiting)
    retry = pipeline.reenter(waiting, "retry-token")  # a Retry of the state also brings a new token
    assert pipeline.create_job(retry) == first
    assert pipeline.job_ids() == [first]


def test_a_lambda_that_died_before_recording_the_job_gets_the_same_job(pipeline: Pipeline) -> None:
    waiting = pipeline.start_run()
    first = pipeline.create_job(waiting)
    # As if the function had died right after CreateJob: the table never learnt the job ID.
    pipeline.ddb.update_item(TableName=TABLE, Key={"pk": {"S": waiting.key}}, UpdateExpression="REMOVE jobId")

    again = pipeline.create_job(pipeline.reenter(waiting, "after-crash"))

    assert again == first  # the ClientRequestToken made S3 return the existing job
    assert pipeline.job_ids() == [first]
    assert pipeline.item(waiting.key)["jobId"]["S"] == first


def test_reentry_after_the_job_ended_completes_the_new_token_itself(pipeline: Pipeline) -> None:
    waiting = pipeline.start_run()
    job_id = pipeline.create_job(waiting)
    pipeline.run_jobs()  # the job ends; its event went nowhere (lost)
    assert pipeline.describe(job_id)["Status"] == "Complete"

    reentry = pipeline.reenter(waiting, "reentry")
    assert pipeline.create_job(reentry) == job_id

    finished = pipeline.finished(reentry)
    assert finished["status"] == "SUCCEEDED"
    outcome = json.loads(finished["output"])
    assert outcome == {
        "jobId": job_id,
        "status": "Complete",
        "terminal": True,
        "needsCount": False,
        "total": 2,
        # The embedded S3 withholds the counts of tasks done, as AWS may: unknown, never 0.
        "succeeded": None,
        "failed": None,
        "failureReasons": [],
        "statusUpdateReason": "",
        "suspended": True,  # prepared, Suspended, then confirmed
        "report": {
            "bucket": PIPELINE_BUCKET,
            "prefix": "runs/retag/run-1/attempt-1/report",
            "scope": "AllTasks",
        },
        "created": pipeline.describe(job_id)["CreationTime"].isoformat(),
        "ended": pipeline.describe(job_id)["TerminationDate"].isoformat(),
    }
    assert pipeline.item(waiting.key)["completedBy"]["S"] == "create_job"
    assert pipeline.job_ids() == [job_id]


def test_a_job_that_fails_at_once_completes_the_task_with_its_reasons(pipeline: Pipeline) -> None:
    waiting = pipeline.start_run()
    # The manifest changes after BuildManifest: its ETag no longer matches, so the job fails.
    manifest = waiting.event["current"]["manifest"]
    pipeline.s3.put_object(Bucket=PIPELINE_BUCKET, Key=manifest["key"], Body=b"changed\n")
    job_id = pipeline.create_job(waiting)
    pipeline.run_jobs()
    assert pipeline.describe(job_id)["Status"] == "Failed"

    reentry = pipeline.reenter(waiting, "reentry")
    pipeline.create_job(reentry)
    outcome = json.loads(pipeline.finished(reentry)["output"])
    assert outcome["status"] == "Failed" and outcome["terminal"] is True
    assert outcome["failureReasons"] and all(r["code"] and r["reason"] for r in outcome["failureReasons"])


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_creates_a_job(pipeline: Pipeline, example: Path) -> None:
    """Through ValidateSpec's normalization, botocore's client-side validation and the engine."""
    spec = json.loads(example.read_text().replace("<pipeline bucket>", PIPELINE_BUCKET))
    waiting = pipeline.start_run(spec=spec)
    job_id = pipeline.create_job(waiting)
    job = pipeline.describe(job_id)
    assert list(job["Operation"]) == list(spec["operation"])
    assert job["ConfirmationRequired"] is True  # every job: the count is checked while it is Suspended


def test_a_rejected_request_propagates_as_is(pipeline: Pipeline) -> None:
    waiting = pipeline.start_run()
    # Valid for botocore's model, refused by S3: neither a canned ACL nor a grant list.
    waiting.event["spec"]["operation"] = {"S3PutObjectAcl": {"AccessControlPolicy": {}}}
    with pytest.raises(ClientError) as raised:
        pipeline.create_job(waiting)
    assert raised.value.response["Error"]["Code"] == "BadRequestException"  # not TransientError: no retry
    assert pipeline.job_ids() == []
    assert "jobId" not in pipeline.item(waiting.key)


def test_a_reentry_whose_recorded_job_is_gone_completes_the_wait_as_failed(pipeline: Pipeline) -> None:
    """S3 deletes a job 90 days after it ends; the attempt is then settled from its report alone."""
    waiting = pipeline.start_run()
    table = TokenTable(TABLE, pipeline.ddb)
    table.store_token(waiting.key, jobs.job_ref(waiting.event["run"]["runId"], 1), "an older token")
    # Recorded 91 days ago: S3 may have deleted it (90 days after it ended), so not found = gone.
    table.record_job(waiting.key, "00000000-0000-0000-0000-000000000000", now=time.time() - 91 * 86400)

    reentry = pipeline.reenter(waiting, "reentry")
    assert pipeline.create_job(reentry) == "00000000-0000-0000-0000-000000000000"

    outcome = json.loads(pipeline.finished(reentry)["output"])
    assert (outcome["status"], outcome["terminal"]) == ("Failed", True)
    assert "no longer exists" in outcome["statusUpdateReason"]
    assert pipeline.job_ids() == []  # no new job for an attempt that had one


def test_a_late_duplicate_of_an_older_wait_changes_nothing(pipeline: Pipeline) -> None:
    waiting = pipeline.start_run()
    first = {**waiting.event, "waitEnteredAt": "2026-11-20T15:00:00.000Z"}
    job_id = create_job_app.handler(json.loads(json.dumps(first)), context("CreateJobFunction"))["jobId"]
    reentry = pipeline.reenter(waiting, "reentry")
    second = {**reentry.event, "waitEnteredAt": "2026-11-20T16:00:00.000Z"}
    assert (
        create_job_app.handler(json.loads(json.dumps(second)), context("CreateJobFunction"))["jobId"]
        == job_id
    )

    late = create_job_app.handler(json.loads(json.dumps(first)), context("CreateJobFunction"))

    assert late == {"jobId": None, "stale": True}
    assert pipeline.item(waiting.key)["taskToken"]["S"] == reentry.event["taskToken"]
    assert pipeline.job_ids() == [job_id]


def test_a_new_job_not_found_by_its_first_describe_job_is_waited_for(pipeline: Pipeline) -> None:
    """S3 troubleshooting guide, NoSuchJobException "Timing issues": not found moments after
    CreateJob means not registered yet. The attempt keeps its job: not Failed, no second job."""
    waiting = pipeline.start_run()
    job_id = pipeline.create_job(waiting)  # the engine's default: its first DescribeJob misses the job

    assert pipeline.execution(waiting)["status"] == "RUNNING"  # the token was left to wait
    assert "completedBy" not in pipeline.item(waiting.key)
    assert int(pipeline.item(waiting.key)["jobCreatedAt"]["N"]) <= time.time()

    pipeline.run_jobs()
    reentry = pipeline.reenter(waiting, "reentry")
    assert pipeline.create_job(reentry) == job_id
    outcome = json.loads(pipeline.finished(reentry)["output"])
    assert (outcome["status"], outcome["total"]) == ("Complete", 2)
    assert pipeline.job_ids() == [job_id]
