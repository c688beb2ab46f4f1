"""Athena SQL in, DuckDB SQL out: statement forms, table references, partition predicates, functions.

sqlglot parses Athena's (Trino's) dialect and writes DuckDB's. Where the two engines' functions
differ in meaning, the DuckDB side gets a macro with Athena's semantics (``ATHENA_MACROS``), and the
transpiler points Athena's function at it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from . import trino
from .errors import AthenaQueryError, not_supported, syntax_error

READ = "athena"

# Athena's url_encode/url_decode are Java's URLEncoder/URLDecoder: space <-> '+', bare [A-Za-z0-9-_.*],
# everything else %XX of UTF-8 (upper case); a malformed escape fails the query. DuckDB's url_encode
# writes %20 and %2A and leaves '~' bare, and its url_decode keeps '+': fixed up here. The replaces
# are safe on url_encode output, where every '%' starts a %XX triplet.
ATHENA_MACROS = {
    **trino.MACROS,
    "athena_url_encode": (
        "CREATE MACRO athena_url_encode(s) AS "
        "replace(replace(replace(url_encode(s), '%20', '+'), '%2A', '*'), '~', '%7E')"
    ),
    "athena_url_decode": (
        "CREATE MACRO athena_url_decode(s) AS CASE "
        "WHEN athena_ok(regexp_matches(s, '%([^0-9A-Fa-f]|[0-9A-Fa-f][^0-9A-Fa-f]|[0-9A-Fa-f]?$)'), "
        "'INVALID_FUNCTION_ARGUMENT: URLDecoder: Illegal hex characters in escape (%) pattern: ' || s) "
        "THEN url_decode(replace(s, '+', '%20')) END"
    ),
}
_FUNCTION_MAP = {"url_encode": "athena_url_encode", "url_decode": "athena_url_decode"}


@dataclass
class Statement:
    kind: str  # SELECT | UNLOAD
    query: exp.Expression
    unload_location: str | None = None
    unload_properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TableRef:
    database: str
    name: str
    catalog: str = "awsdatacatalog"


def parse_statement(sql: str) -> Statement:
    text = sql.strip().rstrip(";").strip()
    unload = re.match(r"(?is)^UNLOAD\b", text)
    if unload:
        return _parse_unload(text, unload.end())
    return Statement(kind="SELECT", query=_parse_query(text))


def _parse_query(text: str, line_offset: int = 0) -> exp.Expression:
    try:
        statements = [s for s in sqlglot.parse(text, read=READ) if s is not None]
    except ParseError as error:
        detail = error.errors[0] if error.errors else {}
        raise syntax_error(
            str(detail.get("description", error)), (detail.get("line") or 1) + line_offset, detail.get("col")
        ) from error
    except TokenError as error:
        raise syntax_error(str(error)) from error
    if len(statements) != 1:
        raise syntax_error("Only one statement can be run at a time")
    (statement,) = statements
    if not isinstance(statement, exp.Query):
        raise not_supported(
            f"the local Athena stand-in runs SELECT and UNLOAD statements, not {statement.key.upper()}"
        )
    _refuse_what_trino_refuses(statement)
    for table in statement.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            # Trino reads a table function only inside TABLE(...), so `FROM read_text('/etc/passwd')`
            # is a syntax error on Athena; here it would be one of DuckDB's file readers.
            raise syntax_error(f"mismatched input '(' after {table.this.sql(dialect=READ)[:40]!r}")
    return statement


# Trino's largest decimal precision (Trino documentation, "Data types": DECIMAL precision up to 38).
MAX_DECIMAL_PRECISION = 38
# Functions sqlglot reads that Athena does not run (a query naming one fails there).
NOT_ON_ATHENA = frozenset({"at_timezone"})


def _refuse_what_trino_refuses(statement: exp.Expression) -> None:
    """What sqlglot parses and DuckDB would run, but Athena refuses: refused here too, as Athena does.

    ``x IN ()`` is a syntax error in Trino's grammar; DECIMAL(39, 0) is out of its range;
    at_timezone is not one of Athena's functions.
    """
    for node in statement.walk():
        if isinstance(node, exp.In) and not node.expressions and not node.args.get("query"):
            raise syntax_error("mismatched input ')': IN needs at least one value")
        if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.DECIMAL:
            params = [p.this for p in node.expressions if isinstance(p, exp.DataTypeParam)]
            numbers = [int(p.name) for p in params if isinstance(p, exp.Literal) and p.name.isdigit()]
            if numbers and not 1 <= numbers[0] <= MAX_DECIMAL_PRECISION:
                raise AthenaQueryError(
                    f"TYPE_MISMATCH: DECIMAL precision must be in range [1, {MAX_DECIMAL_PRECISION}]: {numbers[0]}",
                    1006,
                )
            if len(numbers) == 2 and numbers[1] > numbers[0]:
                raise AthenaQueryError(
                    f"TYPE_MISMATCH: DECIMAL scale must be in range [0, precision]: {numbers[1]}", 1006
                )
        if isinstance(node, exp.Func):
            name = str(node.this).lower() if isinstance(node, exp.Anonymous) else node.sql_name().lower()
            if name in NOT_ON_ATHENA:
                raise AthenaQueryError(f"FUNCTION_NOT_FOUND: Function '{name}' not registered", 1303)


def _parse_unload(text: str, start: int) -> Statement:
    """``UNLOAD (<query>) TO 's3://...' WITH (name = 'value', ...)``; sqlglot reads UNLOAD as an opaque
    command, so the wrapper is read from the token stream and only the inner query is parsed."""
    rest = text[start:]
    try:
        tokens = Dialect.get_or_raise(READ).tokenize(rest)
    except TokenError as error:
        raise syntax_error(str(error)) from error

    def expect(index: int, *types: TokenType, what: str) -> None:
        if index >= len(tokens) or tokens[index].token_type not in types:
            got = tokens[index] if index < len(tokens) else None
            raise syntax_error(
                f"UNLOAD: expected {what}" + (f", got '{got.text}'" if got else " at end of statement"),
                got.line if got else None,
                got.col if got else None,
            )

    expect(0, TokenType.L_PAREN, what="'(' and a SELECT query")
    depth, close = 0, None
    for index, token in enumerate(tokens):
        depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(token.token_type, 0)
        if depth == 0:
            close = index
            break
    if close is None:
        raise syntax_error("UNLOAD: unbalanced parentheses around the query")
    query = _parse_query(rest[tokens[0].end + 1 : tokens[close].start])
    index = close + 1
    if index >= len(tokens) or tokens[index].text.upper() != "TO":
        expect(len(tokens), TokenType.VAR, what="TO 's3://bucket/prefix/'")
    expect(index + 1, TokenType.STRING, what="the destination as a string literal")
    location = tokens[index + 1].text
    properties: dict[str, str] = {}
    index += 2
    if index < len(tokens):
        expect(index, TokenType.WITH, what="WITH (format = '...')")
        expect(index + 1, TokenType.L_PAREN, what="'('")
        index += 2
        while index < len(tokens) and tokens[index].token_type != TokenType.R_PAREN:
            name = tokens[index].text.lower()
            expect(index + 1, TokenType.EQ, what="'='")
            if index + 2 < len(tokens) and tokens[index + 2].token_type == TokenType.ARRAY:
                raise not_supported(
                    f"UNLOAD property {name} = ARRAY[...] (partitioned UNLOAD) in the local stand-in"
                )
            expect(index + 2, TokenType.STRING, what=f"a string value for {name}")
            properties[name] = tokens[index + 2].text
            index += 3
            if index < len(tokens) and tokens[index].token_type == TokenType.COMMA:
                index += 1
        expect(index, TokenType.R_PAREN, what="')'")
        if index + 1 != len(tokens):
            extra = tokens[index + 1]
            raise syntax_error(f"extraneous input '{extra.text}'", extra.line, extra.col)
    if "format" not in properties:
        raise AthenaQueryError("UNLOAD requires the format property, e.g. WITH (format = 'TEXTFILE')", 1101)
    return Statement(kind="UNLOAD", query=query, unload_location=location, unload_properties=properties)


# ------------------------------------------------------------------------------------------ tables
def _cte_names(query: exp.Expression) -> set[str]:
    return {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}


def table_references(
    query: exp.Expression, default_database: str, default_catalog: str = "awsdatacatalog"
) -> list[tuple[exp.Table, TableRef]]:
    """Every catalog table reference in the query (CTE names excluded), resolved like Athena: lower
    case, the execution context's catalog and database when the name has none."""
    ctes = _cte_names(query)
    refs = []
    for table in query.find_all(exp.Table):
        if not table.name or (not table.db and table.name.lower() in ctes):
            continue
        refs.append(
            (
                table,
                TableRef(
                    database=(table.db or default_database).lower(),
                    name=table.name.lower(),
                    catalog=(table.catalog or default_catalog).lower(),
                ),
            )
        )
    return refs


