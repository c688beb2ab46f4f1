"""The spec's raw ``filter.where`` predicate: one boolean expression over inventory columns, nothing else.

The text ends up inside the Athena (Trino) query that selects the manifest rows, so it is parsed
with sqlglot and accepted only when its syntax tree is a single condition built from known columns,
literals, operators and an allow-list of side-effect-free scalar functions. The SQL that callers
embed is sqlglot's rendering of that tree, never the user's text.

A rendering is trusted only when it is a fixed point: parsed again, it passes the same checks and
renders to the same text and the same tree. Any construct that sqlglot writes differently from how
it reads it (it once wrote a quoted identifier inside a type parameter unquoted, which let a `where`
smuggle a UNION into the statement) is refused rather than patched one case at a time.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable, Iterator

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.tokens import TokenType

from batchpipe_core import trino_semantics as ts
from batchpipe_core.errors import SpecValidationError, shown
from batchpipe_core.inventory_layout import FIELD_OF_COLUMN, INVENTORY_COLUMNS, VERSION_COLUMNS

FIELD = "filter.where"
DIALECT = "trino"
MAX_LENGTH = 10_000
# Parentheses, brackets and CASE nest this deep at most. sqlglot's parser and generator recurse per
# level (about 25 frames a parenthesis), so a bound keeps a hostile text far from RecursionError.
MAX_NESTING = 20
# Consecutive prefix operators (NOT NOT ..., - - ...) also recurse once each without any bracket.
MAX_PREFIX_RUN = 8
# Syntax tree depth, not counting AND/OR chains (sqlglot walks those without recursing).
MAX_TREE_DEPTH = 64

MAX_DECIMAL_PRECISION = 38
PARTITION_COLUMN = "dt"
# Boolean-typed in ORC/Parquet inventories (and in the S3 Metadata live inventory table, whose own
# names are the last two), so they may stand alone as a condition there.
BOOLEAN_COLUMNS: tuple[str, ...] = (
    "is_latest",
    "is_delete_marker",
    "is_multipart_uploaded",
    "is_multipart",
    "is_bucket_key_enabled",
)

# Scalar Trino functions that are deterministic or read only the clock: enough to express any
# condition on one inventory row, and none that reaches outside the query. Each computes the same in
# the local preview (DuckDB) as on Athena, directly or translated (docs/FILTERS.md has the table).
ALLOWED_FUNCTIONS: frozenset[str] = frozenset(
    {
        # strings
        "lower", "upper", "length", "substr", "substring", "strpos", "position", "starts_with",
        "regexp_like", "regexp_extract", "regexp_replace", "regexp_count", "split", "split_part",
        "element_at", "cardinality", "contains", "replace", "trim", "ltrim", "rtrim", "concat",
        "reverse", "url_decode", "url_encode", "array",
        # conditionals and casts
        "case", "if", "coalesce", "nullif", "cast", "try_cast", "try",
        # numbers
        "abs", "round", "floor", "ceil", "ceiling", "greatest", "least", "mod",
        # dates and times
        "date", "date_add", "date_diff", "date_trunc", "current_timestamp", "current_date", "now",
        "from_unixtime", "to_unixtime", "year", "month", "day", "day_of_week", "hour",
    }
)  # fmt: skip
# Trino functions a row condition might reach for whose answers the local preview cannot reproduce
# faithfully: refused by name, with what to write instead.
_DATE_INSTEAD = (
    "compare with a literal such as TIMESTAMP '2024-01-31 00:00:00' (or ... UTC), or use date_trunc, "
    "year, month, day, hour"
)
REFUSED_FUNCTIONS: dict[str, str] = {
    "date_parse": f"its MySQL-style format specifiers differ from the local preview's; {_DATE_INSTEAD}",
    "date_format": f"its MySQL-style format specifiers differ from the local preview's; {_DATE_INSTEAD}",
    "parse_datetime": f"its Joda-Time patterns are not understood by the local preview; {_DATE_INSTEAD}",
    "format_datetime": f"its Joda-Time patterns are not understood by the local preview; {_DATE_INSTEAD}",
    "from_iso8601_timestamp": f"Athena's ISO 8601 parser accepts forms the local preview reads differently; {_DATE_INSTEAD}",
    "from_iso8601_date": f"Athena's ISO 8601 parser accepts forms (week and ordinal dates) the local preview does not; {_DATE_INSTEAD}",
    "with_timezone": f"the local preview has no time zone database; {_DATE_INSTEAD}",
    "at_timezone": "Athena does not run it; compare UTC values, e.g. last_modified_date > TIMESTAMP '2024-01-31 00:00:00 UTC'",
    "from_base64": "binary values are not supported; compare the text itself (url_decode for encoded keys)",
    "from_utf8": "binary values are not supported; compare the text itself (url_decode for encoded keys)",
    "to_utf8": "binary values are not supported; compare the text itself, e.g. length(key)",
}
# Functions whose result is a boolean, so they may stand alone as the condition.
BOOLEAN_FUNCTIONS: frozenset[str] = frozenset({"regexp_like", "starts_with", "contains"})
# Types a cast may name: Trino's scalar types. No JSON (no inventory column is JSON, and sqlglot
# parses JSON paths into trees of their own), no nested or user-defined types.
_CAST_TYPES: frozenset[exp.DataType.Type] = frozenset(
    getattr(exp.DataType.Type, name)
    for name in (
        "BOOLEAN", "TINYINT", "SMALLINT", "INT", "BIGINT", "FLOAT", "DOUBLE", "DECIMAL",
        "VARCHAR", "CHAR", "VARBINARY", "DATE", "TIMESTAMP", "TIMESTAMPTZ",
    )
)  # fmt: skip
# The unit words of INTERVAL and of date_add/date_diff/date_trunc: the only bare words that are not
# column names.
DATE_UNITS: frozenset[str] = frozenset(
    {"MILLISECOND", "SECOND", "MINUTE", "HOUR", "DAY", "WEEK", "MONTH", "QUARTER", "YEAR"}
)
_FUNCTION_NAME = re.compile(r"[a-z_][a-z0-9_]*")

# Operators, literals and the pieces they are made of (exact classes: subclasses are not implied).
_ALLOWED_NODES: tuple[type[exp.Expression], ...] = (
    exp.Literal, exp.Boolean, exp.Null, exp.Paren,
    exp.And, exp.Or, exp.Not,
    exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ,
    exp.Is, exp.In, exp.Between, exp.Like, exp.Escape,
    exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg, exp.DPipe,
    exp.Interval, exp.Bracket,
)  # fmt: skip
_REJECTED_SUBTREES = (exp.Query, exp.Subquery, exp.SubqueryPredicate, exp.Lambda, exp.Window, exp.AggFunc)
_PRUNED = (*_REJECTED_SUBTREES, exp.Column, exp.DataTypeParam)
_CONDITIONS: tuple[type[exp.Expression], ...] = (exp.Predicate, exp.Connector, exp.Not, exp.Escape)

_EXAMPLE = "e.g. size > 0 AND storage_class = 'STANDARD'"
_CLASS_REPR = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")


def normalize_where(sql: str, columns: Iterable[str] = INVENTORY_COLUMNS) -> str:
    """sqlglot's Trino rendering of ``sql``, or SpecValidationError with one line per problem.

    The rendering is returned only when it is a fixed point (see the module docstring).
    """
    return _normalized(sql, frozenset(columns))


# sqlglot tokenizes in pure Python (about 0.2 s for a 10,000-character condition) and one spec's
# validation asks for the same text several times (the model, the stack's columns, the statement).
@functools.lru_cache(maxsize=32)
def _normalized(sql: str, known: frozenset[str]) -> str:
    tree = _parse(sql)
    _raise_problems(_problems(tree, known))
    text = _render(tree)
    try:
        again = _parse_text(text)
        rechecked = list(_problems(again, known))
        same = not rechecked and _render(again) == text and again == tree
    except SpecValidationError:
        same = False
    if not same:
        raise SpecValidationError(
            f"{FIELD}: its SQL rendering {shown(text)} does not read back as the same condition, "
            "so it cannot be sent to Athena safely; write it with plain column names, literals and "
            f"operators; {_EXAMPLE}"
        )
    return text


def columns_used(sql: str) -> set[str]:
    """Inventory columns ``sql`` refers to (lower case); empty when it does not even parse."""
    try:
        tree = _parse(sql)
    except SpecValidationError:
        return set()
    return {column.name.lower() for column in tree.find_all(exp.Column)}


def _raise_problems(problems: Iterable[str]) -> None:
    unique = list(dict.fromkeys(problems))
    if unique:
        raise SpecValidationError("\n".join(f"{FIELD}: {problem}" for problem in unique))


def _render(tree: exp.Expression) -> str:
    """The normal form: columns as the inventory's lower-case names, unquoted (none is a Trino
    reserved word), in sqlglot's Trino rendering."""
    for column in tree.find_all(exp.Column):
        column.set("this", exp.to_identifier(column.name.lower()))
    try:
        return tree.sql(dialect=DIALECT)
    except RecursionError:
        raise SpecValidationError(_too_deep()) from None


