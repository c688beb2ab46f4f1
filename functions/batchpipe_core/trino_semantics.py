"""What a ``filter.where`` may ask of Athena's (Trino's) functions, so the local preview computes the same.

The local Athena runs the SQL in DuckDB. Each allowed function either behaves as Trino documents it in
DuckDB, is translated to Trino's semantics by the local engine (``batchpipe.local.athena.dialect``),
or is refused here with what to use instead (docs/FILTERS.md lists each with its Trino reference).
Three things are shared by the validator and the local engine and live here:

* regular expressions: Trino uses Java syntax (Trino documentation, "Regular expression functions"),
  DuckDB uses RE2. A pattern is accepted only within a subset that means the same in both, and
  :func:`translate_regex` writes that subset for RE2;
* value kinds (integer, varchar, timestamp ...) of an expression, which decide how a cast behaves;
* the casts whose result is the same on both engines (or that the local engine translates).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from sqlglot import exp

# java.lang.Character.isWhitespace: what Trino's trim/ltrim/rtrim remove (airlift SliceUtf8's
# whitespace table is built from it). Not U+00A0, U+2007, U+202F (no-break spaces).
JAVA_WHITESPACE = "".join(
    chr(c)
    for c in (
        *range(0x09, 0x0E), *range(0x1C, 0x21), 0x1680, *range(0x2000, 0x2007), *range(0x2008, 0x200B),
        0x2028, 0x2029, 0x205F, 0x3000,
    )
)  # fmt: skip
# java.lang.String.trim, which Trino's varchar-to-integer casts apply first: every char <= U+0020.
JAVA_STRING_TRIM = "".join(chr(c) for c in range(0x21))

REGEX_FUNCTIONS = frozenset({"regexp_like", "regexp_extract", "regexp_replace", "regexp_count"})
# Java's \s (without UNICODE_CHARACTER_CLASS): [ \t\n\x0B\f\r]. RE2's \s leaves out \x0B.
_JAVA_SPACE_MEMBERS = r"\t\n\x0B\f\r "
_REPEAT = re.compile(r"\{(\d+)(,(\d*))?\}")
_NAMED_GROUP = re.compile(r"\(\?<([A-Za-z][A-Za-z0-9]*)>")
RE2_MAX_REPEAT = 1000


class UnsupportedRegex(ValueError):
    """A Java pattern outside the subset both engines read alike; the message says what to write."""


@dataclass
class Regex:
    re2: str  # the pattern as RE2 (DuckDB) reads it with Java's meaning
    python: str  # the same for Python's re, to check it and whether it can match ''
    groups: int = 0
    optional_groups: set[int] = field(default_factory=set)  # may not take part in a match
    alternation: bool = False
    dollar: bool = False

    def matches_empty(self) -> bool:
        return re.search(self.python, "") is not None


def translate_regex(pattern: str) -> Regex:
    """``pattern`` (Java syntax, as Athena reads it) for RE2 and Python, or UnsupportedRegex.

    The subset: literals, escaped punctuation, ``.``, ``^``, ``$``, classes ``[...]`` with ranges,
    ``\\d \\D \\w \\W \\s \\S`` (ASCII, as Java's defaults), ``\\t \\n \\r \\f \\a \\e \\xhh \\x{h..}
    \\uhhhh``, ``\\Q...\\E``, ``\\A``, ``\\z``, groups ``(...)``, ``(?:...)``, ``(?<name>...)``,
    alternation and greedy or lazy quantifiers up to 1000.
    """
    out = _Writer()
    info = Regex(re2="", python="")
    stack: list[tuple[int | None, int]] = []  # (group number or None, groups opened before it)
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i = _escape(pattern, i, out, in_class=False)
        elif c == "[":
            i = _char_class(pattern, i, out)
        elif c == "(":
            named = _NAMED_GROUP.match(pattern, i)
            if pattern.startswith("(?:", i):
                stack.append((None, info.groups))
                out.both("(?:")
                i += 3
            elif named:
                info.groups += 1
                stack.append((info.groups, info.groups - 1))
                out.both(f"(?P<{named.group(1)}>")
                i = named.end()
            elif pattern.startswith("(?", i):
                raise UnsupportedRegex(_construct_message(pattern, i))
            else:
                info.groups += 1
                stack.append((info.groups, info.groups - 1))
                out.both("(")
                i += 1
        elif c == ")":
            if not stack:
                raise UnsupportedRegex("has an unmatched ')'; escape it as \\)")
            group, before = stack.pop()
            out.both(")")
            i += 1
            if _optional_quantifier(pattern, i):
                info.optional_groups.update(range(before + 1, info.groups + 1))
                if group is not None:
                    info.optional_groups.add(group)
        elif c in "*+?":
            out.both(c)
            i = _after_quantifier(pattern, i + 1, out)
        elif c == "{":
            repeat = _REPEAT.match(pattern, i)
            if not repeat:
                raise UnsupportedRegex(
                    "has a '{' that does not start a repetition {n,m}; write \\{ for a brace"
                )
            counts = [int(x) for x in (repeat.group(1), repeat.group(3)) if x]
            if max(counts) > RE2_MAX_REPEAT:
                raise UnsupportedRegex(f"repeats {max(counts)} times; the maximum is {RE2_MAX_REPEAT}")
            out.both(repeat.group(0))
            i = _after_quantifier(pattern, repeat.end(), out)
        elif c == "$":
            # Java's (and joni's) $ without MULTILINE matches at the end and before a final '\n';
            # RE2's $ only at the very end, so a key ending in a newline would differ.
            info.dollar = True
            out.re2("(?:\\n?$)")
            out.python("(?:\\n?\\Z)")
            i += 1
        elif c == "|":
            info.alternation = True
            out.both("|")
            i += 1
        else:
            out.literal(c) if c not in ".^" else out.both(c)
            i += 1
    if stack:
        raise UnsupportedRegex("has an unclosed '('")
    info.re2, info.python = out.text()
    try:
        re.compile(info.python)
    except (re.error, RecursionError, OverflowError) as error:
        raise UnsupportedRegex(f"is not a valid regular expression ({error})") from None
    return info


class _Writer:
    def __init__(self) -> None:
        self._re2: list[str] = []
        self._py: list[str] = []

    def both(self, text: str) -> None:
        self._re2.append(text)
        self._py.append(text)

    def re2(self, text: str) -> None:
        self._re2.append(text)

    def python(self, text: str) -> None:
        self._py.append(text)

    def literal(self, char: str) -> None:
        if char.isascii() and not char.isalnum() and char not in " _":
            self.both("\\" + char)
        else:
            self.code_point(ord(char))

    def code_point(self, code: int) -> None:
        char = chr(code)
        if char.isascii() and (char.isalnum() or char in " _"):
            self.both(char)
        else:
            self._re2.append(f"\\x{{{code:X}}}")
            self._py.append(f"\\U{code:08X}")

    def text(self) -> tuple[str, str]:
        return "".join(self._re2), "".join(self._py)


def _optional_quantifier(pattern: str, i: int) -> bool:
    """Whether the quantifier at ``i`` allows zero repetitions."""
    if i >= len(pattern):
        return False
    if pattern[i] in "*?":
        return True
    repeat = _REPEAT.match(pattern, i)
    return bool(repeat and int(repeat.group(1)) == 0)


def _after_quantifier(pattern: str, i: int, out: _Writer) -> int:
    """Past a quantifier: a lazy '?' is kept, a possessive '+' refused."""
    if i < len(pattern) and pattern[i] == "+":
        raise UnsupportedRegex("uses a possessive quantifier (*+, ++, ?+); RE2 has none: drop the '+'")
    if i < len(pattern) and pattern[i] == "?":
        out.both("?")
        return i + 1
    return i


def _construct_message(pattern: str, i: int) -> str:
    if re.match(r"\(\?[a-zA-Z-]*i", pattern[i:]):
        return "uses the flag (?i); compare lower(key) with a lower-case pattern instead"
    if re.match(r"\(\?(=|!|<=|<!)", pattern[i:]):
        return "uses a lookahead or lookbehind ((?=, (?!, (?<=, (?<!), which RE2 does not have"
    return f"uses {pattern[i : i + 4]!r}...: only (...), (?:...) and (?<name>...) groups are supported"


_ESCAPE_REFUSALS = {
    "b": "\\b and \\B (word boundaries): Java's follow Unicode letters, RE2's only ASCII; use a class such as [^a-z0-9]",
    "B": "\\b and \\B (word boundaries): Java's follow Unicode letters, RE2's only ASCII; use a class such as [^a-z0-9]",
    "Z": "\\Z; use $ (end, or before a final newline) or \\z (the very end)",
    "G": "\\G",
    "p": "\\p{...} classes (their names differ between Java and RE2); list the characters in [...]",
    "P": "\\P{...} classes (their names differ between Java and RE2); list the characters in [...]",
    "h": "\\h",
    "H": "\\H",
    "v": "\\v (a class of vertical whitespace in Java, one character in RE2); write [\\n\\r]",
    "V": "\\V",
    "R": "\\R",
    "X": "\\X",
    "N": "\\N",
    "k": "\\k<name> back references",
    "c": "\\c control characters; write \\xhh",
    "0": "octal escapes (\\0...); write \\xhh",
}


def _escape(pattern: str, i: int, out: _Writer, *, in_class: bool) -> int:
    if i + 1 >= len(pattern):
        raise UnsupportedRegex("ends with a lone backslash; write \\\\ for a backslash")
    c = pattern[i + 1]
    if c in "dDwW":
        out.both("\\" + c)  # ASCII in Java (no UNICODE_CHARACTER_CLASS) and in RE2
    elif c == "s":
        out.both(_JAVA_SPACE_MEMBERS if in_class else f"[{_JAVA_SPACE_MEMBERS}]")
    elif c == "S":
        if in_class:
            raise UnsupportedRegex("uses \\S inside [...]; list the characters instead")
        out.both(f"[^{_JAVA_SPACE_MEMBERS}]")
    elif c in "tnrfa":
        out.both("\\" + c)
    elif c == "e":
        out.code_point(0x1B)
    elif c == "x":
        braced = re.match(r"\\x\{([0-9A-Fa-f]{1,6})\}", pattern[i:])
        plain = re.match(r"\\x([0-9A-Fa-f]{2})", pattern[i:])
        match = braced or plain
        if not match or int(match.group(1), 16) > 0x10FFFF:
            raise UnsupportedRegex("has a malformed \\x escape; write \\xhh or \\x{hhhh}")
        out.code_point(int(match.group(1), 16))
        return i + match.end()
    elif c == "u":
        match = re.match(r"\\u([0-9A-Fa-f]{4})", pattern[i:])
        if not match or 0xD800 <= int(match.group(1), 16) <= 0xDFFF:
            raise UnsupportedRegex(
                "has a malformed or surrogate \\u escape; write \\x{hhhh} with the code point"
            )
        out.code_point(int(match.group(1), 16))
        return i + match.end()
    elif c == "Q":
        end = pattern.find("\\E", i + 2)
        quoted = pattern[i + 2 : end if end >= 0 else len(pattern)]
        for char in quoted:
            out.literal(char)
        return len(pattern) if end < 0 else end + 2
    elif c in "Az" and not in_class:
        out.re2("\\" + c)
        out.python("\\A" if c == "A" else "\\Z")  # Python's \Z is Java's and RE2's \z
    elif c in _ESCAPE_REFUSALS:
        raise UnsupportedRegex(f"uses {_ESCAPE_REFUSALS[c]}")
    elif c.isdigit():
        raise UnsupportedRegex("uses a back reference (\\1 ...), which RE2 does not have")
    elif c.isascii() and c.isalpha():
        raise UnsupportedRegex(f"uses the escape \\{c}, which is not in the supported subset")
    else:
        out.literal(c)
    return i + 2


def _char_class(pattern: str, i: int, out: _Writer) -> int:
    out.both("[")
    i += 1
    if i < len(pattern) and pattern[i] == "^":
        out.both("^")
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        raise UnsupportedRegex("has ']' first in a class; escape it as \\]")
    while i < len(pattern):
        c = pattern[i]
        if c == "]":
            out.both("]")
            return i + 1
        if c == "[":
            raise UnsupportedRegex(
                "has '[' inside a class (a union or POSIX class in Java); escape it as \\["
            )
        if pattern.startswith("&&", i):
            raise UnsupportedRegex("has '&&' inside a class (an intersection in Java); list the characters")
        if c == "\\":
            i = _escape(pattern, i, out, in_class=True)
            continue
        if c == "-":
            out.both("-")
        else:
            out.literal(c)
        i += 1
    raise UnsupportedRegex("has an unclosed '['")


# ---------------------------------------------------------------- value kinds and casts

INT, DECIMAL, DOUBLE, VARCHAR, BOOLEAN, DATE, TIMESTAMP, ARRAY, INTERVAL = (
    "integer", "decimal", "double", "varchar", "boolean", "date", "timestamp", "array", "interval",
)  # fmt: skip
_T = exp.DataType.Type
_KIND_OF_TYPE = {
    **dict.fromkeys((_T.TINYINT, _T.SMALLINT, _T.INT, _T.BIGINT), INT),
    _T.DECIMAL: DECIMAL,
    **dict.fromkeys((_T.FLOAT, _T.DOUBLE), DOUBLE),
    **dict.fromkeys((_T.VARCHAR, _T.CHAR, _T.TEXT), VARCHAR),
    _T.BOOLEAN: BOOLEAN,
    _T.DATE: DATE,
    **dict.fromkeys(
        (_T.TIMESTAMP, _T.TIMESTAMPTZ, _T.TIMESTAMP_S, _T.TIMESTAMP_MS, _T.TIMESTAMP_NS), TIMESTAMP
    ),
}
# The inventory's column kinds (inventory_layout.FIELDS kinds).
COLUMN_KINDS = {"string": VARCHAR, "bigint": INT, "boolean": BOOLEAN, "timestamp": TIMESTAMP}

_INT_RESULT = (
    exp.Length, exp.StrPosition, exp.ArraySize, exp.Year, exp.Month, exp.Day, exp.Hour, exp.DayOfWeekIso,
    exp.DateDiff, exp.RegexpCount,
)  # fmt: skip
_VARCHAR_RESULT = (
    exp.Lower, exp.Upper, exp.Substring, exp.Replace, exp.Trim, exp.Reverse, exp.SplitPart,
    exp.RegexpExtract, exp.RegexpReplace, exp.DPipe,
)  # fmt: skip
_BOOLEAN_RESULT = (exp.Predicate, exp.Connector, exp.Not, exp.RegexpLike, exp.StartsWith, exp.ArrayContains)
_FIRST_ARGUMENT = (
    exp.Abs, exp.Round, exp.Floor, exp.Ceil, exp.Greatest, exp.Least, exp.Coalesce, exp.Nullif, exp.Try,
    exp.Paren, exp.Neg,
)  # fmt: skip


def kind_of_type(data_type: exp.DataType) -> str | None:
    return _KIND_OF_TYPE.get(data_type.this)


def value_kind(node: exp.Expression, columns: Mapping[str, str]) -> str | None:
    """The kind of value ``node`` computes (INT, VARCHAR, ...), or None when it cannot be told."""
    if isinstance(node, exp.Column):
        return columns.get(node.name.lower())
    if isinstance(node, exp.Literal):
        if node.is_string:
            return VARCHAR
        text = node.name.lower()
        return INT if text.isdigit() else DOUBLE if "e" in text else DECIMAL
    if isinstance(node, exp.Boolean | exp.Is):
        return BOOLEAN
    if isinstance(node, exp.Cast):  # TryCast too
        return kind_of_type(node.to)
    if isinstance(node, exp.Interval):
        return INTERVAL
    if isinstance(node, _FIRST_ARGUMENT):
        return value_kind(node.this, columns)
    if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div | exp.Mod):
        kinds = {value_kind(node.left, columns), value_kind(node.right, columns)}
        for kind in (None, TIMESTAMP, DATE, DOUBLE, DECIMAL, INT):
            if kind in kinds:
                return kind
        return None
    if isinstance(node, _INT_RESULT):
        return INT
    if isinstance(node, _VARCHAR_RESULT):
        return VARCHAR
    if isinstance(node, _BOOLEAN_RESULT):
        return BOOLEAN
    if isinstance(node, exp.Concat):
        first = node.expressions[0] if node.expressions else None
        return ARRAY if first is not None and value_kind(first, columns) == ARRAY else VARCHAR
    if isinstance(node, exp.Anonymous) and str(node.this).lower() in ("url_encode", "url_decode"):
        return VARCHAR
    if isinstance(node, exp.Split | exp.Array):
        return ARRAY
    if isinstance(node, exp.Bracket):
        base = node.this
        if isinstance(base, exp.Split):
            return VARCHAR
        if isinstance(base, exp.Array) and base.expressions:
            return value_kind(base.expressions[0], columns)
        return None
    if isinstance(node, exp.TimeToUnix):
        return DOUBLE
    if isinstance(node, exp.Date | exp.CurrentDate):
        return DATE
    if isinstance(node, exp.CurrentTimestamp | exp.UnixToTime):
        return TIMESTAMP
    if isinstance(node, exp.DateAdd | exp.TimestampTrunc):
        return value_kind(node.this, columns)
    if isinstance(node, exp.If):
        return value_kind(node.args["true"], columns)
    if isinstance(node, exp.Case):
        ifs = node.args.get("ifs") or []
        return value_kind(ifs[0].args["true"], columns) if ifs else None
    return None


_ARTICLE = {
    INT: "an integer", DECIMAL: "a decimal", DOUBLE: "a double", VARCHAR: "a varchar", BOOLEAN: "a boolean",
    DATE: "a date", TIMESTAMP: "a timestamp", ARRAY: "an array", INTERVAL: "an interval",
}  # fmt: skip
_TRINO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TRINO_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2})( \d{2}:\d{2}:\d{2}(\.\d{1,3})?)?")
_TRINO_TIMESTAMP_UTC = re.compile(r"(\d{4}-\d{2}-\d{2})( \d{2}:\d{2}:\d{2}(\.\d{1,3})?)? UTC")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def _real_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _decimal_problem(target: exp.DataType, literal: str | None) -> str | None:
    """DECIMAL alone is DECIMAL(38, 0) on Athena but DECIMAL(18, 3) locally; a literal with more
    digits than the type holds is rounded, which the engines may do differently."""
    literals = [p.this for p in target.expressions if isinstance(p, exp.DataTypeParam)]
    if not all(isinstance(p, exp.Literal) and not p.is_string and p.name.isdigit() for p in literals):
        return None  # where.py refuses parameters that are not integer literals
    params = [int(p.name) for p in literals]
    if not params:
        return "write DECIMAL(precision, scale), e.g. CAST('1.5' AS DECIMAL(2, 1)): a bare DECIMAL differs"
    precision, scale = params[0], params[1] if len(params) > 1 else 0
    number = _PLAIN_NUMBER.fullmatch(literal) if literal else None
    if number:
        whole, _, fraction = literal.lstrip("+-").partition(".")
        if len(fraction) > scale or len(whole.lstrip("0")) > precision - scale:
            return f"{literal!r} has more digits than DECIMAL({precision}, {scale}) holds; widen the type"
    return None


def cast_problem(node: exp.Cast, columns: Mapping[str, str]) -> str | None:
    """Why a cast would compute differently in the local preview than on Athena, or None."""
    target = node.to
    source = node.this
    kind = value_kind(source, columns)
    literal = source.name if isinstance(source, exp.Literal) and source.is_string else None
    name = target.sql(dialect="trino")
    if target.this in (_T.CHAR, _T.VARBINARY) or (target.this == _T.VARCHAR and target.expressions):
        return (
            f"cast to {name} is not supported: Athena pads, truncates or encodes where the local "
            "preview does not; cast to VARCHAR (no length) or compare the text itself"
        )
    wanted = kind_of_type(target)
    if target.this == _T.DECIMAL:
        problem = _decimal_problem(target, literal)
        if problem:
            return f"{node.sql(dialect='trino')[:80]}: {problem}"
    if wanted == INT:
        ok = kind in (INT, DECIMAL, DOUBLE, BOOLEAN, VARCHAR)
    elif wanted == DOUBLE:
        ok = kind in (INT, DECIMAL, DOUBLE, BOOLEAN) or bool(literal and _PLAIN_NUMBER.fullmatch(literal))
    elif wanted == DECIMAL:
        ok = kind in (INT, DECIMAL) or bool(literal and _PLAIN_NUMBER.fullmatch(literal))
    elif wanted == VARCHAR:
        ok = kind in (VARCHAR, INT, BOOLEAN, DATE, DECIMAL)
    elif wanted == BOOLEAN:
        ok = kind in (BOOLEAN, INT, VARCHAR)
    elif wanted == DATE:
        ok = kind in (DATE, TIMESTAMP) or bool(
            literal and _TRINO_DATE.fullmatch(literal) and _real_date(literal)
        )
    elif wanted == TIMESTAMP:
        form = _TRINO_TIMESTAMP_UTC if target.this == _T.TIMESTAMPTZ else _TRINO_TIMESTAMP
        match = form.fullmatch(literal) if literal else None
        ok = kind in (DATE, TIMESTAMP) or bool(match and _real_date(match.group(1)))
    else:
        ok = False
    if ok:
        return None
    if literal is not None:
        return (
            f"{node.sql(dialect='trino')[:80]}: the text is not in the form Athena reads for {name} "
            "(e.g. DATE '2024-01-31', TIMESTAMP '2024-01-31 12:00:00', TIMESTAMP '2024-01-31 12:00:00 UTC', "
            "DECIMAL '1.5')"
        )
    return (
        f"{node.sql(dialect='trino')[:80]}: casting {_ARTICLE.get(kind, 'a value of unknown type')} to {name} is not "
        "supported, because Athena and the local preview would convert it differently; compare the value "
        "without the cast (e.g. year(last_modified_date) = 2024, a TIMESTAMP '...' literal)"
    )


_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ)
_NOT_TEXT = (INT, DECIMAL, DOUBLE, BOOLEAN, DATE, TIMESTAMP)


def coercion_problem(node: exp.Expression, columns: Mapping[str, str]) -> str | None:
    """Text compared or combined with a number, boolean, date or timestamp. Trino does not convert
    between them implicitly (Trino documentation, "Conversion functions": "Trino will not convert
    between character and numeric types"), so the query fails on Athena; DuckDB converts quietly."""
    pairs: list[tuple[exp.Expression, exp.Expression]] = []
    if isinstance(node, (*_COMPARISONS, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.DPipe)):
        pairs.append((node.left, node.right))
    elif isinstance(node, exp.Between):
        pairs += [(node.this, node.args["low"]), (node.this, node.args["high"])]
    elif isinstance(node, exp.In):
        pairs += [(node.this, value) for value in node.expressions]
    elif isinstance(node, exp.Like):
        pairs.append((node.this, node.expression))
    elif isinstance(node, exp.Concat | exp.Coalesce | exp.Greatest | exp.Least):
        values = [node.this, *node.expressions] if node.this is not None else list(node.expressions)
        pairs += [(values[0], value) for value in values[1:]]
    elif isinstance(node, exp.Nullif):
        pairs.append((node.this, node.expression))
    elif isinstance(node, exp.If) and node.args.get("false") is not None:
        pairs.append((node.args["true"], node.args["false"]))
    argument_problem = _text_argument_problem(node, columns) or _time_argument_problem(node, columns)
    if argument_problem:
        return argument_problem
    for left, right in pairs:
        kinds = (value_kind(left, columns), value_kind(right, columns))
        if VARCHAR in kinds and set(kinds) & set(_NOT_TEXT):
            other = kinds[0] if kinds[1] == VARCHAR else kinds[1]
            text = left if kinds[0] == VARCHAR else right
            hint = {
                TIMESTAMP: "write the time as TIMESTAMP '2024-01-31 00:00:00'",
                DATE: "write the date as DATE '2024-01-31'",
                BOOLEAN: "write true or false",
            }.get(other, "write the number without quotes, or CAST the text")
            return (
                f"{node.sql(dialect='trino')[:80]}: compares or combines text ({text.sql(dialect='trino')[:40]}) "
                f"with {_ARTICLE[other]}, which Athena refuses (it does not convert between them); {hint}"
            )
    return None


# Functions that take text where the inventory has numbers, booleans or times: Trino has no
# signature for them (size is not converted to varchar), so the query fails on Athena.
_TEXT_ARGUMENTS: dict[type[exp.Expression], tuple[str, ...]] = {
    exp.Lower: ("this",), exp.Upper: ("this",), exp.Length: ("this",), exp.Substring: ("this",),
    exp.StrPosition: ("this", "substr"), exp.StartsWith: ("this", "expression"),
    exp.Replace: ("this", "expression", "replacement"), exp.Trim: ("this", "expression"),
    exp.Split: ("this", "expression"), exp.SplitPart: ("this", "delimiter"),
    exp.RegexpLike: ("this",), exp.RegexpExtract: ("this",), exp.RegexpReplace: ("this",),
    exp.RegexpCount: ("this",),
}  # fmt: skip


def _text_argument_problem(node: exp.Expression, columns: Mapping[str, str]) -> str | None:
    names = _TEXT_ARGUMENTS.get(type(node), ())
    if isinstance(node, exp.Anonymous) and str(node.this).lower() in ("url_encode", "url_decode"):
        arguments = list(node.expressions[:1])
    elif isinstance(node, exp.Reverse):
        arguments = [node.this]
    else:
        arguments = [node.args.get(name) for name in names]
    for argument in arguments:
        kind = value_kind(argument, columns) if argument is not None else None
        if kind in _NOT_TEXT:
            return (
                f"{node.sql(dialect='trino')[:80]}: takes text, and {argument.sql(dialect='trino')[:40]} is "
                f"{_ARTICLE[kind]}, which Athena does not convert; CAST it AS VARCHAR first"
            )
    return None


_TIME_ARGUMENTS: dict[type[exp.Expression], tuple[str, ...]] = {
    exp.Year: ("this",), exp.Month: ("this",), exp.Day: ("this",), exp.Hour: ("this",),
    exp.DayOfWeekIso: ("this",), exp.DateAdd: ("this",), exp.TimestampTrunc: ("this",),
    exp.DateDiff: ("this", "expression"), exp.TimeToUnix: ("this",),
}  # fmt: skip
_SUB_DAY_UNITS = frozenset({"MILLISECOND", "SECOND", "MINUTE", "HOUR"})


def _time_argument_problem(node: exp.Expression, columns: Mapping[str, str]) -> str | None:
    """Date and time functions take a date or timestamp (DuckDB would read text or a number as
    one); a DATE has no hours, so Trino refuses a unit below a day on it (and hour() of one)."""
    if isinstance(node, exp.Date):
        kind = value_kind(node.this, columns)
        literal = node.this.name if isinstance(node.this, exp.Literal) and node.this.is_string else None
        if kind in (DATE, TIMESTAMP) or (literal and _TRINO_DATE.fullmatch(literal) and _real_date(literal)):
            return None
        return (
            f"{node.sql(dialect='trino')[:80]}: date() of {_ARTICLE.get(kind, 'a value of unknown type')} "
            "is not supported (the engines read text as dates differently); write DATE '2024-01-31'"
        )
    unit = str(node.args.get("unit") or "").upper()
    for name in _TIME_ARGUMENTS.get(type(node), ()):
        argument = node.args.get(name)
        kind = value_kind(argument, columns) if argument is not None else None
        if kind in (INT, DECIMAL, DOUBLE, VARCHAR, BOOLEAN):
            return (
                f"{node.sql(dialect='trino')[:80]}: takes a date or timestamp, and "
                f"{argument.sql(dialect='trino')[:40]} is {_ARTICLE[kind]}; write TIMESTAMP '2024-01-31 00:00:00'"
            )
        if kind == DATE and (unit in _SUB_DAY_UNITS or isinstance(node, exp.Hour)):
            return (
                f"{node.sql(dialect='trino')[:80]}: a DATE has no hours, minutes or seconds (Athena refuses "
                "the unit); use a TIMESTAMP"
            )
    return None