def _conjuncts(node: exp.Expression | None) -> list[exp.Expression]:
    if node is None:
        return []
    if isinstance(node, exp.And):
        return _conjuncts(node.left) + _conjuncts(node.right)
    if isinstance(node, exp.Paren):
        return _conjuncts(node.this)
    return [node]


def _literal_values(predicate: exp.Expression, column: str, qualifiers: set[str]) -> set[str] | None:
    def is_column(node: exp.Expression) -> bool:
        return (
            isinstance(node, exp.Column)
            and node.name.lower() == column
            and (not node.table or node.table.lower() in qualifiers)
        )

    def literal(node: exp.Expression) -> str | None:
        return node.this if isinstance(node, exp.Literal) and node.is_string else None

    if isinstance(predicate, exp.EQ):
        for left, right in ((predicate.left, predicate.right), (predicate.right, predicate.left)):
            if is_column(left) and literal(right) is not None:
                return {literal(right)}  # type: ignore[arg-type]
    if isinstance(predicate, exp.In) and is_column(predicate.this) and predicate.expressions:
        values = [literal(e) for e in predicate.expressions]
        if all(v is not None for v in values):
            return set(values)  # type: ignore[arg-type]
    return None


def partition_values(query: exp.Expression, table: exp.Table, column: str) -> set[str] | None:
    """The values of partition ``column`` this reference to ``table`` can see, when its SELECT's WHERE
    pins them with ``=`` / ``IN`` literals in a top-level AND; None means every partition.
    This only decides which files are read (and counted as scanned); the predicate still filters."""
    select = table.find_ancestor(exp.Select)
    if select is None:
        return None
    qualifiers = {table.name.lower(), table.alias_or_name.lower()}
    allowed: set[str] | None = None
    where = select.args.get("where")
    for predicate in _conjuncts(where.this if where is not None else None):
        values = _literal_values(predicate, column.lower(), qualifiers)
        if values is not None:
            allowed = values if allowed is None else allowed & values
    return allowed


