"""Fault injection (BRIEF section 5): chosen tasks fail with a chosen S3 answer before they run.

A rule is ``{"keyRegex": "^bad/", "httpStatus": 503, "errorCode": "SlowDown", "times": 1}``; ``times``
omitted means always. The regex is searched in the decoded key; ``times`` is counted per object
(bucket and key) across jobs, so a rerun of the same object gets past a ``times: 1`` fault.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .tasks import Task, TaskOutcome


@dataclass(frozen=True)
class FaultRule:
    key_regex: re.Pattern[str]
    http_status: int
    error_code: str
    times: int | None = None
    message: str | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FaultRule:
        unknown = set(raw) - {"keyRegex", "httpStatus", "errorCode", "times", "message"}
        if unknown:
            raise ValueError(f"fault rule {dict(raw)} has unknown fields {sorted(unknown)}")
        try:
            pattern = re.compile(raw["keyRegex"])
            status = int(raw["httpStatus"])
            code = str(raw["errorCode"])
        except KeyError as exc:
            raise ValueError(f"fault rule {dict(raw)} needs keyRegex, httpStatus and errorCode") from exc
        except re.error as exc:
            raise ValueError(f"fault rule keyRegex {raw['keyRegex']!r} is not a regex: {exc}") from exc
        times = raw.get("times")
        if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 0):
            raise ValueError(f"fault rule times must be a whole number >= 0, not {times!r}")
        if not 100 <= status <= 599:
            raise ValueError(f"fault rule httpStatus must be an HTTP status, not {status}")
        return cls(pattern, status, code, times, raw.get("message"))


class FaultInjector:
    """Thread-safe: jobs run on the engine's worker while tests inspect counts."""

    def __init__(self, rules: Iterable[FaultRule | Mapping[str, Any]] = ()) -> None:
        self.rules = [rule if isinstance(rule, FaultRule) else FaultRule.from_dict(rule) for rule in rules]
        self._applied: Counter[tuple[int, str, str]] = Counter()
        self._lock = threading.Lock()

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
