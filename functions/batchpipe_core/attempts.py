"""One attempt's completion report -> counts, retry manifest, failures file and attempt record.

ProcessReportFunction's work. Input: the state's ``spec``, ``run``, ``current`` and ``job``; output:
``processed`` (ARCHITECTURE.md). Everything large goes to S3 under ``<run.prefix>attempt-<n>/``; the
state gets counts and pointers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import Field

from batchpipe_core.accounting import (
    CANCELLED_BY_OPERATOR,
    AttemptRecord,
    AttemptTally,
    backoff_seconds,
    check_attempt,
    preferred_outcome,
    tally_parts,
)
from batchpipe_core.classification import NOT_RUN, Disposition
from batchpipe_core.errors import AccountingError, BatchPipeError, TransientError
from batchpipe_core.jobs import TERMINAL_STATUSES, StatePart
from batchpipe_core.keys import as_folder, encode_key
from batchpipe_core.observability import logger, metrics
from batchpipe_core.report import (
    FAILURE_HEADER,
    CsvUpload,
    ManifestRow,
    Reconciliation,
    ReportManifest,
    ReportRow,
    Uploaded,
    iter_manifest_rows,
    iter_report_parts,
    iter_report_rows,
    manifest_field_count,
    read_report_manifest,
    report_manifest_key,
    s3_uri,
)

SAMPLE_KEYS = 20


class RetrySettings(StatePart):
    maxAttempts: int = Field(ge=1)
    backoffSeconds: int = Field(ge=0)


class SpecPart(StatePart):
    retry: RetrySettings | None = None
    report: ReportChoice | None = None


class RunPart(StatePart):
    bucket: str
    prefix: str
    executionId: str | None = None
    # batchpipe_core.identity.run_id: what the run's token items are keyed by.
    runId: str | None = None


class ManifestRef(StatePart):
    location: str
    bucket: str
    key: str
    etag: str
    # S3's count (ConfirmJob); null only when the job ended before the pipeline could check it.
    objects: int | None = Field(default=None, ge=0)
    fields: list[str] | None = None  # the manifest's columns (BuildManifest); a retry manifest keeps them


class Current(StatePart):
    attempt: int = Field(ge=1)
    manifest: ManifestRef


class ReportRef(StatePart):
    """Where the job wrote its report; unknown parts fall back to where CreateJob puts reports."""

    bucket: str | None = None
    prefix: str | None = None
    scope: str | None = None


class ReportChoice(StatePart):
    scope: str | None = None


class JobOutcome(StatePart):
    jobId: str
    status: str
    terminal: bool = True
    total: int | None = None
    succeeded: int | None = None
    failed: int | None = None
    failureReasons: list[dict[str, Any]] = Field(default_factory=list)
    statusUpdateReason: str | None = None
    report: ReportRef = Field(default_factory=ReportRef)


class ProcessReportInput(StatePart):
    spec: SpecPart
    run: RunPart
    current: Current
    job: JobOutcome


# ------------------------------------------------------------------------------------- outputs


class AttemptOutputs:
    """The files one attempt writes while its outcomes stream by; nothing is kept in memory.

    Retriable failures go to the retry manifest (keys and versions exactly as the report gives them,
    with as many columns as the attempt's manifest) unless this was the last attempt, in which case
    they go to the retries-exhausted file, which has the permanent-failures layout.
    """

    def __init__(self, s3: Any, bucket: str, prefix: str, *, last_attempt: bool, fields: Callable[[], int]):
        self.permanent = CsvUpload(s3, bucket, f"{prefix}permanent-failures.csv", header=FAILURE_HEADER)
        self.retry = (
            None if last_attempt else CsvUpload(s3, bucket, f"{prefix}retry-manifest.csv", skip_if_empty=True)
        )
        self.exhausted = (
            CsvUpload(s3, bucket, f"{prefix}retries-exhausted.csv", header=FAILURE_HEADER, skip_if_empty=True)
            if last_attempt
            else None
        )
        self._fields = fields
        self._field_count = 0
        self.sample: list[str] = []

    def on_permanent(self, row: ReportRow) -> None:
        self.permanent.writerow(failure_fields(row))

    def on_retriable(self, row: ReportRow) -> None:
        if self.retry is None:
            assert self.exhausted is not None
            self.exhausted.writerow(failure_fields(row))
            return
        if not self._field_count:
            self._field_count = self._fields()
        # Re-encoded from the decoded key: the report may spell it differently from our manifests
        # (keys.report_key), and the next job must get the one encoding S3 reads unambiguously.
        key = encode_key(row.decoded_key)
        if self._field_count == 3:
            self.retry.writerow((row.bucket, key, row.version_id or "null"))
        else:
            self.retry.writerow((row.bucket, key))
        if len(self.sample) < SAMPLE_KEYS:
            self.sample.append(row.decoded_key)

    def uploads(self) -> list[CsvUpload]:
        return [u for u in (self.permanent, self.retry, self.exhausted) if u is not None]

    def abort(self) -> None:
        for upload in self.uploads():
            upload.abort()


def failure_fields(row: ReportRow) -> tuple[str, ...]:
    http_status = "" if row.http_status is None else str(row.http_status)
    return (row.bucket, row.decoded_key, row.version_id, http_status, row.error_code, row.message)


# ------------------------------------------------------------------------------------- the work


@dataclass
class _Pass:
    counts: AttemptTally
    outputs: AttemptOutputs
    reconciliation: Reconciliation | None = None


def process_attempt(
    s3: Any,
    event: ProcessReportInput,
    *,
    retry: RetrySettings,
    unknown: Disposition,
    default_scope: str = "AllTasks",
    cancelled_by: str | None = None,
) -> dict:
    """Accounts for every object of the attempt's manifest exactly once, then writes the record.

    ``cancelled_by`` says who cancelled a Cancelled job (``accounting.CANCELLED_BY_*``). A person's
    cancel is final: the attempt is the last one whatever ``retry`` allows, and its retriable objects
    (those never run, and those that ran and failed retriably) go to the retries-exhausted file, which
    the run's failures file includes, so the operator can rerun them (spec ``rerun``).

    Where each object's outcome comes from:

    * No report (S3 writes none when no task was invoked, e.g. a manifest ETag mismatch): every
      manifest row is ``NotRun``. If the job says tasks ran, the report must exist: TransientError.
    * A Complete job ran every task, so its report suffices and the manifest is not read:
      ``AllTasks`` lists every task; ``FailedTasksOnly`` lists the failures and the rest succeeded.
      Both are checked (row count = objects; failures = the job's failed count when known); a report
      that disagrees - duplicate rows of a task run twice, a missing row - falls to the next case.
    * Otherwise (Failed or Cancelled jobs) the report is joined with the manifest: a manifest row
      with no report row is ``NotRun`` (retriable). Under ``FailedTasksOnly`` a missing row may also
      be a success; that is only assumed when the job's ProgressSummary shows every task ran
      (succeeded + failed = objects). Otherwise such rows are run again rather than guessed: S3 runs
      tasks at least once anyway, so operations are already required to tolerate a rerun, and the
      counts stay exact (an object is counted once, as retriable, then by the attempt that settles it).
    """
    job, current, run = event.job, event.current, event.run
    if job.status not in TERMINAL_STATUSES:
        raise BatchPipeError(f"job {job.jobId} is {job.status}; ProcessReport needs a terminal job")
    if current.manifest.objects is None:
        current = current.model_copy(update={"manifest": _counted(s3, current.manifest, job)})
        event = event.model_copy(update={"current": current})
    manifest = current.manifest
    prefix = as_folder(run.prefix)
    attempt_prefix = f"{prefix}attempt-{current.attempt}/"
    by_person = job.status == "Cancelled" and cancelled_by == CANCELLED_BY_OPERATOR
    last_attempt = current.attempt >= retry.maxAttempts or by_person
    report_bucket = job.report.bucket or run.bucket
    report_prefix = job.report.prefix or f"{attempt_prefix}report"
    scope = job.report.scope or (event.spec.report and event.spec.report.scope) or default_scope
    report = read_report_manifest(s3, report_bucket, report_prefix, job.jobId)
    not_run = _not_run(
        f"not run: job {job.status}" + (f" ({job.statusUpdateReason})" if job.statusUpdateReason else "")
    )

    def new_pass(rows: Iterable[ReportRow] | None = None) -> _Pass:
        """Outcomes counted and written: ``rows``, else the report's batches (the Complete-job path)."""
        outputs = AttemptOutputs(
            s3,
            run.bucket,
            attempt_prefix,
            last_attempt=last_attempt,
            fields=lambda: manifest_field_count(s3, manifest.bucket, manifest.key),
        )
        counts = tally_parts(
            [rows] if rows is not None else iter_report_parts(s3, report),
            unknown=unknown,
            on_retriable=outputs.on_retriable,
            on_permanent=outputs.on_permanent,
        )
        return _Pass(counts, outputs)

    def joined_pass(absent: Callable[[ManifestRow], ReportRow]) -> _Pass:
        assert report is not None
        joined = Reconciliation(
            iter_manifest_rows(s3, manifest.bucket, manifest.key),
            iter_report_rows(s3, report),
            absent=absent,
            prefer=preferred_outcome(unknown),
            expected_rows=manifest.objects,
        )
        result = new_pass(joined)
        result.reconciliation = joined
        return result

    if report is None:
        if job.status == "Complete" or (job.succeeded or 0) + (job.failed or 0) > 0:
            raise TransientError(
                f"job {job.jobId} is {job.status} and ran tasks, but its report "
                f"s3://{report_bucket}/{report_manifest_key(report_prefix, job.jobId)} is not there yet"
            )
        result = new_pass(not_run(row) for row in iter_manifest_rows(s3, manifest.bucket, manifest.key))
    elif job.status == "Complete":
        result = new_pass()
        if _complete_report_adds_up(result.counts, job, scope, manifest.objects):
            if scope == "FailedTasksOnly":
                result.counts.succeeded += manifest.objects - result.counts.rows
        else:
            logger.warning(
                "report does not match the manifest one to one; joining them",
                extra={"rows": result.counts.rows, "objects": manifest.objects},
            )
            result.outputs.abort()
            result = joined_pass(_succeeded if scope == "FailedTasksOnly" else not_run)
    else:
        ran_every_task = (
            job.succeeded is not None
            and job.failed is not None
            and job.succeeded + job.failed == manifest.objects
        )
        result = joined_pass(_succeeded if scope == "FailedTasksOnly" and ran_every_task else not_run)

    return _finish(
        s3,
        event,
        result,
        report,
        scope=scope,
        retry=retry,
        attempt_prefix=attempt_prefix,
        last_attempt=last_attempt,
        cancelled_by=cancelled_by if job.status == "Cancelled" else None,
    )


def _counted(s3: Any, manifest: ManifestRef, job: JobOutcome) -> ManifestRef:
    """The manifest with its object count, for a job that ended before ConfirmJob saw it counted.

    A Complete job ran every task S3 counted; any other job may have stopped in Preparing, so the
    pipeline counts the rows of its own manifest (one streamed read, only in this rare case).
    """
    if job.status == "Complete" and job.total is not None:
        objects = job.total
    else:
        objects = sum(1 for _ in iter_manifest_rows(s3, manifest.bucket, manifest.key))
    logger.warning(
        "the job ended before its count was checked", extra={"jobId": job.jobId, "objects": objects}
    )
    return manifest.model_copy(update={"objects": objects})


def _complete_report_adds_up(counts: AttemptTally, job: JobOutcome, scope: str, objects: int) -> bool:
    failures = counts.failed_retriable + counts.failed_permanent
    if scope == "FailedTasksOnly":
        return counts.rows <= objects and (job.failed is None or job.failed == failures)
    return counts.rows == objects


def _not_run(message: str) -> Callable[[ManifestRow], ReportRow]:
    def absent(row: ManifestRow) -> ReportRow:
        return ReportRow(row.bucket, row.key, row.version_id, "failed", None, NOT_RUN, message)

    return absent


def _succeeded(row: ManifestRow) -> ReportRow:
    return ReportRow(row.bucket, row.key, row.version_id, "succeeded", None, "", "")


def _finish(
    s3: Any,
    event: ProcessReportInput,
    result: _Pass,
    report: ReportManifest | None,
    *,
    scope: str,
    retry: RetrySettings,
    attempt_prefix: str,
    last_attempt: bool,
    cancelled_by: str | None,
) -> dict[str, Any]:
    job, current, run = event.job, event.current, event.run
    counts, outputs = result.counts, result.outputs
    if counts.total != current.manifest.objects:
        outputs.abort()
        raise AccountingError(
            f"attempt {current.attempt}: {counts.total} outcomes for a manifest of {current.manifest.objects} objects"
        )
    permanent = outputs.permanent.close()
    retry_manifest = outputs.retry.close() if outputs.retry else None
    exhausted = outputs.exhausted.close() if outputs.exhausted else None
    if retry_manifest is not None and retry_manifest.rows != counts.failed_retriable:
        raise AccountingError(
            f"retry manifest has {retry_manifest.rows} rows, {counts.failed_retriable} retriable"
        )

    closed = exhausted.rows if exhausted else 0
    if cancelled_by == CANCELLED_BY_OPERATOR:
        closed -= counts.not_run  # never run: counted as notRun, listed in the same file
    record = AttemptRecord(
        attempt=current.attempt,
        jobId=job.jobId,
        jobStatus=job.status,
        total=counts.total,
        succeeded=counts.succeeded,
        failedRetriable=counts.failed_retriable,
        failedPermanent=counts.failed_permanent,
        failedRetriesExhausted=closed,
        notRun=counts.not_run,
        errors=dict(counts.errors.most_common()),
        unknownErrorCodes=dict(counts.unknown_errors.most_common()),
        report=report.uri if report else None,
        reportScope=scope,
        failureReasons=job.failureReasons,
        statusUpdateReason=job.statusUpdateReason or None,
        permanentFailures=permanent.uri if permanent else None,
        retryManifest=retry_manifest.uri if retry_manifest else None,
        retriesExhausted=exhausted.uri if exhausted else None,
        unmatchedReportRows=result.reconciliation.unmatched if result.reconciliation else 0,
        cancelledBy=cancelled_by,
    )
    check_attempt(record)
    record_key = f"{attempt_prefix}record.json"
    s3.put_object(
        Bucket=run.bucket,
        Key=record_key,
        Body=json.dumps(record.model_dump(), indent=1).encode(),
        ContentType="application/json",
    )
    logger.info("attempt processed", extra={"record": record.model_dump(exclude={"errors"})})
    metrics.add_metric(name="ReportRowsProcessed", unit=MetricUnit.Count, value=counts.rows)
    metrics.add_metric(name="ObjectsNotRun", unit=MetricUnit.Count, value=counts.not_run)
    return {
        "attempt": current.attempt,
        "total": counts.total,
        "succeeded": counts.succeeded,
        "failedRetriable": counts.failed_retriable,
        "failedPermanent": counts.failed_permanent,
        "record": s3_uri(run.bucket, record_key),
        "next": _next_attempt(current.attempt, retry_manifest, outputs.sample, current.manifest.fields)
        if not last_attempt
        else None,
        "backoffSeconds": backoff_seconds(retry.backoffSeconds, current.attempt),
    }


def _next_attempt(
    attempt: int, manifest: Uploaded | None, sample: list[str], fields: list[str] | None
) -> dict[str, Any] | None:
    """The next attempt's ``current``: the retry manifest in BuildManifest's shape, or None if empty.

    A retry manifest has its attempt's columns, so it keeps its ``fields``."""
    if manifest is None or manifest.rows == 0:
        return None
    return {
        "attempt": attempt + 1,
        "manifest": {
            "location": manifest.uri,
            "bucket": manifest.bucket,
            "key": manifest.key,
            "etag": manifest.etag,
            "objects": manifest.rows,
            "sizeBytes": manifest.size,
            "bytesScanned": 0,
            "sample": sample,
            "fields": fields,
        },
    }
