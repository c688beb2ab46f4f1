"""The report-manifest join matches objects by decoded identity, however the report spells keys.

The S3 user guide's examples show report keys exactly as the manifest gave them, but nothing
promises the same bytes. Any spelling that decodes to the same key (``/`` or ``%2F``, a space as
``%20`` or ``+``, lower- or upper-case hex) must find its manifest row: otherwise the object looks
unrun and would be run and counted again.
"""

from __future__ import annotations

import random
import re
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from batchpipe_core.keys import encode_key, report_key
from batchpipe_core.reconciliation import Reconciliation
from batchpipe_core.report import ManifestRow, ReportRow

# S3 keys: any characters but surrogates and most control characters.
keys = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(" +/%&=?#,\"'"),
    min_size=1,
    max_size=40,
)


def _respell(key: str, how: str) -> str:
    """Other ways to URL-encode ``key`` that still decode (percent- or form-style) to ``key``."""
    ours = encode_key(key)
    if how == "slash-escaped":
        return quote(key, safe="")
    if how == "space-as-plus":
        return quote(key, safe="/ ").replace(" ", "+")
    if how == "lower-hex":
        return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), ours)
    if how == "unreserved-escaped":
        return "".join(f"%{b:02X}" for b in key.encode())
    return ours


SPELLINGS = ["as-given", "slash-escaped", "space-as-plus", "lower-hex", "unreserved-escaped"]


@settings(max_examples=150, deadline=None)
@given(
    objects=st.lists(
        st.tuples(keys, st.sampled_from(["", "v1", "null"]), st.sampled_from(SPELLINGS), st.booleans()),
        min_size=1,
        max_size=30,
        unique_by=lambda o: (o[0], o[1] or "null" if o[1] != "" else ""),
    ),
    memory_rows=st.sampled_from([2, 1000]),
    seed=st.integers(0, 2**16),
)
def test_every_object_is_matched_once_whatever_the_reports_spelling(objects, memory_rows, seed) -> None:
    manifest = [ManifestRow("src", encode_key(key), version) for key, version, _, _ in objects]
    report = []
    for key, version, how, ran_twice in objects:
        # The report may leave a null version empty where the manifest said "null".
        reported_version = "" if version == "null" else version
        outcome = ReportRow("src", _respell(key, how), reported_version, "succeeded", 200, "", "")
        report += [outcome, outcome._replace(status="failed", http_status=503, error_code="SlowDown")][
            : 1 + ran_twice
        ]
    random.Random(seed).shuffle(report)

    joined = Reconciliation(
        manifest,
        report,
        absent=lambda m: ReportRow(*m, "failed", None, "NotRun", "not run"),
        prefer=lambda a, b: a if a.succeeded else b,
        expected_rows=len(manifest),
        memory_rows=memory_rows,
    )
    outcomes = list(joined)

    assert len(outcomes) == len(manifest)  # nothing lost, nothing counted twice
    assert joined.unmatched == 0
    assert all(o.error_code != "NotRun" for o in outcomes)  # every object found its report row
    # (a join spilled to disk yields partition by partition, not in manifest order)
    assert sorted(o.decoded_key for o in outcomes) == sorted(key for key, _, _, _ in objects)


@settings(max_examples=300, deadline=None)
@given(key=keys, how=st.sampled_from(SPELLINGS))
def test_every_spelling_decodes_to_the_key(key: str, how: str) -> None:
    assert report_key(_respell(key, how)) == key
