"""Emulated EventBridge: routes events to the Lambda targets of the rules declared in template.yaml.

Two sources put events here: the S3 Batch engine (job status changes, which reach AWS's bus through
CloudTrail) and the Step Functions interpreter (execution status changes, see
``execution_status_change`` and ``LocalStack``).

On AWS, S3 Batch job status events reach EventBridge only through CloudTrail, best effort. The
pipeline must therefore finish whatever happens to them, so delivery can be told to misbehave:

- ``normal``: each event once, asynchronously, in order;
- ``drop``: none at all (the state machine's DescribeJob fallback must finish the run);
- ``duplicate``: each event twice;
- ``shuffle``: events are held back and delivered in random order, late.

Matching uses moto's own EventBridge pattern matcher against the rule's real pattern.

EventBridge invokes a Lambda target asynchronously: once Lambda has queued the event, EventBridge
counts it delivered, and a function error is Lambda's to handle (EventBridge user guide, "Event retry
policy and using dead-letter queues": the rule's RetryPolicy and DeadLetterConfig cover only events
EventBridge could not hand over). Lambda retries a failed asynchronous invocation
``MaximumRetryAttempts`` times (0-2, default 2), then sends an invocation record to the function's
on-failure destination, or drops the event when it has none (Lambda developer guide, "Configuring
error handling settings for Lambda asynchronous invocations" and "Capturing records of Lambda
asynchronous invocations"). The router does the same: ``Rule.max_retries`` is the target function's
``MaximumRetryAttempts`` and ``on_failure`` receives the record of an invocation that failed for good.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from moto.events.models import EventPattern, EventPatternParser

from batchpipe_core.identity import epoch_millis

LOG = logging.getLogger(__name__)

DELIVERY_MODES = ("normal", "drop", "duplicate", "shuffle")


# Lambda's default for an asynchronous invocation without EventInvokeConfig: two retries.
LAMBDA_ASYNC_RETRIES = 2


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: dict | None  # None: a schedule, which no event matches (fired by EventRouter.fire)
    target: str  # function logical ID
    max_retries: int = LAMBDA_ASYNC_RETRIES
    on_failure: str | None = None  # the target's on-failure destination (ARN), if it has one

    def matches(self, event: dict) -> bool:
        if self.pattern is None:
            return False
        raw = json.dumps(self.pattern)
        return EventPattern(raw, EventPatternParser(raw).parse()).matches_event(event)


@dataclass
class Delivery:
    rule: str
    target: str
    event_id: str
    status: str
    error: str | None = None


def invocation_record(
    *, function_arn: str, event: dict, error: BaseException, invocations: int, now: datetime | None = None
) -> dict:
    """The record Lambda sends to an on-failure destination after an asynchronous invocation failed
    every try (Lambda developer guide, "Capturing records of Lambda asynchronous invocations"): the
    request (the event itself), the condition (``RetriesExhausted``), how often it was invoked, and
    the function's error response."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return {
        "version": "1.0",
        "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"{function_arn}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": invocations,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": str(error), "errorType": type(error).__name__},
    }


def eventbridge_event(
    *,
    source: str,
    detail_type: str,
    account_id: str,
    region: str,
    time: str,
    resources: list[str],
    detail: dict,
) -> dict:
    """The envelope every event on an EventBridge bus has (EventBridge user guide, "Amazon EventBridge
    events"), with a fresh ``id``."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": account_id,
        "time": time,
        "region": region,
        "resources": resources,
        "detail": detail,
    }


def scheduled_event(*, account_id: str, region: str, rule_arn: str, now: datetime | None = None) -> dict:
    """The event an EventBridge schedule rule sends its target (EventBridge user guide, "Creating a
    rule that runs on a schedule"): source ``aws.events``, detail-type ``Scheduled Event``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return eventbridge_event(
        source="aws.events",
        detail_type="Scheduled Event",
        account_id=account_id,
        region=region,
        time=moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        resources=[rule_arn],
        detail={},
    )


def execution_status_change(
    *,
    account_id: str,
    region: str,
    execution_arn: str,
    state_machine_arn: str,
    name: str,
    status: str,
    start: datetime,
    stop: datetime | None,
    input_text: str | None,
    output_text: str | None,
    error: str | None,
    cause: str | None,
) -> dict:
    """The "Step Functions Execution Status Change" event Step Functions sends to the default bus
    itself for standard workflows (Step Functions developer guide, "Automating Step Functions event
    delivery with EventBridge"): source ``aws.states``, the execution ARN in ``resources``, and in
    ``detail`` the execution's ARN, state machine ARN, name, status, start/stop dates in epoch
    milliseconds, input and output as JSON text, error and cause."""

    def millis(moment: datetime | None) -> int | None:
        return None if moment is None else epoch_millis(moment)

    return eventbridge_event(
        source="aws.states",
        detail_type="Step Functions Execution Status Change",
        account_id=account_id,
        region=region,
        time=(stop or start).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        resources=[execution_arn],
        detail={
            "executionArn": execution_arn,
            "stateMachineArn": state_machine_arn,
            "name": name,
            "status": status,
            "startDate": millis(start),
            "stopDate": millis(stop),
            "input": input_text,
            "output": output_text,
            "inputDetails": {"included": True},
            "outputDetails": {"included": True} if output_text is not None else None,
            "error": error,
            "cause": cause,
        },
    )


