"""Failures by key prefix (batchpipe_core.prefixes): bounded, added up exactly across parts and
attempts, and honest ("exact": false) where a bound dropped something; and the record the real report
stage writes holds it, whatever the bounds split the report into."""

from __future__ import annotations

import itertools
import sys
from collections import Counter
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
if str(FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS))

from batchpipe_core.accounting import AttemptRecord  # noqa: E402
from batchpipe_core.prefixes import MAX_PREFIX_CHARS, PrefixTally, merge, run_prefixes  # noqa: E402
from tests.unit.test_process_report import SOURCE, record_of, run_attempt, s3  # noqa: E402, F401
from tests.unit.test_report_layout import failed, succeeded  # noqa: E402


def table(document: dict, depth: int) -> dict[str, tuple[int, int, bool]]:
    level = document["depths"][depth - 1]
    return {e["prefix"]: (e["permanent"], e["retriable"], e["exact"]) for e in level["prefixes"]}


def tally(rows: list[tuple[str, bool]], **bounds) -> dict:
    prefixes = PrefixTally(**bounds)
    for key, retriable in rows:
        prefixes.add(key, retriable=retriable)
    return prefixes.as_document()


def test_each_depth_splits_the_failures_at_its_slash_and_shallow_keys_count_under_their_folder():
    document = tally([("a/b/c/d/e/f.txt", False), ("a/b/x.txt", True), ("a/y", False), ("top-level", False)])

    assert table(document, 1) == {"a/": (2, 1, True), "": (1, 0, True)}
    assert table(document, 2) == {"a/b/": (1, 1, True), "a/": (1, 0, True), "": (1, 0, True)}
    assert table(document, 4) == {
        "a/b/c/d/": (1, 0, True),
        "a/b/": (0, 1, True),
        "a/": (1, 0, True),
        "": (1, 0, True),
    }
    for level in document["depths"]:
        assert level["other"] == {"permanent": 0, "retriable": 0}


def test_a_long_prefix_is_cut_and_says_so():
    key = "d" * 1000 + "/" + "k" * 23
    (entry,) = tally([(key, False)])["depths"][0]["prefixes"]
    assert entry["prefix"] == "d" * MAX_PREFIX_CHARS
    assert entry["cut"] is True


def test_a_part_tracks_a_bounded_number_of_prefixes_and_counts_the_rest_as_other():
    rows = [(f"p{i}/x", False) for i in range(10)] + [("p0/y", True)] * 5
    document = tally(rows, tracked=3)

    assert table(document, 1) == {"p0/": (1, 5, True), "p1/": (1, 0, True), "p2/": (1, 0, True)}
    assert document["depths"][0]["other"] == {"permanent": 7, "retriable": 0}


def test_merging_parts_adds_counts_and_marks_what_an_overflowing_part_may_hide():
    full = tally([(f"p{i}/x", False) for i in range(5)], tracked=2)  # p0, p1 tracked; 3 in other
    small = tally([("p0/y", False), ("p3/y", True)], tracked=2)

    merged = merge([full, small])

    # p0 is listed by both parts: exact. p3 is listed by one, and the other has failures it did
    # not track (p3's among them, in fact): a lower bound. p1 is listed where it could be hidden.
    assert table(merged, 1) == {"p0/": (2, 0, True), "p1/": (1, 0, True), "p3/": (0, 1, False)}
    assert merged["depths"][0]["other"] == {"permanent": 3, "retriable": 0}


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(["a/", "a/b/", "c/", "", "a/b/c/d/"]), st.text(max_size=3), st.booleans()),
        max_size=60,
    ),
    splits=st.lists(st.integers(min_value=0, max_value=60), max_size=4),
    kept=st.integers(min_value=1, max_value=6),
)
def test_merged_parts_equal_one_tally_of_every_row_and_no_failure_is_lost(rows, splits, kept):
    keys = [(folder + name.replace("/", ""), retriable) for folder, name, retriable in rows]
    cuts = sorted({0, len(keys), *(min(s, len(keys)) for s in splits)})
    parts = [tally(keys[a:b]) for a, b in itertools.pairwise(cuts)]

    merged = merge(parts, kept=kept)
    whole = tally(keys)

    if not keys:
        assert merged is None or all(not level["prefixes"] for level in merged["depths"])
        return
    for depth in range(1, 5):
        level = merged["depths"][depth - 1]
        shown = table(merged, depth)
        expected = table(whole, depth)
        assert all(exact for _, _, exact in shown.values())  # no part overflowed: every count exact
        for prefix, counts in shown.items():
            assert counts[:2] == expected[prefix][:2]
        assert len(shown) == min(kept, len(expected))
        failures = Counter()
        for permanent, retriable, _ in shown.values():
            failures["permanent"] += permanent
            failures["retriable"] += retriable
        failures.update(level["other"])
        assert (
            failures
            == Counter(permanent=sum(not r for _, r in keys), retriable=sum(r for _, r in keys)) - Counter()
        )


def record(attempt: int, total: int, permanent: int, retriable: int, document: dict | None) -> AttemptRecord:
    return AttemptRecord(
        attempt=attempt,
        jobId=f"job-{attempt}",
        jobStatus="Complete",
        total=total,
        succeeded=total - permanent - retriable,
        failedRetriable=retriable,
        failedPermanent=permanent,
        failuresByPrefix=document,
    )


