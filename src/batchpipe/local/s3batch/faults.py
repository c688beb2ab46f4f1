"""Fault injection (docs/LOCAL.md, "Fault injection"): chosen tasks fail with a chosen S3 answer before they run.

A task rule is ``{"keyRegex": "^bad/", "httpStatus": 503, "errorCode": "SlowDown", "times": 1}``;
``times`` omitted means always. The regex is searched in the decoded key; ``times`` is counted per
object (bucket and key) across jobs, so a rerun of the same object gets past a ``times: 1`` fault.

A job rule ``{"cancelJob": {"attempt": 1, "afterTasks": 5}}`` cancels the first job of that attempt
(the pipeline tags each job ``batchpipe:attempt``) as a person would, with UpdateJobStatus Cancelled
and a reason, once that many of its tasks have run. Each job rule fires once.

Three job rules give an attempt's jobs an answer AWS documents as possible, whatever the engine's
defaults (docs/LOCAL.md, "Unkind answers"): ``{"describeJobNotFound": {"attempt": 1, "times": 3}}``
(the job's first ``times`` DescribeJob calls answer NotFoundException), ``{"withholdTotal":
{"attempt": 1}}`` (DescribeJob omits TotalNumberOfTasks until the job runs) and ``{"expireSuspended":
{"attempt": 1}}`` (once Suspended, the job fails as S3 fails a job left Suspended for 30 days).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from batchpipe_core.jobs import TAG_ATTEMPT

from .tasks import Task, TaskOutcome

#: The reason a cancelJob rule gives, as a person would in the console or the CLI.
OPERATOR_CANCEL_REASON = "Cancelled by an operator (local fault rule cancelJob)"


class FaultRuleError(ValueError):
    """A fault rule the engine cannot apply; ``str()`` names the rule's index and its field."""

    def __init__(self, field: str, problem: str, index: int | None = None) -> None:
        self.field, self.problem, self.index = field, problem, index
        where = f"faults[{index}]" if index is not None else "fault rule"
        if field:
            where += f".{field}" if index is not None else f" {field}"
        super().__init__(f"{where}: {problem}")


def _short(value: Any) -> str:
    """A value as the user wrote it, cut short: errors never echo a huge field."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _regex(value: Any) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise PydanticCustomError("batchpipe", "must be a string, not {value}", {"value": _short(value)})
    try:
        return re.compile(value)
    except re.error as exc:
        raise PydanticCustomError(
            "batchpipe", "is not a regular expression: {error}", {"error": str(exc)}
        ) from None


# Fields are strict JSON types (``"3"`` is not 3, ``true`` is not 1); a field's description is the
# first half of the line its bad value gets ("<description>, not <value>").
Regex = Annotated[re.Pattern[str], BeforeValidator(_regex)]
_TEXT = "must be a string"


def _whole(least: int, default: int | None = None) -> Any:
    return Field(default, ge=least, description=f"must be a whole number >= {least}")


class _Rule(BaseModel):
    """One rule of a faults file, validated as the job spec is (strict types, unknown fields refused),
    with one line for the first problem: ``faults[<index>].<field>: <what is wrong>``."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
    )

    #: The rule's key in a faults file: ``{"<KIND>": {<fields>}}``; "" for a task rule, whose fields
    #: stand in the rule itself.
    KIND: ClassVar[str] = ""
    EXAMPLE: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Self:
        kind = cls.KIND
        body: Any = raw
        if kind:
            if set(raw) != {kind}:
                raise FaultRuleError(
                    sorted(set(raw) - {kind})[0], f"unknown field; this rule has only {kind}"
                )
            body = raw[kind]
            if not isinstance(body, Mapping):
                raise FaultRuleError(kind, f"must be an object like {cls.EXAMPLE}, not {_short(body)}")
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            raise cls._first_problem(exc) from None

    @classmethod
    def _first_problem(cls, exc: ValidationError) -> FaultRuleError:
        errors = exc.errors(include_url=False)
        # An unknown field first (a typo explains the rest), then the fields in their order.
        error = min(errors, key=lambda e: (e["type"] != "extra_forbidden", errors.index(e)))
        name = str(error["loc"][0]) if error["loc"] else ""
        field = ".".join(part for part in (cls.KIND, name) if part)
        names = [info.alias or key for key, info in cls.model_fields.items()]
        if error["type"] == "extra_forbidden":
            return FaultRuleError(
                field, f"unknown field; {cls.KIND or 'a task rule'} takes {', '.join(names)}"
            )
        if error["type"] == "missing":
            return FaultRuleError(field, "is required")
        if error["type"] == "batchpipe":
            return FaultRuleError(field, error["msg"])
        info = next(info for key, info in cls.model_fields.items() if (info.alias or key) == name)
        return FaultRuleError(field, f"{info.description}, not {_short(error['input'])}")


class FaultRule(_Rule):
    """A task rule: tasks whose decoded key the regex finds fail with this S3 answer before they run."""

    key_regex: Regex
    http_status: StrictInt = Field(ge=100, le=599, description="must be an HTTP status 100-599")
    error_code: StrictStr = Field(description=_TEXT)
    times: StrictInt | None = _whole(0)
    message: StrictStr | None = Field(None, description=_TEXT)


class CancelJobRule(_Rule):
    """``{"cancelJob": {"attempt": 1, "afterTasks": 5}}``: cancels that attempt's first job once that
    many of its tasks have run, as a person would."""

    KIND = "cancelJob"
    EXAMPLE = '{"attempt": 1, "afterTasks": 0}'

    attempt: StrictInt = _whole(1, 1)
    after_tasks: StrictInt = _whole(0, 0)

    def applies(self, tags: Iterable[Mapping[str, str]], tasks_run: int) -> bool:
        return _attempt_of(tags) == str(self.attempt) and tasks_run >= self.after_tasks


