"""Property: whatever happens to each object, every object is counted once and the retry set is exact.

The pure pipeline ProcessReport runs - manifest joined with a shuffled report (in memory or spilled
to disk), then tallied - for any assignment of outcomes: succeeded, each retriable code, each
permanent code, or never run (absent from the report). Some tasks are reported twice, as S3 runs
tasks at least once: a failure and then the success.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from batchpipe_core.accounting import preferred_outcome, tally
from batchpipe_core.classification import NOT_RUN, Disposition
from batchpipe_core.keys import encode_key
from batchpipe_core.reconciliation import Reconciliation
from batchpipe_core.report import ManifestRow, ReportRow

RETRIABLE = [
    (503, "SlowDown"),
    (500, "InternalError"),
    (503, "ServiceUnavailable"),
    (429, "TooManyRequests"),
    (400, "RequestTimeout"),
    (200, "TemporaryFailure"),
]
PERMANENT = [
    (400, "InvalidRequest"),
    (403, "AccessDenied"),
    (404, "NoSuchKey"),
    (404, "NoSuchVersion"),
    (405, "MethodNotAllowed"),
    (409, "OperationAborted"),
    (412, "PreconditionFailed"),
    (403, "InvalidObjectState"),
    (200, "PermanentFailure"),
]
OUTCOMES = [
    "succeeded",
    "notrun",
    *[("retriable", *c) for c in RETRIABLE],
    *[("permanent", *c) for c in PERMANENT],
]

key_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)


@st.composite
def runs(draw):
    keys = draw(st.lists(key_text, min_size=0, max_size=60, unique=True))
    versioned = draw(st.booleans())
    objects = []
    for index, key in enumerate(keys):
        version = draw(st.sampled_from(["null", f"v{index}"])) if versioned else ""
        objects.append(
            (
                ManifestRow("src", encode_key(key), version),
                draw(st.sampled_from(OUTCOMES)),
                draw(st.booleans()),
            )
        )
    return objects, draw(st.randoms(use_true_random=False)), draw(st.sampled_from([1_000, 4]))


def report_rows(manifest_row, outcome, reported_twice):
    bucket, key, version = manifest_row
    if outcome == "notrun":
        return []
    if outcome == "succeeded":
        rows = [ReportRow(bucket, key, version, "succeeded", 200, "", "Successful")]
        if reported_twice:  # ran twice: a throttled run, then the successful one
            rows.insert(0, ReportRow(bucket, key, version, "failed", 503, "SlowDown", "Please, slow down"))
        return rows
    _, http, code = outcome
    return [ReportRow(bucket, key, version, "failed", http, code, f"{code}, with a comma\nand a newline")]


@settings(max_examples=300, deadline=None)
@given(runs())
def test_every_object_is_counted_once_and_the_retry_set_is_exact(run):
    objects, random, memory_rows = run
    report = [
        r for manifest_row, outcome, twice in objects for r in report_rows(manifest_row, outcome, twice)
    ]
    random.shuffle(report)
    joined = Reconciliation(
        (m for m, _, _ in objects),
        report,
        absent=lambda m: ReportRow(*m, "failed", None, NOT_RUN, "not run"),
        prefer=preferred_outcome(Disposition.PERMANENT),
        expected_rows=len(objects),
        memory_rows=memory_rows,
    )
    retried, permanent = [], []
    counts = tally(
        joined,
        unknown=Disposition.PERMANENT,
        on_retriable=lambda row: retried.append((row.bucket, row.key, row.version_id)),
        on_permanent=lambda row: permanent.append(row.decoded_key),
    )

    assert counts.succeeded + counts.failed_retriable + counts.failed_permanent == len(objects)
    expected_retry = sorted(
        tuple(m) for m, outcome, _ in objects if outcome == "notrun" or outcome[0] == "retriable"
    )
    assert sorted(retried) == expected_retry  # keys and versions exactly as given
    assert len(permanent) == sum(1 for _, outcome, _ in objects if outcome[0] == "permanent")
    assert counts.not_run == sum(1 for _, outcome, _ in objects if outcome == "notrun")
    assert counts.succeeded == sum(1 for _, outcome, _ in objects if outcome == "succeeded")
    assert joined.unmatched == 0
