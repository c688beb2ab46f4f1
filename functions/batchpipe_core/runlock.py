"""At most one active run per run name: a leased lock in TokenTable, taken, renewed and released.

Items (keys cannot collide with token items, whose keys start with an execution ARN or ``ref#``):

* ``lock#<name>``: the run that holds the name (``owner`` execution ARN, ``ownerName``, ``acquiredAt``)
  and ``leaseUntil`` (epoch seconds). A conditional write takes it only when it is absent, ours, or
  its lease has passed, so two runs can never both hold it. The lease protects against a release
  that never comes; it is renewed each time the run waits on its job (CreateJob, CheckJob) and
  while it reads the job's report (PlanReport, ProcessReport), never created by a renewal.
* ``held#<execution ARN>``: which name an execution took, so that the execution-status cleanup,
  which knows only the execution, can release it (``release_execution``).
* ``tick#<name>#<scheduled time>``: the execution that took one scheduled time. EventBridge
  Scheduler invokes its targets at least once, so a second delivery of the same time finds it taken.

DynamoDB's TTL deletes expired items lazily (days later, DynamoDB developer guide "Time to Live"),
so ``expiresAt`` only tidies the table: every decision compares ``leaseUntil`` with the clock.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError

from batchpipe_core.accounting import MAX_BACKOFF_SECONDS, backoff_seconds
from batchpipe_core.config import Config
from batchpipe_core.errors import BatchPipeError, SpecValidationError
from batchpipe_core.jobs import RunRef, error_code, transient_as_retryable
from batchpipe_core.observability import logger, metrics

LOCK_PREFIX = "lock#"
HELD_PREFIX = "held#"
TICK_PREFIX = "tick#"
# Ticks outlive any duplicate delivery, which comes within the schedule's retry window.
RECORD_TTL_SECONDS = 30 * 24 * 3600
# A held# pointer must outlive its execution, which may run for a year (Step Functions quotas: a
# Standard workflow's maximum execution time is one year), plus a month for the cleanup to read it.
HELD_TTL_SECONDS = (365 + 30) * 24 * 3600
# How long an expired lock item stays for the record before TTL may remove it.
LOCK_TTL_AFTER_LEASE_SECONDS = 7 * 24 * 3600
# Covers what runs between two renewals besides the job wait and the backoff: the Athena query
# (its DML timeout quota), BuildManifest/ImportFailures and ProcessReport (15-minute Lambdas, retried).
LEASE_MARGIN_SECONDS = 6 * 3600
# A waiting run asks again this often (one Wait, one Task and one Choice per ask).
LOCK_POLL_SECONDS = 300

# The execution input the template's schedule sends: {"schedule": {"scheduledTime": ...}, "spec": {...}}.
# EventBridge Scheduler fills <aws.scheduler.scheduled-time> in when it invokes the target (EventBridge
# Scheduler user guide, "Adding context attributes"), e.g. 2022-03-22T18:59:43Z.
SCHEDULED_TIME_PLACEHOLDER = "<aws.scheduler.scheduled-time>"
SCHEDULED_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z")
_CONDITION_FAILED = "ConditionalCheckFailedException"


class RunLockLostError(BatchPipeError):
    """This run's lease ran out and another run of the same name took the lock before a new job."""


def lease_seconds(job_wait_timeout_seconds: int, longest_backoff_seconds: int) -> int:
    """The lease each renewal grants: the longest gap until the next renewal, plus the margin.

    Renewals come on every entry of CreateJobAndWait and every CheckJob. Between two of them the run
    waits at most one job wait, then ProcessReport and one backoff.
    """
    return job_wait_timeout_seconds + longest_backoff_seconds + LEASE_MARGIN_SECONDS


def lease_for_spec(job_wait_timeout_seconds: int, backoff_base_seconds: int, max_attempts: int) -> int:
    """The lease of a run with this retry policy: its longest backoff is the one before its last attempt."""
    longest = backoff_seconds(backoff_base_seconds, max_attempts - 1) if max_attempts > 1 else 0
    return lease_seconds(job_wait_timeout_seconds, longest)


