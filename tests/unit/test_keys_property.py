"""Key encoding, as properties: whatever the key, the manifest form decodes back to it exactly under
both readings S3 might apply (percent-decoding, and form-decoding where '+' is a space), whether the
form was written by Python (retry manifests) or by Athena's SQL (the manifest UNLOAD)."""

from __future__ import annotations

import csv
import io
from urllib.parse import unquote, unquote_plus

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpipe.local.athena.dialect import ATHENA_MACROS
from batchpipe.local.inventory import decode_inventory_key, encode_inventory_key
from batchpipe_core.keys import decode_key, encode_key, report_key

# S3 keys: any Unicode text but lone surrogates, 1 to 1,024 bytes of UTF-8.
keys = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=300).filter(
    lambda k: len(k.encode()) <= 1024
)
# The shapes that break naive encoders, mixed in often.
awkward = st.lists(
    st.sampled_from(
        [
            " ",
            "+",
            "%",
            "%2B",
            "%20",
            "=",
            ",",
            '"',
            "'",
            "#",
            "?",
            "&",
            "/",
            "//",
            "\t",
            "\n",
            "\\",
            "~",
            "*",
            "é",
            "日本",
            "🎉",
        ]
    ),
    min_size=1,
    max_size=30,
).map("".join)
any_key = st.one_of(keys, awkward)


@pytest.fixture(scope="module")
def athena_sql():
    connection = duckdb.connect()
    for macro in ATHENA_MACROS.values():
        connection.execute(macro)
    yield connection
    connection.close()


@given(any_key)
def test_python_manifest_encoding_decodes_back_both_ways(key):
    encoded = encode_key(key)
    assert unquote(encoded) == key
    assert unquote_plus(encoded) == key
    assert decode_key(encoded) == key == decode_key(encoded, plus_is_space=True)
    # Nothing that CSV would have to quote, and never a bare '+'.
    assert not set(encoded) & {"+", ",", '"', "\n", "\r"}


@settings(max_examples=200)
@given(any_key)
def test_athena_manifest_encoding_decodes_back_both_ways(athena_sql, key):
    """The expression the manifest UNLOAD uses (replace(url_encode(key), '+', '%20'); docs/FILTERS.md, "How keys are handled")."""
    (encoded,) = athena_sql.execute("SELECT replace(athena_url_encode(?), '+', '%20')", [key]).fetchone()
    assert unquote(encoded) == key
    assert unquote_plus(encoded) == key
    assert not set(encoded) & {"+", ",", '"', "\n", "\r"}
    row = next(csv.reader(io.StringIO(f"bucket,{encoded}\n")))
    assert row == ["bucket", encoded]


@settings(max_examples=200)
@given(any_key)
def test_inventory_csv_keys_decode_with_athena_url_decode(athena_sql, key):
    """CSV inventories store form-encoded keys; the query decodes them with Athena's url_decode."""
    (decoded,) = athena_sql.execute("SELECT athena_url_decode(?)", [encode_inventory_key(key)]).fetchone()
    assert decoded == key == decode_inventory_key(encode_inventory_key(key))


# Report text as it may come: URL-encoded keys with valid, invalid and mixed-case escapes, `+`, and
# raw (not encoded) characters of any kind.
REPORT_TEXT = st.text(
    alphabet=st.sampled_from(list("%+/ aZ09fFgG%%%")) | st.characters(blacklist_categories=["Cs"]),
    max_size=40,
) | st.builds(encode_key, st.text(max_size=20))


@settings(max_examples=1_000, deadline=None)
@given(REPORT_TEXT)
def test_report_key_decodes_exactly_as_urllib_does(encoded):
    expected = unquote_plus(encoded) if "+" in encoded else unquote(encoded)
    assert report_key(encoded) == expected
