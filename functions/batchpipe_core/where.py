"""The spec's raw ``filter.where`` predicate: one boolean expression over inventory columns, nothing else.

The text ends up inside the Athena (Trino) query that selects the manifest rows, so it is parsed
with sqlglot and accepted only when its syntax tree is a single condition built from known columns,
literals, operators and an allow-list of side-effect-free scalar functions. The SQL that callers
embed is sqlglot's rendering of that tree, never the user's text, so nothing the tokenizer saw as
a comment or a second statement can reach Athena.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.tokens import TokenType

from batchpipe_core.errors import SpecValidationError
from batchpipe_core.inventory_layout import INVENTORY_COLUMNS, VERSION_COLUMNS

FIELD = "filter.where"
DIALECT = "trino"
MAX_LENGTH = 10_000

PARTITION_COLUMN = "dt"
# Boolean-typed in ORC/Parquet inventories, so they may stand alone as a condition there.
BOOLEAN_COLUMNS: tuple[str, ...] = ("is_latest", "is_delete_marker", "is_multipart_uploaded")

# Scalar Trino functions that are deterministic or read only the clock: enough to express any
# condition on one inventory row, and none that reaches outside the query.
ALLOWED_FUNCTIONS: frozenset[str] = frozenset(
    {
        # strings
        "lower", "upper", "length", "substr", "substring", "strpos", "position", "starts_with",
        "regexp_like", "regexp_extract", "regexp_replace", "regexp_count", "split", "split_part",
        "element_at", "cardinality", "contains", "replace", "trim", "ltrim", "rtrim", "concat",
        "reverse", "url_decode", "url_encode", "from_base64", "from_utf8", "to_utf8",
        "json_extract_scalar", "json_array_contains", "array",
        # conditionals and casts
        "case", "if", "coalesce", "nullif", "cast", "try_cast", "try",
        # numbers
        "abs", "round", "floor", "ceil", "ceiling", "greatest", "least", "mod",
        # dates and times
        "date", "date_parse", "parse_datetime", "from_iso8601_timestamp", "from_iso8601_date",
        "date_add", "date_diff", "date_trunc", "date_format", "current_timestamp", "current_date",
        "now", "from_unixtime", "to_unixtime", "year", "month", "day", "day_of_week", "hour",
        "with_timezone", "at_timezone",
    }
)  # fmt: skip
# Functions whose result is a boolean, so they may stand alone as the condition.
BOOLEAN_FUNCTIONS: frozenset[str] = frozenset(
    {"regexp_like", "starts_with", "contains", "json_array_contains"}
)

# Operators, literals and the pieces they are made of (exact classes: subclasses are not implied).
_ALLOWED_NODES: tuple[type[exp.Expression], ...] = (
    exp.Column, exp.Identifier, exp.Literal, exp.Boolean, exp.Null, exp.Paren, exp.Var,
    exp.And, exp.Or, exp.Not,
    exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ,
    exp.Is, exp.In, exp.Between, exp.Like, exp.Escape,
    exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg, exp.DPipe,
    exp.DataType, exp.DataTypeParam, exp.Interval, exp.Bracket,
)  # fmt: skip
_REJECTED_SUBTREES = (exp.Query, exp.Subquery, exp.SubqueryPredicate, exp.Lambda, exp.Window, exp.AggFunc)
_CONDITIONS: tuple[type[exp.Expression], ...] = (exp.Predicate, exp.Connector, exp.Not, exp.Escape)

_EXAMPLE = "e.g. size > 0 AND storage_class = 'STANDARD'"
_CLASS_REPR = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")


def normalize_where(sql: str, columns: Iterable[str] = INVENTORY_COLUMNS) -> str:
    """sqlglot's Trino rendering of ``sql``, or SpecValidationError with one line per problem."""
    tree = _parse(sql)
    problems = list(dict.fromkeys(_problems(tree, frozenset(columns))))
    if problems:
        raise SpecValidationError("\n".join(f"{FIELD}: {problem}" for problem in problems))
    for column in tree.find_all(exp.Column):
        # Normal form: the inventory's lower-case names, unquoted (none is a Trino reserved word).
        column.set("this", exp.to_identifier(column.name.lower()))
    return tree.sql(dialect=DIALECT)


def columns_used(sql: str) -> set[str]:
    """Inventory columns ``sql`` refers to (lower case); empty when it does not even parse."""
    try:
        tree = _parse(sql)
    except SpecValidationError:
        return set()
    return {column.name.lower() for column in tree.find_all(exp.Column)}


# ---------------------------------------------------------------- parsing


def _parse(sql: str) -> exp.Expression:
    if not sql.strip():
        raise SpecValidationError(f"{FIELD}: is empty; omit it (or use null) to add no condition")
    if len(sql) > MAX_LENGTH:
        raise SpecValidationError(
            f"{FIELD}: is {len(sql)} characters long; the maximum is {MAX_LENGTH}, "
            "move long value lists into filter.prefixes or filter.keyRegex"
        )
    try:
        tokens = sqlglot.tokenize(sql, read=DIALECT)
    except SqlglotError as error:
        raise SpecValidationError(f"{FIELD}: cannot read it ({_first_line(error)}); {_EXAMPLE}") from error
    lexical = []
    if any(token.token_type == TokenType.SEMICOLON for token in tokens):
        lexical.append("';' is not allowed: give one condition, not statements; remove the ';'")
    if any(token.comments for token in tokens):
        lexical.append("comments ('--' or '/* */') are not allowed; remove them")
    if lexical:
        raise SpecValidationError("\n".join(f"{FIELD}: {problem}" for problem in lexical))
    try:
        trees = sqlglot.parse(sql, read=DIALECT)
    except ParseError as error:
        raise SpecValidationError(f"{FIELD}: cannot parse it ({_parse_error(error)}); {_EXAMPLE}") from error
    except SqlglotError as error:
        raise SpecValidationError(f"{FIELD}: cannot parse it ({_first_line(error)}); {_EXAMPLE}") from error
    trees = [tree for tree in trees if tree is not None]
    if len(trees) != 1:
        raise SpecValidationError(f"{FIELD}: must be exactly one condition; {_EXAMPLE}")
    return trees[0]


