"""Athena SQL -> DuckDB: statement forms, partition pruning, and Athena's function semantics."""

from __future__ import annotations

import re

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpipe.local.athena import AthenaQueryError
from batchpipe.local.athena.dialect import (
    output_names,
    parse_statement,
    partition_values,
    table_references,
    to_duckdb,
)
from batchpipe.local.athena.engine import connect

TRICKY = [
    "a b",
    "plus+sign",
    "100% done",
    "%41 is not A",
    "k=v,x=y",
    'say "hi"',
    "hash#frag?query",
    "données/été/naïve café.txt",
    "日本語/ファイル.txt",
    "emoji 🎉.png",
    "tilde~star*dot.dash-under_",
    "slash/back\\slash\ttab",
    "semi;colon:at@amp&dollar$",
]


def java_url_encode(text: str) -> str:
    """java.net.URLEncoder (UTF-8): the reference Athena's url_encode follows."""
    out = []
    for ch in text:
        if ch.isascii() and (ch.isalnum() or ch in ".-*_"):
            out.append(ch)
        elif ch == " ":
            out.append("+")
        else:
            out.extend(f"%{b:02X}" for b in ch.encode())
    return "".join(out)


def duck(sql: str) -> list[tuple]:
    con = connect()
    statement = parse_statement(sql)
    return con.sql(to_duckdb(statement.query, {})).fetchall()


@pytest.mark.parametrize("key", TRICKY)
def test_url_encode_is_javas_url_encoder(key):
    ((encoded,),) = duck(f"SELECT url_encode({_literal(key)})")
    assert encoded == java_url_encode(key)


@pytest.mark.parametrize("key", TRICKY)
def test_url_decode_inverts_url_encode_and_reads_plus_as_space(key):
    ((decoded, from_percent),) = duck(
        f"SELECT url_decode(url_encode({_literal(key)})), url_decode(replace(url_encode({_literal(key)}), '+', '%20'))"
    )
    assert decoded == key
    assert from_percent == key


def test_url_decode_of_form_encoding():
    assert duck("SELECT url_decode('a+b%2Bc%2F%E4%B8%AD')") == [("a b+c/中",)]


@pytest.mark.parametrize("bad", ["%zz", "abc%", "%4"])
def test_url_decode_rejects_malformed_escapes_like_java(bad):
    with pytest.raises(Exception, match="INVALID_FUNCTION_ARGUMENT"):
        duck(f"SELECT url_decode('{bad}')")


def test_common_athena_functions_transpile():
    rows = duck(
        "SELECT starts_with('photos/x', 'photos/'), regexp_like(lower('a.JPG'), '\\.jpe?g$'), "
        "lower('AB'), upper('ab'), coalesce(NULL, 'x'), replace('a+b', '+', '%20'), "
        "TIMESTAMP '2024-01-02 03:04:05.000' < TIMESTAMP '2024-01-03 00:00:00', "
        "CAST('42' AS bigint) + 1, 'photos/a' LIKE 'photos/%'"
    )
    assert rows == [(True, True, "ab", "AB", "x", "a%20b", True, 43, True)]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# ------------------------------------------------------------------------------------------ statements
def test_unload_statement_is_read_around_the_inner_query():
    statement = parse_statement(
        "UNLOAD (SELECT bucket, key FROM inventory WHERE key = ')' AND dt = '2024-01-01-00-00') "
        "TO 's3://results/run/athena/' WITH (format = 'TEXTFILE', field_delimiter = ',', compression = 'NONE');"
    )
    assert statement.kind == "UNLOAD"
    assert statement.unload_location == "s3://results/run/athena/"
    assert statement.unload_properties == {
        "format": "TEXTFILE",
        "field_delimiter": ",",
        "compression": "NONE",
    }
    assert "')'" in statement.query.sql()


@pytest.mark.parametrize(
    "sql",
    [
        "SELEC * FROM inventory",
        "SELECT * FROM",
        "SELECT key FROM inventory WHERE",
        "SELECT 'unterminated FROM inventory",
        "UNLOAD SELECT 1 TO 's3://b/p/'",
        "UNLOAD (SELECT 1) 's3://b/p/'",
        "UNLOAD (SELECT 1 TO 's3://b/p/' WITH (format = 'TEXTFILE')",
        "SELECT 1; SELECT 2",
    ],
)
def test_syntax_errors(sql):
    with pytest.raises(AthenaQueryError) as raised:
        parse_statement(sql)
    assert raised.value.message.startswith("SYNTAX_ERROR")
    assert raised.value.athena_error()["ErrorType"] == 1006


