"""batchpipe_core.where: filter.where is one condition over inventory columns, rendered by sqlglot."""

from __future__ import annotations

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp
from sqlglot.tokens import TokenType

from batchpipe_core.errors import SpecValidationError
from batchpipe_core.where import (
    ALLOWED_FUNCTIONS,
    INVENTORY_COLUMNS,
    VERSION_COLUMNS,
    columns_used,
    normalize_where,
)

CURRENT_ONLY = [c for c in INVENTORY_COLUMNS if c not in VERSION_COLUMNS]
EXAMPLE = "e.g. size > 0 AND storage_class = 'STANDARD'"

ACCEPTED = [
    ("size > 0 AND replication_status = 'FAILED'", "size > 0 AND replication_status = 'FAILED'"),
    ("storage_class in ('STANDARD','GLACIER') or size between 1 and 5",
     "storage_class IN ('STANDARD', 'GLACIER') OR size BETWEEN 1 AND 5"),
    ("regexp_like(key, '\\.jpg$')", "REGEXP_LIKE(key, '\\.jpg$')"),
    ("key like 'a\\_%' escape '\\'", "key LIKE 'a\\_%' ESCAPE '\\'"),
    ("KEY IS NOT NULL", "NOT key IS NULL"),
    ('"Size" >= 1024', "size >= 1024"),
    ("last_modified_date < timestamp '2024-01-01 00:00:00'",
     "last_modified_date < CAST('2024-01-01 00:00:00' AS TIMESTAMP(0))"),
    ("date_add('day', -3, current_timestamp) > last_modified_date",
     "DATE_ADD('DAY', -3, CURRENT_TIMESTAMP) > last_modified_date"),
    ("cast(size as bigint) > 5", "CAST(size AS BIGINT) > 5"),
    ("url_decode(key) = 'a b'", "URL_DECODE(key) = 'a b'"),
    ("element_at(split(key, '/'), 1) = 'photos'", "ELEMENT_AT(SPLIT(key, '/'), 1) = 'photos'"),
    ("is_latest and not is_delete_marker", "is_latest AND NOT is_delete_marker"),
    ("version_id is distinct from 'null'", "version_id IS DISTINCT FROM 'null'"),
    ("(size > 0) or (e_tag <> 'x')", "(size > 0) OR (e_tag <> 'x')"),
    ("'--' = key", "'--' = key"),
    ("key = 'it''s'", "key = 'it''s'"),
]  # fmt: skip


@pytest.mark.parametrize(("where", "normalized"), ACCEPTED)
def test_conditions_are_accepted_in_sqlglots_trino_rendering(where, normalized):
    assert normalize_where(where) == normalized
    # The normal form is a fixed point.
    assert normalize_where(normalized) == normalized


REJECTED = [
    ("size > 0; DROP TABLE inventory",
     ["';' is not allowed: give one condition, not statements; remove the ';'"]),
    ("size > 0 -- and more", ["comments ('--' or '/* */') are not allowed; remove them"]),
    ("size > 0 /* x */", ["comments ('--' or '/* */') are not allowed; remove them"]),
    ("SELECT key FROM inventory",
     [f"must be a single condition; 'SELECT key FROM inventory' is not one (Select); {EXAMPLE}"]),
    ("DROP TABLE inventory", [f"must be a single condition; 'DROP TABLE inventory' is not one (Drop); {EXAMPLE}"]),
    ("size > (SELECT max(size) FROM inventory)",
     ["subqueries are not allowed ('(SELECT MAX(size) FROM inventory)'); use only the inventory table's columns"]),
    ("EXISTS (SELECT 1)", ["subqueries are not allowed ('EXISTS(SELECT 1)'); use only the inventory table's columns"]),
    ("sise > 0", [f"unknown column 'sise'; did you mean 'size'? inventory columns are: {', '.join(sorted(INVENTORY_COLUMNS))}"]),
    ("dt = '2024-01-01-00-00'",
     ["column 'dt' is the inventory partition; choose it with inventory.date instead"]),
    ("inventory.key = 'a'", ["qualified column 'inventory.key' is not allowed; write 'key' alone"]),
    ("size", ["'size' is a value, not a condition; compare it (e.g. = 'value', > 0, IS NULL) "
              "or use a boolean function such as regexp_like"]),
    ("size > 0 AND key", ["'key' is a value, not a condition; compare it (e.g. = 'value', > 0, IS NULL) "
                          "or use a boolean function such as regexp_like"]),
    ("rand() < 0.5", [f"function 'rand' is not allowed; use one of: {', '.join(sorted(ALLOWED_FUNCTIONS))}"]),
    ("key = ?", ["parameters ('?') are not allowed; write the value inline"]),
    ("max(size) > 0", ["aggregate and window functions ('MAX(size)') are not allowed; compare one row's values"]),
    ("any_match(split(key, '/'), x -> x = 'a')",
     [f"function 'any_match' is not allowed; use one of: {', '.join(sorted(ALLOWED_FUNCTIONS))}",
      "lambda expressions (\"x -> x = 'a'\") are not allowed; use split_part or regexp_like"]),
    ("size > 0 AND", [f"cannot parse it (Required keyword: 'expression' missing for And at line 1, column 12); {EXAMPLE}"]),
    ("size > 0 size", [f"must be a single condition; 'size > 0 AS size' is not one (Alias); {EXAMPLE}"]),
    ("   ", ["is empty; omit it (or use null) to add no condition"]),
]  # fmt: skip


