"""A report's failed rows written column by column (Arrow compute), not row by row.

Every failed row has its key decoded (``keys.report_key``), its prefixes counted (``prefixes``), and
a CSV line written: the failures file's (key decoded) or the retry manifest's (``keys.manifest_key``:
the report's spelling, or the key re-encoded with ``keys.encode_key``). Done per row in Python that is 10-13 us a row, about 60 times what a
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

import binascii
import codecs
import functools
import string
from typing import Any

from batchpipe_core.keys import report_key
from batchpipe_core.report import pa, pc

_HEX_DIGITS = "0123456789ABCDEFabcdef"
#: What ``urllib.parse.quote(key, safe="/")`` leaves as it is (its always-safe set, and ``/``).
_UNQUOTED = frozenset((string.ascii_letters + string.digits + "_.-~/").encode())
_ZERO = pa.array([0], pa.int32()) if pa is not None else None
_TRUE = pa.array([True]) if pa is not None else None


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
    offsets, start, end = _offsets(keys)
    raw = keys.buffers()[2][start:end].to_pybytes() if end > start else b""
    if not raw.isascii():
        return _row_by_row(keys, report_key)
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" not in raw:
        return _with_data(keys, pc.subtract(offsets, pa.scalar(start, pa.int32())), raw)
    # Escapes decoded by a C codec over all the batch's keys at once: 5 times fewer CPU seconds than
    # splitting at ``%``. A ``%`` that does not start an escape within its own key (followed by
    # anything but two hex digits, or in a key's last two bytes, where the next key's bytes would
    # follow) leaves the codecs, and is decoded piece by piece instead.
    tails = pc.binary_slice(pc.cast(keys, pa.binary()), -2)
    if pc.any(pc.match_substring(tails, "%")).as_py():
        return _piecewise(keys)
    data = _unescaped(raw)
    if data is None:  # a "%" followed by something other than two hex digits
        return _piecewise(keys)
    # Every "%" consumed two digits: each key is two bytes shorter per "%" it holds.
    shorter = pc.multiply(pc.count_substring(keys, "%"), 2)
    lengths = pc.subtract(pc.binary_length(keys), shorter)
    decoded_offsets = pc.cumulative_sum(pa.concat_arrays([_ZERO, pc.cast(lengths, pa.int32())]))
    return _with_data(keys, decoded_offsets, data)


def _unescaped(raw: bytes) -> bytes | None:
    """``raw`` (ASCII) with every ``%`` and the two hex digits after it replaced by their byte, or
    None when some ``%`` is not followed by two hex digits.

    Quoted-printable decoding (``binascii.a2b_qp``) is the same rule with ``=`` for ``%``, one C pass
    (half the CPU of rewriting each ``%`` as ``\\x`` for ``codecs.escape_decode``). Where it differs
    it is not used: a ``=`` already in the keys, a line break (``=`` before one is a soft line break).
    An ``=`` it does not decode as an escape is kept (or, doubled or last, shortened by one), so the
    bytes shrink by exactly two per ``%`` only when every ``%`` was an escape."""
    if b"=" in raw or b"\n" in raw or b"\r" in raw:
        if b"\\" in raw:  # kept literal by the escape codec
            raw = raw.replace(b"\\", b"\\\\")
        try:
            return codecs.escape_decode(raw.replace(b"%", b"\\x"))[0]
        except ValueError:
            return None
    data = binascii.a2b_qp(raw.translate(_PERCENT_AS_EQUALS))
    return data if len(raw) - len(data) == 2 * raw.count(b"%") else None


_PERCENT_AS_EQUALS = bytes.maketrans(b"%", b"=")


def _with_data(keys: Any, offsets: Any, data: bytes) -> Any:
    """A string array of ``keys``' rows over ``data`` at ``offsets`` (int32, from 0): the bytes are
    checked as UTF-8 by the cast, and where they are not, decoded row by row (``report_key`` puts
    U+FFFD in)."""
    assert offsets.type == pa.int32() and not offsets.offset
    values = pa.Array.from_buffers(pa.binary(), len(keys), [None, offsets.buffers()[1], pa.py_buffer(data)])
    try:
        return pc.cast(values, pa.string())
    except pa.ArrowInvalid:
        return _row_by_row(keys, report_key)


def _piecewise(keys: Any) -> Any:
    """``decoded_keys`` for (ASCII) keys the codec cannot take: split at ``%``, each piece decoded."""
    keys = pc.replace_substring(keys, "+", " ")
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


def manifest_keys(keys: Any, decoded: Any) -> Any:
    """``[keys.manifest_key(k, d) for k, d in zip(keys, decoded)]`` as a string array: the report's
    spelling where it is ASCII, holds no ``+`` and every ``%`` starts an escape, else ``encoded_keys``.

    ``decoded`` (``decoded_keys(keys)``) is never shorter than a key's bytes less two per ``%``, and
    equal exactly where the key is reused (``manifest_key``), so one comparison of the batch's totals
    settles the usual batch - every key as BuildManifest's query spelled it - without a kernel per
    row; another batch is decided row by row, and only the rows that need it are encoded."""
    _, start, end = _offsets(keys)
    _, decoded_start, decoded_end = _offsets(decoded)
    raw = keys.buffers()[2][start:end].to_pybytes() if end > start else b""
    if raw.isascii() and b"+" not in raw and decoded_end - decoded_start == len(raw) - 2 * raw.count(b"%"):
        return keys
    shorter = pc.multiply(pc.count_substring(keys, "%"), 2)
    reused = pc.and_(
        pc.and_(pc.string_is_ascii(keys), pc.invert(pc.match_substring(keys, "+"))),
        pc.equal(pc.binary_length(decoded), pc.subtract(pc.binary_length(keys), shorter)),
    )
    encoded = pc.invert(reused)
    return pc.replace_with_mask(keys, encoded, encoded_keys(decoded.filter(encoded)))


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
    # Each column's bytes are searched for what needs quotes (bytes.find: no kernel, no regex); only
    # the columns that hold some (messages, mostly) are looked at row by row.
    texts = [_text_bytes(column) for column in columns]
    carriage_returns = [
        pc.match_substring(c, "\r") for c, text in zip(columns, texts, strict=True) if b"\r" in text
    ]
    row_has_cr = functools.reduce(pc.or_, carriage_returns) if carriage_returns else None
    fields = []
    for column, text in zip(columns, texts, strict=True):
        special = [character in text for character in (b",", b'"', b"\n")]
        if not any(special) and row_has_cr is None:
            fields.append(column)  # nothing in this column needs quotes (most keys, codes, buckets)
            continue
        if row_has_cr is None:
            # Which values need quotes depends on the value alone: decided once per distinct value
            # when there are few (a report's messages repeat per error code), else per row.
            encoded = pc.dictionary_encode(column)
            if len(encoded.dictionary) * 4 <= len(column):
                fields.append(pc.take(_quoted(encoded.dictionary, None), encoded.indices))
            else:
                fields.append(_quoted(column, None))
            continue
        fields.append(_quoted(column, row_has_cr, quotes=any(special)))
    fields[-1] = pc.binary_join_element_wise(fields[-1], "\n", "")  # the line end, copying one column
    return _text_bytes(pc.binary_join_element_wise(*fields, ","))


def _quoted(column: Any, row_has_cr: Any, quotes: bool = True) -> Any:
    """``column`` with each value that holds a comma, a quote or a newline (``quotes``: some may), or
    whose row holds a carriage return (``row_has_cr``), in quotes, its quotes doubled."""
    quote = pc.match_substring_regex(column, '[,"\n]') if quotes else None
    if row_has_cr is not None:
        quote = row_has_cr if quote is None else pc.or_(quote, row_has_cr)
    escaped = pc.replace_substring(column, '"', '""')
    return pc.if_else(quote, pc.binary_join_element_wise('"', escaped, '"', ""), column)


def _text_bytes(lines: Any) -> bytes:
    """The values of a string array, concatenated: its data buffer between the first and last offset."""
    _, start, end = _offsets(lines)
    return lines.buffers()[2][start:end].to_pybytes()


def prefix_counts(decoded: Any, depths: int, max_chars: int) -> list[list[tuple[str, int]]]:
    """Per depth 1..``depths``: (prefix, failures) in the order each prefix first occurs, as
    ``prefixes.PrefixTally.add`` finds them row by row: the key up to and including its d-th ``/``
    (or its last, or "" without one), cut at ``max_chars`` characters.

    Each key's prefix at the deepest depth is found once (``_deepest_prefixes``); every shallower prefix is a prefix
    of it, so the rest is worked out once per distinct deepest prefix (a few per thousand keys), in
    the order they first occur (``value_counts`` lists values so: a hash table's insertion order).
    The first occurrence of a shallower prefix is that of the first deepest prefix under it."""
    counts = pc.value_counts(_deepest_prefixes(decoded, depths))
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


def _deepest_prefixes(keys: Any, depths: int) -> Any:
    """Each key up to and including its ``depths``-th ``/`` (or its last; "" without one): the key
    split at its first ``depths`` slashes, the last piece (the name, or the rest past the deepest
    slash) emptied, joined again. A third less than the regex ``^(?:[^/]*/){0,depths}``."""
    parts = pc.split_pattern(keys, "/", max_splits=depths)
    pieces = parts.flatten()
    if not len(pieces):
        return keys
    parents = pc.list_parent_indices(parts)
    last = len(pieces) - 1
    is_last = pa.concat_arrays([pc.not_equal(parents.slice(0, last), parents.slice(1)), _TRUE])
    emptied = pc.if_else(is_last, "", pieces)
    return pc.binary_join(pa.ListArray.from_arrays(parts.offsets, emptied), "/")
