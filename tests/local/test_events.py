"""The emulated EventBridge routes by the rule pattern template.yaml declares, in every delivery mode."""

from __future__ import annotations

import copy
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batchpipe.local.events import EventRouter, execution_status_change
from batchpipe.local.stack import LocalStack

# A copy of shared/fixtures/job-status-changed-complete.json (the S3 user guide sample shape).
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "job-status-changed-complete.json"


@pytest.fixture(scope="module")
def all_rules():
    stack = LocalStack()  # not entered: the rules come from the template alone
    return stack.event_rules()


@pytest.fixture(scope="module")
def rules(all_rules):
    """The job status rule (first, alone)."""
    return [rule for rule in all_rules if rule.target == "JobStatusFunction"]


def _execution_event(status: str, state_machine: str = "batchpipe-pipeline") -> dict:
    moment = datetime(2026, 11, 20, 15, tzinfo=UTC)
    return execution_status_change(
        account_id="123456789012",
        region="us-east-1",
        execution_arn=f"arn:aws:states:us-east-1:123456789012:execution:{state_machine}:run-1",
        state_machine_arn=f"arn:aws:states:us-east-1:123456789012:stateMachine:{state_machine}",
        name="run-1",
        status=status,
        start=moment,
        stop=moment,
        input_text="{}",
        output_text=None,
        error=None,
        cause=None,
    )


def _event(status: str = "Complete", event_id: str = "e1") -> dict:
    event = json.loads(FIXTURE.read_text())
    event = copy.deepcopy(event)
    event["id"] = event_id
    event["detail"]["serviceEventDetails"]["status"] = status
    return event


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, target: str, event: dict) -> None:
        with self.lock:
            self.calls.append((target, event["id"]))


def test_the_rules_target_their_functions(all_rules):
    # The sweep's hourly schedule has no pattern: it is fired, never matched.
    assert [(r.target, r.pattern and r.pattern["source"]) for r in all_rules] == [
        ("JobStatusFunction", ["aws.s3"]),
        ("CancelJobsFunction", ["aws.states"]),
        ("SweepJobsFunction", None),
    ]


def test_each_rule_retries_as_lambda_then_names_the_on_failure_destination(all_rules):
    for rule in all_rules:
        assert rule.max_retries == 2  # the functions' EventInvokeConfig (Lambda's default too)
        assert rule.on_failure is not None and rule.on_failure.endswith(":batchpipe-AsyncFailureQueue")


@pytest.mark.parametrize("status", ["Suspended", "Complete", "Failed", "Cancelled"])
def test_counted_and_terminal_status_events_match_the_real_rule(rules, status):
    assert rules[0].matches(_event(status))


@pytest.mark.parametrize(
    ("status", "matches"),
    [("ABORTED", True), ("TIMED_OUT", True), ("FAILED", True), ("SUCCEEDED", False), ("RUNNING", False)],
)
def test_the_cleanup_rule_takes_this_state_machines_executions_that_ended_early(all_rules, status, matches):
    (cleanup,) = [rule for rule in all_rules if rule.target == "CancelJobsFunction"]
    assert cleanup.matches(_execution_event(status)) is matches
    assert not cleanup.matches(_execution_event(status, state_machine="someone-elses"))


@pytest.mark.parametrize("status", ["New", "Preparing", "Active", "Completing"])
def test_non_terminal_status_events_do_not_match(rules, status):
    assert not rules[0].matches(_event(status))


def test_an_event_from_another_source_does_not_match(rules):
    event = _event()
    event["source"] = "aws.ec2"
    assert not rules[0].matches(event)


@pytest.mark.parametrize(("mode", "expected"), [("normal", 1), ("drop", 0), ("duplicate", 2), ("shuffle", 1)])
def test_delivery_modes(rules, mode, expected):
    recorder = Recorder()
    router = EventRouter(rules, recorder, mode=mode, max_delay_seconds=0.05)
    router.put_event(_event(event_id="a"))
    router.put_event(_event("Active", event_id="b"))
    router.flush()
    router.close()
    assert recorder.calls == [("JobStatusFunction", "a")] * expected


def test_shuffle_reorders_events(rules):
    orders = set()
    for seed in range(10):
        recorder = Recorder()
        router = EventRouter(rules, recorder, mode="shuffle", seed=seed, max_delay_seconds=0.05)
        for i in range(5):
            router.put_event(_event(event_id=str(i)))
        router.flush()
        router.close()
        assert sorted(e for _, e in recorder.calls) == [str(i) for i in range(5)]
        orders.add(tuple(e for _, e in recorder.calls))
    assert len(orders) > 1


def test_a_failing_target_is_retried_then_given_up(rules):
    attempts = []

    def failing(target: str, event: dict) -> None:
        attempts.append(event["id"])
        raise RuntimeError("boom")

    router = EventRouter(rules, failing)
    router.put_event(_event(event_id="x"))
    router.flush()
    router.close()
    assert attempts == ["x"] * (rules[0].max_retries + 1)
    assert router.deliveries[-1].status == "failed"
