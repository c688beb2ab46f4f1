"""Where every object of a run ended up, attempt by attempt, and the checks that none is lost.

The accounting invariant (docs/OPERATIONS.md, "Reading a run summary"): for every attempt, succeeded + failedRetriable + failedPermanent = total;
the next attempt's total = this attempt's failedRetriable; and for the run, objects = succeeded +
failedPermanent + failedRetriesExhausted + notRun (notRun: the objects a person's cancel left
unrun; that attempt is the last). Every check raises AccountingError (the Step Functions error name)
rather than letting a wrong summary out.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

from batchpipe_core.classification import NOT_RUN, Disposition, classify, error_label
from batchpipe_core.errors import AccountingError
from batchpipe_core.report import (
    CSV_MODULE,
    FULL_READ_BLOCK_BYTES,
    PYARROW,
    SUCCEEDED,
    ReportRow,
    _status_and_code,
    arrow_result_parts,
    batch_rows,
    count_succeeded_records,
    pa,
    pc,
    read_result_rows,
)

MAX_BACKOFF_SECONDS = 86_400  # one day: a longer wait helps nothing an operator would not rather decide
MAX_ERRORS_SHOWN = 50  # per attempt in the execution output; the record file keeps them all
# AttemptRecord.cancelledBy: who cancelled a Cancelled job. The pipeline's own cancels (its guards, the
# cleanup of a run that ends early) are recorded in the token table; any other cancel is a person's.
CANCELLED_BY_OPERATOR = "operator"
CANCELLED_BY_PIPELINE = "pipeline"

# ------------------------------------------------------------------------------- one attempt


@dataclass
class AttemptTally:
    """Counts of one attempt's outcomes, built row by row."""

    succeeded: int = 0
    failed_retriable: int = 0
    failed_permanent: int = 0
    not_run: int = 0
    rows: int = 0  # outcome rows seen (a FailedTasksOnly report omits successes)
    errors: Counter[str] = field(default_factory=Counter)
    unknown_errors: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.succeeded + self.failed_retriable + self.failed_permanent


Sink = Callable[[ReportRow], None]


class FailedColumns:
    """A record batch's failed rows of one disposition, as Arrow columns, in file order.

    Each column is cut out of the batch (filtered to the disposition's rows) when first read, not
    before: the retry manifest reads the bucket, the key and maybe the version, so the messages of
    retriable rows - the widest column - and the status and the 5th and 6th columns (their HTTP
    status and error code come from ``_Outcomes``' tables) are never copied. A column that holds one
    value in every failed row of the batch (``one_values``: the bucket, the version of a manifest
    without versions) is that value, a scalar, for every disposition: not filtered, not searched."""

    def __init__(
        self,
        batch: Any,
        mask: Any,
        rows: int,
        outcome: Any,
        http_statuses: Any,
        error_codes: Any,
        one_values: dict[int, Any] | None = None,
    ):
        self._batch, self._mask, self._rows = batch, mask, rows
        self._outcome, self._http_statuses, self._error_codes = outcome, http_statuses, error_codes
        self._one_values = one_values or {}

    def _column(self, position: int) -> Any:
        one = self._one_values.get(position)
        if one is not None:
            return one
        column = self._batch.column(position)
        return column if self._mask is None else column.filter(self._mask)

    @functools.cached_property
    def bucket(self) -> Any:
        """A string array, or a string scalar when every failed row of the batch names one bucket."""
        return self._column(0)

    @functools.cached_property
    def key(self) -> Any:
        """As the report spells it (URL-encoded)."""
        return self._column(1)

    @functools.cached_property
    def version_id(self) -> Any:
        """A string array, or a string scalar when every failed row of the batch has one ("": none)."""
        return self._column(2)

    @functools.cached_property
    def _outcomes(self) -> Any:
        return self._outcome if self._mask is None else self._outcome.filter(self._mask)

    @functools.cached_property
    def http_status(self) -> Any:
        """As the failures file writes it: the digits, "" when none (a dictionary column)."""
        return pa.DictionaryArray.from_arrays(self._outcomes, self._http_statuses)

    @functools.cached_property
    def error_code(self) -> Any:
        """A dictionary column whose indices are ``http_status``'s."""
        return pa.DictionaryArray.from_arrays(self._outcomes, self._error_codes)

    @functools.cached_property
    def message(self) -> Any:
        return self._column(6)

    def __len__(self) -> int:
        return self._rows


