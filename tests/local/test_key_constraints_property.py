"""filter.suffixes and filter.substrings mean the same on every source, for any key: the manifest
generator's KeyNameConstraint (the embedded engine, on the raw key) and the Athena condition the
inventory and the S3 Metadata table run (Trino semantics, here on the local engine) both agree with
"the key, as stored, ends with / contains the string", on keys that need encoding in a manifest."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from batchpipe.local.s3batch.generator import _matches
from batchpipe_core.query import filter_conditions, quote_literal

from .test_athena_functions import run

# Characters a manifest must encode (space, '+', '%', quotes, ',') beside unicode, astral included.
KEY_TEXT = st.text(alphabet=st.sampled_from(list("ab/ +%,'\"#?=éÉ日🎉.")), min_size=1, max_size=12)
LISTED = {"LastModified": datetime(2024, 1, 1, tzinfo=UTC), "Size": 1, "StorageClass": "STANDARD"}


def _athena(field: str, needle: str, key: str) -> bool:
    (condition,), _ = filter_conditions({field: [needle]}, versions="Current")
    return run(condition.replace("(key,", f"({quote_literal(key, 'key')},", 1)) is True


def _generator(member: str, needle: str, key: str) -> bool:
    return _matches(None, "src-bkt", key, LISTED, {"KeyNameConstraint": {member: [needle]}})


@given(key=KEY_TEXT, needle=KEY_TEXT)
@settings(max_examples=300, deadline=None)
def test_suffixes_agree_on_every_source(key, needle):
    expected = key.endswith(needle)
    assert _generator("MatchAnySuffix", needle, key) is expected
    assert _athena("suffixes", needle, key) is expected


@given(key=KEY_TEXT, needle=KEY_TEXT)
@settings(max_examples=300, deadline=None)
def test_substrings_agree_on_every_source(key, needle):
    expected = needle in key
    assert _generator("MatchAnySubstring", needle, key) is expected
    assert _athena("substrings", needle, key) is expected


@given(key=KEY_TEXT, cut=st.integers(0, 12))
@settings(max_examples=200, deadline=None)
def test_a_keys_own_tail_and_middle_always_match(key, cut):
    tail, middle = key[cut:] or key, key[cut // 2 : max(cut, 1)] or key
    assert _generator("MatchAnySuffix", tail, key) and _athena("suffixes", tail, key)
    assert _generator("MatchAnySubstring", middle, key) and _athena("substrings", middle, key)