@pytest.mark.parametrize(("where", "problems"), REJECTED)
def test_anything_but_one_condition_is_rejected_with_exact_messages(where, problems):
    with pytest.raises(SpecValidationError) as raised:
        normalize_where(where)

    assert str(raised.value) == "\n".join(f"filter.where: {problem}" for problem in problems)


def test_every_problem_is_listed():
    with pytest.raises(SpecValidationError) as raised:
        normalize_where("sise > 0 AND dt = 'x' AND rand() > 0")

    assert [line.split(";")[0] for line in str(raised.value).splitlines()] == [
        "filter.where: unknown column 'sise'",
        "filter.where: column 'dt' is the inventory partition",
        "filter.where: function 'rand' is not allowed",
    ]


def test_an_unterminated_string_is_rejected():
    with pytest.raises(SpecValidationError, match=r"^filter\.where: cannot read it \(.*\); e\.g\. "):
        normalize_where("key = 'abc")


def test_the_tables_columns_decide_which_columns_exist():
    with pytest.raises(SpecValidationError) as raised:
        normalize_where("is_latest AND object_owner = 'x'", CURRENT_ONLY[:-3])

    assert str(raised.value).splitlines() == [
        "filter.where: column 'is_latest' exists only in inventories that list all object versions, "
        "and this stack's inventory lists current versions only; remove it",
        "filter.where: column 'object_owner' is an optional inventory field that this stack's inventory "
        "table does not include; remove it",
    ]


def test_the_text_is_limited_in_length():
    with pytest.raises(
        SpecValidationError, match=r"^filter\.where: is 10001 characters long; the maximum is 10000"
    ):
        normalize_where("key = '" + "a" * 9_993 + "'")


def test_columns_used_reports_the_inventory_columns_of_a_condition():
    assert columns_used("SIZE > 0 AND regexp_like(key, 'x') AND is_latest") == {"size", "key", "is_latest"}
    assert columns_used("size >") == set()


TEXT_COLUMN = st.sampled_from(["key", "storage_class", "e_tag", "bucket"])
NUMBER = st.integers(min_value=-(10**12), max_value=10**12).map(str)
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=12).map(
    lambda text: "'" + text.replace("'", "''") + "'"
)
OPERATOR = st.sampled_from(["=", "<>", "<", ">="])
# Each column is compared with a literal of its own type (Athena does not convert text to numbers).
COMPARISON = st.one_of(
    st.builds(lambda op, literal: f"size {op} {literal}", OPERATOR, NUMBER),
    st.builds(lambda column, op, literal: f"{column} {op} {literal}", TEXT_COLUMN, OPERATOR, TEXT),
)
CONDITION = st.recursive(
    COMPARISON,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a}) AND ({b})", inner, inner),
        st.builds(lambda a, b: f"{a} OR {b}", inner, inner),
        st.builds(lambda a: f"NOT ({a})", inner),
    ),
    max_leaves=6,
)


@settings(max_examples=100, deadline=None)
@given(CONDITION)
def test_generated_conditions_normalize_to_a_fixed_point(where):
    normalized = normalize_where(where)

    assert normalize_where(normalized) == normalized
    tokens = sqlglot.tokenize(normalized, read="trino")
    assert not any(token.comments for token in tokens)
    assert TokenType.SEMICOLON not in {token.token_type for token in tokens}


# ---------------------------------------------------------------- hostile input (issue 11)

# Found by an adversarial review: sqlglot wrote a quoted identifier inside a type parameter back
# unquoted, so the rendering of the rendering carried a UNION into the UNLOAD statement.
NESTED_CAST_EXPLOIT = (
    'cast(size as decimal(10, """1)) > 0) UNION ALL SELECT bucket, key FROM db.t '
    'WHERE (CAST(size AS DECIMAL(10, 1""")) > 0'
)