def run_lease(run_lease_seconds: int | None, job_wait_timeout_seconds: int) -> int:
    """The run's lease as ValidateSpec computed it, or the longest one for a state without it."""
    if run_lease_seconds is not None:
        return run_lease_seconds
    return lease_seconds(job_wait_timeout_seconds, MAX_BACKOFF_SECONDS)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Holder:
    """The execution that holds a name (or took a scheduled time)."""

    execution_id: str
    execution_name: str | None
    acquired_at: int | None
    lease_until: int | None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Holder:
        def number(name: str) -> int | None:
            value = item.get(name, {}).get("N")
            return int(value) if value is not None else None

        return cls(
            execution_id=item.get("owner", {}).get("S", "unknown"),
            execution_name=item.get("ownerName", {}).get("S"),
            acquired_at=number("acquiredAt"),
            lease_until=number("leaseUntil"),
        )

    @property
    def since(self) -> str | None:
        return iso(self.acquired_at) if self.acquired_at is not None else None

    def describe(self) -> str:
        return f"execution {self.execution_id}" + (f" since {self.since}" if self.since else "")


@dataclass
class _Write:
    held: bool = True


@contextmanager
def _conditional(action: str) -> Iterator[_Write]:
    """One conditional write: ``held`` turns False when DynamoDB finds its condition false."""
    write = _Write()
    try:
        with transient_as_retryable(action):
            yield write
    except ClientError as exc:
        if error_code(exc) != _CONDITION_FAILED:
            raise
        write.held = False


class RunLock:
    """The lock items in TokenTable (low-level client, as TokenTable)."""

    def __init__(self, table_name: str, dynamodb: Any) -> None:
        self.name = table_name
        self._ddb = dynamodb

    # ------------------------------------------------------------------ scheduled times
    def claim_tick(self, name: str, scheduled_time: str, execution_id: str, *, now: float) -> Holder | None:
        """Takes one scheduled time of a run name; None if it is ours, else who took it first."""
        key = f"{TICK_PREFIX}{name}#{scheduled_time}"
        with _conditional("recording the scheduled time") as write:
            self._ddb.put_item(
                TableName=self.name,
                Item={
                    "pk": {"S": key},
                    "owner": {"S": execution_id},
                    "acquiredAt": {"N": str(int(now))},
                    "expiresAt": {"N": str(int(now) + RECORD_TTL_SECONDS)},
                },
                # Ours already: the same execution asks again (a Lambda retry, a wait loop).
                ConditionExpression="attribute_not_exists(pk) OR #owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":me": {"S": execution_id}},
            )
        if write.held:
            return None
        return self._holder(key) or Holder("unknown", None, None, None)

    # ------------------------------------------------------------------ the lock
    def acquire(
        self, name: str, execution_id: str, execution_name: str, lease: int, *, now: float
    ) -> Holder | None:
        """Takes the name for ``lease`` seconds; None if we hold it now, else the run that does."""
        with transient_as_retryable("recording the run lock owner"):
            self._ddb.put_item(
                TableName=self.name,
                Item={
                    "pk": {"S": HELD_PREFIX + execution_id},
                    "lockName": {"S": name},
                    "expiresAt": {"N": str(int(now) + HELD_TTL_SECONDS)},
                },
            )
        # A holder can release between our failed write and our read: then simply try again.
        for _ in range(3):
            if self._take(name, execution_id, execution_name, lease, now=now, only_if_free=True):
                return None
            holder = self._holder(LOCK_PREFIX + name)
            if holder is not None and (holder.lease_until or 0) >= int(now):
                return holder
        return holder or Holder("unknown", None, None, None)

    def renew(self, name: str, execution_id: str, execution_name: str, lease: int, *, now: float) -> bool:
        """Extends our lease; False if we no longer hold the name (released, or taken by another run).

        Never creates the lock: a stopped execution's Lambda still in flight (Step Functions does not
        stop a running invocation) must not take back the name the cleanup just released, and a
        redriven execution must not run on a name it gave up without asking AcquireRunLock again.
        """
        return self._take(name, execution_id, execution_name, lease, now=now, only_if_free=False)

    def holder(self, name: str) -> Holder | None:
        return self._holder(LOCK_PREFIX + name)

    def release_name(self, name: str, execution_id: str) -> bool:
        """Gives the name up if this execution holds it; True if it did. Safe to repeat."""
        with _conditional("releasing the run lock") as write:
            self._ddb.delete_item(
                TableName=self.name,
                Key={"pk": {"S": LOCK_PREFIX + name}},
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":me": {"S": execution_id}},
            )
        return write.held

    def release_execution(self, execution_id: str) -> str | None:
        """Releases whatever name an execution holds (the execution-status cleanup knows only the ARN).

        Returns the name it released, or None when the execution held nothing (any more).
        """
        with transient_as_retryable("reading the run lock owner"):
            item = self._ddb.get_item(
                TableName=self.name, Key={"pk": {"S": HELD_PREFIX + execution_id}}, ConsistentRead=True
            ).get("Item")
        name = (item or {}).get("lockName", {}).get("S")
        if name is None:
            return None
        return name if self.release_name(name, execution_id) else None

    # ------------------------------------------------------------------ internals
    def _take(
        self, name: str, execution_id: str, execution_name: str, lease: int, *, now: float, only_if_free: bool
    ) -> bool:
        until = int(now) + lease
        condition = "#owner = :me"
        # A renewal keeps the start of the holding; a take (of a free or expired name) is a new one.
        started = "acquiredAt = if_not_exists(acquiredAt, :acquired)"
        if only_if_free:
            condition = "attribute_not_exists(pk) OR #owner = :me OR leaseUntil < :now"
            started = "acquiredAt = :acquired"
        values = {
            ":me": {"S": execution_id},
            ":myname": {"S": execution_name},
            ":until": {"N": str(until)},
            ":expires": {"N": str(until + LOCK_TTL_AFTER_LEASE_SECONDS)},
            ":acquired": {"N": str(int(now))},
        }
        if only_if_free:
            values[":now"] = {"N": str(int(now))}
        with _conditional("taking the run lock") as write:
            self._ddb.update_item(
                TableName=self.name,
                Key={"pk": {"S": LOCK_PREFIX + name}},
                UpdateExpression=(
                    "SET #owner = :me, ownerName = :myname, leaseUntil = :until, expiresAt = :expires, "
                    + started
                ),
                ConditionExpression=condition,
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues=values,
            )
        return write.held

    def _holder(self, key: str) -> Holder | None:
        with transient_as_retryable("reading the run lock"):
            item = self._ddb.get_item(TableName=self.name, Key={"pk": {"S": key}}, ConsistentRead=True).get(
                "Item"
            )
        return Holder.from_item(item) if item else None


