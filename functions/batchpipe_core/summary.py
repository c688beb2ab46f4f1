"""The run summary (docs/OPERATIONS.md, "Reading a run summary"), which is also the execution's output: SummarizeFunction's work.

Input: the whole state document. The attempts' details are read from their records in S3 (the state
carries only pointers), the accounting invariant is checked, the run-level failures file is built,
and the summary is written next to the run's files, published to SNS and turned into EMF metrics.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import Field

from batchpipe_core.accounting import (
    AttemptRecord,
    estimate_cost_usd,
    estimate_transitions,
    run_status,
    run_totals,
    trim_errors,
)
from batchpipe_core.errors import AccountingError, BatchPipeError, readable_cause
from batchpipe_core.jobs import StatePart
from batchpipe_core.keys import as_folder
from batchpipe_core.listing import object_pages
from batchpipe_core.multipart import Limits, Source, concatenate
from batchpipe_core.observability import metrics
from batchpipe_core.report import FAILURE_HEADER_LINE
from batchpipe_core.runpage import RunPage, parse_time, render
from batchpipe_core.s3uri import s3_uri, split_s3_uri

MAX_CAUSE_CHARS = 4000
MAX_FAILURE_REASONS = 10
RUN_PAGE = "report.html"  # the run page, beside summary.json (runpage.py)
_RECORD_KEY = re.compile(r"attempt-(\d+)/$")


class RerunPart(StatePart):
    failures: str


class SpecPart(StatePart):
    name: str | None = None
    dryRun: bool = False
    rerun: RerunPart | None = None


class RunPart(StatePart):
    name: str | None = None
    executionId: str
    startTime: str | None = None
    bucket: str
    prefix: str


class ManifestPart(StatePart):
    location: str | None = None
    # null until S3 Batch Operations has counted the manifest (BuildManifest counts only dry runs).
    objects: int | None = Field(default=None, ge=0)
    estimatedObjects: int | None = None
    bytesScanned: int | None = None
    sample: list[str] = Field(default_factory=list)
    why: str | None = None  # BuildManifest: why nothing was selected


class Processed(StatePart):
    attempt: int


class LockPart(StatePart):
    """AcquireRunLock's decision (batchpipe_core.runlock.acquire_for_run)."""

    next: str
    held: bool = False
    reason: str | None = None
    message: str | None = None
    activeExecution: str | None = None
    activeSince: str | None = None


class Failure(StatePart):
    Error: str | None = None
    Cause: str | None = None


class CancelledJobs(StatePart):
    jobs: list[dict[str, Any]] = Field(default_factory=list)


class SummarizeInput(StatePart):
    spec: SpecPart
    run: RunPart
    query: dict[str, Any] | None = None
    manifest: ManifestPart | None = None
    processed: Processed | None = None
    failure: Failure | None = None
    lock: LockPart | None = None

    @property
    def skipped(self) -> bool:
        return self.failure is None and self.lock is not None and self.lock.next == "skip"

    cancelled: CancelledJobs | None = None  # CancelJobs: the jobs a failing run stopped, and why


def run_prefix(run: RunPart) -> str:
    return as_folder(run.prefix)


def summarize(s3: Any, event: SummarizeInput) -> dict[str, Any]:
    """The summary document; writes the run-level failures file when any attempt ran."""
    return summarize_run(s3, event)[0]