# ---------------------------------------------------------------- parsing


def _parse(sql: str) -> exp.Expression:
    if not sql.strip():
        raise SpecValidationError(f"{FIELD}: is empty; omit it (or use null) to add no condition")
    if len(sql) > MAX_LENGTH:
        raise SpecValidationError(
            f"{FIELD}: is {len(sql)} characters long; the maximum is {MAX_LENGTH}, "
            "move long value lists into filter.prefixes or filter.keyRegex"
        )
    return _parse_text(sql)


def _parse_text(sql: str) -> exp.Expression:
    try:
        tokens = sqlglot.tokenize(sql, read=DIALECT)
    except (SqlglotError, ValueError) as error:
        raise SpecValidationError(f"{FIELD}: cannot read it ({_first_line(error)}); {_EXAMPLE}") from error
    lexical = []
    if any(token.token_type == TokenType.SEMICOLON for token in tokens):
        lexical.append("';' is not allowed: give one condition, not statements; remove the ';'")
    if any(token.comments for token in tokens):
        lexical.append("comments ('--' or '/* */') are not allowed; remove them")
    lexical.extend(_nesting_problems(tokens))
    if lexical:
        raise SpecValidationError("\n".join(f"{FIELD}: {problem}" for problem in lexical))
    try:
        trees = sqlglot.parse(sql, read=DIALECT)
    except ParseError as error:
        raise SpecValidationError(f"{FIELD}: cannot parse it ({_parse_error(error)}); {_EXAMPLE}") from error
    except RecursionError:
        # The token bounds keep real texts far from this; it stays a clear error whatever slips by.
        raise SpecValidationError(_too_deep()) from None
    except (SqlglotError, ValueError, TypeError, AttributeError, IndexError) as error:
        # sqlglot's parser also fails with plain Python errors on some hostile inputs (an empty
        # quoted name as a type parameter raises ValueError); each is the user's syntax problem.
        raise SpecValidationError(f"{FIELD}: cannot parse it ({_first_line(error)}); {_EXAMPLE}") from error
    trees = [tree for tree in trees if tree is not None]
    if len(trees) != 1:
        raise SpecValidationError(f"{FIELD}: must be exactly one condition; {_EXAMPLE}")
    if _tree_depth(trees[0]) > MAX_TREE_DEPTH:
        raise SpecValidationError(_too_deep())
    return trees[0]


