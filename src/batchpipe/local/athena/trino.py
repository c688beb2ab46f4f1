"""Trino's function semantics in DuckDB: the macros and the tree rewrites of the transpile step.

sqlglot maps Athena's function names onto DuckDB's, but several DuckDB functions answer differently
on edge inputs (a start of 0, an empty delimiter, an index past the end, a NULL in an array, a
double cast to an integer, Java's whitespace, Java's regular expressions). Each rewrite here points
such a call at a macro with Trino's answer; what cannot be emulated is refused before it runs
(``batchpipe_core.where`` for ``filter.where``). References: Trino documentation, "String functions
and operators", "Regular expression functions", "Array functions and operators", "Date and time
functions and operators", "Mathematical functions and operators", "Conversion functions", and, where
the documentation is silent, Trino's StringFunctions, VarcharOperators and ArrayFunctions sources.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlglot import exp

from batchpipe_core import trino_semantics as ts

from .errors import not_supported

# Fails with ``msg`` (a conversion error DuckDB's TRY catches, unlike error(), which TRY refuses as
# volatile); otherwise true. The engine maps the message's "CODE: text" back to Athena's error.
_OK = "CREATE MACRO athena_ok(bad, msg) AS (CASE WHEN bad THEN CAST(msg AS INTEGER) ELSE 0 END) = 0"
_INVALID = "'INVALID_FUNCTION_ARGUMENT: "
_WS = "[\\t\\n\\x0B\\f\\r\\x1C-\\x20\\x{1680}\\x{2000}-\\x{2006}\\x{2008}-\\x{200A}\\x{2028}\\x{2029}\\x{205F}\\x{3000}]"
_INTEGER_TYPES = {"bigint": "BIGINT", "integer": "INTEGER", "smallint": "SMALLINT", "tinyint": "TINYINT"}
_INTEGER_NAMES = {"bigint": "BIGINT", "integer": "INT", "smallint": "SMALLINT", "tinyint": "TINYINT"}

MACROS: dict[str, str] = {
    "athena_ok": _OK,
    # Character.toUpperCase per code point: 'ß' stays 'ß' (DuckDB writes U+1E9E).
    "athena_upper": (
        "CREATE MACRO athena_upper(s) AS "
        "array_to_string(list_transform(string_split(s, 'ß'), lambda p: upper(p)), 'ß')"
    ),
    # substr: start 0 or beyond either end gives ''; a negative start counts from the end; a length
    # of 0 or less gives ''.
    # (The start is clamped first, so no branch overflows on a start near 2^63.)
    "athena_substr2": (
        "CREATE MACRO athena_substr2(s, st) AS CASE WHEN s IS NULL OR st IS NULL THEN NULL "
        "WHEN st = 0 OR st > length(s) OR st < -length(s) THEN '' "
        "WHEN st > 0 THEN substring(s, least(st, length(s) + 1)) "
        "ELSE substring(s, length(s) + least(greatest(st, -length(s)), 0) + 1) END"
    ),
    "athena_substr3": (
        "CREATE MACRO athena_substr3(s, st, n) AS CASE WHEN s IS NULL OR st IS NULL OR n IS NULL THEN NULL "
        "WHEN st = 0 OR n <= 0 OR st > length(s) OR st < -length(s) THEN '' "
        "WHEN st > 0 THEN substring(s, least(st, length(s) + 1), greatest(least(n, length(s)), 0)) "
        "ELSE substring(s, length(s) + least(greatest(st, -length(s)), 0) + 1, greatest(least(n, length(s)), 0)) END"
    ),
    # strpos(s, sub, n): the n-th (overlapping) occurrence, from the end when n < 0; 0 when none.
    "athena_strpos3": (
        "CREATE MACRO athena_strpos3(s, sub, n) AS CASE "
        f"WHEN athena_ok(n = 0, {_INVALID}''instance'' must be a positive or negative number.') THEN "
        "CASE WHEN sub = '' THEN 1 ELSE coalesce(list_filter(range(1, length(s) + 1), "
        "lambda i: substring(s, i, length(sub)) = sub)[n], 0) END END"
    ),
    # replace with an empty search inserts the replacement before every code point and at the end.
    "athena_replace": (
        "CREATE MACRO athena_replace(s, f, r) AS CASE WHEN f = '' THEN "
        "r || array_to_string(string_split(s, ''), r) || CASE WHEN s = '' THEN '' ELSE r END "
        "ELSE replace(s, f, r) END"
    ),
    # reverse reverses code points (DuckDB's keeps grapheme clusters: a flag or an accent stays whole).
    "athena_reverse": "CREATE MACRO athena_reverse(s) AS array_to_string(list_reverse(string_split(s, '')), '')",
    # trim/ltrim/rtrim remove java.lang.Character.isWhitespace code points, not only spaces.
    "athena_ltrim": f"CREATE MACRO athena_ltrim(s) AS regexp_replace(s, '^{_WS}+', '')",
    "athena_rtrim": f"CREATE MACRO athena_rtrim(s) AS regexp_replace(s, '{_WS}+$', '')",
    "athena_trim": "CREATE MACRO athena_trim(s) AS athena_rtrim(athena_ltrim(s))",
    "athena_split": (
        "CREATE MACRO athena_split(s, d) AS CASE WHEN s IS NULL OR d IS NULL THEN NULL "
        f"WHEN athena_ok(d = '', {_INVALID}The delimiter may not be the empty string') "
        "THEN string_split(s, d) END"
    ),
    "athena_split3": (
        "CREATE MACRO athena_split3(s, d, n) AS CASE WHEN s IS NULL OR d IS NULL OR n IS NULL THEN NULL "
        f"WHEN athena_ok(n <= 0, {_INVALID}Limit must be positive') "
        f"AND athena_ok(n > 2147483647, {_INVALID}Limit is too large') "
        f"AND athena_ok(d = '', {_INVALID}The delimiter may not be the empty string') THEN "
        "CASE WHEN len(string_split(s, d)) <= n THEN string_split(s, d) "
        "ELSE list_append(string_split(s, d)[1:n - 1], array_to_string(string_split(s, d)[n:], d)) END END"
    ),
    # split_part: index 0 or less fails; past the last field is NULL; an empty delimiter splits
    # into code points.
    "athena_split_part": (
        "CREATE MACRO athena_split_part(s, d, i) AS CASE WHEN s IS NULL OR d IS NULL OR i IS NULL THEN NULL "
        f"WHEN athena_ok(i <= 0, {_INVALID}Index must be greater than zero') THEN "
        "CASE WHEN d = '' THEN CASE WHEN i <= length(s) THEN substring(s, i, 1) END "
        "ELSE string_split(s, d)[i] END END"
    ),
    # element_at: 0 fails, past either end is NULL, negative counts from the end.
    "athena_element_at": (
        "CREATE MACRO athena_element_at(a, i) AS CASE WHEN a IS NULL OR i IS NULL THEN NULL "
        f"WHEN athena_ok(i = 0, {_INVALID}SQL array indices start at 1') THEN a[i] END"
    ),
    # The subscript operator fails on 0, on a negative index and past the end.
    "athena_subscript": (
        "CREATE MACRO athena_subscript(a, i) AS CASE WHEN a IS NULL OR i IS NULL THEN NULL "
        f"WHEN athena_ok(i = 0, {_INVALID}SQL array indices start at 1') "
        f"AND athena_ok(i < 0, {_INVALID}Array subscript is negative: ' || i) "
        f"AND athena_ok(i > len(a), {_INVALID}Array subscript must be less than or equal to array length: ' "
        "|| i || ' > ' || len(a)) THEN a[i] END"
    ),
    # contains: NULL when the element is not found but the array holds a NULL.
    "athena_contains": (
        "CREATE MACRO athena_contains(a, x) AS CASE WHEN a IS NULL OR x IS NULL THEN NULL "
        "WHEN list_contains(a, x) THEN true "
        "WHEN list_contains(list_transform(a, lambda e: e IS NULL), true) THEN NULL ELSE false END"
    ),
    # regexp_extract is NULL when nothing matches (DuckDB gives '').
    "athena_regexp_extract": (
        "CREATE MACRO athena_regexp_extract(s, p, g) AS "
        "CASE WHEN regexp_matches(s, p) THEN regexp_extract(s, p, g) END"
    ),
    # CAST(varchar AS BOOLEAN): 't', 'true', '1', 'f', 'false', '0' (ASCII case-insensitive), else fails.
    "athena_to_boolean": (
        "CREATE MACRO athena_to_boolean(s) AS CASE "
        "WHEN upper(s) IN ('T', 'TRUE', '1') THEN true WHEN upper(s) IN ('F', 'FALSE', '0') THEN false "
        "WHEN athena_ok(s IS NOT NULL, 'INVALID_CAST_ARGUMENT: Cannot cast ''' || s || ''' to BOOLEAN') "
        "THEN NULL END"
    ),
    # CAST(varchar AS <integer>): Java's String.trim, then an optional sign and ASCII digits.
    **{
        f"athena_to_{name}": (
            f"CREATE MACRO athena_to_{name}(s) AS CASE WHEN s IS NULL THEN NULL WHEN athena_ok("
            "NOT regexp_full_match(regexp_replace(s, '^[\\x00-\\x20]+|[\\x00-\\x20]+$', '', 'g'), '[+-]?[0-9]+'), "
            f"'INVALID_CAST_ARGUMENT: Cannot cast ''' || s || ''' to {_INTEGER_NAMES[name]}') THEN "
            f"CAST(regexp_replace(s, '^[\\x00-\\x20]+|[\\x00-\\x20]+$', '', 'g') AS {duck}) END"
        )
        for name, duck in _INTEGER_TYPES.items()
    },
}


def _call(name: str, *args: exp.Expression) -> exp.Anonymous:
    return exp.Anonymous(this=name, expressions=list(args))


def _trino_index(bracket: exp.Bracket) -> exp.Expression:
    """The 1-based index as written in Athena's SQL (sqlglot shifts a literal subscript to 0-based)."""
    index = bracket.expressions[0]
    if bracket.args.get("safe") or bracket.args.get("offset"):
        return index
    negative = isinstance(index, exp.Neg) and isinstance(index.this, exp.Literal)
    literal = index.this if negative else index
    if isinstance(literal, exp.Literal) and not literal.is_string and literal.name.isdigit():
        value = -int(literal.name) if negative else int(literal.name)
        return exp.Literal.number(value + 1)
    return index