def summarize_run(s3: Any, event: SummarizeInput) -> tuple[dict[str, Any], list[AttemptRecord]]:
    """``summarize``, with the attempt records it read (the run page draws from them too)."""
    run, manifest = event.run, event.manifest
    failed = event.failure is not None
    records = read_records(s3, run.bucket, run_prefix(run))
    if (
        event.processed is not None
        and not failed
        and (not records or records[-1].attempt != event.processed.attempt)
    ):
        raise AccountingError(
            f"ProcessReport handled attempt {event.processed.attempt}, but the last record "
            f"in S3 is {records[-1].attempt if records else 'missing'}"
        )
    # S3's count of attempt 1 (ProcessReport checked its report against it), else the state's.
    objects = records[0].total if records else (manifest.objects if manifest else 0)
    dry_run = event.spec.dryRun and not records
    if records and manifest is None:
        raise AccountingError("attempt records exist but the state has no manifest")
    # A manifest that no attempt accounts for is an AccountingError unless the run failed (unresolved).
    counted = manifest is not None and objects is not None and not dry_run
    totals = run_totals(records, objects, finished=not failed) if counted else None
    if manifest is not None and objects is None and not failed:
        raise AccountingError("the run ends without S3's count of its manifest")
    status = run_status(failed=failed, dry_run=dry_run, objects=objects, totals=totals)

    if event.skipped:
        status = "SKIPPED"
    summary: dict[str, Any] = {
        "name": event.spec.name or run.name,
        "executionId": run.executionId,
        "status": status,
        "manifest": _manifest_output(manifest, objects, detailed=dry_run),
        **({"rerunOf": event.spec.rerun.failures} if event.spec.rerun else {}),
        "attempts": [_attempt_output(record) for record in records],
    }
    if totals is not None:
        summary["totals"] = totals.as_output()
    if records:
        summary["permanentFailures"] = write_run_failures(s3, run.bucket, run_prefix(run), records)
    if event.cancelled is not None and event.cancelled.jobs:
        summary["cancelledJobs"] = event.cancelled.jobs
    if event.skipped:
        assert event.lock is not None
        summary["skipped"] = {
            "reason": event.lock.reason,
            "activeExecution": event.lock.activeExecution,
            "activeSince": event.lock.activeSince,
            "message": event.lock.message,
        }
    elif event.lock is not None and event.lock.reason == "forced":
        summary["forcedPast"] = event.lock.activeExecution
    if failed:
        assert event.failure is not None
        summary["error"] = event.failure.Error
        summary["cause"] = (event.failure.Cause or "")[:MAX_CAUSE_CHARS]
    summary["report"] = s3_uri(run.bucket, f"{run_prefix(run)}{RUN_PAGE}")
    summary["estimatedCostUsd"] = _cost(event, records, dry_run=dry_run)
    return summary, records


def run_page(
    summary: dict[str, Any], records: list[AttemptRecord], started: str | None, finished: datetime
) -> str:
    """The run page (runpage.py) as Summarize writes it: links open the S3 console."""
    region = _region(summary["executionId"])
    return render(
        RunPage(
            summary=summary,
            records=records,
            started=parse_time(started),
            finished=finished,
            link=lambda uri: s3_console_url(uri, region),
            execution_link=_console_url(summary["executionId"]),
        )
    )


def s3_console_url(uri: str, region: str | None) -> str | None:
    """The S3 console's page of an object (or folder): it opens for whoever may read it, for as long
    as they may, unlike a presigned URL, which dies with the Lambda role's session that signed it
    (S3 User Guide, "Download and upload objects with presigned URLs")."""
    if not region or not uri.startswith("s3://"):
        return None
    bucket, key = split_s3_uri(uri)
    kind = "buckets" if key.endswith("/") else "object"
    query = urlencode({"region": region, "bucketType": "general", "prefix": key})
    return f"https://{region}.console.aws.amazon.com/s3/{kind}/{quote(bucket)}?{query}"