#: Takes a batch's retriable (True) or permanent (False) failures at once: what ``attempts.AttemptOutputs``
#: does per row, column-wise (failure_columns.py). Rows set aside by the parser still go to the Sinks.
ColumnSink = Callable[[FailedColumns, bool], None]


def tally(
    rows: Iterable[ReportRow],
    *,
    unknown: Disposition,
    on_retriable: Sink,
    on_permanent: Sink,
    counts: AttemptTally | None = None,
) -> AttemptTally:
    """Classifies each outcome row and hands every failure to exactly one sink (adds to ``counts``)."""
    counts = counts if counts is not None else AttemptTally()
    errors, unknown_errors = counts.errors, counts.unknown_errors
    seen = succeeded = retriable = permanent = not_run = 0
    for row in rows:
        seen += 1
        if row.status == "succeeded":
            succeeded += 1  # the hot path of a healthy report: no classification, no allocation
            continue
        label = error_label(row.http_status, row.error_code)
        errors[label] += 1
        verdict = classify(row.http_status, row.error_code, unknown)
        if not verdict.known:
            unknown_errors[label] += 1
        if verdict.retriable:
            retriable += 1
            not_run += row.error_code == NOT_RUN
            on_retriable(row)
        else:
            permanent += 1
            on_permanent(row)
    counts.rows += seen
    counts.succeeded += succeeded
    counts.not_run += not_run
    counts.failed_retriable += retriable
    counts.failed_permanent += permanent
    return counts


def tally_parts(
    parts: Iterable[Any],
    *,
    unknown: Disposition,
    on_retriable: Sink,
    on_permanent: Sink,
    counts: AttemptTally | None = None,
    on_columns: ColumnSink | None = None,
) -> AttemptTally:
    """``tally`` over ``report.iter_report_parts``: record batches are counted in Arrow.

    Per batch, successes are counted without leaving Arrow, failures are classified and counted by
    error label once per distinct pair of the 5th and 6th columns (``_Outcomes``), and only
    the failed rows become ReportRows, for the sinks - or, with ``on_columns``, stay columns, handed
    over once per batch and disposition. Row iterables go through ``tally``. Both give the same counts
    and hand the sinks the same rows in the same order (tests/unit/test_report_readers.py).
    """
    counts = counts if counts is not None else AttemptTally()
    for part in parts:
        if pa is not None and isinstance(part, pa.RecordBatch):
            _tally_batch(part, counts, unknown, on_retriable, on_permanent, on_columns)
        else:
            tally(part, unknown=unknown, on_retriable=on_retriable, on_permanent=on_permanent, counts=counts)
    return counts


def tally_results(
    open_stream: Callable[[], IO[bytes]],
    status: str | None,
    *,
    reader: str,
    unknown: Disposition,
    on_retriable: Sink,
    on_permanent: Sink,
    counts: AttemptTally | None = None,
    on_columns: ColumnSink | None = None,
) -> AttemptTally:
    """One results CSV (or a window of one), from ``open_stream``: a file the report's manifest says
    holds successes is only counted (``report.count_succeeded_records``: its record ends, or the
    reader's count where the bytes need parsing); any other file, or one whose records say
    otherwise, is opened again and tallied batch by batch (``tally_parts``)."""
    counts = counts if counts is not None else AttemptTally()
    if status == SUCCEEDED:
        successes = count_succeeded_records(open_stream(), reader=reader)
        if successes is not None:
            counts.rows += successes
            counts.succeeded += successes
            return counts
    if reader == PYARROW:
        parts: Iterable[Any] = arrow_result_parts(open_stream(), FULL_READ_BLOCK_BYTES)
    else:
        parts = [read_result_rows(open_stream(), CSV_MODULE)]
    return tally_parts(
        parts,
        unknown=unknown,
        on_retriable=on_retriable,
        on_permanent=on_permanent,
        counts=counts,
        on_columns=on_columns,
    )


