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


class _Store:
    """tables.ObjectStore in memory: where the UNLOAD writes its files."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def list(self, bucket: str, prefix: str) -> list[str]:
        return sorted(k for b, k in self.objects if b == bucket and k.startswith(prefix))

    def get(self, bucket: str, key: str) -> bytes:
        return self.objects[(bucket, key)]

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.objects[(bucket, key)] = body


class _NoGlue:
    def get_table(self, database: str, name: str) -> None:
        return None

    def get_partitions(self, database: str, name: str) -> list:
        return []


@settings(max_examples=25, deadline=None)
@given(st.lists(any_key, min_size=1, max_size=8, unique=True), st.data())
def test_metadata_table_manifest_keys_and_tag_matches_survive_any_text(tmp_path_factory, keys, data):
    """The S3 Metadata source (keys stored as they are, no inventory decoding) writes each selected key
    in the same manifest form as the inventory source, and a tag compared with any text (here each
    object's own key as its tag value) matches exactly its object: through the statement PlanQuery
    builds, run by the local Athena over a real Iceberg table."""
    import pyarrow as pa

    from batchpipe.local.athena.engine import run_query
    from batchpipe.local.metadata_table import arrow_schema, write_table
    from batchpipe_core.metadata_table import build_metadata_unload_sql

    chosen = data.draw(st.sampled_from(keys))
    rows = [
        {
            "bucket": "b",
            "key": key,
            "sequence_number": f"{i:04d}",
            "version_id": None,
            "is_delete_marker": False,
            "object_tags": [("k", key)],
            "user_metadata": [],
        }
        for i, key in enumerate(keys)
    ]
    root = tmp_path_factory.mktemp("aws-s3")
    write_table(root, "b_b", pa.Table.from_pylist(rows, arrow_schema()))
    spec = {
        "source": {
            "metadataTable": {"catalog": "s3tablescatalog/aws-s3", "namespace": "b_b", "table": "inventory"}
        },
        "filter": {"latestOnly": True, "versions": "current"},
    }
    store = _Store()
    selected = {}
    for name, filter_ in (("all", {}), ("tagged", {"tags": {"allOf": [{"key": "k", "value": chosen}]}})):
        statement = build_metadata_unload_sql(
            {**spec, "filter": spec["filter"] | filter_}, output_uri=f"s3://out/{name}/"
        )
        run_query(
            statement,
            query_id=name,
            database="default",
            catalog=_NoGlue(),
            store=store,
            output_location="s3://out/results/",
            table_buckets={"aws-s3": root},
        )
        lines = b"".join(store.get("out", k) for k in store.list("out", f"{name}/")).decode().splitlines()
        selected[name] = [next(csv.reader([line])) for line in lines]

    assert sorted(unquote(row[1]) for row in selected["all"]) == sorted(keys)
    assert all(unquote(row[1]) == unquote_plus(row[1]) and "+" not in row[1] for row in selected["all"])
    # The inventory source writes its keys with the very same expression (the property above).
    assert "SELECT bucket, replace(url_encode(key), '+', '%20') AS key\n" in statement
    assert [unquote(row[1]) for row in selected["tagged"]] == [chosen]
