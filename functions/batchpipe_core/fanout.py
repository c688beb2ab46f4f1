"""One attempt's report, processed by many bounded invocations: plan, parts, merge.

No invocation reads more than a bounded stretch of report or manifest (docs/PERFORMANCE.md,
"Fan-out"), so a job of any size - S3 Batch Operations takes billions of objects - is processed by
many workers of the same size, each finishing far inside its timeout:

* **plan** (PlanReportFunction) reads the report's ``manifest.json`` and writes ``plan.json`` and the
  item lists the state machine's Distributed Maps read, under ``<attempt>/parts/<mode>/``;
* **parts** (ReportPartFunction, one Map child per results file or partition) read one
  ``byte_window.ByteWindow`` of at most ``partRows`` records (and ``WINDOW_MAX_BYTES``) and
  return where the next window starts; the child loops until the file is done:

  - ``count`` (a Complete job: its report alone holds every outcome): count and classify the window
    in Arrow (``accounting.tally_parts``) and write its failures;
  - ``join`` (a Failed or Cancelled job, or a report that does not add up: which manifest rows did the
    report never mention?): first each window of the manifest and of the report is *scattered* into
    ``partitions`` files by a stable hash of the object's identity, then one worker per partition
    joins its two sides in memory (``reconciliation.Reconciliation``) and writes its outcomes; a
    join of many windows is *regrouped* between the two (``plan_regroup``, ``_regroup``), so that a
    partition reads one object per batch of windows, not one per window;

* **merge** (ProcessReportFunction) adds the parts' counts - exact integers, nothing estimated -
  checks that the windows tile every file and that every partition was joined, and joins the parts'
  failure files server-side (``multipart.concatenate``) into the attempt's files.

The Maps hand each child the state's ``reportPlan`` (``$`` in ``ItemSelector`` is the Map state's
input) and its item (``$$.Map.Item.Value``), read from the item files with an ``ItemReader``
(Step Functions developer guide, "ItemSelector (Map)" and "ItemReader (Map)").

Every part writes to keys named after what it read (file and offset, or partition), so a retried
invocation overwrites its own output and nothing is counted twice.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import itertools
import json
import math
import os
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from batchpipe_core.accounting import (
    CANCELLED_BY_OPERATOR,
    AttemptTally,
    preferred_outcome,
    tally,
    tally_results,
)
from batchpipe_core.attempts import (
    AttemptFiles,
    AttemptOutputs,
    JobOutcome,
    ProcessReportInput,
    RetrySettings,
    finish_attempt,
    not_run_row,
    succeeded_row,
)
from batchpipe_core.byte_window import Window, open_window
from batchpipe_core.classification import Disposition
from batchpipe_core.csv_upload import CsvUpload, CsvWriter, Uploaded
from batchpipe_core.errors import AccountingError, BatchPipeError, JobPreparationFailedError, TransientError
from batchpipe_core.jobs import TERMINAL_STATUSES, ManifestRef
from batchpipe_core.keys import as_folder
from batchpipe_core.multipart import (
    LIST_PAGE_KEYS,
    S3_LIMITS,
    Limits,
    Source,
    concatenate,
    first_packing_group,
    list_sources,
    packed_key,
    packing_groups,
    packing_plan,
    sources_after,
    with_packed,
)
from batchpipe_core.observability import logger
from batchpipe_core.prefixes import merge as merge_prefixes
from batchpipe_core.reconciliation import Reconciliation, identity
from batchpipe_core.report import (
    FAILURE_HEADER_LINE,
    MIN_RESULT_RECORD_BYTES,
    READ_BUFFER_BYTES,
    SUCCEEDED,
    default_reader,
    manifest_field_count,
    parse_manifest_rows,
    parse_result_rows,
    read_report_manifest,
    read_result_rows,
    report_manifest_key,
    text_stream,
)

COUNT, JOIN = "count", "join"
MANIFEST, REPORT = "manifest", "report"
#: How the parts' outputs are named; the merge joins each kind into the attempt's file of that name.
KINDS = {
    "permanent": "permanent-failures.csv",
    "retry": "retry-manifest.csv",
    "exhausted": "retries-exhausted.csv",
}
#: The header each kind's files begin with, parts' and packed objects' alike (a retry manifest has none).
HEADS = {"permanent": FAILURE_HEADER_LINE, "retry": b"", "exhausted": FAILURE_HEADER_LINE}
SAMPLE_KEYS = 20
MERGE_READERS = 16  # parallel GETs of the parts' small tally documents
#: A scattered window also ends at the first record end past this many bytes. A scatter holds at
#: most SCATTER_SPILL_CHARS of rows in memory and spills the rest to /tmp, so its memory does not
#: bound the window; this bounds its /tmp (the window's rows once, ~1 GiB of ReportPartFunction's
#: 10 GiB) and its streaming time (1 GiB in and out: ~43 s at 50 MB/s). At the realistic rows of
#: docs/PERFORMANCE.md (68-93 B) a window is then bound by its records (ReportPartRows, 10 million:
#: 75 CPU-s at the measured scatter rate), not by bytes: the join's windows are 3x fewer than under
#: the 256 MiB bound a scatter had while it held its window in memory (issue 23 §3).
WINDOW_MAX_BYTES = 1 << 30
#: A counted window's byte bound: 160 MiB holds at most 9,868,951 results records of the shortest
#: kind (report.MIN_RESULT_RECORD_BYTES), fewer than the default ReportPartRows (10 million), so the
#: window need not count its records (byte_window.ByteWindow): a third less CPU for the count.
COUNT_WINDOW_MAX_BYTES = 160 << 20
#: Join partitions are sized for ``partition_fill(joinRows)`` of ``joinRows`` rows on average, so
#: that the hash's spread keeps every partition under ``joinRows``: at least this share's headroom
#: (at the tests' 1,000 rows, 800 +- 28: 7 standard deviations) ...
PARTITION_FILL = 0.8
#: ... or, where that is less, this many standard deviations of the hash's spread (a partition's
#: rows are binomial: sd <= sqrt(mean) <= sqrt(joinRows)). At 4 million rows a partition is planned
#: for 3,980,000 +- 1,995, not 3.2 million: a fifth fewer partitions for the same bound.
PARTITION_SPREAD_SDS = 10
#: At most this many bytes of manifest and report (their CSV, as S3 stores them) per join partition
#: on average: the join spills both sides to /tmp once (pickled rows, about their CSV's size), so
#: with keys of S3's full 1,024 bytes a partition still fits ReportPartFunction's 10 GiB of /tmp
#: with room. Realistic rows (68 B of manifest, 93 B of report, docs/PERFORMANCE.md) reach it only
#: past 18 million rows, so ``joinRows`` bounds them first.
JOIN_PARTITION_BYTES = 3 << 30


#: The most windows a regroup invocation reads, and the most groups the partitions are cut into
#: (issue 23 §3: ``regroup_fan_in``). Its reads are then at most this many ranged GETs (two per
#: indexed window), and its input about one window's worth of bytes: a batch of k windows, of which
#: it reads one group of k, ~1/k of each window's rows.
REGROUP_FAN_IN = 64


def join_reads(windows: int, partitions: int, fan_in: int | None) -> int:
    """The join's ranged GETs of scattered rows (strided windows: one per range): every partition
    reads every window (``fan_in`` None), or, regrouped with groups and batches of ``fan_in``, each
    regroup invocation reads its group from each window of its batch (windows x k), writes one object
    (k x batches), and each partition reads one range of each of its group's objects (partitions x
    batches)."""
    if fan_in is None:
        return windows * partitions
    batches = math.ceil(windows / fan_in)
    return windows * fan_in + fan_in * batches + partitions * batches


def regroup_fan_in(windows: int, partitions: int, fan_in: int = REGROUP_FAN_IN) -> int | None:
    """How a join of ``windows`` scattered windows into ``partitions`` is regrouped: ``k`` groups of
    adjacent partitions and batches of about ``k`` windows (the return), or None to read the windows
    directly. k is about the square root of the partitions (W x k + P x W / k is least there), at
    most ``fan_in``. There is no regroup for a join of at most ``fan_in`` windows (a partition then
    reads no more ranges than a regroup invocation would: small jobs keep the one level), where
    there would be one group, or where it reads no fewer ranges than the direct join
    (``join_reads``)."""
    k = min(fan_in, math.isqrt(partitions))
    if k < 2 or windows <= fan_in:
        return None
    return k if join_reads(windows, partitions, k) < join_reads(windows, partitions, None) else None


def group_partitions(group: int, groups: int, partitions: int) -> range:
    """The adjacent partitions of regroup group ``group`` of ``groups``: contiguous stretches of a
    strided window's object (and offsets of an indexed one), so one ranged GET reads them all."""
    return range(group * partitions // groups, (group + 1) * partitions // groups)


def group_of(partition: int, groups: int, partitions: int) -> int:
    group = partition * groups // partitions
    while partition >= group_partitions(group, groups, partitions).stop:
        group += 1
    return group


def partition_fill(join_rows: int) -> float:
    """The average share of ``join_rows`` a partition is planned for: PARTITION_FILL, or more where
    PARTITION_SPREAD_SDS standard deviations of the spread still fit under ``join_rows``."""
    return max(PARTITION_FILL, 1 - PARTITION_SPREAD_SDS / math.sqrt(join_rows))


def join_partitions(rows: int, input_bytes: int, join_rows: int) -> int:
    """How many hash partitions a join of ``rows`` manifest rows and ``input_bytes`` of manifest and
    report takes: each holds ~``partition_fill(join_rows)`` of its row bound (the time one
    invocation joins in, docs/PERFORMANCE.md) and at most JOIN_PARTITION_BYTES (its /tmp)."""
    by_rows = math.ceil(rows / (join_rows * partition_fill(join_rows)))
    return max(1, by_rows, math.ceil(input_bytes / JOIN_PARTITION_BYTES))


class FileRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bucket: str
    key: str
    #: A results file's TaskExecutionStatus in the report's manifest.json (None: the job's manifest).
    status: str | None = None


class Batch(BaseModel):
    """A regroup batch: the scattered windows of one file that start in bytes ``start`` up to ``end``
    (None: the file's end). Batches cut each file's bytes, not its windows, because the windows are
    known only once they are read; the byte ranges tile every file, so each window is in exactly one."""

    model_config = ConfigDict(extra="forbid")
    side: Literal["manifest", "report"]
    file: int = Field(ge=0)
    start: int = Field(ge=0)
    end: int | None


class Regroup(BaseModel):
    """The join's second level (``regroup_fan_in``): ``groups`` groups of adjacent partitions, and
    how many batches of windows (``plan.json`` lists them: ``Plan.batches``, in the order the direct
    join reads windows - the manifest's, then each results file's, by offset - so a partition reads
    its rows in the same order either way)."""

    model_config = ConfigDict(extra="forbid")
    groups: int = Field(ge=2)
    batches: int = Field(ge=1)


class PartPlan(BaseModel):
    """What a ReportPart invocation needs of the plan: PlanReport writes it into every Map item, so
    no invocation reads ``plan.json`` (a GET per window; a retried invocation gets the same item)."""

    model_config = ConfigDict(extra="forbid")
    mode: str
    bucket: str
    prefix: str  # <attempt>/parts/<mode>/
    lastAttempt: bool
    fields: int | None  # the manifest's columns (2 or 3), for retry-manifest rows
    partitions: int
    absent: str  # what a manifest row the report never mentions is: notRun, or succeeded
    notRunMessage: str
    partRows: int = Field(ge=1)
    joinRows: int = Field(ge=1)
    #: A join's regroup level, or None: each partition reads every scattered window.
    regroup: Regroup | None = None


class Plan(PartPlan):
    """``plan.json``: everything the parts and the merge need that the state does not carry."""

    attemptPrefix: str
    attempt: int
    scope: str
    cancelledBy: str | None
    neverConfirmed: bool = False  # the job failed unconfirmed in Suspended (30 days): final
    manifest: FileRef
    results: list[FileRef]  # the report's results files, in its manifest.json order
    report: str | None  # the report's manifest.json URI
    objects: int | None  # S3's count of the manifest, when known
    #: The report's files of successes are not read: S3's own counts stand for them (s3_counted_every_task).
    successesUnread: bool = False
    #: The regroup level's batches (``Regroup``), each given to its RegroupPartitions items.
    batches: list[Batch] = []


class PackingCursor(BaseModel):
    """Where the PackParts loop is: the state carries it from step to step (``reportPlan.packing``),
    so each step lists only from where the last one stopped."""

    model_config = ConfigDict(extra="forbid")
    done: bool = False
    groups: int = Field(default=0, ge=0)  # groups packed so far, every kind
    kind: int = Field(default=0, ge=0)  # the kind being packed (its place in KINDS)
    index: int = Field(default=0, ge=0)  # groups of that kind packed so far
    after: str | None = None  # the last key of the kind's last group packed (StartAfter)


class PlanRef(BaseModel):
    """What the state carries between the plan, the Maps and the merge."""

    model_config = ConfigDict(extra="ignore")
    bucket: str
    prefix: str
    mode: str
    partitions: int
    readItems: str
    joinItems: str
    #: The RegroupPartitions items, written only when the plan regroups (``regroups`` of them).
    regroupItems: str | None = None
    regroups: int = 0
    executionId: str | None = None  # the run's execution: the Maps' children log under it
    packing: PackingCursor | None = None  # the PackParts loop's cursor, once it has run a step


class FileItem(BaseModel):
    """A ReadReportParts item: a file read window by window (the job's manifest when joined, or one
    of the report's results files, by its place in ``Plan.results``): the file itself (``source``)
    and the plan's fields a part needs (``plan``); an item without them (written before they were
    carried) sends the part to ``plan.json``."""

    model_config = ConfigDict(extra="forbid")
    side: Literal["manifest", "report"]
    file: int = Field(ge=0)
    source: FileRef | None = None
    plan: PartPlan | None = None


class PartitionItem(BaseModel):
    """A JoinPartitions item: one hash partition to join, and the plan's fields a part needs."""

    model_config = ConfigDict(extra="forbid")
    partition: int = Field(ge=0)
    plan: PartPlan | None = None


class RegroupItem(BaseModel):
    """A RegroupPartitions item: partition group ``group`` of the windows of batch ``batch``
    (``source``: which windows), and the plan's fields a part needs."""

    model_config = ConfigDict(extra="forbid")
    group: int = Field(ge=0)
    batch: int = Field(ge=0)
    source: Batch
    plan: PartPlan | None = None


PartItem = FileItem | PartitionItem | RegroupItem


# ------------------------------------------------------------------------------------------- plan


def _failed_before_running(job: JobOutcome, confirmed: bool, report: Any) -> bool:
    """Whether the job is one nobody confirmed that S3 failed in Suspended: final, never rerun.

    A Failed job that ran no task (no count of run tasks, no report) did not fail for a transient reason a new job would escape. If it
    never reached Suspended, S3 failed it while preparing it (an unreadable manifest, an ETag
    mismatch): JobPreparationFailedError ends the run at once, naming S3's reasons. If it reached
    Suspended and the pipeline never confirmed it, S3 failed it there: a job left Suspended for over
    30 days fails (S3 user guide, "Creating a job"); its objects are notRun and no new job is made.
    """
    ran = (job.succeeded or 0) + (job.failed or 0) > 0 or report is not None
    if job.status != "Failed" or job.gone or ran:
        return False
    if not job.suspended:
        reasons = "; ".join(f"{r.get('code')}: {r.get('reason')}" for r in job.failureReasons)
        raise JobPreparationFailedError(
            f"S3 Batch Operations failed job {job.jobId} while preparing it, before any task ran "
            f"({reasons or job.statusUpdateReason or 'no reason given'}). No new job was created: one of "
            "the same manifest would fail the same way. Fix the cause and start the run again."
        )
    return not confirmed


def plan_report(
    s3: Any,
    event: ProcessReportInput,
    *,
    retry: RetrySettings,
    default_scope: str,
    cancelled_by: str | None,
    part_rows: int,
    join_rows: int,
    fan_in: int = REGROUP_FAN_IN,
    confirmed: bool = True,
) -> dict[str, Any]:
    """Writes ``plan.json`` and the Maps' item lists; returns the PlanRef for the state.

    ``count`` when the job is Complete, S3 counted it and no earlier merge found its report wanting;
    else ``join``. A job that never invoked a task has no report: a join with nothing on the report
    side, so every object is NotRun. Items: ``{"side", "file"}`` per file to read in windows
    (``read-items.json``), ``{"partition"}`` per partition to join (``join-items.json``, written only
    for a join: the state machine reads it only when there are partitions).
    """
    job, current, run = event.job, event.current, event.run
    if job.status not in TERMINAL_STATUSES:
        raise BatchPipeError(f"job {job.jobId} is {job.status}; ProcessReport needs a terminal job")
    manifest = current.manifest
    objects = manifest.objects
    if objects is None and job.status == "Complete" and job.total is not None:
        objects = job.total  # a Complete job ran every task S3 counted
    attempt_prefix = f"{as_folder(run.prefix)}attempt-{current.attempt}/"
    by_person = job.status == "Cancelled" and cancelled_by == CANCELLED_BY_OPERATOR
    last_attempt = current.attempt >= retry.maxAttempts or by_person
    report_bucket = job.report.bucket or run.bucket
    report_prefix = job.report.prefix or f"{attempt_prefix}report"
    scope = job.report.scope or (event.spec.report and event.spec.report.scope) or default_scope
    report = read_report_manifest(s3, report_bucket, report_prefix, job.jobId)
    never_confirmed = _failed_before_running(job, confirmed, report)
    last_attempt = last_attempt or never_confirmed
    ran_tasks = (job.succeeded or 0) + (job.failed or 0) > 0
    # S3 writes a report only when a task ran: a Complete job S3 counted empty (a spec.source run whose
    # generator selected nothing) legitimately has none.
    if report is None and ((job.status == "Complete" and objects != 0) or ran_tasks):
        raise TransientError(
            f"job {job.jobId} is {job.status} and ran tasks, but its report "
            f"s3://{report_bucket}/{report_manifest_key(report_prefix, job.jobId)} is not there yet"
        )
    # A Complete job of no objects has nothing to join: counting its (absent) report's files gives 0.
    complete_report = report is not None or objects == 0
    mode = COUNT if complete_report and job.status == "Complete" and objects is not None else JOIN
    if current.joinReport:
        mode = JOIN
    successes_unread = mode == COUNT and s3_counted_every_task(job, objects)
    ran_every_task = job.status == "Complete" or s3_counted_every_task(job, objects)
    results = [FileRef(bucket=r.bucket, key=r.key, status=r.status) for r in report.results] if report else []
    partitions, regroup, batches = 0, None, []
    if mode == JOIN:
        manifest_bytes = s3.head_object(Bucket=manifest.bucket, Key=manifest.key)["ContentLength"]
        rows = (
            objects
            if objects is not None
            else _estimated_rows(s3, manifest.bucket, manifest.key, manifest_bytes)
        )
        report_sizes = _file_sizes(s3, results)
        partitions = join_partitions(rows, manifest_bytes + sum(report_sizes), join_rows)
        sizes = [(MANIFEST, 0, manifest_bytes), *((REPORT, i, size) for i, size in enumerate(report_sizes))]
        regrouped = plan_regroup(sizes, rows, partitions, part_rows=part_rows, fan_in=fan_in)
        if regrouped is not None:
            groups, batches = regrouped
            regroup = Regroup(groups=groups, batches=len(batches))
    prefix = f"{attempt_prefix}parts/{mode}/"
    plan = Plan(
        mode=mode,
        bucket=run.bucket,
        prefix=prefix,
        attemptPrefix=attempt_prefix,
        attempt=current.attempt,
        lastAttempt=last_attempt,
        # An empty manifest (a source run that selected nothing) has no first row to count columns in.
        fields=None if last_attempt or objects == 0 else _manifest_field_count(s3, manifest),
        scope=scope,
        cancelledBy=cancelled_by if job.status == "Cancelled" else None,
        neverConfirmed=never_confirmed,
        manifest=FileRef(bucket=manifest.bucket, key=manifest.key),
        results=results,
        report=report.uri if report else None,
        objects=objects,
        partitions=partitions,
        absent="succeeded" if scope == "FailedTasksOnly" and ran_every_task else "notRun",
        notRunMessage=f"not run: job {job.status}"
        + (f" ({job.statusUpdateReason})" if job.statusUpdateReason else ""),
        partRows=part_rows,
        joinRows=join_rows,
        successesUnread=successes_unread,
        regroup=regroup,
        batches=batches,
    )
    part_plan = PartPlan(**plan.model_dump(include=set(PartPlan.model_fields)))
    read_items = [FileItem(side=REPORT, file=i, source=results[i], plan=part_plan) for i in _read_files(plan)]
    if mode == JOIN:
        read_items.insert(0, FileItem(side=MANIFEST, file=0, source=plan.manifest, plan=part_plan))
    ref = PlanRef(
        bucket=run.bucket,
        prefix=prefix,
        mode=mode,
        partitions=partitions,
        readItems=f"{prefix}read-items.json",
        joinItems=f"{prefix}join-items.json",
        regroupItems=f"{prefix}regroup-items.json",
        regroups=regroup.groups * regroup.batches if regroup else 0,
        executionId=run.executionId,
    )
    _put_json(s3, run.bucket, f"{prefix}plan.json", plan.model_dump())
    _put_json(s3, run.bucket, ref.readItems, [item.model_dump() for item in read_items])
    if partitions:  # JoinPartitions runs only then (JoinNeeded?): a count writes no join items
        partition_items = [PartitionItem(partition=p, plan=part_plan).model_dump() for p in range(partitions)]
        _put_json(s3, run.bucket, ref.joinItems, partition_items)
    if regroup:  # RegroupPartitions runs only then (JoinNeeded?)
        regroup_items = [
            RegroupItem(group=g, batch=b, source=batch, plan=part_plan).model_dump()
            for g in range(regroup.groups)
            for b, batch in enumerate(batches)
        ]
        _put_json(s3, run.bucket, ref.regroupItems, regroup_items)
    logger.info(
        "report planned",
        extra={
            "mode": mode,
            "files": len(read_items),
            "unread": len(results) - len(_read_files(plan)),
            "partitions": partitions,
            "regroups": ref.regroups,
            "objects": objects,
        },
    )
    return ref.model_dump()


#: Keys a folder's listing may pass over before the files it is read for are asked for one by one.
LISTING_SLACK_KEYS = 2 * LIST_PAGE_KEYS


def _file_sizes(s3: Any, files: list[FileRef]) -> list[int]:
    """The sizes of the report's results files: listed, a ListObjectsV2 page per 1,000 keys of the
    folder S3 writes them in (``job-<id>/results/``), instead of a HeadObject each - a report of a
    billion tasks has thousands. A listing returns keys in order (S3 API reference, ListObjectsV2),
    so it stops at the last file wanted; a folder crowded with other keys (more than
    LISTING_SLACK_KEYS besides the files), a key in no folder, or a file the listing did not show
    (it then fails as before: NoSuchKey) is asked for by HeadObject."""
    wanted: dict[tuple[str, str], set[str]] = {}
    for ref in files:
        folder = ref.key.rpartition("/")[0]
        if folder:
            wanted.setdefault((ref.bucket, folder + "/"), set()).add(ref.key)
    sizes: dict[tuple[str, str], int] = {}
    for (bucket, folder), keys in wanted.items():
        last, passed = max(keys), 0
        for source in sources_after(s3, bucket=bucket, prefix=folder, after=None):
            if source.key in keys:
                sizes[(bucket, source.key)] = source.size
            else:
                passed += 1
            if source.key >= last or passed > LISTING_SLACK_KEYS:
                break
    return [
        sizes[(f.bucket, f.key)]
        if (f.bucket, f.key) in sizes
        else s3.head_object(Bucket=f.bucket, Key=f.key)["ContentLength"]
        for f in files
    ]


def plan_regroup(
    sizes: list[tuple[str, int, int]], rows: int, partitions: int, *, part_rows: int, fan_in: int
) -> tuple[int, list[Batch]] | None:
    """The join's regroup level for files of ``sizes`` (side, number, bytes; in the order the join
    reads them) and a manifest of about ``rows`` rows - its groups and batches - or None
    (``regroup_fan_in``).

    The windows are not known before they are read, so they are estimated: a window is ``part_rows``
    records or WINDOW_MAX_BYTES, and a record is taken to be a manifest row's average length. A
    results record is longer (the manifest's fields and four more), so the estimate errs towards
    more windows, and each file's batches cut it into byte ranges of k such windows: a batch then
    holds at most about k real windows. The estimate moves only the number of requests: the byte
    ranges tile every file, so every window is in exactly one batch, and the bytes a regroup
    invocation reads are its group's share (~1/k) of its batch's range (k windows' worth of bytes
    as estimated), about one window's worth whatever the windows turn out to be."""
    if rows < 1:
        return None
    manifest_bytes = sizes[0][2]
    window_bytes = max(1, min(WINDOW_MAX_BYTES, part_rows * max(1, manifest_bytes // rows)))
    windows = sum(max(1, math.ceil(size / window_bytes)) for _, _, size in sizes)
    k = regroup_fan_in(windows, partitions, fan_in)
    if k is None:
        return None
    span = k * window_bytes
    batches = []
    for side, number, size in sizes:
        count = max(1, math.ceil(size / span))
        for i in range(count):
            end = None if i == count - 1 else (i + 1) * span
            batches.append(Batch(side=side, file=number, start=i * span, end=end))
    return k, batches


def s3_counted_every_task(job: JobOutcome, objects: int | None) -> bool:
    """Whether DescribeJob's counts say every task of the manifest's ``objects`` ended succeeded or
    failed (``NumberOfTasksSucceeded`` + ``NumberOfTasksFailed``; S3 API reference,
    ``JobProgressSummary``: every member "Required: No", so only where both are there).

    Then a Complete job's files of successes are not read at all: the failures are read as always,
    and every object the report's failure files do not name is a success - as a FailedTasksOnly
    report's objects already are (``absent="succeeded"``). Counting those files (``tally_results``)
    could only check the successes S3 counted, and the merge still checks both counts against what
    was read (``_s3_counts_agree``): the failures read must be S3's ``NumberOfTasksFailed`` - a failure
    file missing from manifest.json, a failed record inside a file of successes or a failure reported
    twice makes them differ - and no more rows than objects. Where they disagree, the attempt is
    joined, as a counted report that does not add up is; where the counts are absent or do not add
    up to the manifest, the files of successes are counted as before."""
    return (
        objects is not None
        and job.succeeded is not None
        and job.failed is not None
        and job.succeeded + job.failed == objects
    )


def _read_files(plan: Plan) -> list[int]:
    """The report's files the parts read, by their place in ``plan.results``: every one, but those of
    successes where S3's counts stand for them (``plan.successesUnread``)."""
    return [
        number
        for number, result in enumerate(plan.results)
        if not (plan.successesUnread and result.status == SUCCEEDED)
    ]


def _manifest_field_count(s3: Any, manifest: ManifestRef) -> int:
    """The manifest's columns: as the state names them when it does (the fields CreateJob gave S3,
    which a retry manifest keeps), else counted in its first record (one ranged GET)."""
    if manifest.fields:
        return len(manifest.fields)
    return manifest_field_count(s3, manifest.bucket, manifest.key)


def _estimated_rows(s3: Any, bucket: str, key: str, size: int) -> int:
    """About how many rows a manifest S3 never counted has, from its size and its first 64 KiB.

    Only the number of join partitions depends on it, and only their size depends on that."""
    head = s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-65535")["Body"].read()
    rows = max(1, head.count(b"\n"))
    return math.ceil(size / max(1, len(head)) * rows * 1.2)


# ------------------------------------------------------------------------------------------ parts


def work_on_part(s3: Any, ref: PlanRef, item: PartItem, offset: int, *, unknown: Disposition) -> int | None:
    """One invocation's share of the plan: a window of a file, or a partition. Returns the offset of
    the file's next window, or None when the item is done. The plan's fields come with the item;
    only an item without them (written by an earlier version) reads ``plan.json``."""
    plan: PartPlan = item.plan or load_plan(s3, ref)
    if isinstance(item, RegroupItem):
        _regroup(s3, plan, item)
        return None
    if isinstance(item, PartitionItem):
        if item.partition >= plan.partitions:
            raise BatchPipeError(f"item: partition {item.partition} is not in the plan's {plan.partitions}")
        _join_partition(s3, plan, item.partition, unknown)
        return None
    side, number = item.side, item.file
    source = item.source
    if source is None:  # an item written before items carried their file: plan.json names it
        whole = plan if isinstance(plan, Plan) else load_plan(s3, ref)
        files = [whole.manifest] if side == MANIFEST else whole.results
        if number >= len(files):
            raise BatchPipeError(f"item: {side} file {number} is not in the plan's {len(files)}")
        source = files[number]
    part_id = f"{side}-{number:05d}-{offset:015d}"
    extent = {"side": side, "file": number, "offset": offset}
    opened: list[Window] = []
    counted = plan.mode == COUNT
    window_bytes = (COUNT_WINDOW_MAX_BYTES, MIN_RESULT_RECORD_BYTES) if counted else (WINDOW_MAX_BYTES, 1)

    def open_stream() -> Any:
        """The window from ``offset``; a second call reads the same bytes again."""
        if opened:
            opened[-1].close()
        opened.append(open_window(s3, source.bucket, source.key, offset, plan.partRows, *window_bytes))
        return opened[-1].stream

    try:
        if counted:
            _count_window(s3, plan, open_stream, source.status, part_id, extent, unknown, opened)
        else:
            open_stream()
            _scatter_window(s3, plan, opened[-1], side, part_id, extent)
    finally:
        if opened:
            opened[-1].close()
    return opened[-1].next_offset


def load_plan(s3: Any, ref: PlanRef) -> Plan:
    body = s3.get_object(Bucket=ref.bucket, Key=f"{ref.prefix}plan.json")["Body"].read()
    return Plan.model_validate_json(body)


def _outputs(s3: Any, plan: PartPlan, part_id: str) -> AttemptOutputs:
    return AttemptOutputs(
        s3,
        plan.bucket,
        f"{plan.prefix}out/{part_id}/",
        last_attempt=plan.lastAttempt,
        fields=lambda: plan.fields or 2,
        part=True,
    )


def _count_window(
    s3: Any,
    plan: PartPlan,
    open_stream: Callable[[], Any],
    status: str | None,
    part_id: str,
    extent: dict,
    unknown: Disposition,
    opened: list[Window],
) -> None:
    outputs = _outputs(s3, plan, part_id)
    counts = tally_results(
        open_stream,
        status,
        reader=default_reader(),
        unknown=unknown,
        on_retriable=outputs.on_retriable,
        on_permanent=outputs.on_permanent,
        on_columns=outputs.on_columns,
    )
    window = opened[-1]  # the window the counts came from (the same bytes, if it was opened twice)
    extent.update(end=window.end, size=window.size)
    _write_tally(s3, plan, part_id, counts, outputs, extent=extent)


def partition_of(row: tuple, partitions: int) -> int:
    """The partition of an object: a stable hash (CRC-32) of its identity - bucket, decoded key,
    version - the same in every process, whichever side and spelling the row comes from."""
    bucket, key, version = identity(row[0], row[1], row[2])
    text = f"{bucket}\x00{key}\x00{version}".encode("utf-8", "surrogatepass")
    return zlib.crc32(text) % partitions


def _scatter_window(s3: Any, plan: PartPlan, window: Window, side: str, part_id: str, extent: dict) -> None:
    """The window's rows, grouped by partition, into one object (manifest rows as 3 fields, report
    rows as 7), in partition order, so that a partition's join reads its rows of every window with
    one ranged GET (issue 23 §3). Usually ``scatter/<part>.stride-<bytes>.bin``: every partition's
    rows padded to one stretch of that many bytes (the longest partition's, plus 8), a little-endian
    uint64 of its rows' length first and zeros after them, so partition p's rows are in the p-th
    stretch: one GET, its range known from the key. A window whose padding would be too large (rows
    crowded into few partitions) is ``scatter/<part>.indexed.bin``: ``partitions + 1`` offsets
    (from the end of the index), then the rows: two GETs, the offsets, then the rows.

    One PUT (or one multipart upload) per window, whatever the number of partitions: requests grow
    with the report's size, not with its square. Rows wait in memory up to ``SCATTER_SPILL_CHARS``
    and are then spilled to a local file in runs, so memory stays bounded whatever the window's size.
    """
    spill = _ScatterSpill(plan.partitions)
    with spill:
        if side == MANIFEST:
            with text_stream(window.stream) as text:
                for row in parse_manifest_rows(text):
                    spill.writer(partition_of(row, plan.partitions)).writerow(row)
        else:
            for report_row in read_result_rows(window.stream):
                fields = list(report_row)
                fields[4] = "" if report_row.http_status is None else str(report_row.http_status)
                spill.writer(partition_of(report_row, plan.partitions)).writerow(fields)
        spill.upload(s3, plan.bucket, f"{plan.prefix}scatter/{part_id}")
    extent.update(end=window.end, size=window.size, rows=spill.rows)
    _put_json(s3, plan.bucket, f"{plan.prefix}scattered/{part_id}.json", extent)


#: How many characters of rows a scatter holds before it spills them to its local file (/tmp).
SCATTER_SPILL_CHARS = 32 << 20
#: A window is written strided (one ranged GET per partition) unless that pads it by more than this
#: share of its rows' bytes plus SCATTER_PAD_BYTES; then indexed (two). A window's partitions hold
#: binomially spread rows: at the default bounds (10 million rows into ~250 partitions, ~40,000
#: rows each +- 200) the longest is ~1.5% above the mean.
SCATTER_PAD_SHARE = 0.25
SCATTER_PAD_BYTES = 1 << 20
_OFFSET = struct.Struct("<Q")


class _ScatterSpill:
    """One window's rows by partition: in memory up to ``SCATTER_SPILL_CHARS``, then appended to a
    temporary file as a run (each partition's rows of the run, in partition order); ``write_to``
    streams the index and then every partition's pieces of every run."""

    def __init__(self, partitions: int) -> None:
        self._partitions = partitions
        self._pieces: list[list[str]] = [[] for _ in range(partitions)]
        self._writers: dict[int, CsvWriter] = {}
        self._held = 0
        self.rows = 0
        # Per partition: (offset, length) of its bytes in each run written to the file.
        self._runs: list[list[tuple[int, int]]] = [[] for _ in range(partitions)]
        self._file: Any = None

    def __enter__(self) -> _ScatterSpill:
        return self

    def __exit__(self, *_: object) -> None:
        if self._file is not None:
            self._file.close()

    def writer(self, partition: int) -> CsvWriter:
        """The writer of the next row, which goes to ``partition`` (called once per row)."""
        writer = self._writers.get(partition)
        if writer is None:
            writer = self._writers[partition] = CsvWriter(_Appender(self, self._pieces[partition]))
        self.rows += 1
        return writer

    def append_bytes(self, partition: int, data: bytes) -> None:
        """Rows already encoded (a regroup's copy of a window's stretch) after the partition's rows
        so far: straight to the file, as a run (merged with the partition's last one where they meet)."""
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="batchpipe-scatter-")
        self._file.seek(0, os.SEEK_END)
        at, runs = self._file.tell(), self._runs[partition]
        if runs and sum(runs[-1]) == at:
            runs[-1] = (runs[-1][0], runs[-1][1] + len(data))
        else:
            runs.append((at, len(data)))
        self._file.write(data)

    def appended(self, characters: int) -> None:
        self._held += characters
        if self._held >= SCATTER_SPILL_CHARS:
            self._spill()

    def _spill(self) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="batchpipe-scatter-")
        self._file.seek(0, os.SEEK_END)
        for partition, pieces in enumerate(self._pieces):
            if pieces:
                data = "".join(pieces).encode("utf-8", "surrogatepass")
                self._runs[partition].append((self._file.tell(), len(data)))
                self._file.write(data)
                pieces.clear()
        self._held = 0

    def layout(self) -> int | None:
        """The window object's stride, or None for the indexed layout (``_scatter_window``), once
        every row is in: strided unless padding every partition to the longest would add more than
        SCATTER_PAD_SHARE of the rows' bytes plus SCATTER_PAD_BYTES (rows crowded into a few
        partitions)."""
        self._spill()  # every row in the file, the last run too: one way to read them back
        lengths = [sum(length for _, length in runs) for runs in self._runs]
        stride = _OFFSET.size + max(lengths)
        padding = stride * self._partitions - _OFFSET.size * self._partitions - sum(lengths)
        return stride if padding <= sum(lengths) * SCATTER_PAD_SHARE + SCATTER_PAD_BYTES else None

    def upload(self, s3: Any, bucket: str, stem: str) -> None:
        """The object ``<stem>.<layout>.bin`` (``layout()``: ``stride-<bytes>`` or ``indexed``), one
        PutObject or a multipart upload, aborted if it fails."""
        stride = self.layout()
        layout = "indexed" if stride is None else f"stride-{stride}"
        upload = CsvUpload(s3, bucket, f"{stem}.{layout}.bin")
        try:
            self.write_to(upload, stride)
            upload.close()
        except BaseException:
            upload.abort()
            raise

    def write_to(self, upload: CsvUpload, stride: int | None) -> None:
        """The object in ``layout()``'s layout. Strided: each partition's stretch of ``stride``
        bytes, its rows' length (uint64) first and zeros after its rows. Indexed: ``partitions + 1``
        offsets, then every partition's rows."""
        lengths = [sum(length for _, length in runs) for runs in self._runs]
        if stride is None:
            offsets = [0, *itertools.accumulate(lengths)]
            upload.write_bytes(b"".join(_OFFSET.pack(offset) for offset in offsets))
        for runs, total in zip(self._runs, lengths, strict=True):
            if stride is not None:
                upload.write_bytes(_OFFSET.pack(total))
            for offset, length in runs:
                self._file.seek(offset)
                while length:
                    chunk = self._file.read(min(length, READ_BUFFER_BYTES))
                    upload.write_bytes(chunk)
                    length -= len(chunk)
            if stride is not None:
                _write_zeros(upload, stride - _OFFSET.size - total)


def _write_zeros(upload: CsvUpload, count: int) -> None:
    while count > 0:
        upload.write_bytes(bytes(min(count, READ_BUFFER_BYTES)))
        count -= READ_BUFFER_BYTES


class _Appender:
    """csv.writer's file for one partition: its rows' text, counted against the spill bound."""

    def __init__(self, spill: _ScatterSpill, pieces: list[str]) -> None:
        self._spill, self._pieces = spill, pieces

    def write(self, text: str) -> None:
        self._pieces.append(text)
        self._spill.appended(len(text))


class _Limited(io.RawIOBase):
    """The first ``length`` bytes of a body (a strided stretch's rows, not its padding)."""

    def __init__(self, body: Any, length: int) -> None:
        self._body, self._left = body, length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(min(len(buffer), self._left)) if self._left else b""
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _scattered_rows(s3: Any, bucket: str, key: str, partition: int, partitions: int) -> Any:
    """The body of ``partition``'s rows in one scattered window object, or None when it has none.
    Strided (``.stride-<bytes>.bin``): its stretch, one ranged GET. Indexed (``.indexed.bin``): its
    two offsets from the index, then those bytes (two ranged GETs)."""
    layout = key.rsplit(".", 2)[-2]
    if layout.startswith("stride-"):
        stride = int(layout.removeprefix("stride-"))
        first = partition * stride
        body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{first + stride - 1}")["Body"]
        head = body.read(_OFFSET.size)
        if len(head) != _OFFSET.size:
            raise BatchPipeError(f"s3://{bucket}/{key}: no stretch for partition {partition}")
        (length,) = _OFFSET.unpack(head)
        if length > stride - _OFFSET.size:
            raise BatchPipeError(f"s3://{bucket}/{key}: partition {partition}'s stretch says {length} bytes")
        if not length:
            body.close()
            return None
        return _Limited(body, length)
    first = partition * _OFFSET.size
    index = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{first + 2 * _OFFSET.size - 1}")
    pair = index["Body"].read()
    if len(pair) != 2 * _OFFSET.size:
        raise BatchPipeError(f"s3://{bucket}/{key}: no index entry for partition {partition}")
    start, end = struct.unpack("<2Q", pair)
    if end <= start:
        return None
    rows_from = (partitions + 1) * _OFFSET.size
    ranged = f"bytes={rows_from + start}-{rows_from + end - 1}"
    return s3.get_object(Bucket=bucket, Key=key, Range=ranged)["Body"]


def _copy(body: Any, length: int, out: Callable[[bytes], None] | None) -> None:
    """The next ``length`` bytes of ``body`` to ``out`` (None: skipped), a buffer at a time."""
    while length > 0:
        data = body.read(min(length, READ_BUFFER_BYTES))
        if not data:
            raise BatchPipeError(f"a scattered object ended {length} bytes early")
        if out is not None:
            out(data)
        length -= len(data)


def _regroup_window(
    s3: Any, bucket: str, key: str, members: range, partitions: int, spill: _ScatterSpill
) -> None:
    """Partitions ``members`` (adjacent) of one scattered window into ``spill`` (as its partitions
    0, 1, ...), streamed: one ranged GET of their stretches of a strided window; of an indexed one,
    their offsets, then one GET of their rows."""
    layout = key.rsplit(".", 2)[-2]
    if layout.startswith("stride-"):
        stride = int(layout.removeprefix("stride-"))
        ranged = f"bytes={members.start * stride}-{members.stop * stride - 1}"
        body = s3.get_object(Bucket=bucket, Key=key, Range=ranged)["Body"]
        with body:
            for local in range(len(members)):
                head = body.read(_OFFSET.size)
                if len(head) != _OFFSET.size:
                    raise BatchPipeError(f"s3://{bucket}/{key}: no stretch for partition {members[local]}")
                (length,) = _OFFSET.unpack(head)
                if length > stride - _OFFSET.size:
                    raise BatchPipeError(
                        f"s3://{bucket}/{key}: partition {members[local]}'s stretch says {length} bytes"
                    )
                _copy(body, length, functools.partial(spill.append_bytes, local))
                _copy(body, stride - _OFFSET.size - length, None)
        return
    first = members.start * _OFFSET.size
    ranged = f"bytes={first}-{first + (len(members) + 1) * _OFFSET.size - 1}"
    index = s3.get_object(Bucket=bucket, Key=key, Range=ranged)["Body"].read()
    if len(index) != (len(members) + 1) * _OFFSET.size:
        raise BatchPipeError(
            f"s3://{bucket}/{key}: no index entries for partitions {members.start}..{members.stop - 1}"
        )
    offsets = struct.unpack(f"<{len(members) + 1}Q", index)
    if offsets[-1] <= offsets[0]:
        return
    rows_from = (partitions + 1) * _OFFSET.size
    ranged = f"bytes={rows_from + offsets[0]}-{rows_from + offsets[-1] - 1}"
    with s3.get_object(Bucket=bucket, Key=key, Range=ranged)["Body"] as body:
        for local in range(len(members)):
            _copy(body, offsets[local + 1] - offsets[local], functools.partial(spill.append_bytes, local))


def _regroup(s3: Any, plan: PartPlan, item: RegroupItem) -> None:
    """Group ``item.group``'s partitions of the windows of batch ``item.batch``, in window order, into
    one object in the scatter's layout (``_ScatterSpill``: strided, or indexed): the group's partitions
    become its partitions 0, 1, ... A partition then reads one range of each of its group's objects
    (one per batch) instead of one of every window (issue 23 §3).

    Streamed: each window's stretch goes through a buffer to the spill's file in /tmp, so memory holds
    one buffer, and /tmp and the upload the group's rows of the batch: ~1/k of k windows, about one
    window's worth (``plan_regroup``). The key names the group and batch, the side and the windows
    read (``regroup/g<group>-b<batch>.<side>.w<windows>.<layout>.bin``): a retried invocation writes
    the same key,
    and each partition checks that it read every batch's object and the merge that every partition
    read every window."""
    regroup, batch = plan.regroup, item.source
    if regroup is None or item.group >= regroup.groups or item.batch >= regroup.batches:
        raise BatchPipeError(f"item: regroup group {item.group}, batch {item.batch} is not in the plan")
    members = group_partitions(item.group, regroup.groups, plan.partitions)
    folder = f"{plan.prefix}scatter/{batch.side}-{batch.file:05d}-"
    windows = 0
    with _ScatterSpill(len(members)) as spill:
        # Every window whose offset is in the batch's range, in offset order (zero-padded in the key):
        # a window's key at offset ``start`` is that string and more, so it lists after it.
        after = f"{folder}{batch.start:015d}" if batch.start else None
        for source in sources_after(s3, bucket=plan.bucket, prefix=folder, after=after):
            if batch.end is not None and int(source.key[len(folder) :].split(".", 1)[0]) >= batch.end:
                break
            _regroup_window(s3, plan.bucket, source.key, members, plan.partitions, spill)
            windows += 1
        stem = f"{plan.prefix}regroup/g{item.group:05d}-b{item.batch:05d}.{batch.side}.w{windows}"
        spill.upload(s3, plan.bucket, stem)
    logger.info("regrouped", extra={"group": item.group, "batch": item.batch, "windows": windows})


def _regrouped_sources(
    s3: Any, plan: PartPlan, partition: int
) -> tuple[list[tuple[str, str, int, int]], int]:
    """The partition's group's regroup objects: (side, key, its place in them, their partitions), one
    per batch in batch order, and the windows they hold; a missing or extra object fails loudly."""
    regroup = plan.regroup
    assert regroup is not None
    group = group_of(partition, regroup.groups, plan.partitions)
    members = group_partitions(group, regroup.groups, plan.partitions)
    folder = f"{plan.prefix}regroup/g{group:05d}-b"
    found: dict[int, tuple[str, str, int]] = {}
    for source in list_sources(s3, plan.bucket, folder):
        batch, side, windows = source.key[len(folder) :].split(".")[:3]
        if int(batch) in found:
            raise TransientError(f"s3://{plan.bucket}/{source.key}: a second regroup object of its batch")
        found[int(batch)] = (side, source.key, int(windows.removeprefix("w")))
    if sorted(found) != list(range(regroup.batches)):
        raise TransientError(
            f"partition {partition}: {len(found)} of group {group}'s {regroup.batches} regroup "
            "objects written; run the attempt's parts again"
        )
    sources = [  # an object of no window holds no rows: not read
        (found[b][0], found[b][1], partition - members.start, len(members))
        for b in sorted(found)
        if found[b][2]
    ]
    return sources, sum(windows for _, _, windows in found.values())


def _join_partition(s3: Any, plan: PartPlan, partition: int, unknown: Disposition) -> None:
    part_id = f"p{partition:05d}"
    if plan.regroup is None:
        folder = f"{plan.prefix}scatter/"
        keys = [source.key for source in list_sources(s3, plan.bucket, folder)]
        sources = [(key[len(folder) :].split("-", 1)[0], key, partition, plan.partitions) for key in keys]
        windows = len(keys)
    else:
        sources, windows = _regrouped_sources(s3, plan, partition)

    def rows_of(side: str, parse: Any) -> Iterator:
        for of_side, key, place, places in sources:
            if of_side == side:
                body = _scattered_rows(s3, plan.bucket, key, place, places)
                if body is not None:
                    with text_stream(body) as text:
                        yield from parse(text)

    absent = succeeded_row if plan.absent == "succeeded" else not_run_row(plan.notRunMessage)
    joined = Reconciliation(
        rows_of(MANIFEST, parse_manifest_rows),
        rows_of(REPORT, parse_result_rows),
        absent=absent,
        prefer=preferred_outcome(unknown),
        expected_rows=plan.joinRows,
    )
    outputs = _outputs(s3, plan, part_id)
    counts = tally(
        joined, unknown=unknown, on_retriable=outputs.on_retriable, on_permanent=outputs.on_permanent
    )
    extent = {"partition": partition, "windows": windows}
    _write_tally(s3, plan, part_id, counts, outputs, extent=extent, unmatched=joined.unmatched)


def _write_tally(
    s3: Any,
    plan: PartPlan,
    part_id: str,
    counts: AttemptTally,
    outputs: AttemptOutputs,
    *,
    extent: dict,
    unmatched: int = 0,
) -> None:
    """The part's outputs first, then its tally: a tally names only files that exist."""
    files = {}
    for kind, upload in (
        ("permanent", outputs.permanent),
        ("retry", outputs.retry),
        ("exhausted", outputs.exhausted),
    ):
        done = upload.close() if upload is not None else None
        files[kind] = (
            None
            if done is None
            # ``head``: the bytes of header the file begins with (a part written before part files
            # carried the header has none, and no ``head``: _part_files).
            else {
                "key": done.key,
                "etag": done.etag,
                "size": done.size,
                "rows": done.rows,
                "head": len(HEADS[kind]),
            }
        )
    document = {
        **extent,
        "rows": counts.rows,
        "succeeded": counts.succeeded,
        "failedRetriable": counts.failed_retriable,
        "failedPermanent": counts.failed_permanent,
        "notRun": counts.not_run,
        "errors": dict(counts.errors),
        "unknownErrors": dict(counts.unknown_errors),
        "unmatched": unmatched,
        "sample": outputs.sample,
        "files": files,
        "prefixes": outputs.prefixes.as_document(),
    }
    _put_json(s3, plan.bucket, f"{plan.prefix}out/{part_id}/tally.json", document)


# ------------------------------------------------------------------------------------------ merge


def merge_parts(
    s3: Any,
    event: ProcessReportInput,
    ref: PlanRef,
    *,
    retry: RetrySettings,
    pack_bytes: int,
    limits: Limits = S3_LIMITS,
) -> dict[str, Any]:
    """The attempt's record from its parts, or ``{"rejoin": true}`` when a Complete job's report does
    not account for its manifest one to one (duplicate rows of a task run twice, a missing row): the
    state machine then plans the attempt again as a join."""
    plan = load_plan(s3, ref)
    tallies = _read_documents(s3, plan.bucket, f"{plan.prefix}out/", "tally.json")
    counts = AttemptTally()
    for document in tallies:
        _add(counts, document)
    objects = plan.objects
    if plan.mode == COUNT:
        _check_tiles(tallies, plan.results, REPORT, what="report", numbers=_read_files(plan))
        assert objects is not None
        job = event.job
        adds_up = (
            _s3_counts_agree(counts, job, objects)
            if plan.successesUnread
            else _complete_report_adds_up(counts, job.failed, plan.scope, objects)
        )
        if not adds_up:
            logger.warning(
                "report does not match the manifest one to one; joining them",
                extra={"rows": counts.rows, "objects": objects},
            )
            return {
                "rejoin": True,
                "attempt": plan.attempt,
                "total": None,
                "succeeded": None,
                "failedRetriable": None,
                "failedPermanent": None,
                "record": None,
                "next": None,
                "backoffSeconds": 0,
            }
        if plan.scope == "FailedTasksOnly" or plan.successesUnread:
            counts.succeeded += objects - counts.rows
    else:
        scattered = _read_documents(s3, plan.bucket, f"{plan.prefix}scattered/", ".json")
        _check_tiles(scattered, [plan.manifest], MANIFEST, what="manifest")
        _check_tiles(scattered, plan.results, REPORT, what="report")
        joined = sorted(d["partition"] for d in tallies)
        if joined != list(range(plan.partitions)):
            raise TransientError(
                f"{len(joined)} of {plan.partitions} partitions joined; run the attempt's parts again"
            )
        # Every partition read every window, directly or through its group's regroup objects.
        short = [d["partition"] for d in tallies if d["windows"] != len(scattered)]
        if short:
            raise TransientError(
                f"partitions {short[:5]} read rows of fewer or more than the {len(scattered)} scattered "
                "windows; run the attempt's parts again"
            )
        manifest_rows = sum(d["rows"] for d in scattered if d["side"] == MANIFEST)
        if objects is not None and manifest_rows != objects:
            raise AccountingError(f"the manifest has {manifest_rows} rows; S3 counted {objects} objects")
        objects = manifest_rows
    if objects != event.current.manifest.objects:
        current = event.current
        manifest = current.manifest.model_copy(update={"objects": objects})
        event = event.model_copy(update={"current": current.model_copy(update={"manifest": manifest})})
    if counts.total != objects:
        raise AccountingError(
            f"attempt {plan.attempt}: {counts.total} outcomes for a manifest of {objects} objects"
        )
    packed = _packed_objects(s3, plan, tallies, pack_bytes, limits)
    join = functools.partial(_join_files, s3, plan, tallies, packed=packed, budget=pack_bytes, limits=limits)
    files = AttemptFiles(
        permanent=join("permanent", always=True),
        retry=join("retry"),
        exhausted=join("exhausted"),
    )
    sample = [key for d in sorted(tallies, key=_part_order) for key in d["sample"]][:SAMPLE_KEYS]
    return finish_attempt(
        s3,
        event,
        counts,
        files,
        report_uri=plan.report,
        scope=plan.scope,
        retry=retry,
        attempt_prefix=plan.attemptPrefix,
        last_attempt=plan.lastAttempt,
        cancelled_by=plan.cancelledBy,
        unmatched=sum(d["unmatched"] for d in tallies),
        sample=sample,
        prefixes=merge_prefixes(d.get("prefixes") for d in tallies),
        never_confirmed=plan.neverConfirmed,
    ) | {"rejoin": False}


def _complete_report_adds_up(counts: AttemptTally, job_failed: int | None, scope: str, objects: int) -> bool:
    """Whether a counted report accounts for the manifest one to one. S3's own count of failed tasks
    (``NumberOfTasksFailed``; optional, so only when DescribeJob gave it) must equal the failures read:
    files of successes are counted by their record ends and their records' statuses taken from
    manifest.json (``report.count_succeeded_records``), so a failed record inside a file listed as
    succeeded would otherwise pass as a success; with the check it sends the attempt to the join."""
    failures = counts.failed_retriable + counts.failed_permanent
    failures_agree = job_failed is None or job_failed == failures
    if scope == "FailedTasksOnly":
        return counts.rows <= objects and failures_agree
    return counts.rows == objects and failures_agree


def _s3_counts_agree(counts: AttemptTally, job: JobOutcome, objects: int) -> bool:
    """Whether a report read without its files of successes agrees with S3's counts
    (``s3_counted_every_task``): the failures read are S3's NumberOfTasksFailed, S3's two counts are
    the manifest's objects, and no more rows were read than objects."""
    failures = counts.failed_retriable + counts.failed_permanent
    return s3_counted_every_task(job, objects) and job.failed == failures and counts.rows <= objects


def _add(counts: AttemptTally, document: dict[str, Any]) -> None:
    counts.rows += document["rows"]
    counts.succeeded += document["succeeded"]
    counts.failed_retriable += document["failedRetriable"]
    counts.failed_permanent += document["failedPermanent"]
    counts.not_run += document["notRun"]
    counts.errors.update(document["errors"])
    counts.unknown_errors.update(document["unknownErrors"])


def _part_order(document: dict[str, Any]) -> tuple:
    return (
        document.get("partition", -1),
        document.get("side", ""),
        document.get("file", -1),
        document.get("offset", -1),
    )


def _check_tiles(
    documents: list[dict], files: list[FileRef], side: str, *, what: str, numbers: list[int] | None = None
) -> None:
    """Each file's windows start at 0, each where the last ended, and the last ends at the file's end:
    every record was read, and once (of the files ``numbers`` names by their place: all by default)."""
    windows: dict[int, list[dict]] = {}
    for document in documents:
        if document.get("side") == side:
            windows.setdefault(document["file"], []).append(document)
    for number in range(len(files)) if numbers is None else numbers:
        ref = files[number]
        where = f"{what} s3://{ref.bucket}/{ref.key}"
        read = sorted(windows.get(number, []), key=lambda w: w["offset"])
        if not read:
            raise TransientError(f"{where}: no part read it")
        end = 0
        for window in read:
            if window["offset"] != end:
                raise TransientError(f"{where}: no part read bytes {end}..{window['offset']}")
            end = window["end"]
        if end != read[-1]["size"]:
            raise TransientError(f"{where}: parts read {end} of {read[-1]['size']} bytes")


def pack_parts_step(s3: Any, ref: PlanRef, *, budget: int, limits: Limits = S3_LIMITS) -> dict[str, Any]:
    """One bounded step of packing the parts' failure files under 5 MiB (which cannot be parts of a
    multipart upload but the last) into objects the merge then copies inside S3; the PackParts loop
    runs it until ``done``, each step given the last one's cursor (``ref.packing``; none at first).

    The groups are those ``multipart.packing_groups`` cuts from the parts' outputs in key order, kind
    by kind: a step lists from the cursor on until it has the next group (``first_packing_group``),
    packs it - at most ``budget`` bytes plus one file read - and moves the cursor past it, so a loop
    lists every part file once, not once per step (a listing from the first key read to its end is
    kept for the step's next kinds: ``_ListedOnce``). A group of one file is passed over: packed, it
    would be a copy of that file, which the merge takes as it is (``multipart.with_packed``), so
    packing it would cost three requests and a copy inside S3 for the same bytes. The merge plans
    the same groups from the parts' tallies and takes a packed object only where its key's digest
    matches its group (``multipart.packing_plan``); a retried step packs the same group into the
    same object. Files are grouped by what follows their header (``_bodies``), and a packed object
    begins with its first file's header, like a part file, so the merge treats both alike. A step
    needs only the state's ``ref`` (its bucket and prefix), not ``plan.json``.
    """
    cursor, group = _at_next_group(s3, ref, ref.packing or PackingCursor(), budget, limits)
    packed_bytes = 0
    if group:
        kind = list(KINDS)[cursor.kind]
        concatenate(
            s3,
            bucket=ref.bucket,
            key=packed_key(f"{ref.prefix}packed/{kind}/", cursor.index, group),
            sources=group,
            scratch_prefix=f"{ref.prefix}scratch/packing/",
            limits=limits,
            source_bucket=ref.bucket,
            head=HEADS[kind],
            headed=True,
        )
        packed_bytes = sum(source.size for source in group)
        update = {"groups": cursor.groups + 1, "index": cursor.index + 1, "after": group[-1].key}
        cursor, _ = _at_next_group(s3, ref, cursor.model_copy(update=update), budget, limits)
    logger.info(
        "part files packed", extra={"groups": cursor.groups, "done": cursor.done, "bytesPacked": packed_bytes}
    )
    return cursor.model_dump() | {"bytesPacked": packed_bytes}


#: The most part files a packing step keeps from a listing of them all, to look for the next kind's
#: group without listing again (one ListObjectsV2 page).
LISTED_ONCE_KEYS = LIST_PAGE_KEYS


class _ListedOnce:
    """The part files under ``prefix`` after a key, listed lazily (``multipart.sources_after``). A
    listing from the first key read to its end, of at most LISTED_ONCE_KEYS files, is kept, so the
    step's next kinds, each looked for from the first key, take it instead of a listing of their own."""

    def __init__(self, s3: Any, bucket: str, prefix: str) -> None:
        self._s3, self._bucket, self._prefix = s3, bucket, prefix
        self._all: list[Source] | None = None

    def after(self, key: str | None) -> Iterator[Source]:
        if key is None and self._all is not None:
            yield from self._all
            return
        seen: list[Source] = []
        keep = key is None
        for source in sources_after(self._s3, bucket=self._bucket, prefix=self._prefix, after=key):
            if keep:
                seen.append(source)
                keep = len(seen) <= LISTED_ONCE_KEYS
            yield source
        if keep:  # reached only when the caller read the listing to its end
            self._all = seen


def _at_next_group(
    s3: Any, ref: PlanRef, cursor: PackingCursor, budget: int, limits: Limits
) -> tuple[PackingCursor, list[Source]]:
    """``cursor`` moved to the next group worth packing - of two files or more - and that group, or
    past every kind (``done``) and no group: a step looks ahead this way after packing, so ``done``
    comes with the step that packs the last group, not one step later, and the next step packs the
    group it finds without listing for it twice. A group of one file is passed over (its position
    still counts: ``packed_key``)."""
    listed = _ListedOnce(s3, ref.bucket, f"{ref.prefix}out/")
    while not cursor.done:
        kind, name = list(KINDS.items())[cursor.kind]
        suffix = f"/{name}"
        files = _bodies((s for s in listed.after(cursor.after) if s.key.endswith(suffix)), kind)
        group = first_packing_group(files, suffix=suffix, budget=budget, limits=limits)
        if len(group) > 1:
            return cursor, group
        if group and group[0].size >= budget:  # a full group: more may follow it
            cursor = cursor.model_copy(update={"index": cursor.index + 1, "after": group[-1].key})
            continue
        # No group, or a last one (under budget: the listing ended) of a single file.
        last = cursor.kind + 1 >= len(KINDS)
        update = {"kind": cursor.kind + (not last), "index": 0, "after": None, "done": last}
        cursor = cursor.model_copy(update=update)
    return cursor, []


def _part_files(tallies: list[dict], kind: str) -> list[Source]:
    """The parts' ``kind`` files after their headers, in key order (the order PackParts lists them in).
    A file its tally gives no ``head`` was written without a header (before part files carried it,
    e.g. by a part that ran before a deployment): it is taken whole."""
    parts = (d["files"][kind] for d in tallies if d["files"][kind])
    files = (Source(p["key"], p["size"] - p.get("head", 0), p["etag"], p.get("head", 0)) for p in parts)
    return sorted(files, key=lambda source: source.key)


def _bodies(objects: Iterable[Source], kind: str) -> Iterator[Source]:
    """``kind``'s part files (whole objects, as listed), each as what follows its header: the
    sources of a headed join (``multipart.headed_order``)."""
    for source in objects:
        yield _after(source, len(HEADS[kind]))


def _after(whole: Source, skip: int) -> Source:
    """An object from byte ``skip`` on (after its header)."""
    return Source(whole.key, whole.size - skip, whole.etag, offset=skip)


def _packed_objects(s3: Any, plan: Plan, tallies: list[dict], budget: int, limits: Limits) -> list[Source]:
    """What PackParts packed, every kind in one listing of ``packed/``; nothing is listed when no
    kind has a group of two files or more, the only groups PackParts packs (``pack_parts_step``)."""
    for kind in KINDS:
        if any(len(group) > 1 for group in packing_groups(_part_files(tallies, kind), budget, limits)):
            return list_sources(s3, plan.bucket, f"{plan.prefix}packed/")
    return []


def _join_files(
    s3: Any,
    plan: Plan,
    tallies: list[dict],
    kind: str,
    *,
    packed: list[Source],
    budget: int,
    limits: Limits = S3_LIMITS,
    always: bool = False,
) -> Uploaded | None:
    """The parts' ``kind`` files as one object of the attempt, joined inside S3 (UploadPartCopy),
    with PackParts' objects (``packed``) in place of the groups of small files it packed (what is
    left unpacked is read and uploaded by the join itself: multipart.py). Every file and packed
    object begins with the kind's header: the first joined keeps it, the others' are skipped by
    their copied byte ranges, so the header costs no read (``multipart.headed_order``)."""
    parts = [d["files"][kind] for d in tallies if d["files"][kind]]
    sources = _part_files(tallies, kind)
    key = f"{plan.attemptPrefix}{KINDS[kind]}"
    head = HEADS[kind]
    packed_prefix = f"{plan.prefix}packed/{kind}/"
    # A packed object begins with the header as its group's files do: its key's digest names their
    # offsets, so one packed from files without it (before they carried it) is taken from byte 0.
    groups = [
        dataclasses.replace(group, packed=_after(group.packed, group.sources[0].offset))
        if group.packed
        else group
        for group in packing_plan(sources, packed_prefix, packed, budget, limits)
    ]
    # Every file begins with the header unless some part ran before part files carried it: then the
    # header goes in front (multipart.with_head) and each file is taken from its own ``offset``.
    headed = all(source.offset == len(head) for source in sources)
    joined = concatenate(
        s3,
        bucket=plan.bucket,
        sources=with_packed(sources, groups, limits),
        key=key,
        scratch_prefix=f"{plan.prefix}scratch/{kind}/",
        limits=limits,
        head=head,
        headed=headed,
    )
    rows = sum(p["rows"] for p in parts)
    if joined is not None:
        return Uploaded(plan.bucket, key, joined.etag, joined.size, rows)
    if not always:
        return None
    put = s3.put_object(Bucket=plan.bucket, Key=key, Body=head, ContentType="text/csv")
    return Uploaded(plan.bucket, key, put["ETag"].strip('"'), len(head), 0)


def _read_documents(s3: Any, bucket: str, prefix: str, suffix: str) -> list[dict]:
    keys = [source.key for source in list_sources(s3, bucket, prefix) if source.key.endswith(suffix)]
    with ThreadPoolExecutor(max_workers=MERGE_READERS) as pool:
        return list(pool.map(lambda k: json.loads(s3.get_object(Bucket=bucket, Key=k)["Body"].read()), keys))


def _put_json(s3: Any, bucket: str, key: str, document: Any) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(document).encode(), ContentType="application/json")
