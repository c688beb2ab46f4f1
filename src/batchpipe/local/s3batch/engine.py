"""The S3 Batch Operations engine: the job API, the job queue and the worker that runs jobs.

Jobs run one at a time on a background thread (the pipeline waits on a task token meanwhile): new jobs
are prepared in creation order, then the Ready job with the highest priority runs (ties: oldest
first). ``background=False`` runs nothing until ``run_pending()`` — handy for unit tests.

Every status a job enters emits a ``JobStatusChanged`` event to ``event_sink`` (``Suspended`` only with
``suspended_events=True``). Transitions hold one lock across the change and the emission, so the sink
sees each job's statuses in order.

By default the engine answers as unkindly as AWS documents it may (docs/LOCAL.md, "Unkind answers"):
a new job is not found by its first DescribeJob, ``TotalNumberOfTasks`` is absent until the job runs,
``NumberOfTasksSucceeded`` and ``NumberOfTasksFailed`` are never given, a ``ManifestGenerator`` job's generated manifest is written (and described) only when it runs, and no
event says ``Suspended``. ``BatchEngine(**KIND_ANSWERS)`` gives the kind answers instead.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from moto.core import DEFAULT_ACCOUNT_ID

from . import events, generator, jobs, operations, report, routes
from .context import OperationContext
from .errors import (
    BadRequestException,
    IdempotencyException,
    InvalidNextTokenException,
    JobStatusException,
    NotFoundException,
    TooManyTagsException,
)
from .faults import (
    OPERATOR_CANCEL_REASON,
    DescribeJobNotFoundRule,
    ExpireSuspendedRule,
    FaultInjector,
    FaultRule,
    WithholdTotalRule,
)
from .jobs import Job
from .manifest import KEY_DECODINGS, ManifestError, read_tasks
from .tasks import Task, TaskOutcome

LOG = logging.getLogger(__name__)

#: Redrives of a task whose function answered TemporaryFailure (AWS does not document the number).
DEFAULT_LAMBDA_REDRIVES = 3
REPORT_WRITE_FAILED = "ReportWriteFailed"
#: Our failure code for a job S3 fails after 30 days in Suspended (AWS names none; docs/LOCAL.md).
SUSPENDED_EXPIRED = "SuspendedJobExpired"
SUSPENDED_EXPIRED_REASON = (
    "The job remained Suspended for over 30 days without being confirmed (local fault rule expireSuspended)"
)
#: The engine's settings that give the kind answers AWS does not promise (tests that need them).
KIND_ANSWERS: dict[str, Any] = {
    "describe_not_found": 0,
    "withhold_total": False,
    "withhold_counts": False,
    "suspended_events": True,
    "generated_manifest_before_run": True,
}
CANCELLABLE = frozenset({jobs.NEW, jobs.PREPARING, jobs.SUSPENDED, jobs.READY, jobs.ACTIVE})
_API = {
    "CreateJob": "create_job",
    "DescribeJob": "describe_job",
    "ListJobs": "list_jobs",
    "UpdateJobStatus": "update_job_status",
    "UpdateJobPriority": "update_job_priority",
    "GetJobTagging": "get_job_tagging",
    "PutJobTagging": "put_job_tagging",
    "DeleteJobTagging": "delete_job_tagging",
}


def _now() -> datetime:
    return datetime.now(UTC)


class BatchEngine:
    def __init__(
        self,
        *,
        account_id: str = DEFAULT_ACCOUNT_ID,
        region: str = "us-east-1",
        event_sink: Callable[[dict], Any] | None = None,
        lambda_invoker: Callable[[str, dict], Any] | None = None,
        key_decoding: str = "percent",
        faults: Iterable[FaultRule | Mapping[str, Any]] | FaultInjector = (),
        background: bool = True,
        lambda_redrives: int = DEFAULT_LAMBDA_REDRIVES,
        active_seconds: float = 0.0,
        describe_not_found: int = 1,
        withhold_total: bool = True,
        withhold_counts: bool = True,
        suspended_events: bool = False,
        generated_manifest_before_run: bool = False,
    ) -> None:
        if key_decoding not in KEY_DECODINGS:
            raise ValueError(f"key_decoding must be one of {KEY_DECODINGS}, not {key_decoding!r}")
        self.account_id = account_id
        self.region = region
        self.event_sink = event_sink
        self.lambda_invoker = lambda_invoker
        self.key_decoding = key_decoding
        self.faults = faults if isinstance(faults, FaultInjector) else FaultInjector(faults)
        self.background = background
        self.lambda_redrives = lambda_redrives
        # Real jobs stay Active for minutes; tests that need a job still running when its creator
        # looks (the status-event fallback) give it a floor here.
        self.active_seconds = active_seconds
        # The unkind answers (docs/LOCAL.md, "Unkind answers"). S3 user guide, "Troubleshooting Batch
        # Operations" (NoSuchJobException, "Timing issues"): a job checked right after CreateJob may not
        # be registered yet, so its first ``describe_not_found`` DescribeJob calls answer NotFound.
        self.describe_not_found = describe_not_found
        # S3 API reference, JobProgressSummary: every member is optional, and nothing says when
        # TotalNumberOfTasks is set; withheld, it appears only once the job runs (Active).
        self.withhold_total = withhold_total
        # The same page: NumberOfTasksSucceeded and NumberOfTasksFailed are "Required: No" too, and
        # the report stage reads fewer files where both are given (fanout.s3_counted_every_task), so
        # by default neither is ever given: every path must work without them.
        self.withhold_counts = withhold_counts
        # S3 user guide, "Tracking a job in EventBridge through CloudTrail": the statuses it lists as
        # emitted do not include Suspended, so by default no event says it.
        self.suspended_events = suspended_events
        # S3 API reference, S3GeneratedManifestDescriptor: filled in "after execution of the
        # ManifestGenerator", and no page says whether that is before a ConfirmationRequired job is
        # confirmed; by default the generated manifest is written, and described, only once the job runs.
        self.generated_manifest_before_run = generated_manifest_before_run
        self._jobs: dict[str, Job] = {}
        self._tokens: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._sequence = itertools.count()
        self._cond = threading.Condition(threading.RLock())
        self._emit_lock = threading.RLock()
        self._busy = False
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._s3: Any = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Starts the worker (background mode). Call inside an active moto mock."""
        self._s3_client()  # on the caller's thread: boto3's default session is not thread-safe
        if self.background and self._worker is None:
            self._stopping = False
            self._worker = threading.Thread(target=self._work, name="s3batch-engine", daemon=True)
            self._worker.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stops the worker after the task it is running; unfinished jobs stay as they are."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)
            self._worker = None

    def install(self) -> None:
        """Serves the s3control job API to boto3 clients of the active moto mock."""
        routes.install(self)

    def uninstall(self) -> None:
        routes.uninstall(self)

    @contextlib.contextmanager
    def installed(self) -> Iterator[BatchEngine]:
        self.install()
        try:
            self.start()
            yield self
        finally:
            self.close()
            self.uninstall()

    def __enter__(self) -> BatchEngine:
        self.install()
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
        self.uninstall()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once no job is waiting to run or running (Suspended jobs wait for a person)."""
        if not self.background:
            self.run_pending()
            return True
        with self._cond:
            return self._cond.wait_for(self._idle, timeout)

    def run_pending(self) -> None:
        """Runs every pending job on the calling thread (background=False)."""
        while True:
            with self._cond:
                picked = self._pick()
            if picked is None:
                return
            self._step(*picked)

    def job(self, job_id: str) -> Job:
        """The job itself, for inspection by tests and the local run."""
        with self._cond:
            return self._jobs[job_id]

    # ------------------------------------------------------------------ the s3control API
    def handle(self, operation: str, params: dict, *, region: str | None = None) -> dict:
        """Answers one parsed s3control request; raises an S3ControlError for an error response."""
        method = _API.get(operation)
        if method is None:
            raise BadRequestException(f"{operation} is not served by the local S3 Batch engine")
        return getattr(self, method)(params, region=region or self.region)

    def create_job(self, params: dict, *, region: str | None = None) -> dict:
        region = region or self.region
        if (params["AccountId"], region) != (self.account_id, self.region):
            raise BadRequestException(
                f"The local S3 Batch engine runs jobs of account {self.account_id} in {self.region}, "
                f"not of account {params['AccountId']} in {region}"
            )
        jobs.validate_create_job(params)
        token = (params["AccountId"], region, params["ClientRequestToken"])
        fingerprint = json.dumps(
            {name: value for name, value in params.items() if name != "ClientRequestToken"},
            sort_keys=True,
            default=str,
        )
        with self._cond:
            known = self._tokens.get(token)
            if known is not None:
                if known[0] != fingerprint:
                    raise IdempotencyException(
                        "ClientRequestToken was already used by a CreateJob request with other parameters"
                    )
                return {"JobId": known[1]}
            job = Job(
                job_id=str(uuid.uuid4()),
                sequence=next(self._sequence),
                account_id=params["AccountId"],
                region=region,
                request=params,
                creation_time=_now(),
                priority=params["Priority"],
                tags=list(params.get("Tags") or []),
                status="",
            )
            self._jobs[job.job_id] = job
            self._tokens[token] = (fingerprint, job.job_id)
        # The job is invisible to the worker until it is New, so its first event is New.
        self._transition(job, jobs.NEW)
        return {"JobId": job.job_id}

    def describe_job(self, params: dict, *, region: str | None = None) -> dict:
        with self._cond:
            job = self._find(params, region)
            job.describes += 1
            rule = self.faults.answer(DescribeJobNotFoundRule, job.tags)
            if job.describes <= max(self.describe_not_found, rule.times if rule else 0):
                # As the unknown job's answer (_find), so a client cannot tell the two apart.
                raise NotFoundException(f"No such job: {params['JobId']}")
            descriptor = job.descriptor()
            self._withhold(job, descriptor["ProgressSummary"])
            return {"Job": descriptor}

    def _withhold(self, job: Job, progress: dict) -> None:
        """Takes out of a job's ProgressSummary the counts the engine withholds (the unkind answers)."""
        if self._withholds_total(job):
            progress.pop("TotalNumberOfTasks", None)
        if self.withhold_counts:
            progress.pop("NumberOfTasksSucceeded", None)
            progress.pop("NumberOfTasksFailed", None)

    def _withholds_total(self, job: Job) -> bool:
        """Whether DescribeJob omits the job's TotalNumberOfTasks: until it runs, when withheld."""
        if job.ran:
            return False
        if self.faults.answer(WithholdTotalRule, job.tags) is not None:
            return True
        return self.withhold_total

    def list_jobs(self, params: dict, *, region: str | None = None) -> dict:
        statuses = set(params.get("JobStatuses") or [])
        limit = int(params.get("MaxResults") or 1000)
        start = _decode_token(params.get("NextToken"))
        with self._cond:
            listed = [
                job
                for job in sorted(self._jobs.values(), key=lambda job: -job.sequence)
                if job.status
                and (job.account_id, job.region) == (params["AccountId"], region or self.region)
                and (not statuses or job.status in statuses)
            ]
            page = [job.list_descriptor() for job in listed[start : start + limit]]
            for job, entry in zip(listed[start : start + limit], page, strict=True):
                self._withhold(job, entry["ProgressSummary"])
        result: dict[str, Any] = {"Jobs": page}
        if start + limit < len(listed):
            result["NextToken"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
        return result

    def update_job_status(self, params: dict, *, region: str | None = None) -> dict:
        requested = params["RequestedJobStatus"]
        reason = params.get("StatusUpdateReason")
        # Held across the check and the change, so the worker cannot move the job in between.
        with self._emit_lock:
            with self._cond:
                job = self._find(params, region)
                current = job.status
            if requested == jobs.READY and current != jobs.SUSPENDED:
                raise JobStatusException(f"Only a Suspended job can be made Ready; the job is {current}")
            if requested == jobs.CANCELLED and current not in CANCELLABLE:
                raise JobStatusException(f"A job that is {current} cannot be cancelled")
            if requested not in (jobs.READY, jobs.CANCELLED):
                raise BadRequestException(f"RequestedJobStatus must be Ready or Cancelled, not {requested}")
            with self._cond:
                if reason is not None:
                    job.status_update_reason = reason
            if requested == jobs.READY:
                self._transition(job, jobs.READY)
            else:
                self._cancel(job, current, reason)
            with self._cond:
                return {
                    "JobId": job.job_id,
                    "Status": job.status,
                    "StatusUpdateReason": job.status_update_reason,
                }

    def update_job_priority(self, params: dict, *, region: str | None = None) -> dict:
        with self._cond:
            job = self._find(params, region)
            job.priority = params["Priority"]
            self._cond.notify_all()
            return {"JobId": job.job_id, "Priority": job.priority}

    def get_job_tagging(self, params: dict, *, region: str | None = None) -> dict:
        with self._cond:
            return {"Tags": list(self._find(params, region).tags)}

    def put_job_tagging(self, params: dict, *, region: str | None = None) -> dict:
        tags = list(params.get("Tags") or [])
        if len(tags) > jobs.MAX_JOB_TAGS:
            raise TooManyTagsException(f"A job takes at most {jobs.MAX_JOB_TAGS} tags")
        with self._cond:
            self._find(params, region).tags = tags
        return {}

    def delete_job_tagging(self, params: dict, *, region: str | None = None) -> dict:
        with self._cond:
            self._find(params, region).tags = []
        return {}

    # ------------------------------------------------------------------ internals
    def _find(self, params: dict, region: str | None) -> Job:
        job = self._jobs.get(params["JobId"])
        if (
            job is None
            or not job.status
            or (job.account_id, job.region) != (params["AccountId"], region or self.region)
        ):
            raise NotFoundException(f"No such job: {params['JobId']}")
        return job

    def _cancel(self, job: Job, current: str, reason: str | None) -> None:
        reasons = [reason] if reason else []
        if current in (jobs.PREPARING, jobs.ACTIVE):
            with self._cond:
                job.cancel_requested = True
            self._transition(job, jobs.CANCELLING, reasons=reasons)
        else:
            self._transition(job, jobs.CANCELLED, reasons=reasons)

    def _transition(
        self, job: Job, status: str, *, expected: Iterable[str] = (), reasons: Iterable[str] = ()
    ) -> bool:
        """Moves the job to ``status`` (only from ``expected`` if given) and emits the event."""
        expected = frozenset(expected)
        with self._emit_lock:
            with self._cond:
                if expected and job.status not in expected:
                    return False
                moment = _now()
                job.status = status
                if status in jobs.TERMINAL:
                    job.termination_date = moment
                failure_codes = [reason["FailureCode"] for reason in job.failure_reasons]
                event = events.job_status_changed(
                    account_id=job.account_id,
                    region=job.region,
                    job_id=job.job_id,
                    job_arn=job.arn,
                    status=status,
                    at=moment,
                    failure_codes=failure_codes if status in (jobs.FAILING, jobs.FAILED) else (),
                    status_change_reasons=list(reasons),
                )
                self._cond.notify_all()
            if status != jobs.SUSPENDED or self.suspended_events:
                self._emit(event)
        return True

    def _emit(self, event: dict) -> None:
        if self.event_sink is None:
            return
        try:
            self.event_sink(event)
        except Exception:  # a failing bus must not stop the job
            LOG.exception("event sink failed on %s", event["detail"]["serviceEventDetails"]["status"])

    def _idle(self) -> bool:
        return (
            not self._busy
            and self._pick() is None
            and not any(
                job.status in (jobs.PREPARING, jobs.ACTIVE, jobs.CANCELLING, jobs.COMPLETING, jobs.FAILING)
                for job in self._jobs.values()
            )
        )

    def _pick(self) -> tuple[Job, str] | None:
        """The next piece of work: preparing the oldest New job, else running the best Ready job."""
        new = [job for job in self._jobs.values() if job.status == jobs.NEW]
        if new:
            return min(new, key=lambda job: job.sequence), jobs.PREPARING
        ready = [job for job in self._jobs.values() if job.status == jobs.READY]
        if ready:
            return min(ready, key=lambda job: (-job.priority, job.sequence)), jobs.ACTIVE
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (picked := self._pick()) is None:
                    self._busy = False
                    self._cond.notify_all()
                    self._cond.wait()
                if self._stopping:
                    self._busy = False
                    self._cond.notify_all()
                    return
                self._busy = True
            self._step(*picked)

    def _step(self, job: Job, action: str) -> None:
        try:
            if action == jobs.PREPARING:
                self._prepare(job)
            else:
                self._run(job)
        except Exception as exc:  # an engine bug fails the job, not the worker
            LOG.exception("local S3 Batch engine failed job %s", job.job_id)
            with self._cond:
                job.stopped_active()
                job.failure_reasons.append(
                    {"FailureCode": "InternalError", "FailureReason": f"{type(exc).__name__}: {exc}"}
                )
            self._transition(job, jobs.FAILED, reasons=[f"Local engine error: {exc}"])

    def _s3_client(self) -> Any:
        with self._cond:
            if self._s3 is None:
                # No retries: a task's S3 answer is reported as it is, like the failed request on AWS.
                self._s3 = boto3.client(
                    "s3", region_name=self.region, config=Config(retries={"total_max_attempts": 1})
                )
            return self._s3

    def _prepare(self, job: Job) -> None:
        if not self._transition(job, jobs.PREPARING, expected=[jobs.NEW]):
            return
        generated = None
        try:
            if job.request.get("ManifestGenerator"):
                tasks = generator.generate(
                    self._s3_client(), job.request["ManifestGenerator"], account_id=job.account_id
                )
                if self.generated_manifest_before_run:
                    generated = self._write_generated(job, tasks)
            else:
                tasks = read_tasks(self._s3_client(), job.request["Manifest"], key_decoding=self.key_decoding)
        except ManifestError as exc:
            self._fail(job, exc.code, exc.reason)
            return
        confirm = bool(job.request.get("ConfirmationRequired"))
        with self._cond:
            job.tasks = tasks
            job.generated_manifest = generated
            if confirm:
                job.suspended_date = _now()
                job.suspended_cause = "The job requires confirmation (ConfirmationRequired) before it runs"
        # Held across Suspended and an expireSuspended failure, so no confirmation slips in between.
        with self._emit_lock:
            if not self._transition(
                job, jobs.SUSPENDED if confirm else jobs.READY, expected=[jobs.PREPARING]
            ):
                self._transition(job, jobs.CANCELLED)  # UpdateJobStatus cancelled it while it was Preparing
                return
            if confirm and self.faults.answer(ExpireSuspendedRule, job.tags) is not None:
                # S3 user guide, "Creating a job": a job left Suspended for over 30 days fails.
                self._fail(job, SUSPENDED_EXPIRED, SUSPENDED_EXPIRED_REASON)

    def _write_generated(self, job: Job, tasks: list) -> dict | None:
        """The generated manifest's files and GeneratedManifestDescriptor (None without EnableManifestOutput)."""
        return generator.write_output(
            self._s3_client(), job.request["ManifestGenerator"], job.job_id, [t for t in tasks if t], _now()
        )

    def _fail(self, job: Job, code: str, reason: str) -> None:
        with self._cond:
            job.failure_reasons.append({"FailureCode": code, "FailureReason": reason})
        self._transition(job, jobs.FAILED, reasons=[reason])

    def _run(self, job: Job) -> None:
        if self.active_seconds:
            # A job waits in Ready; a cancel or the engine's close ends the wait early.
            deadline = time.monotonic() + self.active_seconds
            with self._cond:
                while (
                    not self._stopping
                    and job.status == jobs.READY
                    and (left := deadline - time.monotonic()) > 0
                ):
                    self._cond.wait(left)
        context = OperationContext(
            s3=self._s3_client(),
            account_id=job.account_id,
            region=job.region,
            job_id=job.job_id,
            lambda_invoker=self.lambda_invoker,
            lambda_redrives=self.lambda_redrives,
        )
        runner = operations.build(job.request["Operation"], context)
        if job.request.get("ManifestGenerator") and job.generated_manifest is None:
            generated = self._write_generated(job, job.tasks or [])
            with self._cond:
                job.generated_manifest = generated
        with self._cond:
            job.started_active()
            job.ran = True
        if not self._transition(job, jobs.ACTIVE, expected=[jobs.READY]):
            with self._cond:
                job.stopped_active()
                job.ran = False  # cancelled while Ready: it never ran
            return
        exceeded = False
        results = report.ResultSpool(job.request["Report"])
        tasks = job.tasks or []
        with self._cond:
            job.results = results
        for index, task in enumerate(tasks):
            self._operator_cancel_fault(job, index)
            if job.cancel_requested or self._stopping:
                break
            if task is None:
                continue
            outcome = self._execute(runner, task)
            results.add(task, outcome)
            tasks[index] = None  # its row is written: the task is not kept
            with self._cond:
                if outcome.succeeded:
                    job.succeeded += 1
                else:
                    job.failed += 1
                exceeded = job.failure_threshold_exceeded()
            if exceeded:
                break
        with self._cond:
            job.stopped_active()
            if self._stopping and not job.cancel_requested and not exceeded:
                return  # the engine is closing: the job stays Active, as unfinished
        if exceeded:
            self._finish_failed_threshold(job)
        elif self._transition(job, jobs.COMPLETING, expected=[jobs.ACTIVE]):
            self._finish(job, jobs.COMPLETE)
        else:
            self._finish(job, jobs.CANCELLED)

    def _operator_cancel_fault(self, job: Job, tasks_run: int) -> None:
        """A cancelJob fault rule: the person's UpdateJobStatus, through the API a person would use."""
        if job.cancel_requested or not self.faults.job_rules:
            return
        with self._cond:
            tags = list(job.tags)
        if self.faults.cancels(tags, tasks_run):
            self.update_job_status(
                {
                    "AccountId": job.account_id,
                    "JobId": job.job_id,
                    "RequestedJobStatus": jobs.CANCELLED,
                    "StatusUpdateReason": OPERATOR_CANCEL_REASON,
                },
                region=job.region,
            )

    def _execute(self, runner: Callable[[Task], TaskOutcome], task: Task) -> TaskOutcome:
        injected = self.faults.outcome_for(task)
        if injected is not None:
            return injected
        try:
            return runner(task)
        except Exception as exc:  # noqa: BLE001 - moto raising is the task's failure, not the job's
            LOG.warning("task s3://%s/%s raised %r", task.bucket, task.object_key, exc)
            return TaskOutcome.failure(
                500, "InternalError", f"Local engine error: {type(exc).__name__}: {exc}"
            )

    def _finish_failed_threshold(self, job: Job) -> None:
        ran = job.succeeded + job.failed
        reason = (
            f"Job failed: {job.failed} of the {ran} tasks run so far failed, more than 50% after at "
            f"least {jobs.FAILURE_THRESHOLD_MIN_TASKS} tasks"
        )
        with self._cond:
            job.failure_reasons.append({"FailureCode": jobs.FAILURE_THRESHOLD_CODE, "FailureReason": reason})
        self._transition(job, jobs.FAILING, reasons=[reason])
        self._finish(job, jobs.FAILED, reasons=[reason])

    def _finish(self, job: Job, status: str, reasons: Iterable[str] = ()) -> None:
        """Writes the completion report (if one was asked for and a task ran), then ends the job."""
        reasons = list(reasons)
        settings = job.request["Report"]
        results = job.results
        if settings.get("Enabled") and results is not None and results.count:
            try:
                key = report.write_report(
                    self._s3_client(),
                    job_id=job.job_id,
                    report=settings,
                    results=results,
                    created_at=_now(),
                )
            except Exception as exc:  # noqa: BLE001 - S3 refusing the report fails the job, as on AWS
                reason = f"Writing the completion report failed: {exc}"
                with self._cond:
                    job.failure_reasons.append({"FailureCode": REPORT_WRITE_FAILED, "FailureReason": reason})
                status, reasons = jobs.FAILED, [*reasons, reason]
            else:
                with self._cond:
                    job.report_manifest_key = key
        if results is not None:
            results.close()
        self._transition(job, status, reasons=reasons)


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidNextTokenException("The NextToken is not valid") from exc
