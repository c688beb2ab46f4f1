"""The Athena UNLOAD statement, checked on its exact text for every filter field and inventory format."""

from __future__ import annotations

import re

import pytest
import sqlglot
from sqlglot import exp

from batchpipe_core.errors import SpecValidationError
from batchpipe_core.query import build_unload_sql, needed_columns, timestamp_literal

FORMATS = ("CSV", "Parquet", "ORC")
OUT = "s3://pipe/runs/n/e/athena/"
TAIL = f") TO '{OUT}' WITH (format = 'TEXTFILE', field_delimiter = ',', compression = 'NONE')"


def sql(filter_: dict | None = None, fmt: str = "CSV", versions: str = "Current", **overrides) -> str:
    arguments = {
        "database": "db",
        "table": "inventory",
        "partition": "2024-05-01-00-00",
        "inventory_format": fmt,
        "versions": versions,
        "output_uri": OUT,
    } | overrides
    return build_unload_sql({"filter": filter_}, **arguments)


def inner_select(statement: str) -> str:
    """The SELECT inside UNLOAD ( ... ) TO: what Athena evaluates."""
    return statement[len("UNLOAD (\n") : statement.rindex("\n) TO ")]


# ---------------------------------------------------------------- whole statements


def test_csv_current_versions_without_filter():
    assert sql() == "\n".join(
        [
            "UNLOAD (",
            "SELECT bucket, replace(url_encode(key), '+', '%20') AS key",
            "FROM (",
            "  SELECT",
            "    bucket,",
            "    url_decode(key) AS key",
            '  FROM "db"."inventory"',
            "  WHERE dt = '2024-05-01-00-00'",
            ") AS inventory",
            TAIL,
        ]
    )


@pytest.mark.parametrize("fmt", ["Parquet", "ORC"])
def test_columnar_current_versions_without_filter_reads_keys_as_they_are(fmt):
    assert sql(fmt=fmt) == "\n".join(
        [
            "UNLOAD (",
            "SELECT bucket, replace(url_encode(key), '+', '%20') AS key",
            "FROM (",
            "  SELECT",
            "    bucket,",
            "    key",
            '  FROM "db"."inventory"',
            "  WHERE dt = '2024-05-01-00-00'",
            ") AS inventory",
            TAIL,
        ]
    )


def test_csv_all_versions_emits_version_ids_and_never_delete_markers():
    assert sql(versions="All") == "\n".join(
        [
            "UNLOAD (",
            "SELECT bucket, replace(url_encode(key), '+', '%20') AS key, coalesce(version_id, 'null') AS version_id",
            "FROM (",
            "  SELECT",
            "    bucket,",
            "    url_decode(key) AS key,",
            "    nullif(version_id, '') AS version_id,",
            "    lower(is_delete_marker) = 'true' AS is_delete_marker",
            '  FROM "db"."inventory"',
            "  WHERE dt = '2024-05-01-00-00'",
            ") AS inventory",
            "WHERE is_delete_marker = false",
            TAIL,
        ]
    )


@pytest.mark.parametrize("fmt", ["Parquet", "ORC"])
def test_columnar_all_versions_with_latest_only(fmt):
    assert sql({"latestOnly": True}, fmt=fmt, versions="All") == "\n".join(
        [
            "UNLOAD (",
            "SELECT bucket, replace(url_encode(key), '+', '%20') AS key, coalesce(version_id, 'null') AS version_id",
            "FROM (",
            "  SELECT",
            "    bucket,",
            "    key,",
            "    nullif(version_id, '') AS version_id,",
            "    is_latest,",
            "    is_delete_marker",
            '  FROM "db"."inventory"',
            "  WHERE dt = '2024-05-01-00-00'",
            ") AS inventory",
            "WHERE is_delete_marker = false",
            "  AND is_latest = true",
            TAIL,
        ]
    )