def _parse_error(error: ParseError) -> str:
    if not error.errors:
        return _first_line(error)
    first = error.errors[0]
    description = _CLASS_REPR.sub(r"\1", str(first.get("description", "syntax error")))
    return f"{description} at line {first.get('line')}, column {first.get('col')}"


def _first_line(error: Exception) -> str:
    return _CLASS_REPR.sub(r"\1", str(error).splitlines()[0] if str(error) else type(error).__name__)


# ---------------------------------------------------------------- the tree


def _problems(tree: exp.Expression, columns: frozenset[str]) -> Iterator[str]:
    if not isinstance(tree, exp.Condition):
        # Statements (SELECT, DROP, SHOW ...) and clauses such as an alias ("size > 0 size").
        yield f"must be a single condition; {_snippet(tree)} is not one ({_kind(tree)}); {_EXAMPLE}"
        return
    yield from _condition_problems(tree)
    # Depth first, so problems come in reading order; pruned at a rejected node, whose insides
    # (a subquery's tables, a lambda's variables) would add only noise.
    for node in tree.walk(bfs=False, prune=lambda node: isinstance(node, _REJECTED_SUBTREES)):
        yield from _node_problems(node, columns)


def _condition_problems(node: exp.Expression) -> Iterator[str]:
    """The expression and every AND/OR/NOT operand must be a condition, not a value."""
    if isinstance(node, exp.Paren):
        yield from _condition_problems(node.this)
    elif isinstance(node, exp.Connector):
        yield from _condition_problems(node.left)
        yield from _condition_problems(node.right)
    elif isinstance(node, exp.Not):
        yield from _condition_problems(node.this)
    elif isinstance(node, _CONDITIONS) or _function_name(node) in BOOLEAN_FUNCTIONS | {"case", "if"}:
        return
    elif isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.BOOLEAN):
        return
    elif isinstance(node, exp.Column) and node.name.lower() in BOOLEAN_COLUMNS:
        return
    elif _function_name(node) not in ALLOWED_FUNCTIONS | {None}:
        return  # reported as a function that is not allowed
    else:
        yield (
            f"{_snippet(node)} is a value, not a condition; compare it "
            f"(e.g. = 'value', > 0, IS NULL) or use a boolean function such as regexp_like"
        )


def _node_problems(node: exp.Expression, columns: frozenset[str]) -> Iterator[str]:
    if isinstance(node, exp.Query | exp.Subquery | exp.SubqueryPredicate):
        yield f"subqueries are not allowed ({_snippet(node)}); use only the inventory table's columns"
    elif isinstance(node, exp.Column):
        yield from _column_problems(node, columns)
    elif isinstance(node, exp.Placeholder | exp.Parameter):
        yield f"parameters ({_snippet(node)}) are not allowed; write the value inline"
    elif isinstance(node, exp.Star):
        yield "'*' is not allowed; name the columns"
    elif isinstance(node, exp.Lambda):
        yield f"lambda expressions ({_snippet(node)}) are not allowed; use split_part or regexp_like"
    elif isinstance(node, exp.Window | exp.AggFunc):
        yield f"aggregate and window functions ({_snippet(node)}) are not allowed; compare one row's values"
    elif type(node) in _ALLOWED_NODES or isinstance(node, exp.JSONPath | exp.JSONPathPart):
        return
    elif isinstance(node, exp.Func):
        name = _function_name(node)
        if name not in ALLOWED_FUNCTIONS:
            yield f"function {name!r} is not allowed; use one of: {', '.join(sorted(ALLOWED_FUNCTIONS))}"
    else:
        yield f"{_snippet(node)} ({_kind(node)}) is not allowed; use columns, literals, operators and functions"


def _column_problems(column: exp.Column, columns: frozenset[str]) -> Iterator[str]:
    name = column.name.lower()
    if column.table:
        yield f"qualified column {column.sql(dialect=DIALECT)!r} is not allowed; write {column.name!r} alone"
    elif name == PARTITION_COLUMN:
        yield f"column {PARTITION_COLUMN!r} is the inventory partition; choose it with inventory.date instead"
    elif name in VERSION_COLUMNS and name not in columns:
        yield (
            f"column {name!r} exists only in inventories that list all object versions, and this stack's "
            "inventory lists current versions only; remove it"
        )
    elif name in INVENTORY_COLUMNS and name not in columns:
        yield (
            f"column {name!r} is an optional inventory field that this stack's inventory table does not "
            "include; remove it"
        )
    elif name not in columns:
        close = difflib.get_close_matches(name, sorted(columns), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        yield f"unknown column {column.name!r}; {hint}inventory columns are: {', '.join(sorted(columns))}"


def _function_name(node: exp.Expression) -> str | None:
    """The Trino name of a function node (how Athena would know it), lower case."""
    if not isinstance(node, exp.Func) or isinstance(node, exp.Connector):
        return None
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    match = re.match(r"[A-Za-z_][A-Za-z0-9_]*", node.sql(dialect=DIALECT))
    return match.group(0).lower() if match else type(node).__name__.lower()


def _kind(node: exp.Expression) -> str:
    return type(node).__name__


def _snippet(node: exp.Expression, limit: int = 60) -> str:
    text = node.sql(dialect=DIALECT)
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
