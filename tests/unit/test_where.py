"""batchpipe_core.where: filter.where is one condition over inventory columns, rendered by sqlglot."""

from __future__ import annotations

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st
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


COLUMN = st.sampled_from(["size", "key", "storage_class", "e_tag", "bucket"])
LITERAL = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12).map(str),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=12).map(
        lambda text: "'" + text.replace("'", "''") + "'"
    ),
)
COMPARISON = st.builds(
    lambda column, op, literal: f"{column} {op} {literal}",
    COLUMN,
    st.sampled_from(["=", "<>", "<", ">="]),
    LITERAL,
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