@pytest.mark.parametrize("fmt", ["Parquet", "ORC"])
def test_current_versions_of_an_all_versions_inventory_leave_the_version_out(fmt):
    """filter.versions "current": rows without a version ID, so S3 acts on each key's current version."""
    assert sql({"latestOnly": True, "versions": "current"}, fmt=fmt, versions="All") == "\n".join(
        [
            "UNLOAD (",
            "SELECT bucket, replace(url_encode(key), '+', '%20') AS key",
            "FROM (",
            "  SELECT",
            "    bucket,",
            "    key,",
            "    is_latest,",
            "    is_delete_marker",
            '  FROM "db"."inventory"',
            "  WHERE dt = '2024-05-01-00-00'",
            ") AS inventory",
            "WHERE is_delete_marker = false",
            "  AND is_latest = true",
            TAIL,
        ]
    )


def test_pinned_versions_are_the_default_statement():
    assert sql({"latestOnly": True, "versions": "pinned"}, versions="All") == sql(
        {"latestOnly": True}, versions="All"
    )


def test_every_field_at_once_on_csv_all_versions():
    statement = sql(
        {
            "prefixes": ["photos/2023/", "videos/"],
            "keyRegex": "\\.jpe?g$",
            "storageClasses": ["STANDARD", "STANDARD_IA"],
            "minSizeBytes": 1,
            "maxSizeBytes": 5368709120,
            "modifiedBefore": "2024-01-01T00:00:00Z",
            "modifiedAfter": "2020-01-01T00:00:00Z",
            "encryptionStatuses": ["NOT-SSE"],
            "latestOnly": True,
            "where": "size > 0 AND replication_status = 'FAILED'",
        },
        versions="All",
    )
    assert statement == "\n".join(
        [
            "UNLOAD (",
            "SELECT bucket, replace(url_encode(key), '+', '%20') AS key, coalesce(version_id, 'null') AS version_id",
            "FROM (",
            "  SELECT",
            "    bucket,",
            "    url_decode(key) AS key,",
            "    nullif(version_id, '') AS version_id,",
            "    lower(is_latest) = 'true' AS is_latest,",
            "    lower(is_delete_marker) = 'true' AS is_delete_marker,",
            "    CAST(nullif(size, '') AS bigint) AS size,",
            "    CAST(from_iso8601_timestamp(nullif(last_modified_date, '')) AS timestamp) AS last_modified_date,",
            "    nullif(storage_class, '') AS storage_class,",
            "    nullif(replication_status, '') AS replication_status,",
            "    nullif(encryption_status, '') AS encryption_status",
            '  FROM "db"."inventory"',
            "  WHERE dt = '2024-05-01-00-00'",
            ") AS inventory",
            "WHERE is_delete_marker = false",
            "  AND is_latest = true",
            "  AND (starts_with(key, 'photos/2023/') OR starts_with(key, 'videos/'))",
            "  AND regexp_like(key, '\\.jpe?g$')",
            "  AND storage_class IN ('STANDARD', 'STANDARD_IA')",
            "  AND encryption_status IN ('NOT-SSE')",
            "  AND size >= 1",
            "  AND size <= 5368709120",
            "  AND last_modified_date >= TIMESTAMP '2020-01-01 00:00:00.000'",
            "  AND last_modified_date < TIMESTAMP '2024-01-01 00:00:00.000'",
            "  AND (size > 0 AND replication_status = 'FAILED')",
            TAIL,
        ]
    )


# ---------------------------------------------------------------- each field x each format

