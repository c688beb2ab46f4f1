"""events/: one event per function, usable as `sam local invoke <LogicalId> -e events/<file>.json`.

Each file must (1) have the shape of what the function really receives — compared with the payloads
a real run on the embedded AWS sends (Step Functions Task inputs, EventBridge events) — and (2) be
accepted by its handler, run in-process the way `sam local invoke` runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from batchpipe.local import template as tpl
from batchpipe.local.stack import LocalStack, seconds_per_long_wait
from batchpipe.local.world import World

EVENTS = tpl.REPO_ROOT / "events"
# State keys that only some runs carry (the fallback path's CheckJob outcome, failures, timestamps of
# Athena's status).
OPTIONAL_STATE = ("waitTimedOut", "current.checked", "failure", "query.status.status.")
FUNCTIONS = tpl.resources_of_type(tpl.load_template(), "AWS::Serverless::Function")


def event_file(logical_id: str) -> Path:
    handler = tpl.function_properties(tpl.load_template(), logical_id)["Handler"]
    return EVENTS / f"{handler.split('.')[0]}.json"


def keys_tree(value):
    """The dict keys at every level (list items merged), without the values."""
    if isinstance(value, dict):
        return {k: keys_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        merged: dict = {}
        for item in value:
            tree = keys_tree(item)
            if isinstance(tree, dict):
                merged.update(tree)
        return merged or None
    return None


# User-authored parts: any S3 Batch operation, and the raw execution input ValidateSpec receives.
def differences(real, sample, path="") -> list[str]:
    if not isinstance(real, dict) or not isinstance(sample, dict) or path.rstrip(".") == "spec.operation":
        return []
    problems = [
        f"{path}{k}: sent by the pipeline, missing from the event file" for k in real.keys() - sample.keys()
    ]
    problems += [
        f"{path}{k}: in the event file, never sent by the pipeline" for k in sample.keys() - real.keys()
    ]
    for key in real.keys() & sample.keys():
        problems += differences(real[key], sample[key], f"{path}{key}.")
    return problems


@pytest.fixture(scope="module")
def real_payloads():
    """Every payload each function received during one run that takes every path of the pipeline:
    a rerun (faults), the lost-event fallback (events dropped, job slower than the wait timeout)."""
    world = World()
    faults = [{"keyRegex": "^slow/", "httpStatus": 503, "errorCode": "SlowDown", "times": 1}]
    parameters = world.parameters()
    payloads: dict[str, list] = {logical_id: [] for logical_id in FUNCTIONS}
    with LocalStack(
        parameters=parameters,
        faults=faults,
        engine_options={"active_seconds": 1.5},
        timeout_scale=seconds_per_long_wait(1.0),
    ) as stack:
        world.seed(stack.client("s3"), world.objects_with_keys(["a.txt", "slow/b.txt", "c d.txt"]))
        execution = stack.run(
            {"name": "events", "operation": {"S3DeleteObjectTagging": {}}}, name="events-shape"
        )
        assert execution.output["status"] == "SUCCEEDED"
        arn_to_id = {f.arn: f.logical_id for f in stack.functions.by_logical_id.values()}
        for event in execution.history:
            details = event.get("taskScheduledEventDetails")
            if details and details["resourceType"] == "lambda":
                parameters_sent = json.loads(details["parameters"])
                payloads[arn_to_id[parameters_sent["FunctionName"]]].append(parameters_sent["Payload"])
        # A Distributed Map's children are executions of their own: their Task events are not in the
        # parent's history, so take what the function received.
        for logical_id in ("ReportPartFunction",):
            payloads[logical_id] = list(stack.functions.by_logical_id[logical_id].received)
        # JobStatusFunction is not a Task: EventBridge sends it S3 Batch status events (drop mode
        # dropped them, so take what the engine emitted and the rule matched).
        rules = {rule.target: rule for rule in stack.router.rules}
        payloads["JobStatusFunction"] = [
            e for e in stack.router.received if rules["JobStatusFunction"].matches(e)
        ]
        # CancelJobsFunction's rule takes only executions that ended early; this one succeeded, and
        # its status change event has the same shape.
        payloads["CancelJobsFunction"] = [e for e in stack.router.received if e.get("source") == "aws.states"]
        # SweepJobsFunction: one tick of its hourly schedule.
        stack.fire_schedule("SweepJobsFunctionHourly")
        stack.router.flush()
        payloads["SweepJobsFunction"] = [
            e for e in stack.router.received if e.get("detail-type") == "Scheduled Event"
        ]
    return payloads


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_function_has_an_event_file(logical_id):
    assert event_file(logical_id).is_file(), f"add {event_file(logical_id).relative_to(tpl.REPO_ROOT)}"


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_event_file_has_the_shape_the_pipeline_sends(logical_id, real_payloads):
    sample = keys_tree(json.loads(event_file(logical_id).read_text()))
    received = real_payloads[logical_id]
    assert received, f"{logical_id} was never invoked in the reference run"
    # Optional parts (e.g. `failure`, `next`) come and go between invocations: compare with the
    # union of the keys actually sent.
    union: dict = {}
    for payload in received:
        _merge(union, keys_tree(payload))
    if logical_id == "ValidateSpecFunction":  # its `spec` is the user's raw input: any valid subset
        sample, union, received = (
            _without_spec(sample),
            _without_spec(union),
            [_without_spec(r) for r in received],
        )
    problems = [p for p in differences(union, sample) if "missing from the event file" not in p]
    problems += [
        p
        for p in differences(keys_tree(received[-1]), sample)
        if "missing from the event file" in p and not p.startswith(OPTIONAL_STATE)
    ]
    assert problems == []


def _without_spec(tree):
    return {k: v for k, v in tree.items() if k != "spec"}


def _merge(into: dict, tree) -> None:
    if not isinstance(tree, dict):
        return
    for key, sub in tree.items():
        if isinstance(sub, dict):
            if not isinstance(into.get(key), dict):
                into[key] = {}
            _merge(into[key], sub)
        else:
            into.setdefault(key, sub)


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_handler_accepts_its_event_file(logical_id):
    """The event parses; what happens next may need resources the sample names (a job, a report),
    so an AWS-side "not found" is fine, a rejected event is not."""
    event = json.loads(event_file(logical_id).read_text())
    with LocalStack() as stack:
        function = stack.functions.by_logical_id[logical_id]
        try:
            function(event)
        except ValidationError as exc:
            pytest.fail(f"{logical_id} rejects events/{event_file(logical_id).name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - any other outcome means the event was understood
            assert "validation error" not in str(exc).lower(), exc