class LambdaTimeoutRule(_Rule):
    """``{"lambdaTimeout": {"state": "<Lambda Task state>", "times": 1}}``: the state's first ``times``
    Lambda invocations do their work and then fail as a timed-out invocation does. Applied by the
    stack to Step Functions, not by this engine (batchpipe.local.lambda_faults); the state name is
    checked against the state machine there."""

    KIND = "lambdaTimeout"
    EXAMPLE = '{"state": "CreateJobAndWait", "times": 1}'

    state: StrictStr = Field(min_length=1, description="must name a Task state")
    times: StrictInt = _whole(1, 1)


class JobAnswerRule(_Rule):
    """A rule that changes how S3 answers about the jobs of one attempt (not what their tasks do).

    Each kind is a subclass naming itself (``KIND``, its key in the faults file) and its fields.
    """

    EXAMPLE = '{"attempt": 1}'

    attempt: StrictInt = _whole(1, 1)

    def applies(self, tags: Iterable[Mapping[str, str]]) -> bool:
        return _attempt_of(tags) == str(self.attempt)


class DescribeJobNotFoundRule(JobAnswerRule):
    """The job's first ``times`` DescribeJob calls answer NotFoundException."""

    KIND = "describeJobNotFound"
    EXAMPLE = '{"attempt": 1, "times": 3}'

    times: StrictInt = _whole(1, 1)


class WithholdTotalRule(JobAnswerRule):
    KIND = "withholdTotal"


class ExpireSuspendedRule(JobAnswerRule):
    KIND = "expireSuspended"


def _attempt_of(tags: Iterable[Mapping[str, str]]) -> str | None:
    return next((t.get("Value") for t in tags if t.get("Key") == TAG_ATTEMPT), None)


Rule = FaultRule | CancelJobRule | LambdaTimeoutRule | JobAnswerRule

#: Rule kinds by the field that identifies them. A new kind is one entry here plus its class.
RULE_KINDS: dict[str, type[_Rule]] = {
    "keyRegex": FaultRule,
    **{rule.KIND: rule for rule in (CancelJobRule, LambdaTimeoutRule)},
    **{rule.KIND: rule for rule in (DescribeJobNotFoundRule, WithholdTotalRule, ExpireSuspendedRule)},
}


def parse_rules(raw: Any) -> list[Rule]:
    """A faults file's content: a JSON list of rules. Raises FaultRuleError naming the rule index."""
    if not isinstance(raw, list):
        raise FaultRuleError("", "the faults file must hold a JSON list of rules")
    rules = []
    for index, entry in enumerate(raw):
        kinds = [RULE_KINDS[name] for name in RULE_KINDS if isinstance(entry, Mapping) and name in entry]
        try:
            if len(kinds) != 1:
                raise FaultRuleError("", f"must be a JSON object with exactly one of {', '.join(RULE_KINDS)}")
            rules.append(kinds[0].from_dict(entry))
        except FaultRuleError as exc:
            raise FaultRuleError(exc.field, exc.problem, index) from None
    return rules


class FaultInjector:
    """Thread-safe: jobs run on the engine's worker while tests inspect counts."""

    def __init__(self, rules: Iterable[Rule | Mapping[str, Any]] = ()) -> None:
        rules = list(rules)
        given = [rule for rule in rules if not isinstance(rule, Rule)]
        parsed = iter(parse_rules(given))
        every = [rule if isinstance(rule, Rule) else next(parsed) for rule in rules]
        self.rules = [rule for rule in every if isinstance(rule, FaultRule)]
        self.job_rules = [rule for rule in every if isinstance(rule, CancelJobRule)]
        self.answer_rules = [rule for rule in every if isinstance(rule, JobAnswerRule)]
        self._fired: set[int] = set()  # job rules that have cancelled their job (each fires once)
        self._applied: Counter[tuple[int, str, str]] = Counter()
        self._lock = threading.Lock()

    def cancels(self, tags: Iterable[Mapping[str, str]], tasks_run: int) -> bool:
        """Whether a cancelJob rule stops the job with these tags now that ``tasks_run`` tasks ran."""
        tags = list(tags)
        with self._lock:
            for index, rule in enumerate(self.job_rules):
                if index not in self._fired and rule.applies(tags, tasks_run):
                    self._fired.add(index)
                    return True
        return False

    def answer(self, kind: type[JobAnswerRule], tags: Iterable[Mapping[str, str]]) -> JobAnswerRule | None:
        """The first rule of this kind for a job with these tags (None: the engine's default answer)."""
        tags = list(tags)
        return next((r for r in self.answer_rules if isinstance(r, kind) and r.applies(tags)), None)

    def outcome_for(self, task: Task) -> TaskOutcome | None:
        """The injected failure for this task, or None to run the operation."""
        for index, rule in enumerate(self.rules):
            if not rule.key_regex.search(task.object_key):
                continue
            counted = (index, task.bucket, task.object_key)
            with self._lock:
                if rule.times is not None and self._applied[counted] >= rule.times:
                    continue
                self._applied[counted] += 1
            message = rule.message or f"Injected fault: {rule.http_status} {rule.error_code}"
            return TaskOutcome.failure(rule.http_status, rule.error_code, message)
        return None

    def applied(self) -> int:
        """How many tasks have been failed by a rule so far."""
        with self._lock:
            return sum(self._applied.values())