def renew_run_lock(run: RunRef, config: Config, *, starting_job: bool, forced: bool) -> bool:
    """Renews the run's lease while it waits on its job; True if the run still holds its name.

    A run whose lease ran out and whose name another run took must not start a new job alongside
    it: RunLockLostError then ends the run (Summarize reports it FAILED). A job already running is
    waited for, and the loss is logged and counted. A forced run never needed the name.
    """
    lock = RunLock(config.token_table, boto3.client("dynamodb"))
    lease = run_lease(run.leaseSeconds, config.job_wait_timeout_seconds)
    if lock.renew(run.name, run.executionId, run.executionName, lease, now=time.time()):
        return True
    if forced:
        return False
    holder = lock.holder(run.name)
    if holder is not None:
        message = (
            f"run name {run.name!r} is now held by {holder.describe()}: this run's lease ({lease} s) "
            "ran out before it was renewed"
        )
    else:
        # Released by the cleanup of this execution (stopped, failed, timed out: a redriven execution
        # comes back without it) and never taken back by a renewal.
        message = (
            f"run name {run.name!r} is no longer held by this run: its execution ended and the cleanup "
            "released the name (a redriven execution does not take it back)"
        )
    metrics.add_metric(name="RunLocksLost", unit=MetricUnit.Count, value=1)
    if starting_job:
        raise RunLockLostError(
            f"{message}; no new job was started. Start the run again once that one has ended"
        )
    logger.warning(message + "; the job already running is still waited for", extra={"runName": run.name})
    return False


def renew_in_report_stage(run: Any, concurrency: str, config: Config) -> None:
    """PlanReport and ProcessReport renew the lease as well: reading a report of billions of rows
    can take longer than the margin a renewal grants past the job wait. A run without the lock's
    fields in its state (an older state document) is left alone."""
    if run.executionId and run.executionName:
        ref = RunRef(
            executionId=run.executionId,
            executionName=run.executionName,
            prefix=run.prefix,
            name=run.name,
            leaseSeconds=run.leaseSeconds,
        )
        renew_run_lock(ref, config, starting_job=False, forced=concurrency == "force")


# ---------------------------------------------------------------- the scheduler's input


