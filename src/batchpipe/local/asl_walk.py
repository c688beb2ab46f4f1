"""A small interpreter of the Amazon States Language (JSONPath), for the states a dry run passes through.

`batchpipe preview` runs the pipeline's own definition from ValidateSpec to Summarize without moto's
Step Functions (whose import and parse of the definition cost seconds). What it evaluates is only what
those states use: Task (the caller runs the resource), Pass, Choice, Wait, Succeed and Fail; InputPath,
Parameters, ResultSelector, ResultPath and OutputPath over dotted paths (``$.a.b``, ``$$.Execution.Id``);
the intrinsic functions States.Format, States.MathAdd, States.JsonToString and States.Hash; Retry and
Catch. Anything else is a :class:`WalkUnsupported` naming the state and what it uses, never a guess: a
change to the definition that leaves this subset fails loudly (tests/local/test_preview_agrees.py).

The rules followed are the Step Functions developer guide's ("Processing input and output", "Choice
workflow state", "Intrinsic functions", "Handling errors"): ResultPath writes into the state's raw
input, a path that selects nothing in Parameters, ResultSelector or a Choice rule fails the execution
with States.Runtime, which no ``States.ALL`` retrier or catcher handles, and a Choice without a match
and without Default fails with States.NoChoiceMatched. Wait states and Retry intervals take no time.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

RUNTIME = "States.Runtime"
# Step Functions quota: 25,000 events in a Standard execution's history; a loop that never ends
# stops there instead of spinning.
HISTORY_LIMIT = 25_000

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_STATE_FIELDS = {
    "Task": {"Resource", "Parameters", "ResultSelector", "ResultPath", "Retry", "Catch"},
    "Pass": {"Parameters", "Result", "ResultPath"},
    "Choice": {"Choices", "Default"},
    "Wait": {"Seconds", "SecondsPath"},
    "Succeed": set(),
    "Fail": {"Error", "Cause"},
}
_COMMON_FIELDS = {"Type", "Comment", "Next", "End", "InputPath", "OutputPath"}


class WalkUnsupported(RuntimeError):
    """The definition uses something this interpreter does not evaluate."""


class StatesError(Exception):
    """An error as Step Functions names it (``error``) with its cause, raised by a state or a task."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error, self.cause = error, cause


@dataclass
class Walked:
    """How the walk ended: ``status`` SUCCEEDED (``output``) or FAILED (``error``, ``cause``), and a
    history with the events :class:`batchpipe.local.stack.Execution` reads (StateEntered/Exited)."""

    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None
    history: list[dict] = field(default_factory=list)


Task = Callable[[str, Any], Any]
"""(resource ARN, the state's effective parameters) -> the task's result, or raises StatesError."""


