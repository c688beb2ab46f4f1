"""``filter.where`` refuses, in one line naming the function, what the local preview would compute
differently from Athena; docs/FILTERS.md lists every function with its Trino reference."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from batchpipe_core.errors import SpecValidationError
from batchpipe_core.trino_semantics import UnsupportedRegex, translate_regex
from batchpipe_core.where import ALLOWED_FUNCTIONS, REFUSED_FUNCTIONS, normalize_where

FILTERS_DOC = Path(__file__).resolve().parents[2] / "docs" / "FILTERS.md"


def refusal(where: str) -> str:
    with pytest.raises(SpecValidationError) as raised:
        normalize_where(where)
    (line,) = str(raised.value).splitlines()
    assert line.startswith("filter.where: ")
    return line


@pytest.mark.parametrize(
    ("where", "hint"),
    [
        ("date_parse(key, '%Y-%m-%d') > now()", "TIMESTAMP '2024-01-31 00:00:00'"),
        ("date_format(last_modified_date, '%Y') = '2024'", "year, month, day, hour"),
        ("parse_datetime(key, 'yyyy') > now()", "Joda-Time"),
        ("from_iso8601_timestamp(key) > now()", "ISO 8601"),
        ("from_iso8601_date(key) > current_date", "week and ordinal dates"),
        ("with_timezone(last_modified_date, 'UTC') > now()", "time zone"),
        ("from_base64(key) IS NULL", "compare the text itself"),
        ("from_utf8(key) = 'a'", "compare the text itself"),
        ("to_utf8(key) IS NULL", "compare the text itself"),
    ],
)
def test_a_function_the_preview_cannot_reproduce_is_refused_by_name_with_what_to_use(where, hint):
    line = refusal(where)
    name = re.match(r"\w+", where).group(0)
    assert f"function {name} is not supported" in line
    assert hint in line


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("regexp_like(key, '(?i)\\.jpg$')", "compare lower(key)"),
        ("regexp_like(key, '\\bcat\\b')", "word boundaries"),
        ("regexp_like(key, '(?=a)')", "lookahead"),
        ("regexp_like(key, '(a)\\1')", "back reference"),
        ("regexp_like(key, 'a++')", "possessive"),
        ("regexp_like(key, '\\p{L}')", "\\p{...}"),
        ("regexp_like(key, '[a[b]]')", "'[' inside a class"),
        ("regexp_like(key, '[a&&b]')", "'&&'"),
        ("regexp_like(key, 'a{1001}')", "the maximum is 1000"),
        ("regexp_like(key, 'a{')", "does not start a repetition"),
        ("regexp_like(key, '\\Z')", "\\Z"),
        ("regexp_like(key, concat('a', 'b'))", "must be a string literal"),
        ("regexp_extract(key, '\\.jpg$') = '.jpg'", "use \\z"),
        ("regexp_extract(key, '(a)?b', 1) = 'a'", "may not take part in a match"),
        ("regexp_extract(key, '(a)|b', 1) = 'a'", "may not take part in a match"),
        ("regexp_extract(key, '(a)', 2) = 'a'", "the pattern has 1 group(s); group 2 does not exist"),
        ("regexp_count(key, 'x*') > 0", "can match the empty string"),
        ("regexp_replace(key, 'a', '$1') = 'b'", "plain text"),
        ("cast(key as varchar(3)) = 'abc'", "cast to VARCHAR(3) is not supported"),
        ("cast(key as char(3)) = 'abc'", "cast to CHAR(3) is not supported"),
        ("cast(last_modified_date as varchar) = '2024'", "casting a timestamp to VARCHAR"),
        ("cast(cast(size as double) as varchar) = '1.0E8'", "casting a double to VARCHAR"),
        ("cast(key as double) > 1", "casting a varchar to DOUBLE"),
        ("cast(key as date) = current_date", "casting a varchar to DATE"),
        ("last_modified_date > TIMESTAMP '2024-01-01T00:00:00'", "not in the form Athena reads"),
        ("last_modified_date > DATE '2024-02-30'", "not in the form Athena reads"),
        ("cast(object_lock_retain_until_date as varchar) = '1'", "a value of unknown type"),
        ("round(cast(size as double), 2) > 1", "round with decimal places"),
        ("from_unixtime(size, 'UTC') > now()", "from_unixtime takes one argument"),
        # Trino does not convert between text and numbers, booleans, dates or timestamps; DuckDB does.
        ("size > '5'", "compares or combines text ('5') with an integer, which Athena refuses"),
        ("last_modified_date > '2024-01-01'", "write the time as TIMESTAMP '2024-01-31 00:00:00'"),
        ("key = 5", "compares or combines text (key) with an integer"),
        ("is_multipart_uploaded = 'true'", "write true or false"),
        ("storage_class IN ('STANDARD', 1)", "text (storage_class) with an integer"),
        ("size BETWEEN '1' AND 5", "text ('1') with an integer"),
        ("size LIKE '1%'", "text ('1%') with an integer"),
        ("key || 1 = 'a1'", "text (key) with an integer"),
        ("date(last_modified_date) = '2024-01-31'", "write the date as DATE '2024-01-31'"),
        ("concat(key, size) = 'a'", "text (key) with an integer"),
        ("coalesce(key, 1) = 'a'", "text (key) with an integer"),
        ("if(size > 1, 'a', 2) = 'a'", "text ('a') with an integer"),
        ("regexp_like(size, '^1')", "takes text, and size is an integer"),
        ("length(size) > 1", "CAST it AS VARCHAR first"),
        ("url_encode(size) = '1'", "takes text, and size is an integer"),
        ("year(key) = 2024", "takes a date or timestamp, and key is a varchar"),
        ("to_unixtime(size) > 1", "takes a date or timestamp, and size is an integer"),
        ("date(key) = current_date", "date() of a varchar is not supported"),
        ("date_add('hour', 1, DATE '2024-01-01') > now()", "a DATE has no hours"),
        ("hour(DATE '2024-01-01') = 0", "a DATE has no hours"),
    ],
)
def test_what_the_preview_would_compute_differently_is_refused_in_one_line(where, problem):
    assert problem in refusal(where)


@pytest.mark.parametrize(
    "where",
    [
        "regexp_like(key, '\\.jpe?g$')",
        "regexp_like(key, '^photos/(?<year>\\d{4})/[^/]+\\.(png|gif)\\z')",
        "regexp_like(lower(key), '\\Qa.b\\E|\\x41|\\u00e9|[\\s,;]')",
        "regexp_extract(key, '^([^/]+)/', 1) = 'photos'",
        "regexp_count(key, '/') > 3",
        "regexp_replace(key, '\\.jpe?g\\z', '.png') LIKE '%.png'",
        "cast(split_part(key, '/', 2) as bigint) > 2020",
        "cast(size as double) / 1024 > 1.5",
        "cast(size as decimal(20, 2)) > 1",
        "cast(size as varchar) = '0'",
        "last_modified_date > TIMESTAMP '2024-01-31 12:00:00.123'",
        "last_modified_date > TIMESTAMP '2024-01-31 12:00:00 UTC'",
        "date(last_modified_date) = DATE '2024-01-31'",
        "round(size / 1024.0, 1) > 2",
        "element_at(split(key, '/'), -1) LIKE '%.txt'",
        "strpos(key, '/', -1) > 0",
        "from_unixtime(size) > now()",
    ],
)
def test_what_both_engines_compute_alike_is_accepted(where):
    normalized = normalize_where(where)
    assert normalize_where(normalized) == normalized


def test_the_regex_subset_keeps_java_meaning_in_re2():
    # Java's $ also matches before a final newline and \s includes \x0B; RE2 needs both spelled out.
    assert translate_regex("\\.jpg$").re2 == "\\.jpg(?:\\n?$)"
    assert translate_regex("\\s").re2 == "[\\t\\n\\x0B\\f\\r ]"
    assert translate_regex("(?<y>\\d+)").re2 == "(?P<y>\\d+)"
    with pytest.raises(UnsupportedRegex):
        translate_regex("\\h")


def test_the_filters_doc_lists_every_allowed_and_refused_function():
    text = FILTERS_DOC.read_text(encoding="utf-8")
    table = text.split("| function | status |", 1)[1].split("\n\n", 1)[0]
    listed = set(re.findall(r"^\| `(\w+)`", table, re.MULTILINE))
    assert listed == ALLOWED_FUNCTIONS | set(REFUSED_FUNCTIONS)