def _tally_batch(
    batch: Any,
    counts: AttemptTally,
    unknown: Disposition,
    on_retriable: Sink,
    on_permanent: Sink,
    on_columns: ColumnSink | None = None,
) -> None:
    rows = batch.num_rows
    counts.rows += rows
    failed = batch
    status = batch.column(3)
    # A file of failures has no success to take out: every status is shorter than "succeeded" (9
    # characters; lower-casing maps each character to one, so no shorter value is one in any
    # casing), one kernel where comparing, counting and filtering every column took five.
    if (pc.max(pc.binary_length(status)).as_py() or 0) >= len(SUCCEEDED):
        succeeded = pc.equal(status, SUCCEEDED)
        successes = pc.sum(succeeded).as_py() or 0
        counts.succeeded += successes
        if successes == rows:
            return
        if successes:
            failed = batch.filter(pc.invert(succeeded))
            status = status.filter(pc.invert(succeeded))
        succeeded = pc.equal(pc.utf8_lower(status), SUCCEEDED)  # "Succeeded": a success too
        if pc.any(succeeded).as_py():
            counts.succeeded += pc.sum(succeeded).as_py()
            failed = failed.filter(pc.invert(succeeded))
    outcomes = _Outcomes(failed.column(4), failed.column(5), unknown, counts)
    retriable = outcomes.retriable
    retriable_rows = outcomes.retriable_rows
    counts.failed_retriable += retriable_rows
    counts.failed_permanent += failed.num_rows - retriable_rows
    one_values = None
    for chosen, wanted, sink in (
        (True, retriable_rows, on_retriable),
        (False, failed.num_rows - retriable_rows, on_permanent),
    ):
        if not wanted:
            continue
        mask = None if wanted == failed.num_rows else retriable if chosen else pc.invert(retriable)
        if on_columns is None:
            for row in batch_rows(failed if mask is None else failed.filter(mask)):
                sink(row)
            continue
        if one_values is None:  # the bucket and version of both dispositions' rows, looked at once
            one_values = {position: one_value(failed.column(position)) for position in (0, 2)}
        on_columns(
            FailedColumns(
                failed, mask, wanted, outcomes.index, outcomes.http_statuses, outcomes.error_codes, one_values
            ),
            chosen,
        )


def one_value(column: Any) -> Any:
    """The value every row of a string array holds, as a scalar, else None.

    Every row's length is the first row's, and the values' bytes are that value repeated: a memory
    comparison, where comparing strings costs a compare per row (``min_max``, ten times the CPU)."""
    rows = len(column)
    if not rows or column.null_count or column.type != pa.string():
        return None
    shortest, longest = pc.min_max(pc.binary_length(column)).values()
    if shortest != longest:
        return None
    first = column[0]
    value = first.as_py().encode()
    if value:
        offsets = column.buffers()[1]
        start = int.from_bytes(offsets[4 * column.offset : 4 * column.offset + 4], sys.byteorder, signed=True)
        data = column.buffers()[2][start : start + rows * len(value)]
        if data.to_pybytes() != value * rows:
            return None
    return first


class _Outcomes:
    """A batch's failed rows classified once per distinct (5th, 6th column) pair, not per row.

    Each row's pair is a number (its 5th column's dictionary index times the 6th's dictionary size,
    plus its 6th's index); the distinct pairs are counted by ``value_counts`` and each is read,
    classified and labelled in Python by the per-row functions (``report._status_and_code``,
    ``classify``, ``error_label``), so the counts, the unknown codes and the dispositions are theirs.
    The rows then take their disposition, HTTP status and error code from the pairs' tables by index.
    """

    #: Pairs numbered densely (a table entry for every combination) up to this many combinations;
    #: past it, each row's pair is looked up among the distinct ones (a hash per row).
    DENSE_PAIRS = 4096

    def __init__(self, fifth: Any, sixth: Any, unknown: Disposition, counts: AttemptTally) -> None:
        fifth, sixth = pc.dictionary_encode(fifth), pc.dictionary_encode(sixth)
        width = len(sixth.dictionary)
        pairs = pc.add(
            pc.multiply(pc.cast(fifth.indices, pa.int64()), width), pc.cast(sixth.indices, pa.int64())
        )
        distinct = pc.value_counts(pairs)
        numbers, seen = distinct.field(0), distinct.field(1).to_pylist()
        fifths, sixths = fifth.dictionary.to_pylist(), sixth.dictionary.to_pylist()
        dense = len(fifths) * width <= self.DENSE_PAIRS
        size = len(fifths) * width if dense else len(seen)
        retriable, http_statuses, error_codes = [False] * size, [""] * size, [""] * size
        retriable_rows = 0
        for position, (number, rows) in enumerate(zip(numbers.to_pylist(), seen, strict=True)):
            http_status, error_code = _status_and_code(*_pair(fifths, sixths, number, width))
            label = error_label(http_status, error_code)
            verdict = classify(http_status, error_code, unknown)
            counts.errors[label] += rows
            if not verdict.known:
                counts.unknown_errors[label] += rows
            if verdict.retriable:
                retriable_rows += rows
                counts.not_run += rows if error_code == NOT_RUN else 0
            at = number if dense else position
            retriable[at] = verdict.retriable
            http_statuses[at] = "" if http_status is None else str(http_status)
            error_codes[at] = error_code
        #: Each row's index into the tables below.
        self.index = pairs if dense else pc.index_in(pairs, value_set=numbers)
        self.retriable = pc.take(pa.array(retriable, pa.bool_()), self.index)
        self.retriable_rows = retriable_rows
        self.http_statuses = pa.array(http_statuses, pa.string())  # as the failures file writes it
        self.error_codes = pa.array(error_codes, pa.string())