def test_unload_needs_a_format():
    with pytest.raises(AthenaQueryError, match="format"):
        parse_statement("UNLOAD (SELECT 1) TO 's3://b/p/' WITH (compression = 'NONE')")


def test_other_statements_are_refused_clearly():
    with pytest.raises(AthenaQueryError, match=r"NOT_SUPPORTED.*CREATE"):
        parse_statement("CREATE TABLE x AS SELECT 1")


# ------------------------------------------------------------------------------------------ tables
def test_table_references_resolve_database_and_skip_ctes():
    statement = parse_statement(
        "WITH recent AS (SELECT * FROM Other_DB.Inventory WHERE dt = 'b') SELECT * FROM recent JOIN inventory i ON true"
    )
    refs = [ref for _, ref in table_references(statement.query, "ctx_db")]
    assert sorted((r.database, r.name) for r in refs) == [("ctx_db", "inventory"), ("other_db", "inventory")]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("dt = '2024-01-01-00-00'", {"2024-01-01-00-00"}),
        ("'2024-01-01-00-00' = i.dt AND size > 0", {"2024-01-01-00-00"}),
        ("dt IN ('a', 'b') AND dt = 'b'", {"b"}),
        ("dt = 'a' OR dt = 'b'", None),
        ("size > 0", None),
        ("other.dt = 'a'", None),
        ("dt >= 'a'", None),
    ],
)
def test_partition_values_pin_only_conjunctive_literals(where, expected):
    statement = parse_statement(f"SELECT key FROM inventory i WHERE {where}")
    ((node, _),) = table_references(statement.query, "db")
    assert partition_values(statement.query, node, "dt") == expected


def test_tables_are_replaced_by_views_keeping_their_names_as_aliases():
    statement = parse_statement("SELECT inventory.key, i2.size FROM inventory, db.inventory AS i2")
    refs = table_references(statement.query, "db")
    sql = to_duckdb(statement.query, {id(node): f"t{n}" for n, (node, _) in enumerate(refs)})
    assert "FROM t0 AS inventory, t1 AS i2" in sql


def test_output_names_follow_athena():
    statement = parse_statement("SELECT key, size AS s, count(*), lower(key) FROM inventory GROUP BY 1, 2, 4")
    assert output_names(statement.query, ["key", "s", "count_star()", "lower(key)"]) == [
        "key",
        "s",
        "_col2",
        "_col3",
    ]


# ------------------------------------------------------------------------------------------ hostile
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT key FROM inventory, read_csv('/etc/passwd')",
        "SELECT key FROM inventory WHERE key IN (SELECT content FROM read_blob('/etc/hostname'))",
        "UNLOAD (SELECT * FROM glob('/*')) TO 's3://b/p/' WITH (format = 'TEXTFILE')",
    ],
)
def test_table_functions_are_syntax_errors_as_on_athena(sql):
    with pytest.raises(AthenaQueryError) as raised:
        parse_statement(sql)
    assert raised.value.message.startswith("SYNTAX_ERROR")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT content FROM read_blob('/etc/hostname')",
        "COPY (SELECT 1) TO '/tmp/batchpipe-should-not-exist.csv'",
        "SET enable_external_access = true",
        "ATTACH '/tmp/batchpipe-should-not-exist.db'",
    ],
)
def test_the_engine_cannot_touch_the_machines_files_whatever_sql_reaches_it(sql):
    import duckdb

    con = connect()
    with pytest.raises(duckdb.Error):
        con.execute(sql).fetchall()


# ------------------------------------------------------------------------------------------ arithmetic
# Trino's semantics for integer arithmetic (Trino documentation, "Mathematical functions and
# operators"; Athena engine version 3 is Trino): `/` on two integers truncates toward zero, `%` takes
# the sign of the dividend, a zero divisor and a result outside bigint fail the query, and try()
# turns those failures into NULL. The oracle below implements that independently of any engine.
BIGINT = (-(2**63), 2**63 - 1)


class Failed(Exception):
    """The query fails on Athena (division by zero, bigint overflow)."""