# ------------------------------------------------------------------------------------------ transpile
def to_duckdb(
    query: exp.Expression, views: dict[int, str], column_kinds: Mapping[str, str] | None = None
) -> str:
    """DuckDB SQL for ``query`` with each catalog table reference (by ``id()`` of its node) replaced by
    its loaded view, keeping the original name as alias so qualified columns still resolve, and
    Athena's functions pointed at their Trino semantics (``trino.apply``; ``column_kinds`` maps the
    loaded columns to their kinds, which decide how a cast converts)."""
    tree = query.copy()
    originals = list(query.find_all(exp.Table))
    copies = list(tree.find_all(exp.Table))
    for original, copy in zip(originals, copies, strict=True):
        view = views.get(id(original))
        if view is not None:
            alias = copy.alias or copy.name
            copy.replace(exp.alias_(exp.to_table(view), alias, table=True))
    trino.apply(tree, column_kinds or {})
    for function in list(tree.find_all(exp.Anonymous)):
        target = _FUNCTION_MAP.get(str(function.this).lower())
        if target:
            function.set("this", target)
    return tree.sql(dialect="duckdb")


def output_names(query: exp.Expression, engine_names: list[str]) -> list[str]:
    """Athena's result column names: the alias, the column name, or ``_colN`` for an expression."""
    if not isinstance(query, exp.Select) or any(
        isinstance(e, exp.Star) or e.is_star for e in query.expressions
    ):
        return engine_names
    if len(query.expressions) != len(engine_names):
        return engine_names
    names = []
    for index, projection in enumerate(query.expressions):
        if isinstance(projection, exp.Alias):
            names.append(projection.alias)
        elif isinstance(projection, exp.Column):
            names.append(projection.name)
        else:
            names.append(f"_col{index}")
    return names