class Walk:
    def __init__(self, definition: dict, context: dict, task: Task) -> None:
        self.states: dict[str, dict] = definition["States"]
        self.start_at: str = definition["StartAt"]
        self.context = context
        self.task = task

    def run(self, document: Any) -> Walked:
        history: list[dict] = []
        name: str | None = self.start_at
        try:
            while name is not None:
                if len(history) >= HISTORY_LIMIT:
                    raise StatesError(RUNTIME, f"the walk passed {HISTORY_LIMIT} history events")
                state = self._state(name)
                kind = state["Type"]
                history.append(_event(f"{kind}StateEntered", "stateEntered", name, "input", document))
                self.context["State"] = {"Name": name, "EnteredTime": now_iso(), "RetryCount": 0}
                document, name = getattr(self, f"_{kind.lower()}")(state, document)
                history.append(
                    _event(f"{kind}StateExited", "stateExited", state["_name"], "output", document)
                )
        except StatesError as failure:
            return Walked("FAILED", error=failure.error, cause=failure.cause, history=history)
        return Walked("SUCCEEDED", output=document, history=history)

    def _state(self, name: str) -> dict:
        if name not in self.states:
            raise WalkUnsupported(f"no state {name!r} at the top level of the definition")
        state = self.states[name]
        kind = state.get("Type")
        if kind not in _STATE_FIELDS:
            raise WalkUnsupported(f"state {name}: a {kind} state")
        extra = set(state) - _STATE_FIELDS[kind] - _COMMON_FIELDS
        if extra:
            raise WalkUnsupported(f"state {name}: {', '.join(sorted(extra))}")
        return {**state, "_name": name}

    # ------------------------------------------------------------------ states
    def _task(self, state: dict, raw: Any) -> tuple[Any, str | None]:
        effective = self._select(raw, state.get("InputPath", "$"), state, "InputPath")
        parameters = self._payload(state, "Parameters", effective) if "Parameters" in state else effective
        tries: dict[int, int] = {}
        while True:
            try:
                result = self.task(state["Resource"], parameters)
                break
            except StatesError as failure:
                retrier = _matching(state.get("Retry", []), failure.error)
                if retrier is not None and tries.get(retrier, 0) < state["Retry"][retrier].get(
                    "MaxAttempts", 3
                ):
                    tries[retrier] = tries.get(retrier, 0) + 1
                    self.context["State"]["RetryCount"] = sum(tries.values())
                    continue
                catcher = _matching(state.get("Catch", []), failure.error)
                if catcher is None:
                    raise
                caught = state["Catch"][catcher]
                error = {"Error": failure.error, "Cause": failure.cause}
                return self._put(raw, caught.get("ResultPath", "$"), error, state), caught["Next"]
        if "ResultSelector" in state:
            result = self._payload(state, "ResultSelector", result)
        return self._finish(state, self._put(raw, state.get("ResultPath", "$"), result, state))

    def _pass(self, state: dict, raw: Any) -> tuple[Any, str | None]:
        effective = self._select(raw, state.get("InputPath", "$"), state, "InputPath")
        if "Parameters" in state:
            result = self._payload(state, "Parameters", effective)
        else:
            result = copy.deepcopy(state.get("Result", effective))
        return self._finish(state, self._put(raw, state.get("ResultPath", "$"), result, state))

    def _choice(self, state: dict, raw: Any) -> tuple[Any, str | None]:
        effective = self._select(raw, state.get("InputPath", "$"), state, "InputPath")
        output = self._select(effective, state.get("OutputPath", "$"), state, "OutputPath")
        for rule in state["Choices"]:
            if self._rule(rule, effective, state):
                return output, rule["Next"]
        if "Default" not in state:
            raise StatesError("States.NoChoiceMatched", f"no Choice rule of {state['_name']} matched")
        return output, state["Default"]

    def _wait(self, state: dict, raw: Any) -> tuple[Any, str | None]:
        effective = self._select(raw, state.get("InputPath", "$"), state, "InputPath")
        seconds = (
            state["Seconds"]
            if "Seconds" in state
            else self._select(effective, state["SecondsPath"], state, "SecondsPath")
        )
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            raise StatesError(
                RUNTIME, f"{state['_name']}: SecondsPath selects {seconds!r}, not whole seconds"
            )
        # No time passes: a preview compresses every wait to nothing, as LocalStack(time_scale=0) does.
        return self._finish(state, effective)

    def _succeed(self, state: dict, raw: Any) -> tuple[Any, str | None]:
        effective = self._select(raw, state.get("InputPath", "$"), state, "InputPath")
        return self._select(effective, state.get("OutputPath", "$"), state, "OutputPath"), None

    def _fail(self, state: dict, raw: Any) -> tuple[Any, str | None]:
        raise StatesError(state.get("Error", "States.Fail"), state.get("Cause", ""))

    def _finish(self, state: dict, document: Any) -> tuple[Any, str | None]:
        output = self._select(document, state.get("OutputPath", "$"), state, "OutputPath")
        return output, None if state.get("End") else state["Next"]

    # ------------------------------------------------------------------ Choice rules
    def _rule(self, rule: dict, document: Any, state: dict) -> bool:
        if "And" in rule:
            return all(self._rule(r, document, state) for r in rule["And"])
        if "Or" in rule:
            return any(self._rule(r, document, state) for r in rule["Or"])
        if "Not" in rule:
            return not self._rule(rule["Not"], document, state)
        (operator,) = [k for k in rule if k not in ("Variable", "Next")]
        operand = rule[operator]
        if operator == "IsPresent":
            return _exists(document, rule["Variable"]) == operand
        value = self._select(document, rule["Variable"], state, "Variable")
        if operator.endswith("Path"):
            operator = operator.removesuffix("Path")
            operand = self._select(document, operand, state, operator + "Path")
        test = _COMPARISONS.get(operator)
        if test is None:
            raise WalkUnsupported(f"state {state['_name']}: the Choice operator {operator}")
        return test(value, operand)

    # ------------------------------------------------------------------ paths and payload templates
    def _select(self, document: Any, path: str | None, state: dict, what: str) -> Any:
        if path is None:
            return {}  # InputPath/OutputPath null: an empty object
        root, rest = (self.context, path[1:]) if path.startswith("$$") else (document, path)
        try:
            return _read(root, rest)
        except KeyError:
            raise StatesError(
                RUNTIME, f"{state['_name']}: the JSONPath {path!r} of {what} selects nothing in the input"
            ) from None
        except ValueError as exc:
            raise WalkUnsupported(f"state {state['_name']}: {exc}") from None

    def _put(self, raw: Any, path: str | None, value: Any, state: dict) -> Any:
        if path is None:
            return raw  # ResultPath null: the input goes on unchanged
        if path == "$":
            return value
        names = _names(path, state)
        document = copy.deepcopy(raw)
        if not isinstance(document, dict):
            raise StatesError(RUNTIME, f"{state['_name']}: ResultPath {path} into a non-object input")
        node = document
        for name in names[:-1]:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise StatesError(RUNTIME, f"{state['_name']}: ResultPath {path} crosses a non-object")
        node[names[-1]] = value
        return document

    def _payload(self, state: dict, field_name: str, document: Any) -> Any:
        def build(template: Any) -> Any:
            if isinstance(template, list):
                return [build(item) for item in template]
            if not isinstance(template, dict):
                return template
            built = {}
            for key, value in template.items():
                if not key.endswith(".$"):
                    built[key] = build(value)
                elif isinstance(value, str) and value.startswith("States."):
                    built[key[:-2]] = self._intrinsic(value, document, state)
                elif isinstance(value, str) and value.startswith("$"):
                    built[key[:-2]] = self._select(document, value, state, f"{field_name} {key}")
                else:
                    raise WalkUnsupported(f"state {state['_name']}: {field_name} {key} = {value!r}")
            return built

        return build(state[field_name])

    # ------------------------------------------------------------------ intrinsic functions
    def _intrinsic(self, text: str, document: Any, state: dict) -> Any:
        match = re.fullmatch(r"(States\.[A-Za-z]+)\((.*)\)", text.strip(), re.DOTALL)
        if match is None:
            raise WalkUnsupported(f"state {state['_name']}: the intrinsic {text!r}")
        name, arguments = match.groups()
        args = [self._argument(a, document, state) for a in _split_arguments(arguments, state)]
        function = _INTRINSICS.get(name)
        if function is None:
            raise WalkUnsupported(f"state {state['_name']}: the intrinsic function {name}")
        try:
            return function(*args)
        except (TypeError, ValueError) as exc:
            raise StatesError(RUNTIME, f"{state['_name']}: {name}: {exc}") from None

    def _argument(self, text: str, document: Any, state: dict) -> Any:
        if text.startswith("'") and text.endswith("'") and len(text) >= 2:
            if "\\" in text:
                raise WalkUnsupported(f"state {state['_name']}: an escaped intrinsic argument {text}")
            return text[1:-1]
        if text.startswith("$"):
            return self._select(document, text, state, "an intrinsic argument")
        if text.startswith("States."):
            return self._intrinsic(text, document, state)
        try:
            return json.loads(text)  # a number, true, false or null
        except ValueError:
            raise WalkUnsupported(f"state {state['_name']}: the intrinsic argument {text}") from None


