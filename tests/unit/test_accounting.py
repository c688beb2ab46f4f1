"""Attempt tallies, the invariant checks, run totals, status, error trimming, backoff and cost."""

from __future__ import annotations

import pytest

from batchpipe_core.accounting import (
    MAX_BACKOFF_SECONDS,
    PRICES,
    AttemptRecord,
    RunTotals,
    backoff_seconds,
    check_attempt,
    check_chain,
    estimate_cost_usd,
    estimate_transitions,
    preferred_outcome,
    run_status,
    run_totals,
    tally,
    trim_errors,
)
from batchpipe_core.classification import Disposition, error_label
from batchpipe_core.errors import AccountingError
from batchpipe_core.report import ReportRow


def row(status="failed", http=None, code="", key="k"):
    return ReportRow("b", key, "", status, http, code, "m")


def record(attempt=1, total=10, succeeded=7, retriable=2, permanent=1, **extra):
    fields = {
        "attempt": attempt,
        "jobId": f"job-{attempt}",
        "jobStatus": "Complete",
        "total": total,
        "succeeded": succeeded,
        "failedRetriable": retriable,
        "failedPermanent": permanent,
        "errors": {"503 SlowDown": retriable, "404 NoSuchKey": permanent},
        "retryManifest": "s3://b/retry.csv" if retriable else None,
    }
    fields["errors"] = {k: v for k, v in fields["errors"].items() if v}
    fields.update(extra)
    return AttemptRecord(**fields)


# ------------------------------------------------------------------------------------ tally


def test_tally_sends_each_failure_to_one_sink():
    retried, permanent = [], []
    rows = [
        row("succeeded", 200),
        row(http=503, code="SlowDown"),
        row(code="NotRun"),
        row(http=404, code="NoSuchKey"),
        row(http=200, code="Mystery"),
        row(http=200, code="Mystery"),
    ]
    counts = tally(
        rows,
        unknown=Disposition.PERMANENT,
        on_retriable=lambda r: retried.append(error_label(r.http_status, r.error_code)),
        on_permanent=lambda r: permanent.append(error_label(r.http_status, r.error_code)),
    )
    assert (counts.succeeded, counts.failed_retriable, counts.failed_permanent, counts.not_run) == (
        1,
        2,
        3,
        1,
    )
    assert counts.total == counts.rows == 6
    assert retried == ["503 SlowDown", "NotRun"]
    assert permanent == ["404 NoSuchKey", "200 Mystery", "200 Mystery"]
    assert counts.errors == {"503 SlowDown": 1, "NotRun": 1, "404 NoSuchKey": 1, "200 Mystery": 2}
    assert counts.unknown_errors == {"200 Mystery": 2}


def test_unknown_errors_can_be_retried():
    retried = []
    counts = tally(
        [row(http=200, code="Mystery")],
        unknown=Disposition.RETRIABLE,
        on_retriable=retried.append,
        on_permanent=lambda r: None,
    )
    assert counts.failed_retriable == 1 and counts.unknown_errors == {"200 Mystery": 1}


def test_preferred_outcome_success_then_permanent_then_latest():
    prefer = preferred_outcome(Disposition.PERMANENT)
    ok, slow, gone, slow2 = (
        row("succeeded", 200),
        row(http=503, code="SlowDown"),
        row(http=404, code="NoSuchKey"),
        row(http=500, code="InternalError"),
    )
    assert prefer(ok, slow) is ok and prefer(slow, ok) is ok
    assert prefer(gone, slow) is gone and prefer(slow, gone) is gone
    assert prefer(slow, slow2) is slow2


# ------------------------------------------------------------------------------------ backoff


def test_backoff_doubles_per_attempt_and_is_capped():
    assert [backoff_seconds(300, n) for n in (1, 2, 3)] == [300, 600, 1200]
    assert backoff_seconds(300, 40) == MAX_BACKOFF_SECONDS
    assert backoff_seconds(0, 5) == 0


# ------------------------------------------------------------------------------------ checks


def test_a_consistent_attempt_passes():
    check_attempt(record())
    check_attempt(record(retriable=0, succeeded=9))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"succeeded": 8}, "but the attempt had 10 objects"),
        ({"errors": {"503 SlowDown": 1, "404 NoSuchKey": 1}}, "errors count 2 failures"),
        ({"notRun": 3}, "3 not run"),
        ({"failedRetriesExhausted": 1}, "all or none"),
        ({"retryManifest": None}, "exactly one"),
        ({"retriesExhausted": "s3://b/x.csv", "failedRetriesExhausted": 2}, "exactly one"),
    ],
)
def test_inconsistent_attempts_raise(changes, message):
    with pytest.raises(AccountingError, match=message):
        check_attempt(record().model_copy(update=changes))


def test_chain_reruns_exactly_the_retriable_objects():
    first = record(1, total=10, succeeded=7, retriable=2, permanent=1)
    second = record(2, total=2, succeeded=2, retriable=0, permanent=0)
    check_chain([first, second], finished=True)
    with pytest.raises(AccountingError, match="attempt 2 ran 3 objects"):
        check_chain([first, record(2, total=3, succeeded=3, retriable=0, permanent=0)], finished=True)
    with pytest.raises(AccountingError, match=r"not 1\.\.1"):
        check_chain([second], finished=True)
    with pytest.raises(AccountingError, match="neither rerun nor reported"):
        check_chain([first], finished=True)
    check_chain([first], finished=False)  # a FAILED run may stop with retriable objects pending