def _pair(fifths: list[str], sixths: list[str], number: int, width: int) -> tuple[str, str]:
    at_fifth, at_sixth = divmod(number, width)
    return fifths[at_fifth], sixths[at_sixth]


def preferred_outcome(unknown: Disposition) -> Callable[[ReportRow, ReportRow], ReportRow]:
    """Which of two report rows for the same object counts (tasks run at least once).

    A success settles the object; otherwise a permanent failure beats a retriable one (another job
    would fail the same way); between equals the later row wins.
    """

    def rank(row: ReportRow) -> int:
        if row.status == "succeeded":
            return 2
        return 0 if classify(row.http_status, row.error_code, unknown).retriable else 1

    def prefer(earlier: ReportRow, later: ReportRow) -> ReportRow:
        return earlier if rank(earlier) > rank(later) else later

    return prefer


def backoff_seconds(base_seconds: int, attempt: int) -> int:
    """Wait before attempt + 1: the spec's backoff doubled per attempt already run, capped at a day."""
    if base_seconds <= 0:
        return 0
    return min(MAX_BACKOFF_SECONDS, base_seconds * 2 ** min(attempt - 1, 32))


class AttemptRecord(BaseModel):
    """``attempt-<n>/record.json``: the full account of one attempt (the state carries a pointer)."""

    model_config = ConfigDict(extra="allow")

    attempt: int = Field(ge=1)
    jobId: str
    jobStatus: str
    total: int = Field(ge=0)
    succeeded: int = Field(ge=0)
    failedRetriable: int = Field(ge=0)
    failedPermanent: int = Field(ge=0)
    failedRetriesExhausted: int = Field(default=0, ge=0)
    notRun: int = Field(default=0, ge=0)
    errors: dict[str, int] = Field(default_factory=dict)
    unknownErrorCodes: dict[str, int] = Field(default_factory=dict)
    report: str | None = None
    reportScope: str | None = None
    failureReasons: list[dict[str, Any]] = Field(default_factory=list)
    statusUpdateReason: str | None = None
    permanentFailures: str | None = None
    retryManifest: str | None = None
    retriesExhausted: str | None = None
    unmatchedReportRows: int = 0
    cancelledBy: str | None = None
    # For the run page (runpage.py): failures by key prefix (prefixes.py) and when the job was
    # created, ended, and this record written (ISO 8601; None in records written before they existed).
    failuresByPrefix: dict[str, Any] | None = None
    jobCreated: str | None = None
    jobEnded: str | None = None
    recorded: str | None = None
    # Nobody confirmed the job and S3 failed it after 30 days in Suspended: final, like a person's cancel.
    neverConfirmed: bool = False

    @property
    def cancelled_by_person(self) -> bool:
        """A person cancelled this attempt's job: final, no further attempt."""
        return self.cancelledBy == CANCELLED_BY_OPERATOR

    @property
    def final(self) -> bool:
        """No further attempt follows, whatever ``retry`` allows: its never-run objects are notRun."""
        return self.cancelled_by_person or self.neverConfirmed

    @property
    def closed_retriable(self) -> int:
        """Retriable objects this attempt leaves to no further attempt (the retries-exhausted file)."""
        return self.failedRetriesExhausted + (self.notRun if self.final else 0)


