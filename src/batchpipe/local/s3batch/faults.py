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
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class FaultRule:
    key_regex: re.Pattern[str]
    http_status: int
    error_code: str
    times: int | None = None
    message: str | None = None

    FIELDS = ("keyRegex", "httpStatus", "errorCode", "times", "message")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FaultRule:
        unknown = sorted(set(raw) - set(cls.FIELDS))
        if unknown:
            raise FaultRuleError(unknown[0], f"unknown field; a task rule takes {', '.join(cls.FIELDS)}")
        for name in ("keyRegex", "httpStatus", "errorCode"):
            if name not in raw:
                raise FaultRuleError(name, "is required")
        pattern = _text(raw, "keyRegex")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise FaultRuleError("keyRegex", f"is not a regular expression: {exc}") from None
        status = raw["httpStatus"]
        if not _whole(status) or not 100 <= status <= 599:
            raise FaultRuleError("httpStatus", f"must be an HTTP status 100-599, not {_short(status)}")
        times = raw.get("times")
        if times is not None and (not _whole(times) or times < 0):
            raise FaultRuleError("times", f"must be a whole number >= 0, not {_short(times)}")
        message = _text(raw, "message") if raw.get("message") is not None else None
        return cls(compiled, status, _text(raw, "errorCode"), times, message)


@dataclass(frozen=True)
class CancelJobRule:
    attempt: int
    after_tasks: int

    FIELDS = ("attempt", "afterTasks")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CancelJobRule:
        if set(raw) != {"cancelJob"}:
            raise FaultRuleError(
                sorted(set(raw) - {"cancelJob"})[0], "unknown field; a job rule has only cancelJob"
            )
        body = raw["cancelJob"]
        if not isinstance(body, Mapping):
            raise FaultRuleError(
                "cancelJob", f'must be an object like {{"attempt": 1, "afterTasks": 0}}, not {_short(body)}'
            )
        unknown = sorted(set(body) - set(cls.FIELDS))
        if unknown:
            raise FaultRuleError(
                f"cancelJob.{unknown[0]}", f"unknown field; cancelJob takes {', '.join(cls.FIELDS)}"
            )
        attempt, after = body.get("attempt", 1), body.get("afterTasks", 0)
        for name, value, least in (("attempt", attempt, 1), ("afterTasks", after, 0)):
            if not _whole(value) or value < least:
                raise FaultRuleError(
                    f"cancelJob.{name}", f"must be a whole number >= {least}, not {_short(value)}"
                )
        return cls(attempt, after)

    def applies(self, tags: Iterable[Mapping[str, str]], tasks_run: int) -> bool:
        attempt = next((t.get("Value") for t in tags if t.get("Key") == TAG_ATTEMPT), None)
        return attempt == str(self.attempt) and tasks_run >= self.after_tasks


@dataclass(frozen=True)
class LambdaTimeoutRule:
    """``{"lambdaTimeout": {"state": "<Lambda Task state>", "times": 1}}``: the state's first ``times``
    Lambda invocations do their work and then fail as a timed-out invocation does. Applied by the
    stack to Step Functions, not by this engine (batchpipe.local.lambda_faults); the state name is
    checked against the state machine there."""

    state: str
    times: int

    FIELDS = ("state", "times")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LambdaTimeoutRule:
        if set(raw) != {"lambdaTimeout"}:
            raise FaultRuleError(
                sorted(set(raw) - {"lambdaTimeout"})[0], "unknown field; this rule has only lambdaTimeout"
            )
        body = raw["lambdaTimeout"]
        if not isinstance(body, Mapping):
            raise FaultRuleError(
                "lambdaTimeout",
                f'must be an object like {{"state": "CreateJobAndWait", "times": 1}}, not {_short(body)}',
            )
        unknown = sorted(set(body) - set(cls.FIELDS))
        if unknown:
            raise FaultRuleError(
                f"lambdaTimeout.{unknown[0]}", f"unknown field; lambdaTimeout takes {', '.join(cls.FIELDS)}"
            )
        state, times = body.get("state"), body.get("times", 1)
        if not isinstance(state, str) or not state:
            raise FaultRuleError("lambdaTimeout.state", f"must name a Task state, not {_short(state)}")
        if not _whole(times) or times < 1:
            raise FaultRuleError("lambdaTimeout.times", f"must be a whole number >= 1, not {_short(times)}")
        return cls(state, times)


@dataclass(frozen=True)
class JobAnswerRule:
    """A rule that changes how S3 answers about the jobs of one attempt (not what their tasks do).

    Each kind is a subclass naming itself (``KIND``, its key in the faults file) and its fields;
    ``times`` means something only for describeJobNotFound (how many DescribeJob calls miss the job).
    """

    attempt: int
    times: int = 1

    KIND = ""
    FIELDS: tuple[str, ...] = ("attempt",)
    EXAMPLE = '{"attempt": 1}'

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> JobAnswerRule:
        kind = cls.KIND
        if set(raw) != {kind}:
            raise FaultRuleError(sorted(set(raw) - {kind})[0], f"unknown field; a job rule has only {kind}")
        body = raw[kind]
        if not isinstance(body, Mapping):
            raise FaultRuleError(kind, f"must be an object like {cls.EXAMPLE}, not {_short(body)}")
        unknown = sorted(set(body) - set(cls.FIELDS))
        if unknown:
            raise FaultRuleError(
                f"{kind}.{unknown[0]}", f"unknown field; {kind} takes {', '.join(cls.FIELDS)}"
            )
        values = {"attempt": body.get("attempt", 1), "times": body.get("times", 1)}
        for name in cls.FIELDS:
            if not _whole(values[name]) or values[name] < 1:
                raise FaultRuleError(
                    f"{kind}.{name}", f"must be a whole number >= 1, not {_short(values[name])}"
                )
        return cls(values["attempt"], values["times"])

    def applies(self, tags: Iterable[Mapping[str, str]]) -> bool:
        attempt = next((t.get("Value") for t in tags if t.get("Key") == TAG_ATTEMPT), None)
        return attempt == str(self.attempt)


class DescribeJobNotFoundRule(JobAnswerRule):
    KIND = "describeJobNotFound"
    FIELDS = ("attempt", "times")
    EXAMPLE = '{"attempt": 1, "times": 3}'


class WithholdTotalRule(JobAnswerRule):
    KIND = "withholdTotal"


class ExpireSuspendedRule(JobAnswerRule):
    KIND = "expireSuspended"


Rule = FaultRule | CancelJobRule | LambdaTimeoutRule | JobAnswerRule

#: Rule kinds by the field that identifies them. A new kind is one entry here plus its class.
RULE_KINDS: dict[str, Any] = {
    "keyRegex": FaultRule,
    "cancelJob": CancelJobRule,
    "lambdaTimeout": LambdaTimeoutRule,
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


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(raw: Mapping[str, Any], name: str) -> str:
    value = raw[name]
    if not isinstance(value, str):
        raise FaultRuleError(name, f"must be a string, not {_short(value)}")
    return value


def _short(value: Any) -> str:
    """A value as the user wrote it, cut short: errors never echo a huge field."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