_OPENING = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.CASE}
_CLOSING = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.END}
_PREFIX = {TokenType.NOT, TokenType.DASH, TokenType.PLUS}


def _nesting_problems(tokens: list) -> Iterator[str]:
    depth = deepest = run = longest = 0
    for token in tokens:
        kind = token.token_type
        depth += (kind in _OPENING) - (kind in _CLOSING)
        deepest = max(deepest, depth)
        run = run + 1 if kind in _PREFIX else 0
        longest = max(longest, run)
    if deepest > MAX_NESTING:
        yield (
            f"nests parentheses, brackets or CASE {deepest} levels deep; the maximum is {MAX_NESTING}: "
            "simplify the condition"
        )
    if longest > MAX_PREFIX_RUN:
        yield (
            f"has {longest} NOT/+/- operators in a row; the maximum is {MAX_PREFIX_RUN}: simplify the condition"
        )


def _tree_depth(tree: exp.Expression) -> int:
    """Depth without recursion, a chain of AND/OR counting as one level."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        for child in node.iter_expressions():
            chained = isinstance(node, exp.Connector) and type(child) is type(node)
            stack.append((child, depth if chained else depth + 1))
    return deepest


def _too_deep() -> str:
    return f"{FIELD}: is nested too deeply (more than {MAX_TREE_DEPTH} levels); simplify the condition"


def _parse_error(error: ParseError) -> str:
    if not error.errors:
        return _first_line(error)
    first = error.errors[0]
    description = _CLASS_REPR.sub(r"\1", str(first.get("description", "syntax error")))
    return f"{description} at line {first.get('line')}, column {first.get('col')}"


def _first_line(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return _CLASS_REPR.sub(r"\1", text)[:120]


# ---------------------------------------------------------------- the tree


def _problems(tree: exp.Expression, columns: frozenset[str]) -> Iterator[str]:
    if not isinstance(tree, exp.Condition):
        # Statements (SELECT, DROP, SHOW ...) and clauses such as an alias ("size > 0 size").
        yield f"must be a single condition; {_snippet(tree)} is not one ({_kind(tree)}); {_EXAMPLE}"
        return
    yield from _condition_problems(tree)
    # Depth first, so problems come in reading order; pruned at a rejected node, whose insides
    # (a subquery's tables, a lambda's variables) would add only noise, and at the nodes whose
    # check covers their parts.
    for node in tree.walk(bfs=False, prune=lambda node: isinstance(node, _PRUNED)):
        yield from _node_problems(node, columns)


def _condition_problems(tree: exp.Expression) -> Iterator[str]:
    """The expression and every AND/OR/NOT operand must be a condition, not a value."""
    stack = [tree]  # iterative: an AND chain of a thousand terms must not exhaust the call stack
    while stack:
        node = stack.pop()
        if isinstance(node, exp.Paren | exp.Not):
            stack.append(node.this)
        elif isinstance(node, exp.Connector):
            stack.extend((node.right, node.left))
        elif isinstance(node, _CONDITIONS) or _function_name(node) in BOOLEAN_FUNCTIONS | {"case", "if"}:
            continue
        elif isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.BOOLEAN):
            continue
        elif isinstance(node, exp.Column) and node.name.lower() in BOOLEAN_COLUMNS:
            continue
        elif _function_name(node) not in ALLOWED_FUNCTIONS | {None}:
            continue  # reported as a function that is not allowed
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
    elif isinstance(node, exp.Identifier):
        # Names stand only as a column (checked there); anywhere else they are text sqlglot may
        # write back differently from how it read it.
        if not (isinstance(node.parent, exp.Column) and node.arg_key == "this"):
            yield f"the name {_snippet(node)} is not allowed here; only inventory columns may be named"
    elif isinstance(node, exp.Var):
        if not (node.name.upper() in DATE_UNITS and node.arg_key == "unit"):
            yield (
                f"the word {_snippet(node)} is not allowed here; name columns, or a date unit "
                f"({', '.join(sorted(DATE_UNITS))}) in INTERVAL and date functions"
            )
    elif isinstance(node, exp.DataType):
        yield from _type_problems(node)
    elif isinstance(node, exp.DataTypeParam):
        if not (isinstance(node.this, exp.Literal) and _is_integer(node.this) and not node.expression):
            yield (
                f"type parameters must be integer literals, e.g. DECIMAL(10, 2); {_snippet(node)} is not one"
            )
    elif isinstance(node, exp.In) and not node.expressions and not node.args.get("query"):
        # sqlglot reads `x IN ()`; Trino's grammar does not, so the query would fail on Athena.
        yield f"{_snippet(node)} has an empty value list; give at least one value, e.g. storage_class IN ('STANDARD')"
    elif isinstance(node, exp.Placeholder | exp.Parameter):
        yield f"parameters ({_snippet(node)}) are not allowed; write the value inline"
    elif isinstance(node, exp.Star):
        yield "'*' is not allowed; name the columns"
    elif isinstance(node, exp.Lambda):
        yield f"lambda expressions ({_snippet(node)}) are not allowed; use split_part or regexp_like"
    elif isinstance(node, exp.Window | exp.AggFunc):
        yield f"aggregate and window functions ({_snippet(node)}) are not allowed; compare one row's values"
    elif type(node) in _ALLOWED_NODES:
        problem = ts.coercion_problem(node, _column_kinds(columns))
        if problem:
            yield problem
    elif isinstance(node, exp.Func):
        name = _function_name(node)
        if name in REFUSED_FUNCTIONS:
            yield f"function {name} is not supported: {REFUSED_FUNCTIONS[name]}"
        elif name not in ALLOWED_FUNCTIONS:
            yield (
                f"function {shown(str(name))} is not allowed; "
                f"use one of: {', '.join(sorted(ALLOWED_FUNCTIONS))}"
            )
        else:
            yield from _semantic_problems(node, name, columns)
            problem = ts.coercion_problem(node, _column_kinds(columns))
            if problem:
                yield problem
    else:
        yield f"{_snippet(node)} ({_kind(node)}) is not allowed; use columns, literals, operators and functions"


def _column_kinds(columns: frozenset[str]) -> dict[str, str]:
    """The kind of each known column's values (object_lock_retain_until_date is a timestamp or a
    bigint depending on the delivery, so its kind is unknown)."""
    kinds = {}
    for column in columns:
        field = FIELD_OF_COLUMN.get(column)
        if field is not None and column != "object_lock_retain_until_date":
            kinds[column] = ts.COLUMN_KINDS[field.kind]
    return kinds


def _semantic_problems(node: exp.Func, name: str, columns: frozenset[str]) -> Iterator[str]:
    """What an allowed function is given that Athena and the local preview would answer differently."""
    kinds = _column_kinds(columns)
    if isinstance(node, exp.Cast):
        problem = ts.cast_problem(node, kinds)
        if problem:
            yield problem
    elif name in ts.REGEX_FUNCTIONS:
        yield from _regex_problems(node, name)
    elif isinstance(node, exp.Round) and node.args.get("decimals") is not None:
        if ts.value_kind(node.this, kinds) not in (ts.INT, ts.DECIMAL):
            yield (
                f"{_snippet(node)}: round with decimal places is supported for integers and DECIMAL values "
                "only (a DOUBLE rounds differently in the local preview); cast to DECIMAL(p, s) first"
            )
    elif isinstance(node, exp.UnixToTime) and set(node.args) - {"this"}:
        yield f"{_snippet(node)}: from_unixtime takes one argument here (seconds since 1970, UTC)"


def _regex_problems(node: exp.Func, name: str) -> Iterator[str]:
    pattern = node.args.get("expression")
    if not (isinstance(pattern, exp.Literal) and pattern.is_string):
        yield f"{name}: the pattern must be a string literal, e.g. {name}(key, '\\.jpe?g$')"
        return
    try:
        regex = ts.translate_regex(pattern.name)
    except ts.UnsupportedRegex as error:
        yield f"{name}: the pattern {shown(pattern.name)} {error}"
        return
    if regex.dollar and name in ("regexp_extract", "regexp_replace"):
        yield (
            f"{name}: '$' in the pattern {shown(pattern.name)} is not supported here (Athena's $ also "
            "matches before a final newline); use \\z for the end of the key"
        )
    if name in ("regexp_count", "regexp_replace") and regex.matches_empty():
        yield (
            f"{name}: the pattern {shown(pattern.name)} can match the empty string, which the two engines "
            "count and replace differently; make it match at least one character (+ instead of *)"
        )
    if name == "regexp_extract":
        group = node.args.get("group")
        number = int(group.name) if isinstance(group, exp.Literal) and _is_integer(group) else None
        if group is not None and number is None:
            yield "regexp_extract: the group must be an integer literal, e.g. regexp_extract(key, '(\\d+)/', 1)"
        elif number is not None and number > regex.groups:
            yield f"regexp_extract: the pattern has {regex.groups} group(s); group {number} does not exist"
        elif number and (regex.alternation or number in regex.optional_groups):
            yield (
                f"regexp_extract: group {number} of {shown(pattern.name)} may not take part in a match "
                "(it is optional or the pattern has '|'): Athena gives NULL there, the local preview ''; "
                "extract a group that always matches"
            )
    if name == "regexp_replace":
        replacement = node.args.get("replacement")
        if replacement is not None and not (
            isinstance(replacement, exp.Literal)
            and replacement.is_string
            and not set(replacement.name) & {"$", "\\"}
        ):
            yield (
                "regexp_replace: the replacement must be plain text (no $1 group references or backslashes)"
            )


def _type_problems(node: exp.DataType) -> Iterator[str]:
    nested = [child for child in node.expressions if not isinstance(child, exp.DataTypeParam)]
    if node.this not in _CAST_TYPES or nested or node.args.get("nested") or node.args.get("kind"):
        yield (
            f"type {_snippet(node)} is not allowed; cast to one of: BOOLEAN, TINYINT, SMALLINT, INTEGER, "
            "BIGINT, REAL, DOUBLE, DECIMAL, VARCHAR, CHAR, VARBINARY, DATE, TIMESTAMP"
        )
    elif node.this == exp.DataType.Type.DECIMAL:
        numbers = [
            int(param.this.name)
            for param in node.expressions
            if isinstance(param.this, exp.Literal) and _is_integer(param.this)
        ]
        # Trino's decimals have a precision of 1 to 38 and a scale of 0 to the precision (Trino
        # documentation, "Data types"); anything else fails on Athena, so it is refused here.
        if (numbers and not 1 <= numbers[0] <= MAX_DECIMAL_PRECISION) or (
            len(numbers) == 2 and numbers[1] > numbers[0]
        ):
            yield (
                f"type {_snippet(node)} is out of range; DECIMAL(precision, scale) takes a precision of 1 to "
                f"{MAX_DECIMAL_PRECISION} and a scale of 0 to the precision, e.g. DECIMAL(20, 0)"
            )


def _is_integer(literal: exp.Literal) -> bool:
    return not literal.is_string and literal.name.isascii() and literal.name.isdigit()


def _column_problems(column: exp.Column, columns: frozenset[str]) -> Iterator[str]:
    name = column.name.lower()
    if column.table or set(column.args) - {"this"}:
        yield f"qualified column {_snippet(column)} is not allowed; write {shown(column.name)} alone"
    elif name == PARTITION_COLUMN:
        yield f"column {PARTITION_COLUMN!r} is the inventory partition; choose it with inventory.date instead"
    elif name not in columns and name in INVENTORY_COLUMNS and "sequence_number" in columns:
        # The columns are the S3 Metadata live inventory table's (batchpipe_core.metadata_table).
        yield (
            f"column {name!r} is an S3 Inventory column, not one of the S3 Metadata live inventory table's; "
            f"use one of {', '.join(sorted(columns))}"
        )
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
        yield (
            f"unknown column {shown(column.name)}; {hint}inventory columns are: {', '.join(sorted(columns))}"
        )


def _function_name(node: exp.Expression) -> str | None:
    """The Trino name of a function node (how Athena would know it), lower case."""
    if not isinstance(node, exp.Func) or isinstance(node, exp.Connector):
        return None
    if isinstance(node, exp.Anonymous):
        # A quoted or odd name is never one of the allowed ones, whatever it lower-cases to.
        name = node.this if isinstance(node.this, str) else ""
        return name.lower() if _FUNCTION_NAME.fullmatch(name.lower()) else name
    match = re.match(r"[A-Za-z_][A-Za-z0-9_]*", node.sql(dialect=DIALECT))
    return match.group(0).lower() if match else type(node).__name__.lower()


def _kind(node: exp.Expression) -> str:
    return type(node).__name__


def _snippet(node: exp.Expression) -> str:
    return shown(node.sql(dialect=DIALECT))