def check_attempt(record: AttemptRecord) -> None:
    """One attempt's counts add up and its files agree with them."""
    where = f"attempt {record.attempt} (job {record.jobId})"
    counted = record.succeeded + record.failedRetriable + record.failedPermanent
    if counted != record.total:
        raise AccountingError(
            f"{where}: succeeded {record.succeeded} + failedRetriable {record.failedRetriable} + "
            f"failedPermanent {record.failedPermanent} = {counted}, but the attempt had {record.total} objects"
        )
    failures = sum(record.errors.values())
    if failures != record.failedRetriable + record.failedPermanent:
        raise AccountingError(
            f"{where}: errors count {failures} failures, counts say "
            f"{record.failedRetriable + record.failedPermanent}"
        )
    if record.notRun > record.failedRetriable:
        raise AccountingError(f"{where}: {record.notRun} not run but only {record.failedRetriable} retriable")
    if record.closed_retriable not in (0, record.failedRetriable):
        raise AccountingError(
            f"{where}: retries ended for {record.closed_retriable} of "
            f"{record.failedRetriable} retriable objects; it is all or none"
        )
    if record.failedRetriable and (record.retryManifest is None) == (record.retriesExhausted is None):
        raise AccountingError(
            f"{where}: retriable objects must go to exactly one of the retry manifest "
            "and the retries-exhausted file"
        )


def check_chain(records: Sequence[AttemptRecord], *, finished: bool) -> None:
    """Attempts 1..k in order, each rerunning exactly the previous one's retriable objects.

    ``finished``: the run ended normally, so the last attempt left nothing pending.
    """
    for position, record in enumerate(records, start=1):
        check_attempt(record)
        if record.attempt != position:
            raise AccountingError(
                f"attempt records are not 1..{len(records)}: found attempt {record.attempt} "
                f"at position {position}"
            )
    for earlier, later in itertools.pairwise(records):
        if later.total != earlier.failedRetriable or earlier.closed_retriable or earlier.final:
            raise AccountingError(
                f"attempt {later.attempt} ran {later.total} objects, but attempt {earlier.attempt} left "
                f"{earlier.failedRetriable} retriable ({earlier.closed_retriable} closed"
                + (", its job cancelled by a person)" if earlier.cancelled_by_person else ")")
            )
    if finished and records and records[-1].closed_retriable != records[-1].failedRetriable:
        last = records[-1]
        raise AccountingError(
            f"the run ended with {last.failedRetriable} retriable objects of attempt "
            f"{last.attempt} neither rerun nor reported as retries exhausted"
        )


# ----------------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class RunTotals:
    objects: int
    succeeded: int
    failedPermanent: int
    failedRetriesExhausted: int
    unresolved: int  # only a FAILED run leaves objects whose outcome nobody knows
    notRun: int = 0
    cancelled: bool = False  # a person cancelled the last attempt's job
    unconfirmed: bool = False  # nobody confirmed the last attempt's job and S3 failed it (30 days)

    def as_output(self) -> dict[str, int]:
        totals = {
            "objects": self.objects,
            "succeeded": self.succeeded,
            "failedPermanent": self.failedPermanent,
            "failedRetriesExhausted": self.failedRetriesExhausted,
        }
        if self.cancelled or self.unconfirmed:
            totals["notRun"] = self.notRun
        if self.unresolved:
            totals["unresolved"] = self.unresolved
        return totals


def run_totals(records: Sequence[AttemptRecord], objects: int, *, finished: bool) -> RunTotals:
    """Run-level totals from the attempt records, checked against the manifest's object count."""
    check_chain(records, finished=finished)
    if records and records[0].total != objects:
        raise AccountingError(f"attempt 1 ran {records[0].total} objects, the manifest lists {objects}")
    succeeded = sum(r.succeeded for r in records)
    permanent = sum(r.failedPermanent for r in records)
    exhausted = records[-1].failedRetriesExhausted if records else 0
    cancelled = bool(records) and records[-1].cancelled_by_person
    unconfirmed = bool(records) and records[-1].neverConfirmed
    not_run = records[-1].notRun if cancelled or unconfirmed else 0
    unresolved = objects - succeeded - permanent - exhausted - not_run
    if unresolved < 0 or (finished and unresolved):
        raise AccountingError(
            f"objects {objects} != succeeded {succeeded} + failedPermanent {permanent} + "
            f"failedRetriesExhausted {exhausted} + notRun {not_run}"
        )
    return RunTotals(objects, succeeded, permanent, exhausted, unresolved, not_run, cancelled, unconfirmed)


def run_status(*, failed: bool, dry_run: bool, objects: int | None, totals: RunTotals | None) -> str:
    """The run status (docs/OPERATIONS.md, "Reading a run summary"). A dry run reports DRY_RUN even when it selected nothing."""
    if failed:
        return "FAILED"
    if totals is not None and totals.cancelled:
        return "CANCELLED"
    if totals is not None and totals.unconfirmed:
        return "UNCONFIRMED"
    if dry_run:
        return "DRY_RUN"
    if not objects:
        return "NOTHING_TO_DO"
    if totals is not None and (totals.failedPermanent or totals.failedRetriesExhausted):
        return "PARTIAL"
    return "SUCCEEDED"