# field, value, the condition line it adds, the column it reads
FIELDS = [
    ("prefixes", ["a/"], "WHERE starts_with(key, 'a/')", "key"),
    ("prefixes", ["a/", "b c/"], "WHERE (starts_with(key, 'a/') OR starts_with(key, 'b c/'))", "key"),
    ("keyRegex", "^x+y", "WHERE regexp_like(key, '^x+y')", "key"),
    (
        "storageClasses",
        ["GLACIER", "DEEP_ARCHIVE"],
        "WHERE storage_class IN ('GLACIER', 'DEEP_ARCHIVE')",
        "storage_class",
    ),
    ("encryptionStatuses", ["SSE-KMS"], "WHERE encryption_status IN ('SSE-KMS')", "encryption_status"),
    # Suffixes by code points (Trino's substr), never encoded: 'é.jpg' is 5 characters, 6 bytes.
    ("suffixes", ["é.jpg"], "WHERE substr(key, -5) = 'é.jpg'", "key"),
    ("suffixes", ["a", "it's"], "WHERE (substr(key, -1) = 'a' OR substr(key, -4) = 'it''s')", "key"),
    ("substrings", [" +%"], "WHERE strpos(key, ' +%') > 0", "key"),
    ("replicationStatuses", ["FAILED"], "WHERE replication_status IN ('FAILED')", "replication_status"),
    (
        "replicationStatuses",
        ["COMPLETED", "NONE"],
        "WHERE (replication_status IN ('COMPLETED') OR replication_status IS NULL)",
        "replication_status",
    ),
    ("replicationStatuses", ["NONE"], "WHERE replication_status IS NULL", "replication_status"),
    ("minSizeBytes", 0, "WHERE size >= 0", "size"),
    ("maxSizeBytes", 1024, "WHERE size <= 1024", "size"),
    (
        "modifiedBefore",
        "2024-01-01T00:00:00Z",
        "WHERE last_modified_date < TIMESTAMP '2024-01-01 00:00:00.000'",
        "last_modified_date",
    ),
    (
        "modifiedAfter",
        "2023-06-30T23:59:59.5Z",
        "WHERE last_modified_date >= TIMESTAMP '2023-06-30 23:59:59.500'",
        "last_modified_date",
    ),
    ("where", "e_tag = 'abc'", "WHERE (e_tag = 'abc')", "e_tag"),
    ("where", "is_multipart_uploaded", "WHERE (is_multipart_uploaded)", "is_multipart_uploaded"),
]
INNER = {
    "CSV": {
        "key": "url_decode(key) AS key",
        "size": "CAST(nullif(size, '') AS bigint) AS size",
        "last_modified_date": (
            "CAST(from_iso8601_timestamp(nullif(last_modified_date, '')) AS timestamp) AS last_modified_date"
        ),
        "storage_class": "nullif(storage_class, '') AS storage_class",
        "encryption_status": "nullif(encryption_status, '') AS encryption_status",
        "replication_status": "nullif(replication_status, '') AS replication_status",
        "e_tag": "nullif(e_tag, '') AS e_tag",
        "is_multipart_uploaded": "lower(is_multipart_uploaded) = 'true' AS is_multipart_uploaded",
    },
    "Parquet": {},
    "ORC": {},
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("field", "value", "condition", "column"), FIELDS)
def test_each_filter_field(fmt, field, value, condition, column):
    lines = sql({field: value}, fmt=fmt).splitlines()
    assert lines[-2] == condition
    assert [line for line in lines if line.startswith("WHERE") or line.startswith("  AND")] == [condition]
    inner = lines[lines.index("  SELECT") + 1 : lines.index('  FROM "db"."inventory"')]
    expected = {"bucket", INNER[fmt].get("key", "key"), INNER[fmt].get(column, column)}
    assert {line.strip().rstrip(",") for line in inner} == expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_latest_only_means_nothing_for_a_current_versions_inventory(fmt):
    assert sql({"latestOnly": True}, fmt=fmt) == sql(fmt=fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("empty", [None, []])
def test_absent_or_empty_fields_add_nothing(fmt, empty):
    filter_ = dict.fromkeys(["prefixes", "storageClasses", "encryptionStatuses"], empty) | {
        "keyRegex": None,
        "minSizeBytes": None,
        "maxSizeBytes": None,
        "modifiedBefore": None,
        "modifiedAfter": None,
        "latestOnly": False,
        "where": None,
    }
    assert sql(filter_, fmt=fmt) == sql(fmt=fmt)


# ---------------------------------------------------------------- escaping

HOSTILE = [
    "it's/",
    "a'); DROP TABLE inventory; --",
    "x' OR '1'='1",
    "back\\slash/",
    "new\nline/",
    "ünï/çødé 🎉",
    "''",
    "%20+/",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_user_strings_reach_athena_only_as_literals_with_their_exact_value(value):
    statement = sql(
        {"prefixes": [value], "keyRegex": value, "storageClasses": [value], "encryptionStatuses": [value]},
        versions="All",
    )
    tree = sqlglot.parse_one(inner_select(statement), read="trino")
    strings = [node.this for node in tree.find_all(exp.Literal) if node.is_string]
    assert strings.count(value) == 4
    # Nothing but our own SELECT: one statement, one table.
    assert len(sqlglot.parse(inner_select(statement), read="trino")) == 1
    assert [t.name for t in tree.find_all(exp.Table)] == ["inventory"]


def test_output_uri_is_a_literal_too():
    statement = sql(output_uri="s3://pipe/runs/it's/athena/")
    assert statement.endswith("TO 's3://pipe/runs/it''s/athena/' WITH (" + TAIL.split("WITH (")[1])


@pytest.mark.parametrize(
    "overrides",
    [
        {"database": 'db"; DROP'},
        {"table": "inv-entory"},
        {"partition": "2024-05-01"},
        {"partition": "2024-05-01-00-00' OR '1'='1"},
        {"output_uri": "s3://pipe/no-trailing-slash"},
        {"output_uri": "https://pipe/x/"},
        {"inventory_format": "JSON"},
        {"versions": "Some"},
    ],
)
def test_bad_arguments_are_refused(overrides):
    with pytest.raises((ValueError, SpecValidationError)):
        sql(**overrides)


def test_sizes_must_be_integers():
    with pytest.raises(SpecValidationError, match="minSizeBytes"):
        sql({"minSizeBytes": "1 OR 1=1"})
    with pytest.raises(SpecValidationError, match="maxSizeBytes"):
        sql({"maxSizeBytes": True})


# ---------------------------------------------------------------- where


def test_where_is_the_validators_rendering_not_the_users_text():
    statement = sql({"where": "SIZE>0   and   Storage_Class='GLACIER'"})
    assert "  AND (size > 0 AND storage_class = 'GLACIER')" in statement or (
        "WHERE (size > 0 AND storage_class = 'GLACIER')" in statement.splitlines()
    )


@pytest.mark.parametrize(
    "where",
    ["size > 0; DROP TABLE x", "size > 0 -- c", "(SELECT 1) = 1", "nope > 1", "dt = '2024-01-01-00-00'"],
)
def test_where_that_is_not_one_condition_over_known_columns_is_refused(where):
    with pytest.raises(SpecValidationError, match=r"filter\.where"):
        sql({"where": where})


def test_where_on_version_columns_needs_an_all_versions_inventory():
    with pytest.raises(SpecValidationError, match="version_id"):
        sql({"where": "version_id = 'x'"})
    assert "WHERE is_delete_marker = false\n  AND (version_id = 'x')" in sql(
        {"where": "version_id = 'x'"}, versions="All"
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_where_reads_the_same_typed_columns_in_every_format(fmt):
    statement = sql({"where": "size > 10 AND last_modified_date > TIMESTAMP '2024-01-01 00:00:00'"}, fmt=fmt)
    assert (
        statement.splitlines()[-2]
        == "WHERE (size > 10 AND last_modified_date > CAST('2024-01-01 00:00:00' AS TIMESTAMP(0)))"
    )


# ---------------------------------------------------------------- columns and timestamps


def test_only_needed_columns_are_read_in_table_order():
    spec = {
        "filter": {
            "modifiedAfter": "2024-01-01T00:00:00Z",
            "storageClasses": ["STANDARD"],
            "where": "e_tag = 'x'",
        }
    }
    assert needed_columns(spec, versions="Current") == [
        "bucket",
        "key",
        "last_modified_date",
        "e_tag",
        "storage_class",
    ]
    assert needed_columns({"filter": {"latestOnly": True}}, versions="All") == [
        "bucket",
        "key",
        "version_id",
        "is_latest",
        "is_delete_marker",
    ]


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("2024-01-01T00:00:00Z", "TIMESTAMP '2024-01-01 00:00:00.000'"),
        ("2024-01-01T00:00:00.123Z", "TIMESTAMP '2024-01-01 00:00:00.123'"),
        ("2024-01-01T00:00:00.123456Z", "TIMESTAMP '2024-01-01 00:00:00.123456'"),
        ("2024-01-01T01:30:00+02:00", "TIMESTAMP '2023-12-31 23:30:00.000'"),
        ("2024-01-01T00:00:00", "TIMESTAMP '2024-01-01 00:00:00.000'"),
    ],
)
def test_timestamps_become_utc_literals(value, literal):
    assert timestamp_literal(value) == literal


def test_a_timestamp_that_is_not_one_is_refused():
    with pytest.raises(SpecValidationError, match="ISO 8601"):
        timestamp_literal("yesterday' OR '1'='1")


def test_statement_has_exactly_one_partition_restriction():
    statement = sql({"where": "size > 0"}, fmt="Parquet", versions="All")
    assert re.findall(r"\bdt\b", statement) == ["dt"]
    assert "  WHERE dt = '2024-05-01-00-00'" in statement.splitlines()


# ---------------------------------------------------------------- hostile input (issue 11)


def test_a_value_that_is_not_unicode_text_is_refused_naming_its_field():
    with pytest.raises(SpecValidationError, match=r"^filter\.prefixes: 'a\\ud800' cannot be written"):
        sql({"prefixes": ["a\ud800"]})
    with pytest.raises(SpecValidationError, match=r"^filter\.keyRegex: "):
        sql({"keyRegex": "\udfff"})


@pytest.mark.parametrize("field", ["minSizeBytes", "maxSizeBytes"])
def test_sizes_beyond_athenas_bigint_are_refused(field):
    assert f"size {'>=' if field == 'minSizeBytes' else '<='} {2**63 - 1}" in sql({field: 2**63 - 1})
    with pytest.raises(SpecValidationError) as raised:
        sql({field: 10**43})
    assert str(raised.value) == (
        f"filter.{field}: must be between 0 and 9223372036854775807 (Athena's bigint), "
        "got 10000000000000000000000000000000000000000000"
    )


def test_glue_names_are_quoted_identifiers_from_a_closed_alphabet():
    assert 'FROM "2024_db"."inventory"' in sql(database="2024_db")
    with pytest.raises(SpecValidationError, match=r"^inventory\.table: 'inv-entory' is not a valid Glue"):
        sql(table="inv-entory")
    with pytest.raises(SpecValidationError, match=r"^inventory\.database: 'x{56}\.\.\. \(302 characters\)"):
        sql(database="x" * 300)


def test_a_statement_over_athenas_query_limit_is_refused_naming_the_limit():
    prefixes = [f"{index:04d}/" + "'" * 400 for index in range(400)]
    with pytest.raises(SpecValidationError) as raised:
        sql({"prefixes": prefixes})
    assert str(raised.value).startswith("filter: the Athena statement it makes is ")
    assert "over Athena's limit of 262,144 bytes per query" in str(raised.value)
    assert len(sql({"prefixes": prefixes[:200]}).encode()) < 262_144


@pytest.mark.parametrize(
    "query",
    [
        "SELECT bucket FROM (SELECT bucket FROM inventory) AS inventory WHERE a = 1 UNION SELECT 1",
        "SELECT bucket FROM (SELECT bucket FROM inventory) AS inventory WHERE a = 1 AND b = 2",
        "SELECT bucket FROM (SELECT bucket FROM inventory) AS inventory, read_text('/etc/passwd') WHERE a = 1",
        "SELECT bucket FROM (SELECT bucket FROM inventory) AS inventory WHERE a = 1 -- x",
        "SELECT bucket FROM (SELECT bucket FROM other) AS inventory WHERE a = 1",
    ],
)
def test_a_statement_that_does_not_read_back_as_built_is_refused(query):
    from batchpipe_core.query import check_query

    check_query(
        "SELECT bucket FROM (SELECT bucket FROM inventory) AS inventory WHERE a = 1",
        table="inventory",
        conditions=1,
    )
    with pytest.raises(
        SpecValidationError, match=r"^filter: the Athena statement built from it does not read back"
    ):
        check_query(query, table="inventory", conditions=1)
