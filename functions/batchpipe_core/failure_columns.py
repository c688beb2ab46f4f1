"""A report's failed rows written column by column (Arrow compute), not row by row.

Every failed row has its key decoded (``keys.report_key``), its prefixes counted (``prefixes``), and
a CSV line written: the failures file's (key decoded) or the retry manifest's (key re-encoded with
``keys.encode_key``). Done per row in Python that is 10-13 us a row, about 60 times what a
successful row costs, so a report with a few percent of failures spent most of its time on them
(issue 23). Here each step is a handful of Arrow kernels over a record batch's failed rows:

* decoding: ``+`` becomes a space, the key is split at ``%``, each piece that starts with two hex
  digits has them replaced by their byte (a 484-entry lookup), the pieces are joined again and the
  result is checked as UTF-8 by the cast to string;
* encoding: the decoded key's bytes are viewed as one uint8 column and each byte is looked up in a
  256-entry table (itself, when ``quote`` leaves it alone, else ``%XX``), then the row's pieces joined;
* CSV: a field is quoted exactly when the csv module (``csv_upload.CsvWriter``) would quote it.

The results equal the per-row functions' for every input: anything the columns cannot decode the same
way - a key with raw non-ASCII characters, or one whose escapes decode to invalid UTF-8 (``report_key``
then puts U+FFFD in) - is decoded row by row for that batch (tests/unit/test_failure_columns.py
holds both equal on hostile keys).
"""

from __future__ import annotations

import functools
import string
from typing import Any

from batchpipe_core.keys import report_key
from batchpipe_core.report import pa, pc

_HEX_DIGITS = "0123456789ABCDEFabcdef"
#: What ``urllib.parse.quote(key, safe="/")`` leaves as it is (its always-safe set, and ``/``).
_UNQUOTED = frozenset((string.ascii_letters + string.digits + "_.-~/").encode())


@functools.cache
def _tables() -> tuple[Any, Any, Any]:
    """(hex pairs, their bytes, each byte's quoted form): the lookups the kernels index into."""
    pairs = [a + b for a in _HEX_DIGITS for b in _HEX_DIGITS]
    hex_pairs = pa.array([p.encode() for p in pairs], pa.binary())
    hex_bytes = pa.array([bytes.fromhex(p) for p in pairs], pa.binary())
    quoted = pa.array([chr(b) if b in _UNQUOTED else f"%{b:02X}" for b in range(256)], pa.string())
    return hex_pairs, hex_bytes, quoted


def decoded_keys(keys: Any) -> Any:
    """``[keys.report_key(k) for k in keys]`` as a string array (``keys``: a string array)."""
    keys = pc.replace_substring(keys, "+", " ")
    if not pc.any(pc.match_substring(keys, "%")).as_py():
        return keys
    if not pc.all(pc.string_is_ascii(keys)).as_py():
        return _row_by_row(keys, report_key)
    decoded = _percent_decoded(keys)
    try:
        return pc.cast(decoded, pa.string())  # the cast checks the bytes are UTF-8
    except pa.ArrowInvalid:
        return _row_by_row(keys, report_key)  # some escape decodes to invalid UTF-8: U+FFFD per row


def _percent_decoded(keys: Any) -> Any:
    """The (ASCII) keys' bytes with every ``%`` followed by two hex digits replaced by that byte.

    Splitting at ``%`` gives each escape at the start of a piece (after the first), which is how
    ``urllib.parse.unquote`` reads them too: ``%%41`` is ``%A``, ``%4%41`` is ``%4A``. The pieces are
    ``binary_slice(pieces, 2)`` without a stop failed with "Negative buffer resize" in pyarrow 26, so
    the escape's two digits are cut off with ``binary_replace_slice``."""
    hex_pairs, hex_bytes, _ = _tables()
    pieces = pc.split_pattern(keys, "%")
    first = pc.cast(pc.list_element(pieces, 0), pa.binary())
    tails = pc.list_slice(pieces, 1)
    # The same few pieces recur (a run of escapes is pieces of two hex digits; 50,000 of the
    # benchmark's keys split into 1.16M pieces, 50,000 distinct): each distinct piece is decoded
    # once and put back in place by its dictionary index, 40% less than decoding every piece.
    encoded = pc.dictionary_encode(pc.cast(tails.flatten(), pa.binary()))
    after = encoded.dictionary
    byte = pc.take(hex_bytes, pc.index_in(pc.binary_slice(after, 0, 2), value_set=hex_pairs))
    decoded = pc.binary_join_element_wise(byte, pc.binary_replace_slice(after, 0, 2, b""), b"")
    if decoded.null_count:  # a piece that is not an escape keeps its "%"
        decoded = pc.coalesce(decoded, pc.binary_join_element_wise(b"%", after, b""))
    pieces_decoded = pc.take(decoded, encoded.indices)
    joined = pc.binary_join(pa.ListArray.from_arrays(tails.offsets, pieces_decoded), b"")
    return pc.binary_join_element_wise(first, joined, b"")