def _regex(node: exp.Expression) -> ts.Regex:
    pattern = node.args.get("expression")
    if not (isinstance(pattern, exp.Literal) and pattern.is_string):
        raise not_supported("a regular expression that is not a string literal in the local stand-in")
    try:
        return ts.translate_regex(pattern.name)
    except ts.UnsupportedRegex as error:
        raise not_supported(f"the regular expression {pattern.name[:60]!r} {error}") from None


def _with_pattern(node: exp.Expression, regex: ts.Regex) -> None:
    node.set("expression", exp.Literal.string(regex.re2))


def apply(tree: exp.Expression, column_kinds: Mapping[str, str]) -> None:
    """Rewrites ``tree`` (a copy, in Athena's dialect) in place so DuckDB computes Trino's answers."""
    nodes = list(tree.walk(bfs=False))
    # A subquery's column computed as `CAST(nullif(size, '') AS bigint) AS size` (a CSV
    # inventory's typed view) has the alias's kind, not the raw table column's.
    known = dict(column_kinds)
    for alias in tree.find_all(exp.Alias):
        kind = ts.value_kind(alias.this, column_kinds)
        if kind:
            known[alias.alias.lower()] = kind
    kinds = {
        id(node): ts.value_kind(node.this, known)
        for node in nodes
        if isinstance(node, exp.Cast | exp.Floor | exp.Ceil)
    }
    for node in reversed(nodes):  # children before their parents
        replacement = _rewrite(node, kinds.get(id(node)))
        if replacement is not None and replacement is not node:
            node.replace(replacement)