def test_a_nested_cast_cannot_smuggle_sql_through_a_type_parameter():
    with pytest.raises(SpecValidationError) as raised:
        normalize_where(NESTED_CAST_EXPLOIT)

    (line,) = str(raised.value).splitlines()
    assert line.startswith("filter.where: type parameters must be integer literals, e.g. DECIMAL(10, 2); ")
    assert len(line) < 200


TIGHTENED = [
    ('cast(size as decimal(10, "x")) > 0', "type parameters must be integer literals"),
    ("cast(size as decimal(10, x)) > 0", "type parameters must be integer literals"),
    ("cast(size as varchar('5')) = 'a'", "type parameters must be integer literals"),
    ("cast(size as decimal(10, 1.5)) > 0", "type parameters must be integer literals"),
    ("cast(size as array(varchar)) IS NULL", "type 'ARRAY(VARCHAR)' is not allowed"),
    ("cast(size as row(a integer)) IS NULL", "type 'ROW(a INTEGER)' is not allowed"),
    ("cast(size as json) IS NULL", "type 'JSON' is not allowed"),
    ("cast(size as ipaddress) IS NULL", "type 'IPADDRESS' is not allowed"),
    ("json_extract_scalar(key, '$.a') = '1'", "function 'json_extract_scalar' is not allowed"),
    ("read_text('/etc/passwd') IS NULL", "function 'read_text' is not allowed"),
    ("date_add(bogus, 1, last_modified_date) > now()", "the word 'BOGUS' is not allowed here"),
    ("last_modified_date > current_timestamp - INTERVAL '1' FORTNIGHT", "FORTNIGHT"),
    ("key = U&'\\0041'", "(UnicodeString) is not allowed"),
    # What sqlglot reads but Athena (Trino) refuses: refused here instead of failing the query there.
    ("storage_class IN ()", "'storage_class IN ()' has an empty value list"),
    ("cast(size as decimal(39, 0)) > 0", "type 'DECIMAL(39, 0)' is out of range"),
    ("cast(size as decimal(0)) > 0", "type 'DECIMAL(0)' is out of range"),
    ("cast(size as decimal(5, 6)) > 0", "type 'DECIMAL(5, 6)' is out of range"),
    (
        "at_timezone(last_modified_date, 'UTC') > now()",
        "function at_timezone is not supported: Athena does not run it",
    ),
    # What the local preview would compute differently (docs/FILTERS.md, "Functions").
    ("cast(key as varchar(5)) = 'a'", "cast to VARCHAR(5) is not supported"),
    (
        "cast(size as timestamp(3) with time zone) IS NULL",
        "casting an integer to TIMESTAMP(3) WITH TIME ZONE",
    ),
]


@pytest.mark.parametrize(("where", "problem"), TIGHTENED)
def test_the_allow_list_admits_only_what_a_row_predicate_needs(where, problem):
    with pytest.raises(SpecValidationError) as raised:
        normalize_where(where)

    assert problem in str(raised.value)
    assert all(line.startswith("filter.where: ") for line in str(raised.value).splitlines())


@pytest.mark.parametrize(
    "where",
    [
        "cast(size as decimal(10, 2)) > 1",
        "cast(key as varchar) = 'a'",
        "last_modified_date > current_timestamp - INTERVAL '30' DAY",
        "date_trunc('month', last_modified_date) = date '2024-01-01'",
        "cast(last_modified_date as timestamp(3) with time zone) IS NULL",
    ],
)
def test_casts_and_date_units_that_rows_need_still_work(where):
    normalized = normalize_where(where)
    assert normalize_where(normalized) == normalized


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("(" * 100_000 + "size > 0" + ")" * 100_000, "the maximum is 10000"),
        (
            "(" * 21 + "size > 0" + ")" * 21,
            "nests parentheses, brackets or CASE 21 levels deep; the maximum is 20",
        ),
        ("NOT " * 9 + "size > 0", "has 9 NOT/+/- operators in a row; the maximum is 8"),
        ("size > " + "- " * 2000 + "1", "operators in a row"),
        ("CASE WHEN " * 30 + "size > 0" + " THEN true END" * 30, "levels deep"),
        (("(" + "NOT " * 8) * 10 + "key = 'a'" + ")" * 10, "is nested too deeply (more than 64 levels)"),
    ],
)
def test_deep_nesting_is_a_clear_error_not_a_recursion_error(where, message):
    with pytest.raises(SpecValidationError) as raised:
        normalize_where(where)

    assert message in str(raised.value)


def test_long_and_chains_are_not_nesting():
    where = " OR ".join(f"key = '{i}'" for i in range(600))
    assert normalize_where(where).count(" OR ") == 599


