"""`batchpipe start | watch | runs | summary | rerun`: the operator's loop against a deployed stack."""

from __future__ import annotations

import io
import json
import re
import sys
import time
import webbrowser
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import ClientError

from batchpipe import inputs
from batchpipe.outcome import EXIT_NO_SUMMARY, EXIT_STATUS, readable_cause
from batchpipe.output import JSON, TEXT, iso_time, print_json, print_table
from batchpipe.progress import LiveLine, task_progress
from batchpipe_core.config import Config
from batchpipe_core.errors import FailuresFileError, SpecValidationError
from batchpipe_core.jobs import CONFIRM_BY_OPERATOR, JOB_GONE_ERRORS, TAG_CONFIRMATION, token_key
from batchpipe_core.report import FAILURE_HEADER
from batchpipe_core.rerun import failure_rows
from batchpipe_core.runlock import unwrap_scheduled_input
from batchpipe_core.runpage import RunPage, parse_time, render
from batchpipe_core.s3uri import split_s3_uri
from batchpipe_core.spec_model import check_spec_model
from batchpipe_core.summary import notification_message, read_records, s3_console_url

from .aws import Aws, OperatorError, aws_errors
from .stack import (
    VALIDATE_SPEC_OUTPUT,
    Stack,
    console_url,
    describe,
    execution_arn,
    find_stack,
    stack_of,
    summary_of,
)

# Ctrl-C in a watch: the shell's convention for SIGINT (128 + 2); the run itself goes on.
EXIT_INTERRUPTED = 130
ENDED_JOB_STATUSES = ("Complete", "Failed", "Cancelled")
# Keys of the spec that a rerun keeps from the run it reruns; the selection is the failures file.
_RERUN_DROPS = ("inventory", "filter", "rerun", "dryRun")


# ------------------------------------------------------------------ start


def read_spec(path: str) -> dict[str, Any]:
    """A spec file checked with the model ValidateSpec uses: a bad spec never reaches AWS. The stack's
    schedule's input (the spec wrapped with a scheduled time) is checked as ValidateSpec unwraps it."""
    spec = inputs.read_spec(path)
    try:
        inner, _ = unwrap_scheduled_input(spec)
        check_spec_model(inner)
    except SpecValidationError as exc:
        raise OperatorError(_not_valid(f"spec {path}", exc)) from None
    return spec


def _not_valid(what: str, exc: SpecValidationError) -> str:
    """ValidateSpec's problems, one per line as it gives them (the command line prints them as one)."""
    return f"{what} is not valid:\n  " + "\n  ".join(str(exc).splitlines())


def stack_settings(aws: Aws, stack: Stack, *, notes: TextIO) -> Config | None:
    """The settings ValidateSpec checks specs with: its function's environment variables (Lambda
    GetFunctionConfiguration), read by the same Config the function builds from them, so nothing of
    template.yaml's mapping from parameters to settings is repeated here. None, with a note, when they
    cannot be read: the stack's checks then run in ValidateSpec, as they always do."""
    later = "the stack's own checks run when the run starts (ValidateSpec)"
    if not stack.validate_spec_function:
        print(
            f"batchpipe: note: stack {stack.name} has no {VALIDATE_SPEC_OUTPUT} output (deployed before "
            f"it; `sam deploy` adds it): {later}",
            file=notes,
        )
        return None
    try:
        with aws_errors(f"reading the settings of {stack.validate_spec_function}"):
            configuration = aws.client("lambda").get_function_configuration(
                FunctionName=stack.validate_spec_function
            )
    except OperatorError as exc:
        print(f"batchpipe: note: {exc}; {later}", file=notes)
        return None
    variables = (configuration.get("Environment") or {}).get("Variables") or {}
    try:
        return Config.from_mapping(variables)
    except (RuntimeError, ValueError) as exc:  # a missing variable, a number that is not one
        raise OperatorError(
            f"stack {stack.name}: function {stack.validate_spec_function} does not have ValidateSpec's "
            f"settings ({exc}); redeploy the stack from this repository's template.yaml"
        ) from None


