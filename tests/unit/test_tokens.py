"""batchpipe_core.tokens against moto's DynamoDB and a real moto execution waiting on a task token.

The helpers at the top (``aws``, ``WaitingTasks``) are shared with the handler tests of issue 5.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.config import Config as BotoConfig
from moto import mock_aws

from batchpipe_core import jobs
from batchpipe_core.errors import TransientError
from batchpipe_core.tokens import REF_PREFIX, TokenTable, complete_once

REGION = "us-east-1"
TABLE = "batchpipe-TokenTable"
EXECUTION_ID = "arn:aws:states:us-east-1:123456789012:execution:batchpipe-pipeline:run-1"
KEY = jobs.token_key(EXECUTION_ID, 1)
REF = jobs.job_ref(EXECUTION_ID, 1)
OUTCOME = {"jobId": "job-1", "status": "Complete", "terminal": True, "total": 1, "succeeded": 1, "failed": 0}


@dataclass
class WaitingTasks:
    """A state machine whose only state waits on a task token, handed out through an SQS queue."""

    sfn: Any
    sqs: Any
    queue_url: str
    state_machine_arn: str
    started: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, timeout_seconds: int = 300, name: str = "waits-for-token") -> WaitingTasks:
        sfn, sqs = boto3.client("stepfunctions", region_name=REGION), boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName=f"{name}-tokens")["QueueUrl"]
        definition = {
            "StartAt": "Wait",
            "States": {
                "Wait": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "Parameters": {"QueueUrl": queue_url, "MessageBody.$": "$$.Task.Token"},
                    "TimeoutSeconds": timeout_seconds,
                    "End": True,
                }
            },
        }
        arn = sfn.create_state_machine(
            name=name,
            definition=json.dumps(definition),
            roleArn="arn:aws:iam::123456789012:role/states",
        )["stateMachineArn"]
        return cls(sfn, sqs, queue_url, arn)

    def start(self, name: str) -> tuple[str, str]:
        """(execution ARN, the task token it waits on)."""
        execution = self.sfn.start_execution(stateMachineArn=self.state_machine_arn, name=name, input="{}")
        self.started.append(execution["executionArn"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            messages = self.sqs.receive_message(QueueUrl=self.queue_url).get("Messages", [])
            if messages:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
                return execution["executionArn"], messages[0]["Body"]
            time.sleep(0.01)
        raise TimeoutError("the execution never reached its waiting state")

    def finished(self, execution_arn: str, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            described = self.sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING" or time.monotonic() > deadline:
                return described
            time.sleep(0.02)

    def status(self, execution_arn: str) -> str:
        return self.sfn.describe_execution(executionArn=execution_arn)["status"]

    def close(self) -> None:
        """Stops what still waits, so no interpreter thread outlives its test."""
        for execution_arn in self.started:
            if self.status(execution_arn) == "RUNNING":
                self.sfn.stop_execution(executionArn=execution_arn)


def create_token_table(name: str = TABLE) -> None:
    """As template.yaml's TokenTable: a string hash key ``pk``, TTL on ``expiresAt``."""
    ddb = boto3.client("dynamodb", region_name=REGION)
    ddb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"AttributeName": "expiresAt", "Enabled": True}
    )


@pytest.fixture
def aws() -> Iterator[None]:
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    with (
        mock.patch.dict(os.environ, env),
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}}),
    ):
        yield


@pytest.fixture
def table(aws) -> TokenTable:
    create_token_table()
    return TokenTable(TABLE, boto3.client("dynamodb", region_name=REGION))


@pytest.fixture
def tasks(aws) -> Iterator[WaitingTasks]:
    waiting = WaitingTasks.create()
    yield waiting
    waiting.close()


# ------------------------------------------------------------------ storing


def test_store_token_writes_the_item_and_the_ref(table: TokenTable) -> None:
    item = table.store_token(KEY, REF, "token-1", now=1_000)
    assert (item.key, item.task_token, item.job_id, item.completed) == (KEY, "token-1", None, False)
    assert table.key_for_ref(REF) == KEY
    raw = boto3.client("dynamodb").get_item(TableName=TABLE, Key={"pk": {"S": KEY}})["Item"]
    assert int(raw["expiresAt"]["N"]) > 1_000 + 24 * 3600  # outlives the longest wait
    assert table.key_for_ref("0" * 64) is None


def test_a_new_token_replaces_the_old_and_keeps_the_job(table: TokenTable) -> None:
    table.store_token(KEY, REF, "token-1")
    table.record_job(KEY, "job-1")
    item = table.store_token(KEY, REF, "token-2")
    assert (item.task_token, item.job_id) == ("token-2", "job-1")
    assert table.get(KEY) == item
    assert table.get("nothing#1") is None


