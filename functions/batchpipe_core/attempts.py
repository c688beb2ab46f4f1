"""One attempt's outcomes -> retry manifest, failures files and attempt record.

The models of the report stage's input (the state's ``spec``, ``run``, ``current`` and ``job``), the
writers of an attempt's (or one part's) failure files, and the record that ends the stage; the reading
is fanout.py's. Everything large goes to S3 under ``<run.prefix>attempt-<n>/``; the state gets counts
and pointers (``processed``, ARCHITECTURE.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import Field

from batchpipe_core import failure_columns as columns
from batchpipe_core.accounting import (
    CANCELLED_BY_OPERATOR,
    AttemptRecord,
    AttemptTally,
    FailedColumns,
    backoff_seconds,
    check_attempt,
)
from batchpipe_core.classification import NOT_RUN
from batchpipe_core.csv_upload import CsvUpload, Uploaded
from batchpipe_core.errors import AccountingError
from batchpipe_core.jobs import StatePart
from batchpipe_core.keys import manifest_key
from batchpipe_core.observability import logger, metrics
from batchpipe_core.prefixes import DEPTHS, PrefixTally
from batchpipe_core.report import FAILURE_HEADER, ManifestRow, ReportRow
from batchpipe_core.s3uri import s3_uri

SAMPLE_KEYS = 20


class RetrySettings(StatePart):
    maxAttempts: int = Field(ge=1)
    backoffSeconds: int = Field(ge=0)


class SpecPart(StatePart):
    retry: RetrySettings | None = None
    report: ReportChoice | None = None
    concurrency: str = "skip"

    def retry_or(self, max_attempts: int, backoff_seconds: int) -> RetrySettings:
        """The spec's retry settings, else the stack's defaults (Config)."""
        return self.retry or RetrySettings(maxAttempts=max_attempts, backoffSeconds=backoff_seconds)


class RunPart(StatePart):
    bucket: str
    prefix: str
    executionId: str | None = None
    # batchpipe_core.identity.run_id: what the run's token items are keyed by.
    runId: str | None = None
    # The run lock's fields (batchpipe_core.runlock): the report stage renews the lease too.
    name: str = "batchpipe"
    executionName: str | None = None
    leaseSeconds: int | None = Field(default=None, ge=1)


class ManifestRef(StatePart):
    location: str
    bucket: str
    key: str
    etag: str
    # S3's count (ConfirmJob); null only when the job ended before the pipeline could check it.
    objects: int | None = Field(default=None, ge=0)
    fields: list[str] | None = None  # the manifest's columns (BuildManifest); a retry manifest keeps them
    # A spec.source run's manifest that S3 generated and ConfirmJob could not copy yet (PlanReport does).
    generated: bool = False


class Current(StatePart):
    attempt: int = Field(ge=1)
    manifest: ManifestRef
    # Set by the state machine when the merge found a Complete job's report wanting: join it instead.
    joinReport: bool = False


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
    suspended: bool = False
    gone: bool = False  # DescribeJob no longer finds the job (jobs.gone_job_outcome)
    report: ReportRef = Field(default_factory=ReportRef)
    # DescribeJob's CreationTime and TerminationDate (ISO 8601): the run page's timeline.
    created: str | None = None
    ended: str | None = None


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

    def __init__(
        self,
        s3: Any,
        bucket: str,
        prefix: str,
        *,
        last_attempt: bool,
        fields: Callable[[], int],
        part: bool = False,
    ):
        # A part's files (``part``) are pieces of the attempt's, none when empty. They carry the
        # header too: the merge copies the first file's with its rows and skips the others' (a byte
        # range each, inside S3), so it reads nothing to put a header in front (multipart.headed_order).
        self.permanent = CsvUpload(
            s3, bucket, f"{prefix}permanent-failures.csv", header=FAILURE_HEADER, skip_if_empty=part
        )
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
        self.prefixes = PrefixTally()  # failures by key prefix, for the run page (prefixes.py)

    def on_permanent(self, row: ReportRow) -> None:
        self.permanent.writerow(failure_fields(row))
        self.prefixes.add(row.decoded_key, retriable=False)

    def on_retriable(self, row: ReportRow) -> None:
        self.prefixes.add(row.decoded_key, retriable=True)
        if self.retry is None:
            assert self.exhausted is not None
            self.exhausted.writerow(failure_fields(row))
            return
        if not self._field_count:
            self._field_count = self._fields()
        # The report spells the key as this attempt's manifest did: written again as it is when
        # percent- and form-decoding read it alike, else re-encoded from the decoded key, so the next
        # job gets a spelling S3 reads unambiguously (keys.manifest_key; on_columns does the same).
        decoded = row.decoded_key
        key = manifest_key(row.key, decoded)
        if self._field_count == 3:
            self.retry.writerow((row.bucket, key, row.version_id or "null"))
        else:
            self.retry.writerow((row.bucket, key))
        if len(self.sample) < SAMPLE_KEYS:
            self.sample.append(decoded)

    def on_columns(self, failed: FailedColumns, retriable: bool) -> None:
        """``on_retriable`` or ``on_permanent`` for a batch's rows at once, column-wise: the same
        bytes in the same files, the same prefixes and sample (tests/unit/test_failure_columns.py)."""
        spelled = None
        if retriable and self.retry is not None:
            decoded, spelled = columns.retry_keys(failed.key)
        else:
            decoded = columns.decoded_keys(failed.key)
        self.prefixes.add_counts(columns.prefix_counts(decoded, DEPTHS), retriable=retriable)
        if not retriable or self.retry is None:
            upload = self.permanent if not retriable else self.exhausted
            assert upload is not None
            fields = [
                failed.bucket,
                decoded,
                failed.version_id,
                failed.http_status,
                failed.error_code,
                failed.message,
            ]
            upload.write_block(columns.csv_pieces(fields), len(failed))
            return
        if not self._field_count:
            self._field_count = self._fields()
        fields = [failed.bucket, spelled]
        if self._field_count == 3:
            fields.append(
                columns.pc.if_else(columns.pc.equal(failed.version_id, ""), "null", failed.version_id)
            )
        self.retry.write_block(columns.csv_pieces(fields), len(failed))
        if len(self.sample) < SAMPLE_KEYS:
            self.sample.extend(decoded.slice(0, SAMPLE_KEYS - len(self.sample)).to_pylist())

    def uploads(self) -> list[CsvUpload]:
        return [u for u in (self.permanent, self.retry, self.exhausted) if u is not None]

    def abort(self) -> None:
        for upload in self.uploads():
            upload.abort()


def failure_fields(row: ReportRow) -> tuple[str, ...]:
    http_status = "" if row.http_status is None else str(row.http_status)
    return (row.bucket, row.decoded_key, row.version_id, http_status, row.error_code, row.message)


# ------------------------------------------------------------------------------------- the record


def not_run_row(message: str) -> Callable[[ManifestRow], ReportRow]:
    """A manifest row the report never mentions, as a failed outcome: retriable ``NotRun``."""

    def absent(row: ManifestRow) -> ReportRow:
        return ReportRow(row.bucket, row.key, row.version_id, "failed", None, NOT_RUN, message)

    return absent


def succeeded_row(row: ManifestRow) -> ReportRow:
    """A manifest row a FailedTasksOnly report of a job that ran every task leaves out: it succeeded."""
    return ReportRow(row.bucket, row.key, row.version_id, "succeeded", None, "", "")


@dataclass(frozen=True)
class AttemptFiles:
    """The attempt's files, written: failures (always), retry manifest and retries exhausted (if any)."""

    permanent: Uploaded | None
    retry: Uploaded | None
    exhausted: Uploaded | None