def read_records(s3: Any, bucket: str, prefix: str) -> list[AttemptRecord]:
    """``attempt-*/record.json`` under the run prefix, in attempt order.

    Listing with a delimiter returns one entry per attempt folder, however many report files it holds.
    """
    numbers: list[int] = []
    for page in object_pages(s3, Bucket=bucket, Prefix=f"{prefix}attempt-", Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            match = _RECORD_KEY.search(common["Prefix"])
            if match:
                numbers.append(int(match.group(1)))
    records = []
    for number in sorted(numbers):
        try:
            body = s3.get_object(Bucket=bucket, Key=f"{prefix}attempt-{number}/record.json")["Body"].read()
        except s3.exceptions.NoSuchKey:
            continue  # a job that ran but whose report was never processed (the run failed there)
        records.append(AttemptRecord.model_validate_json(body))
    return records


def _manifest_output(
    manifest: ManifestPart | None, objects: int | None, *, detailed: bool
) -> dict[str, Any] | None:
    if manifest is None:
        return None
    output: dict[str, Any] = {"location": manifest.location, "objects": objects}
    if not objects and manifest.why:
        output["why"] = manifest.why
    if manifest.estimatedObjects is not None:
        # Athena's OutputRows, when it reports any: not a count (docs/LIMITS.md), shown as such.
        output["athenaEstimatedObjects"] = manifest.estimatedObjects
    if detailed:
        output["sample"] = manifest.sample
        output["bytesScanned"] = manifest.bytesScanned
    return output


def _attempt_output(record: AttemptRecord) -> dict[str, Any]:
    output: dict[str, Any] = {
        "attempt": record.attempt,
        "jobId": record.jobId,
        "jobStatus": record.jobStatus,
        "total": record.total,
        "succeeded": record.succeeded,
        "failedRetriable": record.failedRetriable,
        "failedPermanent": record.failedPermanent,
        "errors": trim_errors(record.errors),
        "report": record.report,
    }
    if record.failureReasons:
        output["failureReasons"] = record.failureReasons[:MAX_FAILURE_REASONS]
    if record.cancelledBy:
        output["cancelledBy"] = record.cancelledBy
        output["statusUpdateReason"] = record.statusUpdateReason
    return output


def write_run_failures(
    s3: Any, bucket: str, prefix: str, records: list[AttemptRecord], limits: Limits | None = None
) -> str:
    """``permanent-failures.csv``: every object that did not succeed in the end, with its last error.

    That is each attempt's permanent failures plus the retriable failures left when no attempt
    remained. The files share one layout, so they are joined inside S3 (multipart ``UploadPartCopy``,
    as the manifest is): the first file keeps its header, every other file's is skipped by a byte
    range (``multipart.headed_order``), so millions of failure rows never pass through this function.
    Only files under 5 MiB (S3's smallest part) are read, and each file's first line, to find its
    header. A file whose header is not this version's gets this version's in front instead.
    """
    uris = [r.permanentFailures for r in records if r.permanentFailures]
    if records and records[-1].retriesExhausted:
        uris.append(records[-1].retriesExhausted)
    header = FAILURE_HEADER_LINE
    sources, headed = [], True
    for uri in uris:
        source_bucket, source_key = split_s3_uri(uri)
        if source_bucket != bucket:
            raise BatchPipeError(f"{uri} is not in the pipeline bucket {bucket}")
        head = s3.head_object(Bucket=bucket, Key=source_key)
        skip, own = _header(s3, bucket, source_key, head["ContentLength"])
        headed = headed and own == header
        sources.append(Source(source_key, head["ContentLength"] - skip, head["ETag"], offset=skip))
    key = f"{prefix}permanent-failures.csv"
    joined = concatenate(
        s3,
        bucket=bucket,
        sources=sources,
        key=key,
        scratch_prefix=f"{prefix}failures-parts/",
        head=header,
        headed=headed,
        limits=limits or Limits(),
    )
    if joined is None:  # no failure rows at all: the header alone
        s3.put_object(Bucket=bucket, Key=key, Body=header, ContentType="text/csv")
    else:
        for scratch in joined.intermediates:
            s3.delete_object(Bucket=bucket, Key=scratch)
    return s3_uri(bucket, key)


def _header(s3: Any, bucket: str, key: str, size: int) -> tuple[int, bytes]:
    """A failures file's header line: its length and its bytes (field names never hold a newline)."""
    if size == 0:
        return 0, b""
    start = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{min(size, 4096) - 1}")["Body"].read()
    end = start.find(b"\n")
    if end < 0:
        raise BatchPipeError(f"s3://{bucket}/{key} has no header line")
    return end + 1, start[: end + 1]


def _cost(event: SummarizeInput, records: list[AttemptRecord], *, dry_run: bool) -> float:
    """What the run cost (or, for a dry run, what running it once would cost)."""
    manifest = event.manifest
    athena_bytes = None if event.spec.rerun else _bytes_scanned(event)  # a rerun runs no query
    if dry_run:
        objects = manifest.objects if manifest else 0
        return estimate_cost_usd(
            jobs=1 if objects else 0,
            objects_processed=objects,
            athena_bytes_scanned=athena_bytes,
            transitions=estimate_transitions(1 if objects else 0),
        )
    return estimate_cost_usd(
        jobs=len(records),
        objects_processed=sum(r.total - r.notRun for r in records),
        athena_bytes_scanned=athena_bytes,
        transitions=estimate_transitions(len(records)),
    )


def _bytes_scanned(event: SummarizeInput) -> int | None:
    if event.manifest is not None and event.manifest.bytesScanned is not None:
        return event.manifest.bytesScanned
    statistics = ((event.query or {}).get("status") or {}).get("status", {}).get("Statistics", {})
    if "DataScannedInBytes" in statistics:
        return int(statistics["DataScannedInBytes"])
    return None if event.query is None or "execution" not in event.query else 0


# ------------------------------------------------------------------------------ notification


def notification_subject(summary: dict[str, Any]) -> str:
    """SNS subjects are ASCII, single-line and under 100 characters."""
    subject = f"batchpipe {summary['name'] or 'run'}: {summary['status']}"
    subject = subject.encode("ascii", "replace").decode().replace("\n", " ")
    return subject[:99]


def notification_message(summary: dict[str, Any], summary_uri: str | None) -> str:
    """The SNS e-mail's body, and `batchpipe summary`'s text view (which has no summary location)."""
    lines = [
        f"batchpipe run {summary.get('name')} finished: {summary['status']}",
        f"Execution: {summary.get('executionId')}",
    ]
    console = _console_url(summary.get("executionId") or "")
    if console:
        lines.append(f"Console: {console}")
    if summary.get("rerunOf"):
        lines.append(f"Rerun of: {summary['rerunOf']}")
    manifest = summary.get("manifest")
    if manifest:
        lines.append(f"Manifest: {manifest['location']} ({manifest['objects']} objects)")
    totals = summary.get("totals")
    if totals:
        lines.append(
            f"Objects: {totals['objects']} - succeeded {totals['succeeded']}, failed permanently "
            f"{totals['failedPermanent']}, retries exhausted {totals['failedRetriesExhausted']}"
            + (f", not run {totals['notRun']}" if "notRun" in totals else "")
            + (f", unresolved {totals['unresolved']}" if totals.get("unresolved") else "")
        )
    for attempt in summary.get("attempts") or []:
        top = (
            ", ".join(f"{label} x{count}" for label, count in list(attempt["errors"].items())[:5])
            or "no errors"
        )
        lines.append(
            f"Attempt {attempt['attempt']}: job {attempt['jobId']} {attempt['jobStatus']}, "
            f"{attempt['succeeded']}/{attempt['total']} succeeded ({top})"
        )
    for job in summary.get("cancelledJobs", []):
        lines.append(
            f"Job {job.get('jobId')} (attempt {job.get('attempt')}) cancelled by the pipeline: {job.get('reason')}"
        )
    if summary.get("permanentFailures"):
        lines.append(f"Failures: {summary['permanentFailures']}")
    if summary["status"] == "CANCELLED":
        lines.append(
            "A person cancelled the job: no further attempt. To finish the objects that never ran, start "
            'a run with {"rerun": {"failures": "<the Failures file>", "errorCodes": ["NotRun"]}}.'
        )
    if summary["status"] == "UNCONFIRMED":
        lines.append(
            "Nobody confirmed the job and S3 failed it after 30 days in Suspended: no further attempt. To "
            'run its objects, start a run with {"rerun": {"failures": "<the Failures file>", "errorCodes": '
            '["NotRun"]}}.'
        )
    if summary["status"] == "FAILED":
        lines.append(f"Error: {summary.get('error')}: {readable_cause(summary.get('cause'), 500)}")
    skipped = summary.get("skipped")
    if skipped:
        lines.append(f"Skipped ({skipped['reason']}): {skipped['message']}")
        lines.append(f"Active run: {skipped['activeExecution']}")
    if summary.get("forcedPast"):
        lines.append(f'Forced past the active run {summary["forcedPast"]} (concurrency "force")')
    if summary["status"] == "DRY_RUN" and manifest:
        lines.append("Sample: " + ", ".join(manifest.get("sample", [])[:5]))
    if summary.get("estimatedCostUsd") is not None:
        lines.append(f"Estimated cost: ${summary['estimatedCostUsd']:.4f}")
    if summary_uri:
        lines.append(f"Summary: {summary_uri}")
    if summary.get("report"):
        page = s3_console_url(summary["report"], _region(summary.get("executionId") or ""))
        lines.append(f"Run page: {page or summary['report']} (in the S3 console: Open)")
    return "\n".join(lines)


def _region(execution_arn: str) -> str | None:
    parts = execution_arn.split(":")
    return parts[3] if len(parts) >= 4 and parts[3] else None


def _console_url(execution_arn: str) -> str | None:
    region = _region(execution_arn)
    if region is None:
        return None
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"


# ----------------------------------------------------------------------------------- metrics


def emit_metrics(summary: dict[str, Any], start_time: str | None) -> None:
    """EMF metrics, flushed by ``@instrumented`` when the handler returns."""
    totals = summary.get("totals") or {}
    attempts = summary["attempts"]
    metrics.add_metric(name="ObjectsSucceeded", unit=MetricUnit.Count, value=totals.get("succeeded", 0))
    metrics.add_metric(
        name="ObjectsFailedPermanent", unit=MetricUnit.Count, value=totals.get("failedPermanent", 0)
    )
    metrics.add_metric(
        name="ObjectsRetriesExhausted", unit=MetricUnit.Count, value=totals.get("failedRetriesExhausted", 0)
    )
    metrics.add_metric(
        name="ObjectsRetried", unit=MetricUnit.Count, value=sum(a["total"] for a in attempts[1:])
    )
    metrics.add_metric(name="Attempts", unit=MetricUnit.Count, value=len(attempts))
    metrics.add_metric(name="EstimatedCostUsd", unit=MetricUnit.NoUnit, value=summary["estimatedCostUsd"])
    status_metric = "Runs" + summary["status"].title().replace("_", "")
    metrics.add_metric(name=status_metric, unit=MetricUnit.Count, value=1)
    duration = _seconds_since(start_time)
    if duration is not None:
        metrics.add_metric(name="RunDurationSeconds", unit=MetricUnit.Seconds, value=duration)


def _seconds_since(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    try:
        started = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - started).total_seconds())