def _rewrite(node: exp.Expression, source_kind: str | None) -> exp.Expression | None:
    this = node.args.get("this")
    if isinstance(node, exp.Upper):
        return _call("athena_upper", this)
    if isinstance(node, exp.Reverse) and not isinstance(this, exp.Array):
        return _call("athena_reverse", this)
    if isinstance(node, exp.Substring):
        length = node.args.get("length")
        start = node.args.get("start")
        return (
            _call("athena_substr3", this, start, length) if length else _call("athena_substr2", this, start)
        )
    if isinstance(node, exp.StrPosition) and node.args.get("occurrence") is not None:
        return _call("athena_strpos3", this, node.args["substr"], node.args["occurrence"])
    if isinstance(node, exp.Replace):
        return _call(
            "athena_replace", this, node.expression, node.args.get("replacement") or exp.Literal.string("")
        )
    if isinstance(node, exp.Trim) and node.args.get("expression") is None:
        position = str(node.args.get("position") or "").upper()
        name = {"LEADING": "athena_ltrim", "TRAILING": "athena_rtrim"}.get(position, "athena_trim")
        return _call(name, this)
    if isinstance(node, exp.Split):
        limit = node.args.get("limit")
        return (
            _call("athena_split3", this, node.expression, limit)
            if limit
            else _call("athena_split", this, node.expression)
        )
    if isinstance(node, exp.SplitPart):
        return _call("athena_split_part", this, node.args["delimiter"], node.args["part_index"])
    if isinstance(node, exp.Bracket) and len(node.expressions) == 1 and node.expressions[0].is_string:
        # A map looked up by a string key (element_at(object_tags, 'k'): the S3 Metadata table's maps):
        # DuckDB's m['k'] is the value or NULL, as Trino's element_at on a map (the arrays' rules are
        # about integer indexes).
        return None
    if isinstance(node, exp.Bracket) and len(node.expressions) == 1:
        name = "athena_element_at" if node.args.get("safe") else "athena_subscript"
        return _call(name, this, _trino_index(node))
    if isinstance(node, exp.ArrayContains):
        return _call("athena_contains", this, node.expression)
    if isinstance(node, exp.Mod):
        # Java's Long.MIN_VALUE % -1 is 0 (Trino's modulus); DuckDB's fails as an overflow. x % -1
        # equals x % 1 for every type (the sign follows the dividend).
        minus_one = exp.EQ(this=node.expression.copy(), expression=exp.Literal.number(-1))
        one = exp.Mod(this=this.copy(), expression=exp.Literal.number(1))
        return exp.Case(ifs=[exp.If(this=minus_one, true=one)], default=node.copy())
    if isinstance(node, exp.DateDiff):
        # Trino counts whole elapsed units (Joda's getDifferenceAsLong), as DuckDB's date_sub does;
        # DuckDB's date_diff counts boundaries crossed.
        unit = exp.Literal.string(str(node.args.get("unit") or "day").lower())
        return _call("date_sub", unit, node.expression, this)
    if isinstance(node, exp.Floor | exp.Ceil) and source_kind == ts.INT and not node.args.get("decimals"):
        return exp.Paren(this=this)  # floor/ceil of an integer is the integer (DuckDB makes a double)
    if isinstance(node, exp.Cast):
        return _cast(node, source_kind)
    if isinstance(node, exp.RegexpLike | exp.RegexpCount):
        _with_pattern(node, _regex(node))
        return None
    if isinstance(node, exp.RegexpExtract):
        regex = _regex(node)
        group = node.args.get("group") or exp.Literal.number(0)
        return _call("athena_regexp_extract", this, exp.Literal.string(regex.re2), group)
    if isinstance(node, exp.RegexpReplace):
        regex = _regex(node)
        replacement = node.args.get("replacement")
        if replacement is not None and not (
            isinstance(replacement, exp.Literal) and not set(replacement.name) & {"$", "\\"}
        ):
            raise not_supported("regexp_replace with group references ($1) or backslashes in the replacement")
        _with_pattern(node, regex)
        return None
    return None


def _cast(node: exp.Cast, source_kind: str | None) -> exp.Expression | None:
    """Double to integer rounds half away from zero (DuckDB: half to even); varchar to an integer or
    boolean reads the text as Java does (Trino's VarcharOperators)."""
    target = node.to.sql(dialect="trino").lower()
    safe = isinstance(node, exp.TryCast)
    converted: exp.Expression | None = None
    if target in _INTEGER_TYPES and source_kind == ts.DOUBLE:
        converted = exp.Cast(this=exp.Round(this=node.this), to=node.to.copy())
    elif target in _INTEGER_TYPES and source_kind == ts.VARCHAR:
        converted = _call(f"athena_to_{target}", node.this)
    elif target == "boolean" and source_kind == ts.VARCHAR:
        converted = _call("athena_to_boolean", node.this)
    if converted is None:
        return None
    return exp.Try(this=converted) if safe else converted
