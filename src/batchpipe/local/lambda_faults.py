"""Lambda invocations that die after doing their work: the ``lambdaTimeout`` fault rule.

A Lambda function can run out of time after every side effect it had to make and before its answer
reaches Step Functions; Step Functions then sees the invocation fail and the state's Retry runs it
again. The Step Functions developer guide ("Handle Lambda service exceptions") says unhandled Lambda
errors, "out-of-memory errors and function timeouts" included, are reported as ``Lambda.Unknown``:
that is the error a rule gives, so the state machine must retry exactly what AWS would report.

The rule ``{"lambdaTimeout": {"state": "CreateJobAndWait", "times": 1}}`` lets the state's first
``times`` Lambda invocations run to the end (every write, every API call) and then discards their
answer for that error. It names a Task state of the state machine whose resource is Lambda's invoke
integration, inside a Map's processor as well; ``times`` counts across the whole run (a Map's children
share it).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from unittest import mock

from . import template as tpl
from .s3batch.faults import FaultRuleError, LambdaTimeoutRule

#: The error Step Functions reports for a Lambda function that timed out (see the module docstring).
LAMBDA_TIMEOUT_ERROR = "Lambda.Unknown"

_LAMBDA_INVOKE = ":states:::lambda:invoke"


def all_states(definition: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state of a definition by name, those of Map processors and Parallel branches included
    (state names are unique across a whole state machine)."""
    found: dict[str, dict[str, Any]] = {}

    def walk(states: Mapping[str, Any]) -> None:
        for name, state in states.items():
            found[name] = state
            for processor in (state.get("ItemProcessor"), state.get("Iterator")):
                if processor:
                    walk(processor.get("States", {}))
            for branch in state.get("Branches", []):
                walk(branch.get("States", {}))

    walk(definition.get("States", {}))
    return found


def lambda_task_states(definition: Mapping[str, Any]) -> list[str]:
    """The Task states whose resource is Lambda's invoke integration, in definition order."""
    return [
        name
        for name, state in all_states(definition).items()
        if state.get("Type") == "Task" and _LAMBDA_INVOKE in str(state.get("Resource", ""))
    ]


def check_states(rules: Iterable[Any], states: Iterable[str]) -> None:
    """Refuses a lambdaTimeout rule that names no Lambda Task state, naming the rule's index."""
    known = list(states)
    for index, rule in enumerate(rules):
        if isinstance(rule, LambdaTimeoutRule) and rule.state not in known:
            raise FaultRuleError(
                "lambdaTimeout.state",
                f"{rule.state[:60]!r} is not a Task state that invokes a Lambda function; one of {', '.join(known)}",
                index,
            )


def shipped_definition() -> dict[str, Any]:
    """The state machine definition template.yaml deploys (its placeholders left in)."""
    ((_, machine),) = tpl.resources_of_type(tpl.load_template(), "AWS::Serverless::StateMachine").items()
    path = tpl.REPO_ROOT / machine["Properties"]["DefinitionUri"]
    return json.loads(path.read_text(encoding="utf-8"))


def shipped_lambda_task_states() -> list[str]:
    return lambda_task_states(shipped_definition())


class LambdaTimeouts:
    """The run's lambdaTimeout rules, applied to moto's Step Functions interpreter; thread-safe
    (a Distributed Map's children invoke concurrently)."""

    def __init__(self, rules: Iterable[Any], timeout_of: Callable[[str], int]) -> None:
        self.left: dict[str, int] = {}
        for rule in rules:
            self.left[rule.state] = self.left.get(rule.state, 0) + rule.times
        self._timeout_of = timeout_of
        self._lock = threading.Lock()
        #: Per state: invocations that ran, and those whose answer was replaced by a timeout.
        self.invoked: Counter[str] = Counter()
        self.timed_out: Counter[str] = Counter()

    def _invoked(self, state: str) -> None:
        with self._lock:
            self.invoked[state] += 1

    def _fires(self, state: str) -> bool:
        with self._lock:
            if self.left.get(state, 0) <= 0:
                return False
            self.left[state] -= 1
            self.timed_out[state] += 1
            return True

    def payload(self, function_name: str) -> str:
        """What Step Functions records as the cause: Lambda's message for a timed-out invocation."""
        seconds = self._timeout_of(function_name)
        return json.dumps(
            {
                "errorType": LAMBDA_TIMEOUT_ERROR,
                "errorMessage": f"RequestId: {uuid.uuid4()} Error: Task timed out after {seconds:.2f} seconds",
            },
            separators=(",", ":"),
        )

    @contextmanager
    def installed(self) -> Iterator[LambdaTimeouts]:
        from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_lambda import (
            StateTaskServiceLambda,
        )

        original = StateTaskServiceLambda._eval_service_task
        timeouts = self

        def eval_service_task(
            task: Any,
            env: Any,
            resource_runtime_part: Any,
            normalised_parameters: dict,
            state_credentials: Any,
        ) -> None:
            # The invocation runs whole; an invocation that failed by itself is not a timeout.
            timeouts._invoked(task.name)
            original(task, env, resource_runtime_part, normalised_parameters, state_credentials)
            if timeouts._fires(task.name):
                env.stack.pop()  # its answer never reaches Step Functions
                raise lambda_eval_utils.LambdaFunctionErrorException(
                    "Unhandled", timeouts.payload(str(normalised_parameters.get("FunctionName", "")))
                )

        with mock.patch.object(StateTaskServiceLambda, "_eval_service_task", eval_service_task):
            yield self