def encoded_keys(decoded: Any) -> Any:
    """``[keys.encode_key(k) for k in decoded]`` as a string array: every byte of the key's UTF-8
    that ``quote`` does not leave alone becomes ``%XX`` (upper-case hex)."""
    _, _, quoted = _tables()
    offsets, start, end = _offsets(decoded)
    data = pa.Array.from_buffers(pa.uint8(), end - start, [None, decoded.buffers()[2]], offset=start)
    pieces = pa.ListArray.from_arrays(pc.subtract(offsets, start), pc.take(quoted, data))
    return pc.binary_join(pieces, "")


def _offsets(values: Any) -> tuple[Any, int, int]:
    """A string array's value offsets (int32, one more than its rows) and its first and last."""
    offsets = pa.Array.from_buffers(
        pa.int32(), len(values) + 1, [None, values.buffers()[1]], offset=values.offset
    )
    return offsets, offsets[0].as_py(), offsets[-1].as_py()


def _row_by_row(keys: Any, function: Any) -> Any:
    return pa.array([function(key) for key in keys.to_pylist()], pa.string())


def csv_lines(columns: list[Any]) -> bytes:
    """The rows of ``columns`` (string arrays, no nulls) as ``csv_upload.CsvWriter`` writes them: a field
    with a comma, a quote or a newline quoted (quotes doubled), every field of a row that holds a
    carriage return quoted, lines ended by ``\\n``."""
    if not len(columns[0]):
        return b""
    # One scan per column for anything that needs quotes; only columns that have some (messages,
    # mostly) are looked at again, for which rows hold a carriage return and which need quotes.
    special = [pc.any(pc.match_substring_regex(column, '[,"\r\n]')).as_py() for column in columns]
    carriage_returns = [pc.match_substring(c, "\r") for c, s in zip(columns, special, strict=True) if s]
    row_has_cr = functools.reduce(pc.or_, carriage_returns) if carriage_returns else None
    if row_has_cr is not None and not pc.any(row_has_cr).as_py():
        row_has_cr = None
    fields = []
    for column, has_special in zip(columns, special, strict=True):
        if not has_special and row_has_cr is None:
            fields.append(column)  # nothing in this column needs quotes (most keys, codes, buckets)
            continue
        quote = pc.match_substring_regex(column, '[,"\n]') if has_special else None
        if row_has_cr is not None:
            quote = row_has_cr if quote is None else pc.or_(quote, row_has_cr)
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(column, '"', '""'), '"', "")
        fields.append(pc.if_else(quote, quoted, column))
    lines = pc.binary_join_element_wise(pc.binary_join_element_wise(*fields, ","), "\n", "")
    return _text_bytes(lines)


def _text_bytes(lines: Any) -> bytes:
    """The values of a string array, concatenated: its data buffer between the first and last offset."""
    _, start, end = _offsets(lines)
    return lines.buffers()[2][start:end].to_pybytes()


def prefix_counts(decoded: Any, depths: int, max_chars: int) -> list[list[tuple[str, int]]]:
    """Per depth 1..``depths``: (prefix, failures) in the order each prefix first occurs, as
    ``prefixes.PrefixTally.add`` finds them row by row: the key up to and including its d-th ``/``
    (or its last, or "" without one), cut at ``max_chars`` characters.

    One regex pass gives each key's prefix at the deepest depth; every shallower prefix is a prefix
    of it, so the rest is worked out once per distinct deepest prefix (a few per thousand keys), in
    the order they first occur (``value_counts`` lists values so: a hash table's insertion order).
    The first occurrence of a shallower prefix is that of the first deepest prefix under it."""
    deepest = pc.extract_regex(decoded, f"^(?P<prefix>(?:[^/]*/){{0,{depths}}})").field(0)
    counts = pc.value_counts(deepest)
    counted: list[dict[str, int]] = [{} for _ in range(depths)]
    for prefix, rows in zip(counts.field(0).to_pylist(), counts.field(1).to_pylist(), strict=True):
        end = -1
        for depth in range(depths):
            found = prefix.find("/", end + 1)
            if found >= 0:
                end = found
            cut = prefix[: min(end + 1, max_chars)]
            counted[depth][cut] = counted[depth].get(cut, 0) + rows
    return [list(by_prefix.items()) for by_prefix in counted]