def test_a_late_duplicate_of_an_older_wait_cannot_overwrite_the_newer_token(table: TokenTable) -> None:
    first, second = "2026-11-20T15:00:00.000Z", "2026-11-20T16:00:00.123Z"
    table.store_token(KEY, REF, "token-1", entered_at=first)
    table.record_job(KEY, "job-1")
    assert table.store_token(KEY, REF, "token-2", entered_at=second).task_token == "token-2"

    # Lambda delivers the first wait's invocation again, after the re-entry stored its token.
    assert table.store_token(KEY, REF, "token-1", entered_at=first) is None

    item = table.get(KEY)
    assert (item.task_token, item.job_id) == ("token-2", "job-1")
    assert table.claim(KEY, "token-2", "event") is True
    # A retry of the same wait (same entry, same token) is still accepted.
    assert table.store_token(KEY, REF, "token-2", entered_at=second).task_token == "token-2"


# ------------------------------------------------------------------ claiming


def test_a_token_is_claimed_once(table: TokenTable) -> None:
    table.store_token(KEY, REF, "token-1")
    assert table.claim(KEY, "token-1", "first") is True
    assert table.claim(KEY, "token-1", "second") is False
    item = table.get(KEY)
    assert item.completed and item.completed_by == "first"


def test_a_replaced_token_cannot_be_claimed_but_its_successor_can(table: TokenTable) -> None:
    table.store_token(KEY, REF, "token-1")
    assert table.claim(KEY, "token-1", "event") is True
    table.store_token(KEY, REF, "token-2")  # re-entry after a wait timeout
    assert table.get(KEY).completed is False
    assert table.claim(KEY, "token-1", "late event") is False
    assert table.claim(KEY, "token-2", "create_job") is True


def test_release_undoes_only_our_claim(table: TokenTable) -> None:
    table.store_token(KEY, REF, "token-1")
    table.claim(KEY, "token-1", "event")
    table.release(KEY, "token-other")
    assert table.get(KEY).completed
    table.release(KEY, "token-1")
    assert not table.get(KEY).completed


# ------------------------------------------------------------------ completing a real waiting task


def test_complete_once_completes_the_execution_once(table: TokenTable, tasks: WaitingTasks) -> None:
    execution, token = tasks.start("run-1")
    table.store_token(KEY, REF, token)

    assert complete_once(table, tasks.sfn, KEY, token, OUTCOME, "job_status:e1") == "completed"
    assert complete_once(table, tasks.sfn, KEY, token, {**OUTCOME, "jobId": "x"}, "job_status:e2") == (
        "already-completed"
    )

    finished = tasks.finished(execution)
    assert finished["status"] == "SUCCEEDED"
    assert json.loads(finished["output"]) == OUTCOME
    assert table.get(KEY).completed_by == "job_status:e1"


def test_a_timed_out_task_is_logged_not_raised(table: TokenTable, aws) -> None:
    short = WaitingTasks.create(timeout_seconds=1)
    execution, token = short.start("run-timeout")
    table.store_token(KEY, REF, token)
    assert short.finished(execution)["status"] == "FAILED"  # States.Timeout

    assert complete_once(table, short.sfn, KEY, token, OUTCOME, "job_status:late") == "task-gone"
    # The dead token stays claimed: later duplicates do not even try.
    assert complete_once(table, short.sfn, KEY, token, OUTCOME, "job_status:later") == "already-completed"


def test_an_unknown_token_is_task_gone(table: TokenTable, tasks: WaitingTasks) -> None:
    table.store_token(KEY, REF, "not-a-token-step-functions-issued")
    result = complete_once(table, tasks.sfn, KEY, "not-a-token-step-functions-issued", OUTCOME, "x")
    assert result == "task-gone"


def test_an_unreachable_step_functions_releases_the_claim(table: TokenTable, tasks: WaitingTasks) -> None:
    execution, token = tasks.start("run-1")
    table.store_token(KEY, REF, token)
    unreachable = boto3.client(
        "stepfunctions",
        endpoint_url="http://127.0.0.1:9",
        config=BotoConfig(retries={"total_max_attempts": 1}, connect_timeout=0.5),
    )
    with pytest.raises(TransientError):
        complete_once(table, unreachable, KEY, token, OUTCOME, "job_status:e1")
    assert not table.get(KEY).completed  # so the retried event (or the fallback) can complete it
    assert tasks.status(execution) == "RUNNING"

    assert complete_once(table, tasks.sfn, KEY, token, OUTCOME, "job_status:e1-retry") == "completed"
    assert tasks.finished(execution)["status"] == "SUCCEEDED"


def test_ref_items_are_not_token_items(table: TokenTable) -> None:
    table.store_token(KEY, REF, "token-1")
    assert table.get(REF_PREFIX + REF).task_token is None