def finish_attempt(
    s3: Any,
    event: ProcessReportInput,
    counts: AttemptTally,
    files: AttemptFiles,
    *,
    report_uri: str | None,
    scope: str,
    retry: RetrySettings,
    attempt_prefix: str,
    last_attempt: bool,
    cancelled_by: str | None,
    unmatched: int,
    sample: list[str],
    prefixes: dict[str, Any] | None = None,
    never_confirmed: bool = False,
) -> dict[str, Any]:
    """Checks the attempt's accounting, writes its record and returns the state's ``processed``.

    Where each object's outcome comes from (fanout.py does the reading):

    * No report (S3 writes none when no task was invoked, e.g. a manifest ETag mismatch): every
      manifest row is ``NotRun``. If the job says tasks ran, the report must exist: TransientError.
    * A Complete job ran every task, so its report suffices and the manifest is not read:
      ``AllTasks`` lists every task; ``FailedTasksOnly`` lists the failures and the rest succeeded.
      Both are checked (row count = objects; failures = the job's failed count when known); a report
      that disagrees - duplicate rows of a task run twice, a missing row - is joined instead. Where
      DescribeJob's succeeded and failed counts add up to the objects, the files of successes are not
      read: the objects the failures do not name succeeded, once the failures read equal S3's count
      (``fanout.s3_counted_every_task``).
    * Otherwise (Failed or Cancelled jobs) the report is joined with the manifest: a manifest row
      with no report row is ``NotRun`` (retriable). Under ``FailedTasksOnly`` a missing row may also
      be a success; that is only assumed when the job's ProgressSummary shows every task ran
      (succeeded + failed = objects). Otherwise such rows are run again rather than guessed: S3 runs
      tasks at least once anyway, so operations are already required to tolerate a rerun, and the
      counts stay exact (an object is counted once, as retriable, then by the attempt that settles it).

    A person's cancel (``cancelled_by`` operator) is final: the attempt is the last one whatever
    ``retry`` allows, and its retriable objects go to the retries-exhausted file, which the run's
    failures file includes, so the operator can rerun them (spec ``rerun``).
    """
    job, current, run = event.job, event.current, event.run
    if counts.total != current.manifest.objects:
        raise AccountingError(
            f"attempt {current.attempt}: {counts.total} outcomes for a manifest of {current.manifest.objects} objects"
        )
    permanent, retry_manifest, exhausted = files.permanent, files.retry, files.exhausted
    if retry_manifest is not None and retry_manifest.rows != counts.failed_retriable:
        raise AccountingError(
            f"retry manifest has {retry_manifest.rows} rows, {counts.failed_retriable} retriable"
        )

    closed = exhausted.rows if exhausted else 0
    if cancelled_by == CANCELLED_BY_OPERATOR or never_confirmed:
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
        report=report_uri,
        reportScope=scope,
        failureReasons=job.failureReasons,
        statusUpdateReason=job.statusUpdateReason or None,
        permanentFailures=permanent.uri if permanent else None,
        retryManifest=retry_manifest.uri if retry_manifest else None,
        retriesExhausted=exhausted.uri if exhausted else None,
        unmatchedReportRows=unmatched,
        cancelledBy=cancelled_by,
        failuresByPrefix=prefixes,
        jobCreated=job.created,
        jobEnded=job.ended,
        recorded=datetime.now(UTC).isoformat(timespec="milliseconds"),
        neverConfirmed=never_confirmed,
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
        "next": _next_attempt(current.attempt, retry_manifest, sample, current.manifest.fields)
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
