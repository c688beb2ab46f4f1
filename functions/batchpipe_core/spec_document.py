"""A spec document read as ValidateSpec reads it (README, "Job spec reference"): a small UTF-8 JSON text
(``parse_spec_document``), and a JSON value within the limits every later check relies on
(``document_problems``: size, depth, 64-bit integers, valid Unicode). Nothing here knows the spec's fields.
"""

from __future__ import annotations

import json
from typing import Any

from batchpipe_core.errors import SpecValidationError, shown
from batchpipe_core.query import MAX_BIGINT

# The spec travels in the input of every state, and a state's input or output may hold 256 KiB of
# UTF-8 text (Step Functions quotas); a spec of at most 32 KiB leaves the rest to what states add.
MAX_SPEC_BYTES = 32 * 1024
# Objects and lists nest at most this deep. The deepest legitimate spec (an S3PutObjectAcl grant)
# is 7 levels; a bound keeps every later walk of the document far from Python's recursion limit.
MAX_SPEC_DEPTH = 32
# Integers anywhere in the spec fit in 64 bits (Athena's bigint, the AWS APIs' long).
MIN_INTEGER = -(2**63)


def parse_spec_document(document: bytes | str) -> Any:
    """The JSON value of a spec document (a file's bytes, a request body), or SpecValidationError.

    One line naming what is wrong for anything that is not a small UTF-8 JSON text: too large,
    UTF-16 or another encoding, nested too deeply, NaN/Infinity, a key given twice. The value is not
    yet checked as a spec: ``normalize_spec`` does that.
    """
    data = document.encode("utf-8", errors="replace") if isinstance(document, str) else document
    if len(data) > MAX_SPEC_BYTES:
        raise SpecValidationError(_too_large(len(data)))
    for mark, encoding in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            raise SpecValidationError(
                f"spec: starts with a {encoding} byte order mark; save it as UTF-8 without one"
            )
    if b"\x00" in data:
        raise SpecValidationError("spec: contains NUL bytes, as UTF-16 or UTF-32 text does; save it as UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecValidationError(f"spec: is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    if _text_depth(text) > MAX_SPEC_DEPTH:
        raise SpecValidationError(_too_deep())
    try:
        return json.loads(text, parse_constant=_not_json, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as error:
        raise SpecValidationError(
            f"spec: is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    except ValueError as error:  # NaN/Infinity, a repeated key, an integer of thousands of digits
        raise SpecValidationError(f"spec: {str(error)[:200]}") from None


_BYTE_ORDER_MARKS = (
    (b"\xef\xbb\xbf", "UTF-8"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def _text_depth(text: str) -> int:
    """How deep ``[``/``{`` nest in a JSON text, strings skipped; no parsing, no recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number; write a number or a string")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise ValueError(f"the key {shown(key)} appears twice in one object; keep one")
    return dict(pairs)


def _too_large(size: int) -> str:
    return (
        f"spec: is {size:,} bytes of JSON; the maximum is {MAX_SPEC_BYTES:,} (32 KiB), because it travels "
        "in every state's input (at most 256 KiB); move long lists into fewer filter.prefixes or a keyRegex"
    )


def _too_deep() -> str:
    return f"spec: nests objects and lists more than {MAX_SPEC_DEPTH} levels deep; a spec needs at most 8"


def document_problems(raw: Any) -> list[str]:
    """Limits of the whole document, checked without recursion before any model looks at it."""
    problems: list[str] = []
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(raw, ())]
    while stack:
        value, loc = stack.pop()
        if len(loc) > MAX_SPEC_DEPTH:
            return [_too_deep()]
        where = field_path(loc) or "spec"
        if isinstance(value, dict):
            for key, item in reversed(value.items()):
                if not isinstance(key, str):
                    problems.append(f"{where}: has a key that is not a string ({type(key).__name__})")
                else:
                    stack.append((key, (*loc, "<key>")))
                    stack.append((item, (*loc, key)))
        elif isinstance(value, list):
            stack.extend((item, (*loc, index)) for index, item in reversed(list(enumerate(value))))
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as error:
                place = where.removesuffix(".<key>")
                what = "a key" if loc and loc[-1] == "<key>" else "it"
                problems.append(
                    f"{place}: {what} is not valid Unicode text (an unpaired surrogate at character {error.start})"
                )
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not MIN_INTEGER <= value <= MAX_BIGINT:
                # Not echoed: such a number can have more digits than Python will print.
                problems.append(
                    f"{where}: is beyond 64-bit integers (at most {MAX_BIGINT}); use a smaller number"
                )
        elif isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                problems.append(f"{where}: {value} is not a JSON number")
        else:
            problems.append(f"{where}: {type(value).__name__} is not a JSON value")
    if problems:
        return problems
    size = len(json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode())
    return [_too_large(size)] if size > MAX_SPEC_BYTES else []


def field_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        # An unknown field's name is user text: quoted if it could break the one-line-per-problem form.
        name = str(part) if str(part).isprintable() else json.dumps(part)
        name = name if len(str(part)) <= 60 else shown(str(part))
        text += f"[{part}]" if isinstance(part, int) else (f".{name}" if text else name)
    return text