def check_on_stack(spec: Any, what: str, config: Config | None) -> None:
    """The spec through ValidateSpec's own checks with the stack's settings: what the stack would
    refuse (a bucket it may not act on, an operation it does not allow, a source it lacks, ...) is
    refused here, with ValidateSpec's words, before StartExecution."""
    if config is None:
        return
    # Here, not at the top: it brings sqlglot (the Athena statement), which the other commands never need.
    from batchpipe_core.spec import normalize_spec

    try:
        inner, _ = unwrap_scheduled_input(spec)
        normalize_spec(inner, config)
    except SpecValidationError as exc:
        raise OperatorError(_not_valid(what, exc)) from None
    except RuntimeError as exc:  # the stack's own defaults make an invalid spec: a deployment fault
        raise OperatorError(f"{what}: {exc}; fix the stack's parameters and redeploy") from None


def default_execution_name(spec: dict[str, Any], now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    spec, _ = unwrap_scheduled_input(spec)
    base = re.sub(r"[^A-Za-z0-9_-]", "-", str(spec.get("name") or "run"))[: 80 - len(stamp) - 1]
    return f"{base}-{stamp}"


def start_execution(
    aws: Aws, state_machine_arn: str, spec: dict[str, Any], name: str, out: TextIO, output: str = TEXT
) -> str:
    with aws_errors(f"starting {name} on {state_machine_arn}"):
        try:
            arn = aws.client("stepfunctions").start_execution(
                stateMachineArn=state_machine_arn, name=name, input=json.dumps(spec)
            )["executionArn"]
        except aws.client("stepfunctions").exceptions.ExecutionAlreadyExists:
            raise OperatorError(
                f"an execution named {name!r} already exists (names are unique for 90 days): pass another --name"
            ) from None
    if output == JSON:
        print_json({"executionArn": arn, "executionName": name, "console": console_url(arn)}, out)
    else:
        print(f"started {arn}", file=out)
        print(f"console: {console_url(arn)}", file=out)
    return arn


def start(
    aws: Aws,
    *,
    stack_name: str,
    spec_path: str,
    name: str | None,
    watch_it: bool,
    out: TextIO,
    output: str = TEXT,
) -> int:
    spec = read_spec(spec_path)
    name = name or default_execution_name(spec)
    stack = find_stack(aws, stack_name)
    check_on_stack(spec, f"spec {spec_path}", stack_settings(aws, stack, notes=sys.stderr))
    arn = start_execution(aws, stack.state_machine_arn, spec, name, out, output)
    return watch(aws, arn, out=out, stack=stack) if watch_it else 0


# ------------------------------------------------------------------ watch


class Watcher:
    """Follows one execution: the states it enters, its Athena query, its batch jobs' progress."""

    def __init__(
        self, aws: Aws, arn: str, out: TextIO, verbose: bool = False, token_table: str | None = None
    ) -> None:
        self.aws, self.arn, self.out, self.verbose = aws, arn, out, verbose
        self.sfn = aws.client("stepfunctions")
        self.last_event_id = 0
        self.query_id: str | None = None
        self.current_state: str | None = None
        # Every job of the run by ID, with its attempt, from the history and the pipeline's attempt
        # records; each is read with DescribeJob until its end has been told.
        self.jobs: dict[str, int | None] = {}
        self.reported_jobs: dict[str, str] = {}
        # The attempt CreateJobAndWait waits for, and the run's identity: the key of the attempt's
        # record in the stack's TokenTable, which holds the job ID from the moment the job is created.
        self.waiting: tuple[str, int] | None = None
        self.token_table = token_table
        # The live line: the current Athena query or batch job, redrawn in place on a terminal.
        self.live = LiveLine(out)
        self.account = arn.split(":")[4]
        self.execution_name = arn.rsplit(":", 1)[1]
        self.started: datetime | None = None
        self.now: datetime | None = None  # the time of the event being told, else of the poll
        self._choices: set[str] | None = None

    def say(self, text: str) -> None:
        """One line, stamped with its UTC time and the time since the run started."""
        self.live.clear()
        moment = self.now or datetime.now(UTC)
        stamp = moment.astimezone(UTC).strftime("%H:%M:%SZ")
        if self.started is not None:
            elapsed = int(max(0.0, (moment - self.started).total_seconds()))
            stamp += f" +{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}"
        print(f"{stamp} {text}", file=self.out, flush=True)

    def choices(self) -> set[str]:
        """The definition's Choice states (shown only with --verbose): read once, Map children included."""
        if self._choices is None:
            with aws_errors(f"reading the state machine of {self.arn}"):
                definition = _json(
                    self.sfn.describe_state_machine_for_execution(executionArn=self.arn)["definition"]
                )
            self._choices = set()
            pending = [definition]
            while pending:
                node = pending.pop()
                for name, state in (node.get("States") or {}).items():
                    if state.get("Type") == "Choice":
                        self._choices.add(name)
                    for nested in ("ItemProcessor", "Iterator"):
                        if isinstance(state.get(nested), dict):
                            pending.append(state[nested])
                    pending.extend(b for b in state.get("Branches") or [] if isinstance(b, dict))
        return self._choices

    def poll(self) -> None:
        with aws_errors(f"reading the history of {self.arn}"):
            # Newest first, then replayed in order: a long run's history is never re-read whole.
            page = self.sfn.get_execution_history(executionArn=self.arn, reverseOrder=True, maxResults=200)
        new = [e for e in page["events"] if e["id"] > self.last_event_id]
        if new and page.get("nextToken") and min(e["id"] for e in new) > self.last_event_id + 1:
            self.say("  … (earlier events skipped)")
        for event in sorted(new, key=lambda e: e["id"]):
            self.now = event.get("timestamp")
            self.describe_event(event)
            self.last_event_id = event["id"]
        self.now = None
        self.progress()

    def describe_event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "ExecutionStarted" and self.started is None:
            self.started = event.get("timestamp")
        if kind.endswith("StateEntered"):
            details = event["stateEnteredEventDetails"]
            self.current_state = details["name"]
            if details["name"] in self.choices() and not self.verbose:
                return
            if details["name"] == "WaitForRunLock":
                lock = _json(details.get("input")).get("lock") or {}
                self.say(
                    f"▶ waiting for the run's name: {lock.get('activeExecution')} holds it (since "
                    f"{lock.get('activeSince')}); asking again in {lock.get('pollSeconds')} s, "
                    f"{lock.get('waitedSeconds')} s waited"
                )
                return
            extra = ""
            state_input = _json(details.get("input"))
            self._learn_jobs(state_input)
            if self.current_state == "CreateJobAndWait":
                current = state_input.get("current") or {}
                objects = (current.get("manifest") or {}).get("objects")
                extra = f"  attempt {current.get('attempt')}" + (f": {objects} objects" if objects else "")
                run_id = (state_input.get("run") or {}).get("runId")
                if isinstance(run_id, str) and isinstance(current.get("attempt"), int):
                    self.waiting = (run_id, current["attempt"])
            self.say(f"▶ {self.current_state}{extra}")
        elif kind.endswith("StateExited"):
            details = event["stateExitedEventDetails"]
            output = _json(details.get("output"))
            self._learn_jobs(output)
            if details["name"] == "StartQuery":
                self.query_id = ((output.get("query") or {}).get("execution") or {}).get("id")
            elif details["name"] == "BuildManifest" and isinstance(output.get("manifest"), dict):
                manifest = output["manifest"]
                scanned = manifest.get("bytesScanned")
                self.say(
                    f"  manifest written: Athena scanned {scanned or 0:,} bytes"
                    + (f", {manifest['objects']} objects" if manifest.get("objects") is not None else "")
                )
            elif details["name"] in ("CreateJobAndWait", "UseCheckedJob") and isinstance(
                output.get("job"), dict
            ):
                self._job_ended(output["job"])
            elif details["name"] == "ProcessReport" and isinstance(output.get("processed"), dict):
                p = output["processed"]
                self.say(
                    f"  attempt {p.get('attempt')}: {p.get('succeeded')} succeeded, "
                    f"{p.get('failedRetriable')} retriable, {p.get('failedPermanent')} permanent"
                )
        elif kind in ("TaskFailed", "LambdaFunctionFailed", "ExecutionFailed", "ExecutionAborted"):
            details = next((v for k, v in event.items() if k.endswith("EventDetails")), {}) or {}
            self.say(f"  ✗ {details.get('error')}: {readable_cause(details.get('cause'), 300)}")
        elif kind == "TaskTimedOut":
            self.say("  … no job status event in time: the pipeline asks DescribeJob (CheckJob)")

    def progress(self) -> None:
        if self.current_state in ("StartQuery", "WaitForQuery", "GetQueryStatus") and self.query_id:
            self._query_progress()
        if self.current_state == "CreateJobAndWait" and self.waiting:
            self._job_of_waiting_attempt()
        # Until every job known has been told ended: a job that ends between two polls is still told.
        for job_id in [j for j in self.jobs if self.reported_jobs.get(j) not in ENDED_JOB_STATUSES]:
            self._job_progress(job_id)

    def _learn_jobs(self, document: dict[str, Any]) -> None:
        """Job IDs a state's input or output carries: the job a wait ended with (``job``), the one
        CheckJob found (``current.checked``), the one ConfirmJob is given (``job``)."""
        current = document.get("current") if isinstance(document.get("current"), dict) else {}
        for job in (document.get("job"), current.get("checked")):
            if isinstance(job, dict) and isinstance(job.get("jobId"), str) and job["jobId"]:
                attempt = job.get("attempt", current.get("attempt"))
                self.jobs.setdefault(job["jobId"], attempt if isinstance(attempt, int) else None)

    def _job_of_waiting_attempt(self) -> None:
        """The job of the attempt CreateJobAndWait waits for, from the pipeline's record of the attempt
        (TokenTable, written as the job is created): its progress shows from the first poll, not only
        once the pipeline checks the job."""
        run_id, attempt = self.waiting or ("", 0)
        if not self.token_table or attempt in self.jobs.values():
            return
        dynamodb = self.aws.client("dynamodb")
        try:
            with aws_errors(f"reading attempt {attempt}'s record in {self.token_table}"):
                item = (
                    dynamodb.get_item(
                        TableName=self.token_table,
                        Key={"pk": {"S": token_key(run_id, attempt)}},
                        ProjectionExpression="jobId",
                    ).get("Item")
                    or {}
                )
        except OperatorError as exc:
            # Without dynamodb:GetItem the job still shows, once the pipeline has checked it.
            self.say(f"  (the job's progress shows once the pipeline checks the job: {exc})")
            self.token_table = None
            return
        job_id = (item.get("jobId") or {}).get("S")
        if job_id:
            self.jobs.setdefault(job_id, attempt)

    def _query_progress(self) -> None:
        with aws_errors("reading the Athena query"):
            execution = self.aws.client("athena").get_query_execution(QueryExecutionId=self.query_id)
        query = execution["QueryExecution"]
        scanned = (query.get("Statistics") or {}).get("DataScannedInBytes") or 0
        self.live.show(f"  athena {query['Status']['State']}: {scanned / 1e9:.2f} GB scanned")

    def _job_progress(self, job_id: str) -> None:
        """The job's status and progress bar from DescribeJob; told as a line when its status changes."""
        s3control = self.aws.client("s3control")
        with aws_errors(f"describing batch job {job_id}"):
            try:
                job = s3control.describe_job(AccountId=self.account, JobId=job_id)["Job"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in JOB_GONE_ERRORS:
                    raise
                job = None
        if job is None:
            # Moments after CreateJob S3 may not find the job yet (S3 user guide, "Troubleshooting Batch
            # Operations", timing issues): not visible yet, so asked again at the next poll.
            if job_id not in self.reported_jobs:
                self.reported_jobs[job_id] = "(not visible yet)"
                self.say(f"  job {job_id} created; S3 does not show it yet")
            return
        attempt = self.jobs.get(job_id)
        line = (
            f"  job {job_id}{f' (attempt {attempt})' if attempt else ''} {job['Status']}: "
            f"{task_progress(job.get('ProgressSummary') or {})}"
        )
        if self.reported_jobs.get(job_id) != job["Status"]:
            self.reported_jobs[job_id] = job["Status"]
            self.say(line)
            if job["Status"] == "Suspended" and self._left_for_a_person(job_id):
                self.say(
                    f"  job {job_id} waits for a person to confirm it: "
                    f"batchpipe confirm {self.arn}   (or cancel it: batchpipe cancel {self.arn})"
                )
        else:
            self.live.show(line)

    def _job_ended(self, job: dict[str, Any]) -> None:
        """The job outcome a wait hands on: told once, even when the job ran and ended between polls."""
        if not job.get("terminal") or self.reported_jobs.get(job.get("jobId")) == job.get("status"):
            return
        self.reported_jobs[job["jobId"]] = job["status"]
        # The job outcome's counts are ProgressSummary's (jobs.job_outcome), None where S3 gave none.
        progress = {
            "TotalNumberOfTasks": job.get("total"),
            "NumberOfTasksSucceeded": job.get("succeeded"),
            "NumberOfTasksFailed": job.get("failed"),
        }
        attempt = self.jobs.get(job["jobId"])
        self.say(
            f"  job {job['jobId']}{f' (attempt {attempt})' if attempt else ''} {job['status']}: "
            f"{task_progress(progress)}"
        )

    def _left_for_a_person(self, job_id: str) -> bool:
        with aws_errors(f"reading the tags of job {job_id}"):
            tags = self.aws.client("s3control").get_job_tagging(AccountId=self.account, JobId=job_id)
        return any(
            t["Key"] == TAG_CONFIRMATION and t["Value"] == CONFIRM_BY_OPERATOR for t in tags.get("Tags", [])
        )


def watch(
    aws: Aws,
    arn: str,
    *,
    out: TextIO,
    interval: float = 2.0,
    timeout: float | None = None,
    verbose: bool = False,
    stack: Stack | None = None,
) -> int:
    stack = stack or stack_of(aws, arn)
    watcher = Watcher(aws, arn, out, verbose=verbose, token_table=stack.token_table if stack else None)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            described = describe(aws, arn)
            watcher.poll()
            if described["status"] != "RUNNING":
                break
            if deadline is not None and time.monotonic() > deadline:
                watcher.say(f"still running after {timeout:.0f}s; stopped watching (the run goes on)")
                return 0
            time.sleep(interval)
    except KeyboardInterrupt:
        # Watching is only reading: the execution runs in the account whatever this terminal does.
        watcher.say(f"stopped watching; the run goes on. Re-attach: batchpipe watch {arn}")
        return EXIT_INTERRUPTED
    summary = summary_of(described)
    watcher.now = described.get("stopDate")
    if summary is None:
        described = with_end_reason(aws, described)
    watcher.say(headline(summary, described))
    if summary is None:
        return EXIT_NO_SUMMARY
    return EXIT_STATUS.get(summary["status"], EXIT_NO_SUMMARY)


#: History events that end an execution, and the member holding their error and cause.
_END_EVENTS = {
    "ExecutionAborted": "executionAbortedEventDetails",
    "ExecutionFailed": "executionFailedEventDetails",
    "ExecutionTimedOut": "executionTimedOutEventDetails",
}


def with_end_reason(aws: Aws, described: dict[str, Any]) -> dict[str, Any]:
    """``described`` with the error and cause of the event that ended the execution when
    DescribeExecution gives none: its ``error``/``cause`` are optional (Step Functions API reference,
    DescribeExecution), and a StopExecution's reason (``batchpipe stop --reason``) is certain only in
    the ExecutionAborted event. One GetExecutionHistory call, newest events first."""
    if described.get("status") == "RUNNING" or described.get("error") or described.get("cause"):
        return described
    with aws_errors(f"reading how {described['executionArn']} ended"):
        events = aws.client("stepfunctions").get_execution_history(
            executionArn=described["executionArn"], reverseOrder=True, maxResults=10
        )["events"]
    for event in sorted(events, key=lambda e: e["id"], reverse=True):
        details = event.get(_END_EVENTS.get(event["type"], ""))
        if details is not None:
            return {**described, "error": details.get("error"), "cause": details.get("cause")}
    return described


def headline(summary: dict[str, Any] | None, described: dict[str, Any]) -> str:
    if summary is None:
        why = f"{described.get('error') or ''} {readable_cause(described.get('cause'), 300)}".strip()
        return f"{described['status']}: the execution ended without a summary" + (
            f": {why}" if why else " (Step Functions recorded no error or cause)"
        )
    status, totals = summary["status"], summary.get("totals") or {}
    if status in ("SUCCEEDED", "PARTIAL", "CANCELLED"):
        failed = sum(totals.get(k) or 0 for k in ("failedPermanent", "failedRetriesExhausted", "notRun"))
        text = (
            f"{status}: {totals.get('succeeded')} of {totals.get('objects')} objects succeeded in "
            f"{len(summary.get('attempts') or [])} attempt(s)"
        )
        if failed:
            text += f"; {failed} did not, listed in {summary.get('permanentFailures')} (`batchpipe rerun` reruns them)"
        return text + "."
    if status == "FAILED":
        return f"FAILED: {summary.get('error')}: {readable_cause(summary.get('cause'), 500)}"
    if status == "SKIPPED":
        skipped = summary.get("skipped") or {}
        return (
            f"SKIPPED ({skipped.get('reason')}): {skipped.get('message') or 'another run of this name is active'}; "
            f"the run holding the name: {skipped.get('activeExecution')} (since {skipped.get('activeSince')})"
        )
    return f"{status}: {(summary.get('manifest') or {}).get('objects')} objects selected."


# ------------------------------------------------------------------ runs, summary


def summary_text(summary: dict[str, Any], described: dict[str, Any]) -> str:
    """`summary`'s text view: the headline `watch` ends with, then the run's SNS message (counts per
    outcome, each attempt's job and error codes, the failures file, the cost, the run page)."""
    return f"{headline(summary, described)}\n{notification_message(summary, None)}"


#: The most runs `runs --counts` reads the counts of: one DescribeExecution each. Step Functions
#: throttles DescribeExecution per account and region with a token bucket (developer guide, "Step
#: Functions service quotas", quotas related to API action throttling), shared with every other
#: caller (the console, other tools): a bounded listing stays a burst the retries absorb.
MAX_COUNTED_RUNS = 100


def check_counted(limit: int, counts: bool) -> None:
    """--counts within its bound: refused before any AWS call."""
    if counts and limit > MAX_COUNTED_RUNS:
        raise OperatorError(
            f"--counts reads each run's summary (one DescribeExecution per run): give --max "
            f"{MAX_COUNTED_RUNS} or fewer, or leave out --counts to list up to any --max"
        )


def runs(aws: Aws, *, stack_name: str, limit: int, counts: bool, output: str, out: TextIO) -> int:
    """The newest executions from ListExecutions, one call per 1,000 runs: each one's name, Step
    Functions status and times. A run's counts are its execution's output, which only
    DescribeExecution returns: with ``counts``, one call per run listed, for at most MAX_COUNTED_RUNS."""
    check_counted(limit, counts)
    stack = find_stack(aws, stack_name)
    sfn = aws.client("stepfunctions")
    with aws_errors(f"listing executions of {stack.state_machine_arn}"):
        # ListExecutions returns at most 1,000 a page, newest first: as many pages as --max needs.
        pages = sfn.get_paginator("list_executions").paginate(
            stateMachineArn=stack.state_machine_arn,
            PaginationConfig={"MaxItems": limit, "PageSize": min(limit, 1000)},
        )
        executions = [execution for page in pages for execution in page["executions"]][:limit]
    rows = [
        {
            "execution": execution["name"],
            "status": execution["status"],
            "start": iso_time(execution.get("startDate")),
            "stop": iso_time(execution.get("stopDate")),
        }
        for execution in executions
    ]
    columns = ["execution", "status", "start", "stop"]
    if counts:
        columns += ["name", "outcome", "objects", "succeeded", "failed", "costUsd"]
        for row, execution in zip(rows, executions, strict=True):
            row.update(_counts(summary_of(describe(aws, execution["executionArn"])) or {}))
    if output == JSON:
        print_json(rows, out)
    elif rows:
        print_table(rows, columns, out)
    else:
        print(f"(no runs of {stack.name} yet)", file=out)
    return 0


def _counts(summary: dict[str, Any]) -> dict[str, Any]:
    """A run's name, outcome and counts from its summary (all unknown while it runs)."""
    totals = summary.get("totals") or {}
    failed = sum(totals.get(k) or 0 for k in ("failedPermanent", "failedRetriesExhausted", "notRun"))
    return {
        "name": summary.get("name"),
        "outcome": summary.get("status"),
        "objects": totals.get("objects", (summary.get("manifest") or {}).get("objects")),
        "succeeded": totals.get("succeeded"),
        "failed": failed if totals else None,
        "costUsd": summary.get("estimatedCostUsd"),
    }


def show_summary(
    aws: Aws,
    *,
    execution: str,
    stack_name: str | None,
    failures: str | None,
    out: TextIO,
    html: str | None = None,
    open_page: bool = False,
    output: str = TEXT,
) -> int:
    if failures:
        writable_target(Path(failures))  # before any AWS call: a typo costs nothing
    if html:
        writable_target(Path(html), "--html")
    arn = execution_arn(aws, execution, stack_name)
    described = describe(aws, arn)
    summary = summary_of(described)
    if summary is None:
        if described["status"] == "RUNNING":
            raise OperatorError(f"{arn} is still running: `batchpipe watch` follows it")
        described = with_end_reason(aws, described)
        if output == JSON:
            print_json(
                {
                    "status": described["status"],
                    "error": described.get("error"),
                    "cause": readable_cause(described.get("cause")) or None,
                    "summary": None,
                },
                out,
            )
        else:
            print(headline(None, described), file=out)
        return EXIT_NO_SUMMARY
    if output == JSON:
        print_json(summary, out)
    else:
        print(summary_text(summary, described), file=out)
    if failures:
        download_failures(aws, summary, Path(failures), out=sys.stderr)
    if html is not None or open_page:
        target = Path(html or f"report-{arn.rsplit(':', 1)[-1]}.html")
        save_run_page(aws, summary, described, target, out=sys.stderr)
        if open_page:
            webbrowser.open(target.resolve().as_uri())
    return 0


def save_run_page(
    aws: Aws, summary: dict[str, Any], described: dict[str, Any], target: Path, *, out: TextIO
) -> None:
    """The run page Summarize wrote (``summary.report``), or, for a run older than the page, one
    drawn here from its summary and attempt records (without the prefix table and timeline, which
    those records lack). Written to a new file only: an existing path, or a link, is refused."""
    try:
        fh = open(target, "xb")  # "x": never over an existing file or through a link
    except FileExistsError:
        raise OperatorError(
            f"--html {target}: exists; give a new file name (nothing is overwritten)"
        ) from None
    except OSError as exc:
        raise OperatorError(f"--html {target}: {exc.strerror}") from None
    with fh:
        try:
            page, source = _run_page(aws, summary, described)
            fh.write(page)
        except BaseException:
            target.unlink()  # the empty file this call created, not someone else's
            raise
    print(f"wrote {target} ({source})", file=out)


def _run_page(aws: Aws, summary: dict[str, Any], described: dict[str, Any]) -> tuple[bytes, str]:
    uri = summary.get("report")
    if uri:
        bucket, key = split_s3_uri(uri)
        with aws_errors(f"downloading {uri}"):
            return aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read(), uri
    arn = described["executionArn"]
    page = RunPage(
        summary=summary,
        records=_records_of(aws, summary),
        started=parse_time(described.get("startDate")),
        finished=parse_time(described.get("stopDate")),
        link=lambda uri: s3_console_url(uri, arn.split(":")[3]),
        execution_link=console_url(arn),
        generated_by="batchpipe summary --html, from the run's summary",
    )
    return render(page).encode("utf-8"), "rendered from the summary: the run is older than the run page"


def _records_of(aws: Aws, summary: dict[str, Any]) -> list[Any]:
    """An older run's attempt records, found next to its failures file (the run's folder)."""
    failures = summary.get("permanentFailures")
    if not failures:
        return []
    bucket, key = split_s3_uri(failures)
    with aws_errors(f"reading the attempt records beside {failures}"):
        return read_records(aws.client("s3"), bucket, key.rsplit("/", 1)[0] + "/")


def writable_target(target: Path, option: str = "--failures") -> None:
    """--failures (or --html) names a new file in an existing folder: nothing is overwritten or
    created around it."""
    if target.exists() or target.is_symlink():
        raise OperatorError(f"{option} {target}: exists; give a new file name (nothing is overwritten)")
    if not target.parent.is_dir():
        raise OperatorError(
            f"{option} {target}: folder {target.parent} does not exist; create it or pick another"
        )


def download_failures(aws: Aws, summary: dict[str, Any], target: Path, *, out: TextIO) -> None:
    uri = summary.get("permanentFailures")
    if not uri:
        raise OperatorError("this run has no failures file: every object succeeded or nothing ran")
    writable_target(target)
    bucket, key = split_s3_uri(uri)
    with aws_errors(f"downloading {uri}"):
        try:
            aws.client("s3").download_file(bucket, key, str(target))
        except OSError as exc:  # a read-only folder, a full disk
            raise OperatorError(f"--failures {target}: cannot write it ({exc.strerror or exc})") from None
    print(f"wrote {target} ({uri})", file=out)


# ------------------------------------------------------------------ rerun


def count_failures(aws: Aws, uri: str, error_codes: list[str] | None) -> tuple[Counter[str], Counter[str]]:
    """Rows of a failures file per error code and per bucket (only the given codes, if any), streamed.

    Read with the pipeline's own reader (batchpipe_core.rerun.failure_rows), so a file that the
    rerun would refuse is refused here, in the same one line, before anything starts.
    """
    bucket, key = split_s3_uri(uri)
    codes: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    code_at, bucket_at = FAILURE_HEADER.index("errorCode"), FAILURE_HEADER.index("bucket")
    with aws_errors(f"reading {uri}"):
        response = aws.client("s3").get_object(Bucket=bucket, Key=key)
        try:
            for _line, fields in failure_rows(response["Body"], uri, response.get("ContentLength")):
                if len(fields) == len(FAILURE_HEADER) and (not error_codes or fields[code_at] in error_codes):
                    codes[fields[code_at]] += 1
                    buckets[fields[bucket_at]] += 1
        except FailuresFileError as exc:
            raise OperatorError(str(exc)) from None
    return codes, buckets


def rerun_spec(original: Any, failures: str, error_codes: list[str] | None, operation: Any) -> dict:
    """The spec of a rerun: the run's own spec (a scheduled run's input unwrapped) minus its selection."""
    try:
        original, _ = unwrap_scheduled_input(original)
    except SpecValidationError as exc:
        raise OperatorError(f"the run's input is not a spec this stack accepts: {exc}") from None
    if not isinstance(original, dict):
        raise OperatorError("the run's input is not a JSON object: nothing to rerun from")
    spec = {k: v for k, v in original.items() if k not in _RERUN_DROPS}
    spec["rerun"] = {"failures": failures, **({"errorCodes": error_codes} if error_codes else {})}
    if operation is not None:
        spec["operation"] = operation
    try:
        check_spec_model(spec)
    except SpecValidationError as exc:
        raise OperatorError("the rerun spec is not valid:\n  " + "\n  ".join(str(exc).splitlines())) from None
    return spec


def rerun(
    aws: Aws,
    *,
    execution: str,
    stack_name: str | None,
    error_codes: list[str] | None,
    operation_path: str | None,
    name: str | None,
    assume_yes: bool,
    watch_it: bool,
    out: TextIO,
    answer: Any = input,
    output: str = TEXT,
) -> int:
    if output == JSON and not assume_yes:
        raise OperatorError("--output json prints for a script, which cannot answer: pass --yes as well")
    arn = execution_arn(aws, execution, stack_name)
    described = describe(aws, arn)
    summary = summary_of(described)
    if summary is None:
        raise OperatorError(f"{arn} has no summary yet (status {described['status']}); nothing to rerun")
    failures = summary.get("permanentFailures")
    report: dict[str, Any] = {"rerunOf": arn, "failures": failures, "objects": 0, "executionArn": None}
    if not failures:
        if output == JSON:
            print_json(report, out)
        else:
            print(f"{arn}: no failures file (status {summary['status']}): nothing to rerun", file=out)
        return 0
    operation = None
    if operation_path:
        operation = inputs.read_json(operation_path, "operation")
        if isinstance(operation, dict) and set(operation) == {"operation"}:
            operation = operation["operation"]  # a whole spec's operation block is accepted too
    spec = rerun_spec(_json(described.get("input")), failures, error_codes, operation)
    stack = stack_of(aws, arn)
    if stack is not None:  # an operation the stack does not allow is refused before counting anything
        check_on_stack(spec, "the rerun spec", stack_settings(aws, stack, notes=sys.stderr))
    counts, buckets = count_failures(aws, failures, error_codes)
    total = sum(counts.values())
    report.update(objects=total, errorCodes=dict(counts.most_common()), buckets=dict(sorted(buckets.items())))
    if output == TEXT:
        by_code = ", ".join(f"{n} {code or '(no code)'}" for code, n in counts.most_common())
        print(f"rerun of {failures}: {total} objects ({by_code or 'none'})", file=out)
        if buckets:
            # The buckets the jobs will act on, before asking: a changed failures file shows here first.
            shown_buckets = ", ".join(f"{_printable(b)} ({n})" for b, n in sorted(buckets.items()))
            print(f"in buckets: {shown_buckets}", file=out)
    if total == 0:
        if output == JSON:
            print_json(report, out)
        else:
            print("nothing to rerun with these error codes", file=out)
        return 0
    if not assume_yes:
        if not sys.stdin.isatty():
            raise OperatorError("not a terminal: pass --yes to start the rerun without asking")
        if answer(f"start a run over these {total} objects? [y/N] ").strip().lower() not in ("y", "yes"):
            print("not started", file=out)
            return 0
    state_machine_arn = arn.rsplit(":", 1)[0].replace(":execution:", ":stateMachine:")
    new_name = name or default_execution_name({"name": f"{spec.get('name') or 'run'}-rerun"})
    if output == JSON:
        report["executionArn"] = start_execution(aws, state_machine_arn, spec, new_name, io.StringIO())
        report.update(executionName=new_name, console=console_url(report["executionArn"]))
        print_json(report, out)
        return 0
    new_arn = start_execution(aws, state_machine_arn, spec, new_name, out)
    return watch(aws, new_arn, out=out, stack=stack) if watch_it else 0


def _printable(text: str) -> str:
    """A bucket name from a file as one printable token (a planted name may hold control characters)."""
    return text if text.isprintable() and text and len(text) <= 63 else repr(text[:80])


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
