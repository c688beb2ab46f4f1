"""batchpipe_core.runlock against moto's DynamoDB: the lock's conditional writes, leases, scheduled
times, the AcquireRunLock decision per concurrency mode, the scheduler's input and lease renewal."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
if str(FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS))

from batchpipe_core.config import Config  # noqa: E402
from batchpipe_core.errors import SpecValidationError  # noqa: E402
from batchpipe_core.jobs import RunRef  # noqa: E402
from batchpipe_core.runlock import (  # noqa: E402
    LEASE_MARGIN_SECONDS,
    LOCK_POLL_SECONDS,
    RunLock,
    RunLockLostError,
    acquire_for_run,
    lease_for_spec,
    renew_run_lock,
    unwrap_scheduled_input,
)
from tests.unit.test_process_report import ENV  # noqa: E402

A = "arn:aws:states:us-east-1:123456789012:execution:batchpipe-pipeline:a"
B = "arn:aws:states:us-east-1:123456789012:execution:batchpipe-pipeline:b"
NOW = 1_800_000_000.0


@pytest.fixture
def lock(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName=ENV["TOKEN_TABLE"],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield RunLock(ENV["TOKEN_TABLE"], dynamodb)


def decide(lock: RunLock, execution: str, concurrency: str = "skip", **options) -> dict:
    arguments = {
        "name": "nightly",
        "concurrency": concurrency,
        "execution_id": execution,
        "execution_name": execution.rsplit(":", 1)[1],
        "scheduled_time": None,
        "lease": 3600,
        "waited_seconds": 0,
        "max_wait_seconds": 900,
        "now": NOW,
    }
    return acquire_for_run(lock, **(arguments | options))


# ---------------------------------------------------------------- the lock items


def test_one_holder_at_a_time_until_it_releases(lock):
    assert lock.acquire("nightly", A, "a", 3600, now=NOW) is None
    holder = lock.acquire("nightly", B, "b", 3600, now=NOW + 1)

    assert holder is not None and holder.execution_id == A and holder.lease_until == NOW + 3600
    assert lock.acquire("nightly", A, "a", 3600, now=NOW + 2) is None  # the holder may ask again
    assert lock.release_name("nightly", B) is False  # not B's to release
    assert lock.release_name("nightly", A) is True
    assert lock.release_name("nightly", A) is False  # safe to repeat
    assert lock.acquire("nightly", B, "b", 3600, now=NOW + 3) is None


def test_names_are_independent(lock):
    assert lock.acquire("nightly", A, "a", 3600, now=NOW) is None
    assert lock.acquire("weekly", B, "b", 3600, now=NOW) is None


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_release_it(lock):
    assert lock.acquire("nightly", A, "a", 60, now=NOW) is None
    assert lock.acquire("nightly", B, "b", 60, now=NOW + 60) is not None  # lease still running at its end
    assert lock.acquire("nightly", B, "b", 60, now=NOW + 61) is None

    assert lock.release_name("nightly", A) is False
    assert lock.holder("nightly").execution_id == B


def test_renewal_extends_the_lease_and_keeps_the_start(lock):
    assert lock.acquire("nightly", A, "a", 60, now=NOW) is None
    assert lock.renew("nightly", A, "a", 60, now=NOW + 50) is True

    holder = lock.holder("nightly")
    assert holder.lease_until == NOW + 110 and holder.acquired_at == NOW
    assert lock.acquire("nightly", B, "b", 60, now=NOW + 100) is not None


def test_renewal_fails_once_another_run_took_the_name(lock):
    assert lock.acquire("nightly", A, "a", 60, now=NOW) is None
    assert lock.acquire("nightly", B, "b", 60, now=NOW + 61) is None

    assert lock.renew("nightly", A, "a", 60, now=NOW + 62) is False
    assert lock.holder("nightly").execution_id == B


def test_renewal_never_creates_the_lock(lock):
    # Never taken, or released by the cleanup of a stopped execution whose Lambda is still in flight.
    assert lock.renew("nightly", A, "a", 60, now=NOW) is False
    assert lock.acquire("nightly", A, "a", 60, now=NOW) is None
    assert lock.release_execution(A) == "nightly"

    assert lock.renew("nightly", A, "a", 60, now=NOW + 1) is False
    assert lock.holder("nightly") is None
    assert lock.acquire("nightly", B, "b", 60, now=NOW + 2) is None  # free for the next run


def test_a_run_whose_name_was_released_starts_no_new_job(lock):
    assert lock.acquire("nightly", A, "a", 3600, now=time.time()) is None
    assert lock.release_execution(A) == "nightly"  # the execution ended; a redrive comes back without it

    with pytest.raises(RunLockLostError, match=r"no longer held by this run"):
        renew_run_lock(run_ref(A), Config.from_env(), starting_job=True, forced=False)
    assert lock.holder("nightly") is None


def test_the_execution_pointer_outlives_a_year_long_execution(lock):
    assert lock.acquire("nightly", A, "a", 60, now=NOW) is None

    item = lock._ddb.get_item(TableName=lock.name, Key={"pk": {"S": "held#" + A}})["Item"]
    assert int(item["expiresAt"]["N"]) > NOW + 365 * 24 * 3600


def test_release_by_execution_alone_for_the_execution_status_cleanup(lock):
    assert lock.acquire("nightly", A, "a", 3600, now=NOW) is None
    assert lock.acquire("nightly", B, "b", 3600, now=NOW) is not None

    assert lock.release_execution(B) is None  # B never held it
    assert lock.holder("nightly").execution_id == A
    assert lock.release_execution(A) == "nightly"
    assert lock.holder("nightly") is None
    assert lock.release_execution(A) is None
    assert lock.release_execution("arn:never-started") is None


def test_a_scheduled_time_is_taken_once(lock):
    assert lock.claim_tick("nightly", "2026-12-02T03:00:00Z", A, now=NOW) is None
    assert lock.claim_tick("nightly", "2026-12-02T03:00:00Z", A, now=NOW + 1) is None  # a retry of A
    first = lock.claim_tick("nightly", "2026-12-02T03:00:00Z", B, now=NOW + 2)

    assert first is not None and first.execution_id == A
    assert lock.claim_tick("nightly", "2026-12-03T03:00:00Z", B, now=NOW + 3) is None
    assert lock.claim_tick("weekly", "2026-12-02T03:00:00Z", B, now=NOW + 4) is None


# ---------------------------------------------------------------- AcquireRunLock's decision


def test_skip_is_the_default_and_names_the_active_run(lock):
    taken = decide(lock, A)
    assert (taken["next"], taken["held"], taken["reason"], taken["activeExecution"]) == (
        "run",
        True,
        None,
        None,
    )
    skipped = decide(lock, B)

    assert skipped["next"] == "skip" and skipped["held"] is False and skipped["reason"] == "busy"
    assert skipped["activeExecution"] == A
    assert skipped["activeSince"] == "2027-01-15T08:00:00Z"
    assert A in skipped["message"] and '"concurrency": "force"' in skipped["message"]


def test_wait_polls_until_the_bound_then_skips(lock):
    decide(lock, A)

    first = decide(lock, B, "wait", max_wait_seconds=2 * LOCK_POLL_SECONDS + 10)
    second = decide(
        lock, B, "wait", waited_seconds=first["waitedSeconds"], max_wait_seconds=2 * LOCK_POLL_SECONDS + 10
    )
    third = decide(
        lock, B, "wait", waited_seconds=second["waitedSeconds"], max_wait_seconds=2 * LOCK_POLL_SECONDS + 10
    )
    last = decide(
        lock, B, "wait", waited_seconds=third["waitedSeconds"], max_wait_seconds=2 * LOCK_POLL_SECONDS + 10
    )

    assert [d["next"] for d in (first, second, third, last)] == ["wait", "wait", "wait", "skip"]
    assert [d["pollSeconds"] for d in (first, second, third)] == [LOCK_POLL_SECONDS, LOCK_POLL_SECONDS, 10]
    assert last["reason"] == "waitExpired" and A in last["message"]


def test_wait_runs_as_soon_as_the_name_is_free(lock):
    decide(lock, A)
    assert decide(lock, B, "wait")["next"] == "wait"
    lock.release_name("nightly", A)

    assert decide(lock, B, "wait", waited_seconds=LOCK_POLL_SECONDS)["next"] == "run"


def test_force_runs_without_taking_the_active_runs_name(lock):
    decide(lock, A)
    forced = decide(lock, B, "force")

    assert forced["next"] == "run" and forced["held"] is False and forced["reason"] == "forced"
    assert forced["activeExecution"] == A
    assert lock.holder("nightly").execution_id == A


@pytest.mark.parametrize("concurrency", ["skip", "wait", "force"])
def test_a_second_delivery_of_a_scheduled_time_is_always_skipped(lock, concurrency):
    tick = "2026-12-02T03:00:00Z"
    assert decide(lock, A, scheduled_time=tick)["next"] == "run"
    lock.release_name("nightly", A)  # the first run already ended

    duplicate = decide(lock, B, concurrency, scheduled_time=tick)

    assert duplicate["next"] == "skip" and duplicate["reason"] == "duplicate"
    assert duplicate["activeExecution"] == A and tick in duplicate["message"]
    assert lock.holder("nightly") is None


# ---------------------------------------------------------------- the scheduler's input


def test_a_manual_start_is_the_spec_alone():
    spec = {"name": "x", "operation": {}}
    assert unwrap_scheduled_input(spec) == (spec, None)


def test_the_schedules_input_gives_the_spec_and_the_scheduled_time():
    spec = {"name": "x", "operation": {}}
    raw = {"schedule": {"scheduledTime": "2022-03-22T18:59:43Z"}, "spec": spec}
    assert unwrap_scheduled_input(raw) == (spec, "2022-03-22T18:59:43Z")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            {"schedule": {"scheduledTime": "<aws.scheduler.scheduled-time>"}, "spec": {}},
            "schedule.scheduledTime: <aws.scheduler.scheduled-time> is filled in only by EventBridge Scheduler",
        ),
        ({"schedule": {"scheduledTime": "yesterday"}, "spec": {}}, "schedule.scheduledTime: must be"),
        (
            {"schedule": {"scheduledTime": "2022-03-22T18:59:43Z"}},
            "schedule: only the schedule's input has it",
        ),
        (
            {"schedule": {"scheduledTime": "2022-03-22T18:59:43Z"}, "spec": {}, "name": "x"},
            "remove name or put them inside spec",
        ),
        ({"schedule": {"at": "2022-03-22T18:59:43Z"}, "spec": {}}, "schedule: must be exactly"),
    ],
)
def test_a_malformed_schedule_input_is_one_clear_line(raw, problem):
    with pytest.raises(SpecValidationError) as raised:
        unwrap_scheduled_input(raw)
    assert problem in str(raised.value) and "\n" not in str(raised.value)


# ---------------------------------------------------------------- leases and renewal


def test_the_lease_covers_a_job_wait_the_longest_backoff_and_the_margin():
    assert lease_for_spec(3600, 300, 3) == 3600 + 600 + LEASE_MARGIN_SECONDS
    assert lease_for_spec(3600, 300, 1) == 3600 + LEASE_MARGIN_SECONDS
    assert lease_for_spec(86400, 86400, 10) == 86400 + 86400 + LEASE_MARGIN_SECONDS


def run_ref(execution: str) -> RunRef:
    return RunRef(
        executionId=execution,
        executionName=execution.rsplit(":", 1)[1],
        prefix="runs/nightly/x/",
        name="nightly",
        leaseSeconds=60,
    )


def test_a_run_that_lost_its_name_starts_no_new_job(lock):
    # renew_run_lock reads the clock: A's lease ended long ago, B's runs for an hour from now.
    assert lock.acquire("nightly", A, "a", 60, now=1.0) is None
    assert lock.acquire("nightly", B, "b", 3600, now=time.time()) is None

    with pytest.raises(RunLockLostError, match=r"run name 'nightly' is now held by execution .*:b"):
        renew_run_lock(run_ref(A), Config.from_env(), starting_job=True, forced=False)
    # Waiting on a job already running goes on; a forced run never held the name.
    assert renew_run_lock(run_ref(A), Config.from_env(), starting_job=False, forced=False) is False
    assert renew_run_lock(run_ref(A), Config.from_env(), starting_job=True, forced=True) is False
    assert lock.holder("nightly").execution_id == B


def test_renewal_while_waiting_on_a_job_keeps_the_name(lock):
    started = time.time()
    assert lock.acquire("nightly", A, "a", 10, now=started) is None

    assert renew_run_lock(run_ref(A), Config.from_env(), starting_job=False, forced=False) is True
    assert lock.holder("nightly").lease_until >= int(started) + 60


def test_the_report_stage_renews_the_lease_too(lock):
    from batchpipe_core.attempts import RunPart
    from batchpipe_core.runlock import renew_in_report_stage

    started = time.time()
    assert lock.acquire("nightly", A, "a", 10, now=started) is None
    run = RunPart(
        bucket="b",
        prefix="runs/nightly/x/",
        executionId=A,
        executionName="a",
        name="nightly",
        leaseSeconds=60,
    )

    renew_in_report_stage(run, "skip", Config.from_env())

    assert lock.holder("nightly").lease_until >= int(started) + 60