def unwrap_scheduled_input(raw: Any) -> tuple[Any, str | None]:
    """The job spec and the scheduled time of a scheduler delivery; a manual start is the spec alone."""
    if not isinstance(raw, dict) or "schedule" not in raw:
        return raw, None
    shape = '{"schedule": {"scheduledTime": "<aws.scheduler.scheduled-time>"}, "spec": {...}}'
    extra = sorted(set(raw) - {"schedule", "spec"})
    if extra or "spec" not in raw:
        raise SpecValidationError(
            f"schedule: only the schedule's input has it, in the shape {shape}"
            + (f"; remove {', '.join(extra)} or put them inside spec" if extra else "; add spec")
            + " (a manual start gives the spec alone, without schedule)"
        )
    schedule = raw["schedule"]
    scheduled_time = schedule.get("scheduledTime") if isinstance(schedule, dict) else None
    if not isinstance(schedule, dict) or set(schedule) != {"scheduledTime"}:
        raise SpecValidationError(f'schedule: must be exactly {{"scheduledTime": ...}}, as in {shape}')
    if scheduled_time == SCHEDULED_TIME_PLACEHOLDER:
        raise SpecValidationError(
            f"schedule.scheduledTime: {SCHEDULED_TIME_PLACEHOLDER} is filled in only by EventBridge Scheduler; "
            "to start a run by hand, give the spec alone, without schedule"
        )
    if not isinstance(scheduled_time, str) or not SCHEDULED_TIME.fullmatch(scheduled_time):
        raise SpecValidationError(
            f"schedule.scheduledTime: must be the scheduler's time, e.g. 2022-03-22T18:59:43Z, got {scheduled_time!r}"
        )
    return raw["spec"], scheduled_time


# ---------------------------------------------------------------- AcquireRunLock's decision


def acquire_for_run(
    lock: RunLock,
    *,
    name: str,
    concurrency: str,
    execution_id: str,
    execution_name: str,
    scheduled_time: str | None,
    lease: int,
    waited_seconds: int,
    max_wait_seconds: int,
    now: float | None = None,
) -> dict[str, Any]:
    """The ``lock`` key of the state: go on (``run``), ask again later (``wait``) or end (``skip``).

    ``held`` says whether this run holds the name: only a forced run goes on without it.
    """
    now = time.time() if now is None else now
    result: dict[str, Any] = {
        "next": "run",
        "held": True,
        "reason": None,
        "message": None,
        "activeExecution": None,
        "activeSince": None,
        "waitedSeconds": waited_seconds,
        "pollSeconds": 0,
    }
    if scheduled_time is not None:
        first = lock.claim_tick(name, scheduled_time, execution_id, now=now)
        if first is not None:
            return result | {
                "next": "skip",
                "held": False,
                "reason": "duplicate",
                "activeExecution": first.execution_id,
                "activeSince": first.since,
                "message": (
                    f"the run {name!r} scheduled for {scheduled_time} was already started by "
                    f"{first.describe()}: EventBridge Scheduler delivered that time twice"
                ),
            }
    holder = lock.acquire(name, execution_id, execution_name, lease, now=now)
    if holder is None:
        return result
    lease_end = f", lease until {iso(holder.lease_until)}" if holder.lease_until is not None else ""
    busy = f"run name {name!r} is held by {holder.describe()}{lease_end}"
    poll = 0
    if concurrency == "force":
        step, reason, why = (
            "run",
            "forced",
            'concurrency "force" runs this one alongside it, without the lock',
        )
    elif concurrency == "wait" and waited_seconds < max_wait_seconds:
        poll = min(LOCK_POLL_SECONDS, max_wait_seconds - waited_seconds)
        step, reason, why = "wait", "busy", 'waiting (concurrency "wait")'
    elif concurrency == "wait":
        step, reason = "skip", "waitExpired"
        why = f'skipped after waiting {waited_seconds} s for it (concurrency "wait")'
    else:
        step, reason = "skip", "busy"
        why = 'skipped (concurrency "skip", the default). A person can start it anyway with "concurrency": "force"'
    return result | {
        "next": step,
        "held": False,
        "reason": reason,
        "message": f"{busy}; {why}",
        "activeExecution": holder.execution_id,
        "activeSince": holder.since,
        "waitedSeconds": waited_seconds + poll,
        "pollSeconds": poll,
    }
