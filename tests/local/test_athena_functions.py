"""Every function ``filter.where`` allows computes in the local Athena (DuckDB) as Athena (Trino) does.

Expected values are Trino's documented answers (Trino documentation, functions/*.md: "String
functions and operators", "Regular expression functions", "Array functions and operators",
"Conditional expressions", "Mathematical functions and operators", "Date and time functions and
operators", "Conversion functions") and, where the documentation is silent on an edge (a start of
0, an empty delimiter, a NULL in an array), Trino's own implementation (StringFunctions,
VarcharOperators, ArrayFunctions; Joda-Time's getDifferenceAsLong for date_diff). The property tests
compare the engine with Python restatements of those rules on generated Unicode inputs.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from decimal import Decimal

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpipe.local.athena.dialect import parse_statement, to_duckdb
from batchpipe.local.athena.engine import _athena_error, connect
from batchpipe.local.athena.errors import AthenaQueryError
from batchpipe_core.where import ALLOWED_FUNCTIONS, REFUSED_FUNCTIONS

JAVA_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2008\u2009\u200a\u2028\u2029\u205f\u3000"


@functools.cache
def _connection() -> duckdb.DuckDBPyConnection:
    return connect()


def run(expression: str, params: list | None = None):
    statement = parse_statement(f"SELECT {expression}")
    try:
        ((value,),) = _connection().execute(to_duckdb(statement.query, {}), params or []).fetchall()
    except duckdb.Error as error:
        raise _athena_error(error) from error
    return value


# (expression, Trino's answer)
ANSWERS = [
    # lower/upper: per code point (Character.toLowerCase/toUpperCase), no one-to-many mappings
    ("lower('ÀÉÎ İ')", "àéî i"),
    ("upper('straße ß')", "STRAßE ß"),
    ("upper(NULL)", None),
    # length: code points, not bytes or graphemes
    ("length('日本語🎉')", 4),
    ("length('e' || chr(769))", 2),
    ("length('')", 0),
    # substr/substring: 1-based, negative from the end, start 0 or past either end gives ''
    ("substr('abcdef', 2)", "bcdef"),
    ("substr('abcdef', -2)", "ef"),
    ("substr('abcdef', 0)", ""),
    ("substr('abcdef', -10)", ""),
    ("substr('abcdef', 7)", ""),
    ("substr('abcdef', 2, 3)", "bcd"),
    ("substr('abcdef', -3, 2)", "de"),
    ("substr('abcdef', 2, -1)", ""),
    ("substr('abcdef', 0, 2)", ""),
    ("substr('abcdef', 9223372036854775807)", ""),
    ("substr('日本語🎉x', -2, 1)", "🎉"),
    ("substring('abcdef' FROM 2 FOR 3)", "bcd"),
    ("substr(NULL, 0)", None),
    # strpos/position: 1-based code points, 0 when absent, 1 for an empty substring
    ("strpos('日本語', '語')", 3),
    ("strpos('abc', 'z')", 0),
    ("strpos('abc', '')", 1),
    ("strpos('aaa', 'aa', 2)", 2),
    ("strpos('abcabc', 'c', -1)", 6),
    ("strpos('abcabc', 'c', -2)", 3),
    ("strpos('abcabc', 'c', 3)", 0),
    ("position('c' IN 'abcabc')", 3),
    # starts_with
    ("starts_with('abc', '')", True),
    ("starts_with('abc', 'abcd')", False),
    ("starts_with(NULL, 'a')", None),
    # replace: every instance; an empty search inserts before every code point and at the end
    ("replace('abcb', 'b', 'yy')", "ayycyy"),
    ("replace('abcb', 'b')", "ac"),
    ("replace('abc', '', 'x')", "xaxbxcx"),
    ("replace('', '', 'x')", "x"),
    # trim/ltrim/rtrim: Character.isWhitespace (tab, newline, U+3000 ...), not no-break spaces
    ("trim(chr(9) || chr(12288) || ' a ' || chr(160))", "a \xa0"),
    ("ltrim(chr(10) || ' a ')", "a "),
    ("rtrim(' a' || chr(8232) || chr(11))", " a"),
    ("trim('!' FROM '!foo!')", "foo"),
    # concat: NULL if any argument is NULL (as ||)
    ("concat('a', 'b', 'c')", "abc"),
    ("concat('a', NULL)", None),
    ("concat(ARRAY[1], ARRAY[2])", [1, 2]),
    # reverse: code points
    ("reverse('ab日🎉')", "🎉日ba"),
    ("reverse('a' || 'e' || chr(769))", "\u0301ea"),
    ("reverse('🇫🇷')", "🇷🇫"),
    ("reverse('')", ""),
    # split: trailing empty strings kept; limit keeps the rest in the last element
    ("split('a,b,', ',')", ["a", "b", ""]),
    ("split('', ',')", [""]),
    ("split('a,b,c', ',', 2)", ["a", "b,c"]),
    ("split('a,b,c', ',', 1)", ["a,b,c"]),
    # split_part: 1-based, NULL past the last field, an empty delimiter splits code points
    ("split_part('a,b,c', ',', 2)", "b"),
    ("split_part('a,b,c', ',', 4)", None),
    ("split_part('a,', ',', 2)", ""),
    ("split_part('日本語', '', 2)", "本"),
    # element_at and the subscript: 1-based; element_at is NULL past either end, negative from the end
    ("element_at(ARRAY[1, 2, 3], -1)", 3),
    ("element_at(ARRAY[1, 2, 3], 4)", None),
    ("element_at(ARRAY[1, 2, 3], -4)", None),
    ("split('a/b/c', '/')[2]", "b"),
    ("ARRAY[1, 2, 3][3]", 3),
    # cardinality, contains (NULL when absent but the array holds a NULL), array
    ("cardinality(ARRAY[1, NULL])", 2),
    ("cardinality(ARRAY[])", 0),
    ("contains(ARRAY[1, NULL], 1)", True),
    ("contains(ARRAY[1, NULL], 3)", None),
    ("contains(ARRAY[1, 2], 3)", False),
    ("contains(ARRAY[1], NULL)", None),
    # url_encode/url_decode: java.net.URLEncoder/URLDecoder
    ("url_encode('a b*~')", "a+b*%7E"),
    ("url_decode('a+b%2F')", "a b/"),
    # regular expressions: Java semantics ($ also before a final newline), no match is NULL
    ("regexp_like('a.jpg', '\\.jpe?g$')", True),
    ("regexp_like('a.jpg' || chr(10), '\\.jpg$')", True),
    ("regexp_like('a.jpg' || chr(10) || chr(10), '\\.jpg$')", False),
    ("regexp_like('a.jpg' || chr(10), '\\.jpg\\z')", False),
    ("regexp_like('x' || chr(11), '^x\\s$')", True),
    ("regexp_like('٣', '\\d')", False),
    ("regexp_like('日本/x', '^[^/]+/(?<name>x)$')", True),
    ("regexp_like('', '')", True),
    ("regexp_extract('1a 2b 14m', '\\d+')", "1"),
    ("regexp_extract('1a 2b 14m', '(\\d+)([a-z]+)', 2)", "a"),
    ("regexp_extract('xx', '\\d+')", None),
    ("regexp_count('1a 2b 14m', '\\s*[a-z]+\\s*')", 3),
    ("regexp_replace('1a 2b 14m', '\\d+[ab] ')", "14m"),
    ("regexp_replace('a.b.c', '\\.', '/')", "a/b/c"),
    # conditionals: only the chosen branch is evaluated
    ("CASE WHEN false THEN 1 / 0 ELSE 2 END", 2),
    ("if(false, 1 / 0)", None),
    ("if(true, 1, 1 / 0)", 1),
    ("coalesce(NULL, 'x', 'y')", "x"),
    ("nullif(1, 1)", None),
    ("nullif(1, 2)", 1),
    ("try(1 / 0)", None),
    ("try(split_part('a', ',', 0))", None),
    ("try(CAST('x' AS BIGINT))", None),
    # casts: varchar to integer after String.trim, no fraction; double to integer rounds half away
    # from zero; varchar to boolean accepts t/true/1/f/false/0 only
    ("CAST(' 12 ' AS BIGINT)", 12),
    ("CAST('+7' AS INTEGER)", 7),
    ("CAST(CAST(2.5 AS DOUBLE) AS BIGINT)", 3),
    ("CAST(CAST(-2.5 AS DOUBLE) AS BIGINT)", -3),
    ("CAST(2.5 AS BIGINT)", 3),
    ("CAST('TRUE' AS BOOLEAN)", True),
    ("CAST('0' AS BOOLEAN)", False),
    ("CAST(7 AS VARCHAR)", "7"),
    ("CAST(DATE '2024-01-31' AS VARCHAR)", "2024-01-31"),
    ("try_cast('12.5' AS BIGINT)", None),
    ("try_cast('yes' AS BOOLEAN)", None),
    ("try_cast('5' AS BIGINT)", 5),
    # numbers: same type as the input; round half away from zero; mod takes the dividend's sign
    ("abs(-5)", 5),
    ("abs(-2.5)", Decimal("2.5")),
    ("floor(CAST(9007199254740993 AS BIGINT))", 9007199254740993),
    ("ceil(CAST(9007199254740993 AS BIGINT))", 9007199254740993),
    ("ceiling(-2.5)", Decimal("-2")),
    ("floor(-2.5)", Decimal("-3")),
    ("round(2.5)", Decimal("3")),
    ("round(-2.5)", Decimal("-3")),
    ("round(CAST(0.5 AS DOUBLE))", 1.0),
    ("round(2.345, 2)", Decimal("2.35")),
    ("round(15, -1)", 20),
    ("round(-15, -1)", -20),
    ("greatest(1, 2, NULL)", None),
    ("least(3, 2)", 2),
    ("mod(-7, 2)", -1),
    ("mod(7, -2)", 1),
    ("mod(-9223372036854775807 - 1, -1)", 0),  # Java's Long.MIN_VALUE % -1, no overflow
    # dates and times (the session zone is UTC on Athena)
    ("date(TIMESTAMP '2024-01-02 03:04:05')", dt.date(2024, 1, 2)),
    ("date_add('month', 1, TIMESTAMP '2012-01-31 01:00:00')", dt.datetime(2012, 2, 29, 1, 0)),
    ("date_add('day', -1, TIMESTAMP '2020-03-01 00:00:00')", dt.datetime(2020, 2, 29)),
    ("date_diff('day', TIMESTAMP '2020-03-01 23:00:00', TIMESTAMP '2020-03-02 01:00:00')", 0),
    ("date_diff('second', TIMESTAMP '2020-03-01 00:00:00.900', TIMESTAMP '2020-03-01 00:00:01.100')", 0),
    ("date_diff('month', TIMESTAMP '2020-01-31 00:00:00', TIMESTAMP '2020-02-29 00:00:00')", 1),
    ("date_diff('month', TIMESTAMP '2020-01-30 10:00:00', TIMESTAMP '2020-02-29 09:00:00')", 0),
    ("date_diff('year', DATE '2020-06-01', DATE '2021-05-31')", 0),
    ("date_diff('day', DATE '2020-03-02', DATE '2020-03-01')", -1),
    ("date_trunc('week', TIMESTAMP '2001-08-22 03:04:05.321')", dt.datetime(2001, 8, 20)),
    ("date_trunc('quarter', TIMESTAMP '2001-08-22 03:04:05.321')", dt.datetime(2001, 7, 1)),
    ("year(TIMESTAMP '2024-05-06 07:08:09')", 2024),
    ("month(TIMESTAMP '2024-05-06 07:08:09')", 5),
    ("day(TIMESTAMP '2024-05-06 07:08:09')", 6),
    ("hour(TIMESTAMP '2024-05-06 07:08:09')", 7),
    ("day_of_week(DATE '2024-05-05')", 7),
    ("day_of_week(DATE '2024-05-06')", 1),
    ("to_unixtime(TIMESTAMP '1970-01-01 00:00:01.500')", 1.5),
    ("from_unixtime(86400) = TIMESTAMP '1970-01-02 00:00:00 UTC'", True),
    ("current_date = date(current_timestamp)", True),
    ("now() = current_timestamp", True),
]


@pytest.mark.parametrize(("expression", "expected"), ANSWERS, ids=[a for a, _ in ANSWERS])
def test_each_function_answers_as_trino_documents(expression, expected):
    assert run(expression) == expected


# (expression, the start of Athena's error)
FAILURES = [
    ("strpos('abc', 'a', 0)", "INVALID_FUNCTION_ARGUMENT: 'instance' must be a positive or negative number."),
    ("split('abc', '')", "INVALID_FUNCTION_ARGUMENT: The delimiter may not be the empty string"),
    ("split('a', ',', 0)", "INVALID_FUNCTION_ARGUMENT: Limit must be positive"),
    ("split_part('a,b', ',', 0)", "INVALID_FUNCTION_ARGUMENT: Index must be greater than zero"),
    ("element_at(ARRAY[1, 2], 0)", "INVALID_FUNCTION_ARGUMENT: SQL array indices start at 1"),
    (
        "ARRAY[1, 2][3]",
        "INVALID_FUNCTION_ARGUMENT: Array subscript must be less than or equal to array length: 3 > 2",
    ),
    ("ARRAY[1, 2][-1]", "INVALID_FUNCTION_ARGUMENT: Array subscript is negative: -1"),
    ("url_decode('%zz')", "INVALID_FUNCTION_ARGUMENT: URLDecoder: Illegal hex characters"),
    ("CAST('12.5' AS BIGINT)", "INVALID_CAST_ARGUMENT: Cannot cast '12.5' to BIGINT"),
    ("CAST('yes' AS BOOLEAN)", "INVALID_CAST_ARGUMENT: Cannot cast 'yes' to BOOLEAN"),
    ("CAST('x' AS INTEGER)", "INVALID_CAST_ARGUMENT: Cannot cast 'x' to INT"),
    ("CAST('300' AS TINYINT)", "INVALID_CAST_ARGUMENT"),
    ("mod(5, 0)", "DIVISION_BY_ZERO"),
    ("abs(-9223372036854775807 - 1)", "NUMERIC_VALUE_OUT_OF_RANGE"),
]


@pytest.mark.parametrize(("expression", "error"), FAILURES, ids=[f for f, _ in FAILURES])
def test_each_function_fails_where_trino_fails(expression, error):
    with pytest.raises(AthenaQueryError) as raised:
        run(expression)
    assert str(raised.value).startswith(error)


def test_every_allowed_function_has_an_answer_here():
    written = " ".join(expression for expression, _ in ANSWERS + FAILURES)
    untested = {name for name in ALLOWED_FUNCTIONS if not re.search(rf"\b{name}\b", written, re.IGNORECASE)}
    assert untested == set()
    assert not ALLOWED_FUNCTIONS & set(REFUSED_FUNCTIONS)


# ------------------------------------------------------------------ properties against Trino's rules


def trino_substr(s: str, start: int, length: int | None = None) -> str:
    if start == 0 or not s or (length is not None and length <= 0):
        return ""
    begin = start - 1 if start > 0 else len(s) + start
    if begin < 0 or begin > len(s):
        return ""
    return s[begin:] if length is None else s[begin : begin + length]


def trino_strpos(s: str, sub: str, instance: int) -> int:
    if sub == "":
        return 1
    starts = [i + 1 for i in range(len(s)) if s.startswith(sub, i)]
    index = instance - 1 if instance > 0 else len(starts) + instance
    return starts[index] if 0 <= index < len(starts) else 0


def trino_split_part(s: str, d: str, index: int) -> str | None:
    parts = list(s) if d == "" else s.split(d)
    return parts[index - 1] if index <= len(parts) else None


def trino_replace(s: str, search: str, replacement: str) -> str:
    if search == "":
        return replacement + "".join(c + replacement for c in s)
    return s.replace(search, replacement)


def trino_trim(s: str) -> str:
    return s.strip(JAVA_WHITESPACE)


TEXT = st.text(alphabet=st.sampled_from("ab/,.é日🎉 \t\n\u3000\xa0"), max_size=8)
INDEX = st.one_of(st.integers(-10, 10), st.sampled_from([2**31, -(2**31), 2**62]))


@settings(max_examples=80, deadline=None)
@given(s=TEXT, start=INDEX, length=st.one_of(st.none(), INDEX))
def test_substr_follows_trino_on_generated_inputs(s, start, length):
    if length is None:
        assert run("substr(?, ?)", [s, start]) == trino_substr(s, start)
    else:
        assert run("substr(?, ?, ?)", [s, start, length]) == trino_substr(s, start, length)


@settings(max_examples=80, deadline=None)
@given(
    s=TEXT, sub=st.sampled_from(["", "a", "ab", "/", "日", "aa"]), instance=st.integers(-4, 4).filter(bool)
)
def test_strpos_follows_trino_on_generated_inputs(s, sub, instance):
    assert run("strpos(?, ?, ?)", [s, sub, instance]) == trino_strpos(s, sub, instance)


@settings(max_examples=80, deadline=None)
@given(s=TEXT, d=st.sampled_from(["", ",", "/", "ab", "日"]), index=st.integers(1, 6))
def test_split_part_follows_trino_on_generated_inputs(s, d, index):
    assert run("split_part(?, ?, ?)", [s, d, index]) == trino_split_part(s, d, index)


@settings(max_examples=80, deadline=None)
@given(s=TEXT, search=st.sampled_from(["", "a", "/", "日"]), replacement=st.sampled_from(["", "x", "🎉"]))
def test_replace_and_trim_follow_trino_on_generated_inputs(s, search, replacement):
    assert run("replace(?, ?, ?)", [s, search, replacement]) == trino_replace(s, search, replacement)
    assert run("trim(?)", [s]) == trino_trim(s)
