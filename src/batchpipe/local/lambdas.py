"""Lambda functions of template.yaml, run in this process with Lambda's invocation and error contract.

moto can create functions but runs them only in Docker; Task states reach our handlers instead by
replacing ``moto.awslambda.models.LambdaFunction.invoke``. An exception becomes the payload Lambda
returns for an unhandled error (``errorType`` = the exception's class name), which the Step Functions
interpreter turns into the state's error name, so Retry/Catch behave as on AWS.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

from .template import REPO_ROOT

if TYPE_CHECKING:
    from moto.awslambda.models import LambdaFunction


@dataclass
class LambdaContext:
    """The attributes Powertools and our handlers read from Lambda's context object."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 512
    timeout_seconds: int = 60
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class InProcessFunction:
    logical_id: str
    name: str
    arn: str
    handler_path: str  # e.g. "validate_spec.app.handler"
    code_uri: Path
    memory_mb: int = 512
    timeout_seconds: int = 60
    invocations: int = 0
    # The latest events, for tests that compare events/ with what a run really sends (a Distributed
    # Map's children invoke functions outside the parent execution's history).
    received: deque = field(default_factory=lambda: deque(maxlen=20))
    # What the latest invocation returned (an asynchronous invocation's answer goes nowhere on AWS;
    # tests read it here).
    last_result: Any = None

    def load(self) -> Callable[[Any, Any], Any]:
        root = str(self.code_uri)
        if root not in sys.path:
            sys.path.insert(0, root)
        module_name, _, attribute = self.handler_path.rpartition(".")
        return getattr(importlib.import_module(module_name), attribute)

    def __call__(self, event: Any) -> Any:
        self.invocations += 1
        self.received.append(event)
        context = LambdaContext(self.name, self.arn, self.memory_mb, self.timeout_seconds)
        # A real invocation gets the event as JSON, so it must survive a round trip.
        self.last_result = self.load()(json.loads(json.dumps(event)), context)
        return self.last_result


def error_payload(exc: BaseException) -> dict:
    """The response body Lambda's Python runtime returns for an unhandled exception."""
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": str(uuid.uuid4()),
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


class FunctionRegistry:
    """Function name -> in-process function, consulted by the patched moto Lambda invoke."""

    def __init__(self) -> None:
        self.by_name: dict[str, InProcessFunction] = {}
        self.by_logical_id: dict[str, InProcessFunction] = {}
        self.errors: list[tuple[str, dict]] = []
        self._lock = threading.Lock()

    def add(self, function: InProcessFunction) -> None:
        self.by_name[function.name] = function
        self.by_logical_id[function.logical_id] = function

    def resolve(self, name_or_arn: str) -> InProcessFunction:
        name = name_or_arn.split(":function:")[-1].split(":")[0]
        if name in self.by_name:
            return self.by_name[name]
        if name in self.by_logical_id:
            return self.by_logical_id[name]
        raise KeyError(f"no in-process function named {name_or_arn!r}")

    def invoke(self, name_or_arn: str, event: Any) -> Any:
        """Direct invocation (EventBridge targets, Batch LambdaInvoke): raises what the handler raises."""
        return self.resolve(name_or_arn)(event)

    @contextmanager
    def patched_moto(self):
        # Imported here: moto's Lambda (~0.5 s) is not needed by a preview, which calls the handlers itself.
        from moto.awslambda.models import LambdaFunction

        registry = self

        def invoke(fn: LambdaFunction, body: str, request_headers: Any, response_headers: Any) -> bytes:
            target = registry.by_name.get(fn.function_name)
            if target is None:
                raise KeyError(f"function {fn.function_name} is not in template.yaml")
            event = json.loads(body) if body else {}
            try:
                result = target(event)
            except Exception as exc:  # noqa: BLE001 - Lambda's contract: any exception becomes an error payload
                payload = error_payload(exc)
                with registry._lock:
                    registry.errors.append((target.logical_id, payload))
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps(payload).encode()
            return json.dumps(result).encode()

        with mock.patch.object(LambdaFunction, "invoke", invoke):
            yield


def code_root(code_uri: str) -> Path:
    return (REPO_ROOT / code_uri).resolve()