def test_run_totals_and_status():
    first = record(1, total=10, succeeded=7, retriable=2, permanent=1)
    last = record(
        2,
        total=2,
        succeeded=1,
        retriable=1,
        permanent=0,
        retryManifest=None,
        retriesExhausted="s3://b/exhausted.csv",
        failedRetriesExhausted=1,
    )
    totals = run_totals([first, last], 10, finished=True)
    assert totals == RunTotals(10, 8, 1, 1, 0)
    assert totals.as_output() == {
        "objects": 10,
        "succeeded": 8,
        "failedPermanent": 1,
        "failedRetriesExhausted": 1,
    }
    assert run_status(failed=False, dry_run=False, objects=10, totals=totals) == "PARTIAL"
    clean = run_totals([record(1, total=3, succeeded=3, retriable=0, permanent=0)], 3, finished=True)
    assert run_status(failed=False, dry_run=False, objects=3, totals=clean) == "SUCCEEDED"
    with pytest.raises(AccountingError, match="the manifest lists 11"):
        run_totals([first, last], 11, finished=True)


def test_a_failed_run_reports_unresolved_objects():
    totals = run_totals([record(1, total=10, succeeded=7, retriable=2, permanent=1)], 10, finished=False)
    assert totals.unresolved == 2 and totals.as_output()["unresolved"] == 2
    assert run_totals([], 5, finished=False).unresolved == 5
    with pytest.raises(AccountingError):
        run_totals([], 5, finished=True)


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"failed": True, "dry_run": True, "objects": 0}, "FAILED"),
        ({"failed": False, "dry_run": True, "objects": 0}, "DRY_RUN"),
        ({"failed": False, "dry_run": False, "objects": 0}, "NOTHING_TO_DO"),
        ({"failed": False, "dry_run": False, "objects": None}, "NOTHING_TO_DO"),
    ],
)
def test_statuses_without_totals(kwargs, status):
    assert run_status(totals=None, **kwargs) == status


# ------------------------------------------------------------------------------------ output size


def test_errors_are_trimmed_to_the_most_frequent():
    errors = {f"500 Code{i:03d}": i + 1 for i in range(120)}
    trimmed = trim_errors(errors)
    assert len(trimmed) == 50
    assert next(iter(trimmed)) == "500 Code119"
    assert sum(trimmed.values()) == sum(errors.values())
    assert trimmed["other"] == sum(range(1, 72))
    assert trim_errors({"a": 1, "b": 3}) == {"b": 3, "a": 1}


# ------------------------------------------------------------------------------------ cost


def test_cost_of_one_job_on_a_million_objects():
    transitions = estimate_transitions(1)
    assert transitions == 11 + (5 * 4 - 2) + 17 + 6
    cost = estimate_cost_usd(
        jobs=1, objects_processed=1_000_000, athena_bytes_scanned=1_000, transitions=transitions
    )
    athena_minimum = 10_000_000 / 10**12 * 5.0
    assert cost == round(0.25 + 1.00 + athena_minimum + transitions * 0.025 / 1000, 4)


def test_cost_counts_every_attempt_and_athena_by_the_megabyte():
    assert estimate_transitions(3) - estimate_transitions(1) == 2 * (18 + 6)
    assert estimate_transitions(0) == 11 + 18
    cost = estimate_cost_usd(jobs=3, objects_processed=0, athena_bytes_scanned=2 * 10**12, transitions=0)
    assert cost == 3 * PRICES.batch_per_job + 2 * PRICES.athena_per_tb_scanned
    assert estimate_cost_usd(jobs=0, objects_processed=0, athena_bytes_scanned=None, transitions=0) == 0


# ------------------------------------------------------------------------ a person's cancel


def cancelled_record(attempt=1, total=10, succeeded=4, ran_retriable=1, not_run=5, **extra):
    retriable = ran_retriable + not_run
    errors = {"503 SlowDown": ran_retriable, "NotRun": not_run}
    return record(
        attempt,
        total,
        succeeded,
        retriable,
        0,
        jobStatus="Cancelled",
        cancelledBy="operator",
        errors={k: v for k, v in errors.items() if v},
        notRun=not_run,
        failedRetriesExhausted=ran_retriable,
        retryManifest=None,
        retriesExhausted="s3://b/exhausted.csv",
        **extra,
    )


def test_a_persons_cancel_counts_the_unrun_objects_as_not_run_and_ends_the_run_cancelled():
    first = record(1, total=12, succeeded=2, retriable=10, permanent=0)
    last = cancelled_record(2, total=10, succeeded=4, ran_retriable=1, not_run=5)

    totals = run_totals([first, last], 12, finished=True)

    assert totals.as_output() == {
        "objects": 12,
        "succeeded": 6,
        "failedPermanent": 0,
        "failedRetriesExhausted": 1,
        "notRun": 5,
    }
    assert run_status(failed=False, dry_run=False, objects=12, totals=totals) == "CANCELLED"


def test_nothing_may_follow_an_attempt_a_person_cancelled():
    cancelled = cancelled_record(1, total=10, succeeded=4, ran_retriable=0, not_run=6)
    with pytest.raises(AccountingError, match="cancelled by a person"):
        check_chain([cancelled, record(2, total=6, succeeded=6, retriable=0, permanent=0)], finished=True)


def test_a_pipeline_cancel_is_not_final():
    stopped = record(1, total=10, succeeded=4, retriable=6, permanent=0, jobStatus="Cancelled")
    stopped = stopped.model_copy(update={"cancelledBy": "pipeline", "errors": {"NotRun": 6}, "notRun": 6})
    totals = run_totals(
        [stopped, record(2, total=6, succeeded=6, retriable=0, permanent=0)], 10, finished=True
    )
    assert "notRun" not in totals.as_output()
    assert run_status(failed=False, dry_run=False, objects=10, totals=totals) == "SUCCEEDED"