class EventRouter:
    """The sink the S3 Batch engine emits to; delivers on its own thread, as EventBridge is async."""

    def __init__(
        self,
        rules: list[Rule],
        invoke: Callable[[str, dict], object],
        *,
        mode: str = "normal",
        seed: int = 0,
        max_delay_seconds: float = 1.0,
        on_failure: Callable[[Rule, dict, BaseException, int], None] | None = None,
    ) -> None:
        if mode not in DELIVERY_MODES:
            raise ValueError(f"event delivery mode must be one of {DELIVERY_MODES}, not {mode!r}")
        self.rules = rules
        self.mode = mode
        self.max_delay_seconds = max_delay_seconds
        self._invoke = invoke
        self._on_failure = on_failure
        self._random = random.Random(seed)
        self._queue: queue.Queue = queue.Queue()
        self._timers: list[threading.Timer] = []
        self._lock = threading.Lock()
        self.received: list[dict] = []
        self.deliveries: list[Delivery] = []
        self._worker = threading.Thread(target=self._run, name="eventbridge", daemon=True)
        self._worker.start()

    def put_event(self, event: dict) -> None:
        with self._lock:
            self.received.append(event)
        for rule in self.rules:
            if not rule.matches(event):
                continue
            if self.mode == "drop":
                self.deliveries.append(Delivery(rule.name, rule.target, event["id"], "dropped"))
            elif self.mode == "duplicate":
                self._queue.put((rule, event))
                self._queue.put((rule, event))
            elif self.mode == "shuffle":
                # A random delay per event reorders events that are close together and makes some late.
                timer = threading.Timer(
                    self._random.uniform(0, self.max_delay_seconds), self._queue.put, args=((rule, event),)
                )
                timer.daemon = True
                with self._lock:
                    self._timers.append(timer)
                timer.start()
            else:
                self._queue.put((rule, event))

    __call__ = put_event

    def fire(self, rule_name: str, event: dict) -> None:
        """A schedule rule's tick: its target is invoked as a pattern rule's is (asynchronously)."""
        (rule,) = [rule for rule in self.rules if rule.name == rule_name]
        with self._lock:
            self.received.append(event)
        self._queue.put((rule, event))

    def flush(self, timeout: float = 30.0) -> None:
        """Waits until every event received so far has been delivered, dropped or given up on."""
        with self._lock:
            timers = list(self._timers)
        for timer in timers:
            timer.join(timeout)
        done = threading.Event()
        self._queue.put(("__flush__", done))
        done.wait(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=10)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            rule, event = item
            if rule == "__flush__":
                event.set()  # type: ignore[attr-defined]
                continue
            self._deliver(rule, event)

    def _deliver(self, rule: Rule, event: dict) -> None:
        # Lambda retries a failing asynchronous invocation, then hands its record to the on-failure
        # destination (or drops it without one).
        failure: BaseException | None = None
        for attempt in range(rule.max_retries + 1):
            try:
                self._invoke(rule.target, event)
            except Exception as exc:  # noqa: BLE001 - a target's failure must not stop the bus
                LOG.warning(
                    "target %s failed on event %s (try %d): %s",
                    rule.target,
                    event.get("id"),
                    attempt + 1,
                    exc,
                )
                failure = exc
                continue
            self.deliveries.append(Delivery(rule.name, rule.target, event["id"], "delivered"))
            return
        assert failure is not None
        error = f"{type(failure).__name__}: {failure}"
        if rule.on_failure is not None and self._on_failure is not None:
            try:
                self._on_failure(rule, event, failure, rule.max_retries + 1)
            except Exception as exc:  # noqa: BLE001 - Lambda counts DestinationDeliveryFailures instead
                LOG.warning("on-failure destination of %s refused the record: %s", rule.target, exc)
            else:
                self.deliveries.append(
                    Delivery(rule.name, rule.target, event["id"], "sent-to-destination", error)
                )
                return
        self.deliveries.append(Delivery(rule.name, rule.target, event["id"], "failed", error))