def test_the_run_table_counts_retried_failures_apart_from_those_that_failed_for_good():
    first = tally([("slow/a", True), ("slow/b", True), ("gone/c", False)])
    last = tally([("slow/b", True)])  # retries ran out for this one

    run = run_prefixes([record(1, 5, 1, 2, first), record(2, 2, 0, 1, last)])

    assert {e["prefix"]: (e["failed"], e["retried"]) for e in run["depths"][0]["prefixes"]} == {
        "slow/": (1, 2),
        "gone/": (1, 0),
    }


def test_records_from_before_the_aggregate_give_no_table_rather_than_a_short_one():
    assert run_prefixes([record(1, 3, 1, 0, None)]) is None
    assert run_prefixes([record(1, 3, 0, 0, None)]) is None  # nothing failed, nothing to draw


def test_the_report_stage_records_failures_by_prefix_across_its_parts(s3):  # noqa: F811 (the fixture)
    tasks = (
        [succeeded(SOURCE, f"ok/{i}") for i in range(5)]
        + [failed(SOURCE, f"private/{i}.jpg", 403, "AccessDenied") for i in range(6)]
        + [failed(SOURCE, f"logs/2024/{i}", 503, "SlowDown") for i in range(3)]
        + [failed(SOURCE, 'odd/"<script>', 404, "NoSuchKey")]
    )

    document = record_of(s3, run_attempt(s3, tasks))["failuresByPrefix"]

    assert table(document, 1) == {
        "private/": (6, 0, True),
        "logs/": (0, 3, True),
        "odd/": (1, 0, True),
    }
    assert table(document, 2)["logs/2024/"] == (0, 3, True)


def reference_document(rows: list[tuple[str, bool]], tracked: int, depths: int = 4) -> dict:
    """The tally as the module docstring states it, walked in full at every depth for every key: no
    shortcut once a depth is full (``PrefixTally._add`` stops at the first full depth where the
    key's prefix is not tracked)."""
    counts: list[dict[str, list[int]]] = [{} for _ in range(depths)]
    other = [[0, 0] for _ in range(depths)]
    for key, retriable in rows:
        slashes = [i + 1 for i, character in enumerate(key) if character == "/"]
        for depth in range(depths):
            end = slashes[min(depth, len(slashes) - 1)] if slashes else 0
            prefix = key[: min(end, MAX_PREFIX_CHARS)]
            if prefix not in counts[depth] and len(counts[depth]) < tracked:
                counts[depth][prefix] = [0, 0]
            entry = counts[depth].get(prefix, other[depth])
            entry[1 if retriable else 0] += 1
    return {
        "depths": [
            {
                "prefixes": [
                    {"prefix": p, "permanent": c[0], "retriable": c[1], "exact": True}
                    | ({"cut": True} if len(p) >= MAX_PREFIX_CHARS else {})
                    for p, c in by_prefix.items()
                ],
                "other": {"permanent": o[0], "retriable": o[1]},
            }
            for by_prefix, o in zip(counts, other, strict=True)
        ]
    }


#: Folders that fill the depths at different times: a few at depth 1 with many below them, keys with
#: fewer slashes than the depths (counted under their own folder), empty folders, folders longer than
#: MAX_PREFIX_CHARS in characters of one to four bytes (cut in characters, a "/" after the cut).
FOLDERS = st.sampled_from(
    ["a/", "b/", "", "/", "x/", "é/", "é" * 199 + "/", "日" * 120 + "/", "😀" * 210 + "/z/"]
)
prefix_rows = st.lists(
    st.tuples(
        st.lists(FOLDERS | st.integers(0, 40).map(lambda i: f"{i}/"), max_size=7).map("".join),
        st.sampled_from(["", "k", "k.txt"]),
        st.booleans(),
    ).map(lambda row: (row[0] + row[1], row[2])),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(prefix_rows, st.integers(1, 6))
def test_once_a_depth_is_full_an_untracked_prefix_goes_to_other_at_every_deeper_depth(rows, tracked):
    """The shortcut ``_add`` takes at a full depth gives the tally of the full walk, row by row
    (``add``) and by deepest prefixes (``add_counts``, which resolves a new deepest prefix the same
    way), whichever depth fills first."""
    expected = reference_document(rows, tracked)
    assert tally(rows, tracked=tracked) == expected
    by_counts = PrefixTally(tracked=tracked)
    for key, retriable in rows:
        by_counts.add_counts([(key, 1)], retriable=retriable)
    assert by_counts.as_document() == expected


def test_a_part_whose_failures_each_fall_in_a_folder_of_their_own_holds_bounded_memory():
    """Deepest prefixes of a key's full 1,024 bytes, one character beyond U+FFFF in each (Python then
    holds every character in four bytes), three times as many as the tally keeps entries for (two
    rows each: a prefix of one row in its batch is not kept at all)."""
    import tracemalloc

    from batchpipe_core.prefixes import KNOWN

    tally_ = PrefixTally()
    tracemalloc.start()
    try:
        for i in range(3 * KNOWN):
            prefix = f"{i:08d}/\U0001f600" + "a" * 1010 + "/"
            assert len(prefix.encode()) == 1024
            tally_.add_counts([(prefix, 2)], retriable=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20
    level = tally_.as_document()["depths"][0]
    assert sum(e["permanent"] for e in level["prefixes"]) + level["other"]["permanent"] == 2 * 3 * KNOWN