def _split_arguments(text: str, state: dict) -> list[str]:
    """The top-level comma-separated arguments (quotes and nested calls kept whole)."""
    arguments, current, depth, quoted = [], "", 0, False
    for char in text:
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
        if char == "," and not quoted and depth == 0:
            arguments.append(current.strip())
            current = ""
        else:
            current += char
    if quoted or depth:
        raise WalkUnsupported(f"state {state['_name']}: unbalanced intrinsic arguments {text!r}")
    return [*arguments, current.strip()] if current.strip() or arguments else []


def _names(path: str, state: dict) -> list[str]:
    if not path.startswith("$."):
        raise WalkUnsupported(f"state {state['_name']}: the path {path!r}")
    names = path[2:].split(".")
    if not all(_NAME.match(name) for name in names):
        raise WalkUnsupported(f"state {state['_name']}: the path {path!r} (dotted names only)")
    return names


def _read(root: Any, path: str) -> Any:
    """``$`` or ``$.a.b``: KeyError when a name is missing, ValueError for a path beyond dotted names."""
    if path == "$":
        return root
    if not path.startswith("$.") or not all(_NAME.match(n) for n in path[2:].split(".")):
        raise ValueError(f"the path {path!r} (dotted names only)")
    node = root
    for name in path[2:].split("."):
        if not isinstance(node, dict) or name not in node:
            raise KeyError(name)
        node = node[name]
    return node


