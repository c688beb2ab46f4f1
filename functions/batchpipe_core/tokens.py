"""TokenTable: the task token of each (execution, attempt) and the once-only completion of it.

Protocol (docs/EVENTS_AND_FALLBACK.md):
1. CreateJobFunction stores the token *before* it calls CreateJob, together with a ref item
   (``ref#<job ref>`` -> token key) that the job's ``batchpipe:ref`` tag points at. So no status event
   can find a job whose token is not stored yet.
2. Whoever sees the job terminal (the status-event handler, or CreateJobFunction itself when the job
   ended before its DescribeJob) first *claims* the token with a conditional write, then calls
   SendTaskSuccess. One claim per token, so one completion per token however many events arrive.
3. A re-entry after a wait timeout stores a new token; the claim is per token, so the new one can
   be completed even though an older one was.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from batchpipe_core.accounting import CANCELLED_BY_OPERATOR, CANCELLED_BY_PIPELINE
from batchpipe_core.identity import epoch_millis
from batchpipe_core.jobs import error_code, transient_as_retryable
from batchpipe_core.observability import logger

# Each re-entry of CreateJobAndWait (at most JobWaitTimeoutSeconds <= 1 day apart) renews the TTL,
# so 30 days outlives any wait while still cleaning up after finished runs.
TOKEN_TTL_SECONDS = 30 * 24 * 3600
REF_PREFIX = "ref#"

# SendTaskSuccess errors that mean the task no longer waits for this token: retrying cannot help.
TASK_GONE_ERRORS = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})


@dataclass(frozen=True)
class TokenItem:
    key: str
    task_token: str | None
    job_id: str | None
    completed_token: str | None
    completed_by: str | None
    # The pipeline's own record of a cancel it asked for (written before UpdateJobStatus): what tells
    # its cancels from a person's. None: the pipeline never cancelled this attempt's job.
    cancel_reason: str | None = None
    # S3's count of the job's objects once ConfirmJob has checked it (None: not checked yet).
    counted_tasks: int | None = None
    # When the job was recorded (epoch seconds): a job DescribeJob does not find within S3's 90-day
    # retention of it is not visible yet, not gone (jobs.not_visible_yet).
    job_created_at: int | None = None
    # ConfirmJob's own count of the manifest when S3 withholds its count: bytes read so far and the
    # rows among them, so a count that outlasts one invocation goes on where it stopped.
    count_offset: int = 0
    count_rows: int = 0
    # The pipeline confirmed the job (UpdateJobStatus Ready): a job that fails unconfirmed is final.
    confirmed: bool = False

    @property
    def counted(self) -> bool:
        return self.counted_tasks is not None

    @property
    def completed(self) -> bool:
        """The current token has already been claimed by someone."""
        return self.task_token is not None and self.completed_token == self.task_token

    @classmethod
    def from_dynamodb(cls, item: dict[str, Any]) -> TokenItem:
        def text(name: str) -> str | None:
            value = item.get(name)
            return value["S"] if value and "S" in value else None

        return cls(
            key=text("pk") or "",
            task_token=text("taskToken"),
            job_id=text("jobId"),
            completed_token=text("completedToken"),
            completed_by=text("completedBy"),
            cancel_reason=text("pipelineCancelReason"),
            counted_tasks=int(item["countedTasks"]["N"]) if "N" in item.get("countedTasks", {}) else None,
            job_created_at=int(item["jobCreatedAt"]["N"]) if "N" in item.get("jobCreatedAt", {}) else None,
            count_offset=int(item.get("countOffset", {}).get("N", 0)),
            count_rows=int(item.get("countRows", {}).get("N", 0)),
            confirmed="confirmedAt" in item,
        )


class TokenTable:
    """The DynamoDB table behind the task tokens (low-level client: no extra dependency)."""

    def __init__(self, table_name: str, dynamodb: Any) -> None:
        self.name = table_name
        self._ddb = dynamodb

    def store_token(
        self, key: str, ref: str, task_token: str, *, entered_at: str | None = None, now: float | None = None
    ) -> TokenItem | None:
        """Stores (or replaces) the waiting token; returns the item, with any job already recorded.

        The returned jobId lets a re-entry after a wait timeout reuse the attempt's job without
        relying on how long S3 remembers a ClientRequestToken.

        ``entered_at`` is when the waiting state was entered (``$$.State.EnteredTime``). A token is
        only replaced by one of the same or a later entry, so a late duplicate invocation of an
        older wait (Lambda retries an invocation; Step Functions re-enters the state after a
        timeout) cannot put back a token nobody waits for any more: it gets None instead.
        """
        now = time.time() if now is None else now
        entered_ms = epoch_millis(entered_at) if entered_at else int(now * 1000)
        expires = str(int(now) + TOKEN_TTL_SECONDS)
        try:
            with transient_as_retryable("storing the task token"):
                self._ddb.put_item(
                    TableName=self.name,
                    Item={"pk": {"S": REF_PREFIX + ref}, "tokenKey": {"S": key}, "expiresAt": {"N": expires}},
                )
                response = self._ddb.update_item(
                    TableName=self.name,
                    Key={"pk": {"S": key}},
                    UpdateExpression=(
                        "SET taskToken = :token, #ref = :ref, expiresAt = :expires, storedAt = :now, "
                        "waitEnteredAt = :entered"
                    ),
                    ConditionExpression="attribute_not_exists(waitEnteredAt) OR waitEnteredAt <= :entered",
                    ExpressionAttributeNames={"#ref": "ref"},
                    ExpressionAttributeValues={
                        ":token": {"S": task_token},
                        ":ref": {"S": ref},
                        ":expires": {"N": expires},
                        ":now": {"N": str(int(now))},
                        ":entered": {"N": str(entered_ms)},
                    },
                    ReturnValues="ALL_NEW",
                )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                logger.warning(
                    "not stored: a newer wait already stored its token",
                    extra={"tokenKey": key, "enteredAt": entered_at},
                )
                return None
            raise
        return TokenItem.from_dynamodb(response["Attributes"])

    def record_job(self, key: str, job_id: str, *, now: float | None = None) -> None:
        """Records the attempt's job and when it was first recorded (a retry keeps the first time)."""
        now = time.time() if now is None else now
        with transient_as_retryable("recording the job ID"):
            self._ddb.update_item(
                TableName=self.name,
                Key={"pk": {"S": key}},
                UpdateExpression="SET jobId = :job, jobCreatedAt = if_not_exists(jobCreatedAt, :now)",
                ExpressionAttributeValues={":job": {"S": job_id}, ":now": {"N": str(int(now))}},
            )

    def record_pipeline_cancel(self, key: str, reason: str, *, now: float | None = None) -> None:
        """Notes that the pipeline itself cancels the attempt's job, and why; call before UpdateJobStatus.

        Written first so that whoever later sees the job Cancelled (ProcessReport) finds the record:
        a Cancelled job without it was cancelled by someone else, whose decision is final.
        """
        now = time.time() if now is None else now
        with transient_as_retryable("recording the pipeline's cancel"):
            self._ddb.update_item(
                TableName=self.name,
                Key={"pk": {"S": key}},
                UpdateExpression="SET pipelineCancelReason = :reason, pipelineCancelAt = :now",
                ExpressionAttributeValues={
                    ":reason": {"S": reason},
                    ":now": {"N": str(int(now))},
                },
            )

    def record_count(self, key: str, tasks: int) -> None:
        """Notes that the pipeline has checked S3's count of the attempt's job: no longer a reason to wake."""
        with transient_as_retryable("recording the job's object count"):
            self._ddb.update_item(
                TableName=self.name,
                Key={"pk": {"S": key}},
                UpdateExpression="SET countedTasks = :tasks",
                ExpressionAttributeValues={":tasks": {"N": str(tasks)}},
            )

    def record_confirmed(self, key: str, *, now: float | None = None) -> None:
        """Notes that the pipeline confirmed the attempt's job (UpdateJobStatus Ready succeeded)."""
        now = time.time() if now is None else now
        with transient_as_retryable("recording the job's confirmation"):
            self._ddb.update_item(
                TableName=self.name,
                Key={"pk": {"S": key}},
                UpdateExpression="SET confirmedAt = :now",
                ExpressionAttributeValues={":now": {"N": str(int(now))}},
            )

    def record_count_progress(self, key: str, offset: int, rows: int) -> None:
        """Saves how far ConfirmJob's own count of the manifest got (``rows`` in its first ``offset`` bytes)."""
        with transient_as_retryable("recording the manifest count's progress"):
            self._ddb.update_item(
                TableName=self.name,
                Key={"pk": {"S": key}},
                UpdateExpression="SET countOffset = :offset, countRows = :rows",
                ExpressionAttributeValues={":offset": {"N": str(offset)}, ":rows": {"N": str(rows)}},
            )

    def get(self, key: str) -> TokenItem | None:
        with transient_as_retryable("reading the token table"):
            response = self._ddb.get_item(TableName=self.name, Key={"pk": {"S": key}}, ConsistentRead=True)
        item = response.get("Item")
        return TokenItem.from_dynamodb(item) if item else None

    def key_for_ref(self, ref: str) -> str | None:
        """The token key a job's ``batchpipe:ref`` tag stands for (None: not this stack's job)."""
        with transient_as_retryable("reading the token table"):
            response = self._ddb.get_item(
                TableName=self.name, Key={"pk": {"S": REF_PREFIX + ref}}, ConsistentRead=True
            )
        item = response.get("Item") or {}
        return item.get("tokenKey", {}).get("S")

    def claim(self, key: str, task_token: str, completed_by: str, *, now: float | None = None) -> bool:
        """Marks ``task_token`` completed unless it already is or has been replaced; True if we won."""
        now = time.time() if now is None else now
        try:
            with transient_as_retryable("claiming the task token"):
                self._ddb.update_item(
                    TableName=self.name,
                    Key={"pk": {"S": key}},
                    UpdateExpression="SET completedToken = :token, completedBy = :by, completedAt = :now",
                    ConditionExpression=(
                        "taskToken = :token AND "
                        "(attribute_not_exists(completedToken) OR completedToken <> :token)"
                    ),
                    ExpressionAttributeValues={
                        ":token": {"S": task_token},
                        ":by": {"S": completed_by},
                        ":now": {"N": str(int(now))},
                    },
                )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release(self, key: str, task_token: str) -> None:
        """Undoes our claim so that a later event or the fallback may complete the token."""
        try:
            self._ddb.update_item(
                TableName=self.name,
                Key={"pk": {"S": key}},
                UpdateExpression="REMOVE completedToken, completedBy, completedAt",
                ConditionExpression="completedToken = :token",
                ExpressionAttributeValues={":token": {"S": task_token}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise


def who_cancelled(table: TokenTable, key: str) -> str:
    """Who cancelled the attempt's (Cancelled) job: the pipeline if it recorded doing so, else a person."""
    item = table.get(key)
    return CANCELLED_BY_PIPELINE if item is not None and item.cancel_reason else CANCELLED_BY_OPERATOR


def complete_once(
    table: TokenTable, stepfunctions: Any, key: str, task_token: str, outcome: dict, completed_by: str
) -> str:
    """Sends ``outcome`` to the waiting task at most once per token; never raises for a dead token.

    Returns what happened: ``completed``, ``already-completed`` (another caller claimed the token, or
    it was replaced by a newer one) or ``task-gone`` (the wait timed out or the execution ended).
    Any other SendTaskSuccess error releases the claim and propagates, so a retry can succeed.
    """
    if not table.claim(key, task_token, completed_by):
        logger.info("task token already completed or replaced", extra={"tokenKey": key, "by": completed_by})
        return "already-completed"
    try:
        with transient_as_retryable("completing the task"):
            stepfunctions.send_task_success(taskToken=task_token, output=json.dumps(outcome))
    except ClientError as exc:
        if error_code(exc) in TASK_GONE_ERRORS:
            # The claim stays: this token can never be completed. A re-entry brings a new one.
            logger.warning(
                "task no longer waits for this token",
                extra={"tokenKey": key, "error": error_code(exc), "jobId": outcome.get("jobId")},
            )
            return "task-gone"
        table.release(key, task_token)
        raise
    except Exception:
        table.release(key, task_token)
        raise
    logger.info("task completed", extra={"tokenKey": key, "by": completed_by, "jobId": outcome.get("jobId")})
    return "completed"