def trim_errors(errors: dict[str, int], limit: int = MAX_ERRORS_SHOWN) -> dict[str, int]:
    """The most frequent error labels, the rest summed as ``other`` so the output stays small."""
    if len(errors) <= limit:
        return dict(sorted(errors.items(), key=lambda item: (-item[1], item[0])))
    shown = heapq.nsmallest(limit - 1, errors.items(), key=lambda item: (-item[1], item[0]))
    trimmed = dict(shown)
    trimmed["other"] = sum(errors.values()) - sum(trimmed.values())
    return trimmed


# ----------------------------------------------------------------------------------- cost


@dataclass(frozen=True)
class Prices:
    """Public list prices (us-east-1) the estimate uses; the only place they are written down."""

    batch_per_job: float = 0.25
    batch_per_million_objects: float = 1.00
    athena_per_tb_scanned: float = 5.00
    athena_minimum_bytes: int = 10_000_000  # Athena bills at least 10 MB per query
    athena_bytes_per_tb: int = 10**12
    step_functions_per_thousand_transitions: float = 0.025


PRICES = Prices()

# Entered once per run: ValidateSpec, AcquireRunLock, RunLockTaken?, RerunOfFailures?, PlanQuery,
# StartQuery, PackManifest, ManifestPacked?, BuildManifest, AnythingToDo?, Summarize (PackManifest
# and ManifestPacked? once more per further group of small Athena files).
_FIXED_TRANSITIONS = 11
# Per Athena poll: WaitForQuery, GetQueryStatus, QueryFinished?, and between polls QueryWaitAtMost?
# and LongerQueryWait (the last poll has only the first three).
_QUERY_POLL_TRANSITIONS = 5
ASSUMED_QUERY_POLLS = 4  # ~20 s of Athena; the state does not count polls
# FirstAttempt, CreateJobAndWait (its short first wait times out: no event says the job was counted),
# CheckJob, JobFinished?, UseCheckedJob, CountNeeded?, ConfirmJob, DryRunCounted?, CreateJobAndWait
# (until the job ends), CountNeeded?, PlanReport, ReadReportParts, JoinNeeded?, PackParts, PartsPacked?, ProcessReport,
# MoreToRetry? (each further doubled wait for the count adds CreateJobAndWait, CheckJob, JobFinished?;
# a joined report adds JoinPartitions; PackParts and PartsPacked? come once more per further group of
# the parts' small failure files).
_ATTEMPT_TRANSITIONS = 17
_RETRY_TRANSITIONS = _ATTEMPT_TRANSITIONS + 1  # Backoff and NextAttempt instead of FirstAttempt
# The report Maps' children, at least: two results files (one per task status) of one window each
# (ReadPart, MoreOfFile?, FileRead); 3 more per further window, 1 per join partition.
_REPORT_CHILD_TRANSITIONS = 6


def estimate_transitions(
    attempts: int, *, query_polls: int = ASSUMED_QUERY_POLLS, children: bool = True
) -> int:
    """State transitions of a run with ``attempts`` jobs whose status events arrive (a lower bound:
    job-status timeouts, large reports and joins add more); ``children``: with the report Maps' child
    executions (billed like the parent's)."""
    transitions = _FIXED_TRANSITIONS + _QUERY_POLL_TRANSITIONS * query_polls - 2 * (query_polls > 0)
    if attempts:
        transitions += _ATTEMPT_TRANSITIONS + _RETRY_TRANSITIONS * (attempts - 1)
        transitions += _REPORT_CHILD_TRANSITIONS * attempts if children else 0
    return transitions


def estimate_cost_usd(
    *,
    jobs: int,
    objects_processed: int,
    athena_bytes_scanned: int | None,
    transitions: int,
    prices: Prices = PRICES,
) -> float:
    """Batch jobs and tasks, the Athena query (None: no query ran) and Step Functions transitions."""
    cost = jobs * prices.batch_per_job + objects_processed / 1e6 * prices.batch_per_million_objects
    if athena_bytes_scanned is not None:
        billed = max(prices.athena_minimum_bytes, math.ceil(athena_bytes_scanned / 1e6) * 1_000_000)
        cost += billed / prices.athena_bytes_per_tb * prices.athena_per_tb_scanned
    cost += transitions / 1000 * prices.step_functions_per_thousand_transitions
    return round(cost, 4)