def _exists(document: Any, path: str) -> bool:
    try:
        _read(document, path)
    except KeyError:
        return False
    return True


def _matching(handlers: list[dict], error: str) -> int | None:
    """The index of the first retrier or catcher whose ErrorEquals names ``error``. States.ALL
    matches any error but States.Runtime; States.TaskFailed any but States.Timeout and States.Runtime."""
    for index, handler in enumerate(handlers):
        for name in handler["ErrorEquals"]:
            if name == error or (
                error != RUNTIME
                and (name == "States.ALL" or (name == "States.TaskFailed" and error != "States.Timeout"))
            ):
                return index
    return None


def now_iso() -> str:
    """A timestamp as Step Functions writes one in the context object: ``2024-01-02T03:04:05.678Z``."""
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _event(kind: str, details: str, name: str, key: str, document: Any) -> dict:
    return {"type": kind, f"{details}EventDetails": {"name": name, key: json.dumps(document)}}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _hash(data: Any, algorithm: str) -> str:
    algorithms = {
        "MD5": "md5",
        "SHA-1": "sha1",
        "SHA-256": "sha256",
        "SHA-384": "sha384",
        "SHA-512": "sha512",
    }
    if algorithm not in algorithms:
        raise ValueError(f"the hashing algorithm {algorithm!r} is not one of {', '.join(algorithms)}")
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return hashlib.new(algorithms[algorithm], text.encode("utf-8")).hexdigest()


def _format(template: str, *values: Any) -> str:
    pieces = template.split("{}")
    if len(pieces) - 1 != len(values):
        raise ValueError(f"{len(pieces) - 1} placeholders for {len(values)} values")
    shown = [v if isinstance(v, str) else json.dumps(v) for v in values]
    return "".join(p + s for p, s in zip(pieces, [*shown, ""], strict=True))


def _math_add(a: Any, b: Any) -> int:
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (a, b)):
        raise ValueError(f"States.MathAdd adds integers, not {a!r} and {b!r}")
    return a + b


_INTRINSICS: dict[str, Callable[..., Any]] = {
    "States.Format": _format,
    "States.MathAdd": _math_add,
    "States.JsonToString": lambda value: json.dumps(value, separators=(",", ":")),
    "States.Hash": _hash,
}

_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "StringEquals": lambda v, o: isinstance(v, str) and v == o,
    "BooleanEquals": lambda v, o: isinstance(v, bool) and v == o,
    "NumericEquals": lambda v, o: _number(v) and v == o,
    "NumericLessThan": lambda v, o: _number(v) and v < o,
    "NumericLessThanEquals": lambda v, o: _number(v) and v <= o,
    "NumericGreaterThan": lambda v, o: _number(v) and v > o,
    "NumericGreaterThanEquals": lambda v, o: _number(v) and v >= o,
    "IsNull": lambda v, o: (v is None) == o,
    "IsString": lambda v, o: isinstance(v, str) == o,
    "IsBoolean": lambda v, o: isinstance(v, bool) == o,
    "IsNumeric": lambda v, o: _number(v) == o,
}