# Quotation marks that look like SQL's but are not: right/left single, left/right double, fullwidth
# double and single, modifier letter apostrophe.
_UNICODE_QUOTES = ("\u2019", "\u2018", "\u201c", "\u201d", "\uff02", "\uff07", "\u02bc")
# Hostile material: quote characters of every kind, SQL that would end the condition, DuckDB's
# file-reading table functions and deep parentheses.
_PAYLOADS = st.sampled_from(
    [
        "1)) > 0) UNION ALL SELECT bucket, key FROM db.t WHERE (CAST(size AS DECIMAL(10, 1",
        "x) UNION ALL SELECT * FROM read_text('/etc/passwd') --",
        "'; DROP TABLE inventory; --",
        "*/ OR 1=1 /*",
        "a\"b", "a''b", "\\", *_UNICODE_QUOTES, "`", ")", "(", "]", "[", ";",
        "UNION SELECT 1", "key", "size", "dt", "read_text", "--",
    ]
)  # fmt: skip
_QUOTES = st.text(alphabet="'\"`\\()[];-/* " + "".join(_UNICODE_QUOTES), max_size=12)
_PIECE = st.one_of(_PAYLOADS, _QUOTES)


def _quoted_identifier(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_PARAMETER = st.one_of(
    st.integers(0, 38).map(str),
    _PIECE.map(_quoted_identifier),
    _PIECE.map(_string),
    _PIECE,
    _PIECE.map(lambda text: _quoted_identifier(_quoted_identifier(text))),
)
_VALUE = st.recursive(
    st.sampled_from(["size", "key", '"KEY"', "'x'", "1"]),
    lambda inner: st.builds(
        lambda value, kind, parameter: f"cast({value} as {kind}(10, {parameter}))",
        inner,
        st.sampled_from(["decimal", "varchar", "timestamp", '"decimal"']),
        _PARAMETER,
    ),
    max_leaves=4,
)
_HOSTILE_WHERE = st.one_of(
    st.builds(lambda value, literal: f"{value} > {literal}", _VALUE, _PARAMETER),
    st.builds(lambda value, piece: f"key = {piece}", _VALUE, _PIECE.map(_string)),
    st.builds(lambda piece: f"{_quoted_identifier(piece)} = 1", _PIECE),
    st.builds(lambda piece: f"key = {piece}", _PIECE),
    st.builds(
        lambda opening, closing, value: "(" * opening + f"{value} > 0" + ")" * closing,
        st.integers(0, 200),
        st.integers(0, 200),
        _VALUE,
    ),
    st.lists(_PIECE, min_size=1, max_size=8).map(" ".join),
    st.lists(st.one_of(_PIECE, _VALUE), min_size=1, max_size=6).map(" ".join),
)


def assert_one_condition_over_inventory_columns(rendered: str) -> None:
    """The rendering, alone and inside the real statement, is one condition and nothing more."""
    from batchpipe.local.athena.dialect import parse_statement
    from batchpipe_core.query import build_unload_sql

    (tree,) = sqlglot.parse(rendered, read="trino")
    assert isinstance(tree, exp.Condition)
    assert not list(tree.find_all(exp.Query, exp.Table, exp.Subquery, exp.Command, exp.Anonymous))
    assert {column.name for column in tree.find_all(exp.Column)} <= set(INVENTORY_COLUMNS)
    statement = build_unload_sql(
        {"filter": {"where": rendered}},
        database="db",
        table="inventory",
        partition="2024-05-01-00-00",
        inventory_format="CSV",
        versions="All",
        output_uri="s3://pipe/run/athena/",
    )
    query = parse_statement(statement).query
    assert isinstance(query, exp.Select)
    assert [table.name for table in query.find_all(exp.Table)] == ["inventory"]
    assert not list(query.find_all(exp.Union))
    where = query.args["where"].this
    assert isinstance(where, exp.And) and where.right == sqlglot.parse_one(f"({rendered})", read="trino")


@settings(max_examples=400, deadline=None)
@given(_HOSTILE_WHERE)
def test_hostile_where_is_refused_naming_the_field_or_is_one_condition(where):
    try:
        rendered = normalize_where(where)
    except SpecValidationError as error:
        lines = str(error).splitlines()
        assert lines and all(line.startswith("filter.where: ") for line in lines)
        # Bounded: user text is echoed as a short prefix; the longest fixed text is the function list.
        assert all(len(line) < 1200 for line in lines)
        return
    assert_one_condition_over_inventory_columns(rendered)


def test_the_exploit_cannot_reach_the_statement_either():
    with pytest.raises(SpecValidationError, match=r"^filter\.where: type parameters"):
        assert_one_condition_over_inventory_columns(NESTED_CAST_EXPLOIT)