def trino_bigint(op: str, a: int, b: int) -> int:
    if op in ("/", "%") and b == 0:
        raise Failed("Division by zero")
    if op == "+":
        value = a + b
    elif op == "-":
        value = a - b
    elif op == "*":
        value = a * b
    elif op == "/":
        value = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
    else:
        value = abs(a) % abs(b) * (1 if a >= 0 else -1)
    if not BIGINT[0] <= value <= BIGINT[1]:
        raise Failed("bigint overflow")
    return value


def trino_count(sizes: list[int], op: str, k: int, compare: str, c: int, wrapped: bool) -> int:
    """How many rows `[try](size <op> k) <compare> c` keeps; Failed if the query fails."""
    kept = 0
    for size in sizes:
        try:
            value: int | None = trino_bigint(op, size, k)
        except Failed:
            if not wrapped:
                raise
            value = None
        if compare == "IS NULL":
            kept += value is None
        elif value is not None:
            kept += {"=": value == c, "<": value < c, ">=": value >= c}[compare]
    return kept


def engine_count(sizes: list[int], predicate: str) -> int:
    rows = ", ".join(f"(CAST({size} AS bigint))" for size in sizes)
    statement = parse_statement(f"SELECT count(*) FROM (VALUES {rows}) AS inventory(size) WHERE {predicate}")
    try:
        ((count,),) = connect().sql(to_duckdb(statement.query, {})).fetchall()
    except duckdb.Error as error:
        raise Failed(str(error)) from error
    return count


def test_integer_division_truncates_as_athena_does_not_as_floating_point():
    # The reported case: 16,999 bytes / 1000 is 16 on Athena; floating point gave 16.999 = 16 false.
    assert duck("SELECT 16999 / 1000, -7 / 2, 7 / -2, 7 % -2, -7 % 2, 7.0 / 2") == [(16, -3, -3, 1, -1, 3.5)]


@pytest.mark.parametrize("sql", ["SELECT 1 / 0", "SELECT CAST(5 AS bigint) % 0", "SELECT 2.5 / 0"])
def test_division_by_zero_fails_the_query_as_on_athena(sql):
    from batchpipe.local.athena.engine import _athena_error

    with pytest.raises(duckdb.Error) as raised:
        duck(sql)
    assert str(_athena_error(raised.value)).startswith("DIVISION_BY_ZERO: Division by zero")


def test_try_turns_a_failure_into_null():
    assert duck("SELECT try(1 / 0) IS NULL, try(7 / 2)") == [(True, 3)]


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        ("SELECT 1 IN ()", "SYNTAX_ERROR"),
        ("SELECT CAST(1 AS DECIMAL(39, 0))", "DECIMAL precision must be in range [1, 38]"),
        ("SELECT CAST(1 AS DECIMAL(5, 6))", "DECIMAL scale must be in range"),
        ("SELECT at_timezone(current_timestamp, 'UTC')", "FUNCTION_NOT_FOUND"),
    ],
)
def test_what_athena_refuses_the_local_engine_refuses(sql, error):
    with pytest.raises(AthenaQueryError, match=re.escape(error)):
        parse_statement(sql)


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(
        st.one_of(st.integers(0, 10**7), st.integers(*BIGINT), st.sampled_from([0, 1, -1, *BIGINT])),
        min_size=1,
        max_size=8,
    ),
    op=st.sampled_from(["+", "-", "*", "/", "%"]),
    k=st.one_of(st.integers(-1000, 1000), st.sampled_from([0, 1, -1, 2**31, *BIGINT])),
    compare=st.sampled_from(["=", "<", ">=", "IS NULL"]),
    c=st.integers(-(10**6), 10**6),
    wrapped=st.booleans(),
)
def test_the_local_engine_counts_integer_predicates_as_trino_or_fails_where_it_fails(
    sizes, op, k, compare, c, wrapped
):
    value = f"size {op} {k}" if k >= 0 else f"size {op} ({k})"
    if wrapped:
        value = f"try({value})"
    predicate = f"{value} IS NULL" if compare == "IS NULL" else f"{value} {compare} {c}"
    try:
        expected: int | str = trino_count(sizes, op, k, compare, c, wrapped)
    except Failed:
        expected = "fails"
    try:
        got: int | str = engine_count(sizes, predicate)
    except Failed:
        got = "fails"

    assert got == expected, predicate
