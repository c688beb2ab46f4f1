"""A report's failed rows written column by column (Arrow compute), not row by row.

Every failed row has its key decoded (``keys.report_key``), its prefixes counted (``prefixes``), and
a CSV line written: the failures file's (key decoded) or the retry manifest's (``keys.manifest_key``:
the report's spelling, or the key re-encoded with ``keys.encode_key``). Done per row in Python that is 10-13 us a row, about 60 times what a
successful row costs, so a report with a few percent of failures spent most of its time on them
(issue 23). Here each step is a handful of Arrow kernels over a record batch's failed rows:

* decoding: the batch's keys joined, ``+`` made a space and ``%`` quoted-printable's ``=`` by one
  table lookup, unescaped by one C call (``binascii.a2b_qp``), split into keys again and checked as
  UTF-8 by the cast to string (``decoded_keys``); keys that call cannot take are split at ``%``,
  each piece that starts with two hex digits has them replaced by their byte (a 484-entry lookup);
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
import sys
from typing import Any, NamedTuple

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
    """``[keys.report_key(k) for k in keys]`` as a string array (``keys``: a string array).

    The batch's keys are joined into one text with a NUL between them (one copy, in Arrow) and read
    into Python by one table lookup (``codecs.charmap_decode`` over Arrow's buffer) that makes every
    ``%`` an ``=`` and every ``+`` a space, and raises on the bytes it does not map: non-ASCII, and
    what quoted-printable reads otherwise. The text is then unescaped by one C call, quoted-printable
    decoding (``binascii.a2b_qp``: the same rule for ``=XX`` as URL decoding for ``%XX``), and split
    at NUL in Arrow (as many pieces as keys, else some key held a NUL); the bytes are checked as UTF-8
    only when some are not ASCII. Two C passes over the bytes in Python and two in Arrow: half the
    CPU of copying the bytes out, translating ``%``, and counting every key's ``%`` for its offsets.
    What these passes cannot decode as ``report_key`` does is decoded piece by piece
    (``_piecewise``), or row by row for raw non-ASCII keys."""
    return _decoded(keys)[0]


def retry_keys(keys: Any) -> tuple[Any, Any]:
    """``(decoded_keys(keys), manifest_keys(keys, decoded_keys(keys)))`` for a retry manifest's rows.

    The decode already settles the usual batch: when the codec path took every key (ASCII, each
    ``%`` an escape, the bytes UTF-8) and no key holds a ``+`` (refused by the first table tried),
    each key's decoded bytes are its bytes less two per ``%``, which is ``manifest_key``'s test for
    reusing the spelling: the keys are written as they are, without another pass over their bytes."""
    decoded, spelled = _decoded(keys, plus=False)
    return decoded, keys if spelled else manifest_keys(keys, decoded)


def _decoded(keys: Any, *, plus: bool = True) -> tuple[Any, bool]:
    """``decoded_keys(keys)``, and whether the codec path decoded every key (with ``plus`` False:
    and none holds a ``+``), so that every key's spelling is reused (``retry_keys``)."""
    if not len(keys):
        return keys, True
    spelled = not plus  # with plus True, whether the spelling is reused is not asked
    text = _joined(keys)
    try:
        table = _AS_QUOTED_PRINTABLE if plus else _AS_QUOTED_PRINTABLE_NO_PLUS
        data = _unescaped(codecs.charmap_decode(text, "strict", table)[0])
    except UnicodeDecodeError:  # "=", CR or LF in a key (quoted-printable reads them otherwise), non-ASCII
        if not plus:  # or a "+": the keys decoded as any others, their spelling decided per key
            return _decoded(keys)[0], False
        try:
            data = _escape_decoded(codecs.charmap_decode(text, "strict", _AS_TEXT)[0])
        except UnicodeDecodeError:  # raw non-ASCII
            return _row_by_row(keys, report_key), False
    if data is None:  # some "%" starts no escape
        return _piecewise(keys), False
    decoded = pc.split_pattern(_one_value(data), _SEPARATOR).flatten()
    if len(decoded) != len(keys):  # a NUL in a key, or an escape decoded to one
        return _piecewise(keys), False
    if data.isascii():
        return decoded.view(pa.string()), spelled
    try:
        return pc.cast(decoded, pa.string()), spelled  # the cast checks the bytes are UTF-8
    except pa.ArrowInvalid:
        return _row_by_row(keys, report_key), False  # an escape decodes to invalid UTF-8: U+FFFD per row


def _joined(keys: Any) -> Any:
    """The keys' bytes, one after another with a NUL between them (an Arrow buffer)."""
    one_list = pa.ListArray.from_arrays(pa.array([0, len(keys)], pa.int32()), keys)
    return _text_buffer(pc.binary_join(one_list, _SEPARATOR))


#: Between the keys of a batch while they are decoded as one text: a byte quoted-printable and the
#: escape codec copy as it is (a line feed they would not, after an ``=`` or a backslash), and that
#: keys hardly ever hold (a batch where one does is decoded piece by piece).
_SEPARATOR = "\x00"


def _unescaped(text: str) -> bytes | None:
    """``text`` (ASCII, ``%`` made ``=``, no CR or LF, no ``=`` of its own, the keys separated by NUL)
    with every ``=`` and the two hex digits after it replaced by their byte, or None when some ``=``
    is not followed by two hex digits within its key.

    An ``=`` that does not start an escape is kept by ``a2b_qp`` (or, doubled, made one; before a line
    break it would be removed with it, but there are none), except at the end of the text (dropped):
    looked for first. So decoded bytes without ``=`` had every ``=`` an escape; with some (``%3D``
    decodes to one), the bytes shrink by exactly two per ``=`` only when every ``=`` was."""
    if text.endswith("="):
        return None
    if "=" not in text:
        return text.encode("ascii")
    data = binascii.a2b_qp(text)
    if b"=" in data and len(text) - len(data) != 2 * text.count("="):
        return None
    return data


def _escape_decoded(text: str) -> bytes | None:
    """``_unescaped`` for keys that hold ``=`` or CR: every ``%`` made ``\\x`` (a backslash doubled, so
    it stays one) and decoded by ``codecs.escape_decode``, which refuses a ``\\x`` without two hex
    digits after it (the NUL ending a key included); twice the CPU of ``a2b_qp``."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    try:
        return codecs.escape_decode(text.replace("%", "\\x"))[0]
    except ValueError:
        return None


def _charmap(mapped: dict[str, str], refused: str) -> str:
    """A ``codecs.charmap_decode`` table: ASCII as itself but ``mapped``, ``refused`` and every byte
    above 0x7F undefined (U+FFFE), so that decoding raises on them."""
    table = [mapped.get(chr(b), chr(b)) for b in range(128)] + ["\ufffe"] * 128
    for character in refused:
        table[ord(character)] = "\ufffe"
    return "".join(table)


#: The keys' text for ``_unescaped``: ``%`` as quoted-printable's ``=``, ``+`` a space; refused: what
#: quoted-printable reads otherwise (``=``, CR, LF) and non-ASCII.
_AS_QUOTED_PRINTABLE = _charmap({"%": "=", "+": " "}, "=\r\n")
#: The same, ``+`` refused too: for keys whose spelling a retry manifest reuses (``retry_keys``).
_AS_QUOTED_PRINTABLE_NO_PLUS = _charmap({"%": "=", "+": " "}, "=\r\n+")
#: The keys' text for ``_escape_decoded``: ``+`` a space; refused: non-ASCII.
_AS_TEXT = _charmap({"+": " "}, "")


def _text_buffer(values: Any) -> Any:
    """The bytes of a string or binary array's values, one after another (an Arrow buffer, not copied)."""
    _, start, end = _offsets(values)
    return values.buffers()[2][start:end] if end > start else b""


def _one_value(data: bytes) -> Any:
    """A binary array of one value, ``data`` (not copied)."""
    offsets = pa.array([0, len(data)], pa.int32()).buffers()[1]
    return pa.Array.from_buffers(pa.binary(), 1, [None, offsets, pa.py_buffer(data)])


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
    """The rows of ``columns`` (string or dictionary<string> arrays, no nulls) as
    ``csv_upload.CsvWriter`` writes them: a field with a comma, a quote or a newline quoted (quotes
    doubled), every field of a row that holds a carriage return quoted, lines ended by ``\\n``."""
    return b"".join(csv_pieces(columns))


def csv_pieces(columns: list[Any]) -> list[Any]:
    """``csv_lines`` as the bytes-like pieces that make it up, in order: views of the Arrow buffer
    the lines were joined into and a few bytes around them, not copied (``csv_upload.CsvUpload``
    copies them once, into the body it sends). A column may be a string scalar, the value of every
    row (``accounting.FailedColumns``: a batch's one bucket), as long as one column is an array."""
    rows = next(len(column) for column in columns if not isinstance(column, pa.Scalar))
    if not rows:
        return []
    columns = [_one_value_column(column, rows) for column in columns]
    # Each column's bytes are searched for what needs quotes (bytes.find: no kernel, no regex); only
    # the columns that hold some (messages, mostly) are looked at row by row. A dictionary column's
    # values are searched instead of its rows (a superset: what a row needs is still decided exactly).
    texts = [
        column.as_py().encode() if isinstance(column, pa.Scalar) else _text_bytes(_values(column))
        for column in columns
    ]
    carriage_returns = [
        _per_row(column, lambda values: pc.match_substring(values, "\r"))
        for column, text in zip(columns, texts, strict=True)
        if b"\r" in text
    ]
    row_has_cr = functools.reduce(pc.or_, carriage_returns) if carriage_returns else None
    fields: list[Any] = []
    for column, text in zip(columns, texts, strict=True):
        special = [character in text for character in (b",", b'"', b"\n")]
        if row_has_cr is not None:
            fields.append(_quoted(_plain(column), row_has_cr, quotes=any(special)))
        elif isinstance(column, pa.Scalar):
            fields.append(_Table(None, pa.array([column.as_py()], pa.string())))  # needs no quotes
        elif _is_dictionary(column):
            # Quoted once per distinct value.
            values = _quoted(column.dictionary, None) if any(special) else column.dictionary
            fields.append(_Table(column.indices, values))
        elif not any(special):
            # Nothing in this column needs quotes (most keys, codes, buckets); a first column of one
            # value (the bucket) is that value (min_max: one pass, no hash).
            only = _only_value(column) if not fields else None
            fields.append(column if only is None else _Table(None, pa.array([only.as_py()], pa.string())))
        else:
            # Which values need quotes depends on the value alone: decided once per distinct value
            # when there are few (a report's messages repeat per error code), else per row.
            encoded = pc.dictionary_encode(column)
            if len(encoded.dictionary) * 4 <= len(column):
                fields.append(_Table(encoded.indices, _quoted(encoded.dictionary, None)))
            else:
                fields.append(_quoted(column, None))
    fields = [field.gathered() if isinstance(field, _Table) else field for field in _merged(fields, rows)]
    if all(isinstance(field, pa.Scalar) for field in fields):
        # Every row is the same line (each field one value, quoted where it needs it): no array to join.
        return [(",".join(field.as_py() for field in fields) + "\n").encode() * rows]
    if len(fields) == 2 and isinstance(fields[0], pa.Scalar) and not isinstance(fields[1], pa.Scalar):
        # "b,k\n" per row (the retry manifest's lines, one bucket): the second column's values joined
        # as one list with "\nb," between them, half the CPU of joining the columns row by row.
        head = fields[0].as_py() + ","
        one_list = pa.ListArray.from_arrays(pa.array([0, len(fields[1])], pa.int32()), fields[1])
        return [head.encode(), _text_view(pc.binary_join(one_list, "\n" + head)), b"\n"]
    if isinstance(fields[0], pa.Scalar):
        # The line end goes in front of a first field that is one value (the bucket), so no column is
        # copied for it: "\nb,k\nb,k" becomes "b,k\nb,k\n" by moving the first byte to the end.
        fields[0] = pa.scalar("\n" + fields[0].as_py(), pa.string())
        return [_text_view(pc.binary_join_element_wise(*fields, ","))[1:], b"\n"]
    fields[-1] = pc.binary_join_element_wise(fields[-1], "\n", "")  # the line end, copying one column
    return [_text_view(pc.binary_join_element_wise(*fields, ","))]


def _one_value_column(column: Any, rows: int) -> Any:
    """``column`` as it is, unless it is a scalar that needs quotes: then a dictionary column of that
    one value (quoted like any, and with the rest of its row where another field holds a CR)."""
    if not isinstance(column, pa.Scalar) or not any(c in column.as_py() for c in ',"\n\r'):
        return column
    indices = pa.repeat(pa.scalar(0, pa.int32()), rows)
    return pa.DictionaryArray.from_arrays(indices, pa.array([column.as_py()], pa.string()))


class _Table(NamedTuple):
    """A field whose rows are few distinct values, ready to write (quoted where they need it): each
    row's index into ``values``, or None when every row is ``values[0]``."""

    indices: Any
    values: Any

    def gathered(self) -> Any:
        """The field's rows: a scalar for one value, else the values taken by index."""
        if self.indices is None or len(self.values) == 1:
            return self.values[0]
        return pc.take(self.values, self.indices)


#: Fields of few values next to each other are joined into one while the table of their
#: combinations has at most this many entries (and no more than the rows).
MOST_COMBINATIONS = 4096


def _merged(fields: list[Any], rows: int) -> list[Any]:
    """``fields`` with each run of neighbouring ``_Table``s joined into one where it can be: one value
    into every value of the other; two tables over the same indices (an HTTP status and an error code,
    both by outcome) value by value; two others (those and a message) into the table of their
    combinations, indexed by ``first index x second's size + second index``. Each join is a field
    fewer to gather per row and to join into the lines: the work moves to the distinct values."""
    merged: list[Any] = []
    for field in fields:
        previous = merged[-1] if merged else None
        if isinstance(field, _Table) and isinstance(previous, _Table):
            joined = _joined_tables(previous, field, rows)
            if joined is not None:
                merged[-1] = joined
                continue
        merged.append(field)
    return merged


def _joined_tables(first: _Table, second: _Table, rows: int) -> _Table | None:
    if first.indices is None:
        return _Table(second.indices, pc.binary_join_element_wise(first.values[0], second.values, ","))
    if second.indices is None:
        return _Table(first.indices, pc.binary_join_element_wise(first.values, second.values[0], ","))
    if _same_indices(first.indices, second.indices):
        return _Table(first.indices, pc.binary_join_element_wise(first.values, second.values, ","))
    size = len(second.values)
    combinations = len(first.values) * size
    if combinations > min(MOST_COMBINATIONS, rows):
        return None
    values = pc.binary_join_element_wise(
        first.values.take(pa.array([at // size for at in range(combinations)], pa.int32())),
        second.values.take(pa.array([at % size for at in range(combinations)], pa.int32())),
        ",",
    )
    indices = pc.add(
        pc.multiply(pc.cast(first.indices, pa.int32()), pa.scalar(size, pa.int32())),
        pc.cast(second.indices, pa.int32()),
    )
    return _Table(indices, values)


def _same_indices(first_indices: Any, second_indices: Any) -> bool:
    """Whether two index arrays are the same (the same buffer, offset and length: one index array,
    as ``accounting.FailedColumns`` builds its HTTP statuses' and codes' dictionary columns from)."""
    return (
        first_indices.type == second_indices.type
        and first_indices.offset == second_indices.offset
        and len(first_indices) == len(second_indices)
        and first_indices.null_count == second_indices.null_count == 0
        and first_indices.buffers()[1].address == second_indices.buffers()[1].address
    )


def _only_value(column: Any) -> Any:
    """A plain column's value as a scalar when every row holds it, else None."""
    smallest, largest = pc.min_max(column).values()
    return smallest if smallest == largest else None


def _is_dictionary(column: Any) -> bool:
    return pa.types.is_dictionary(column.type)


def _values(column: Any) -> Any:
    """A column's distinct values when it is a dictionary column (and maybe some it does not use)."""
    return column.dictionary if _is_dictionary(column) else column


def _plain(column: Any) -> Any:
    return column.dictionary_decode() if _is_dictionary(column) else column


def _per_row(column: Any, function: Any) -> Any:
    """``function`` over a column's values, per row: over a dictionary's values, then by index."""
    if _is_dictionary(column):
        return pc.take(function(column.dictionary), column.indices)
    return function(column)


def _quoted(column: Any, row_has_cr: Any, quotes: bool = True) -> Any:
    """``column`` with each value that holds a comma, a quote or a newline (``quotes``: some may), or
    whose row holds a carriage return (``row_has_cr``), in quotes, its quotes doubled."""
    quote = pc.match_substring_regex(column, '[,"\n]') if quotes else None
    if row_has_cr is not None:
        quote = row_has_cr if quote is None else pc.or_(quote, row_has_cr)
    escaped = pc.replace_substring(column, '"', '""')
    return pc.if_else(quote, pc.binary_join_element_wise('"', escaped, '"', ""), column)


def _text_view(lines: Any) -> memoryview:
    """``_text_bytes`` as a view of the array's buffer (it keeps the buffer alive), not a copy."""
    _, start, end = _offsets(lines)
    return memoryview(lines.buffers()[2])[start:end] if end > start else memoryview(b"")


def _text_bytes(lines: Any) -> bytes:
    """The values of a string array, concatenated: its data buffer between the first and last offset."""
    _, start, end = _offsets(lines)
    return lines.buffers()[2][start:end].to_pybytes()


def prefix_counts(decoded: Any, depths: int) -> list[tuple[str, int]]:
    """Each distinct deepest prefix of the keys (a key up to its ``depths``-th ``/``, or its last; ""
    without one) and how many keys it is the deepest prefix of, in the order each first occurs, for
    ``prefixes.PrefixTally.add_counts``. Every shallower prefix of a key is one of its deepest
    prefix, so the tally works them out once per distinct deepest prefix (a few per hundred keys).

    A key's deepest prefix is its folder's (the key up to its last ``/``: the same first slashes and
    the same last one), and folders repeat: each key's folder is what ``ascii_rtrim`` leaves when it
    trims every byte but ``/`` off the key's end (a byte-table scan from the end that stops at the
    last slash, a third of the CPU of splitting the keys at their slashes), the distinct folders are
    counted (``value_counts`` lists them in the order each first occurs: a hash table's insertion
    order), and only the distinct folders are cut to their deepest prefix. Folders cut to the same
    one are added up, first occurrence first."""
    counts = pc.value_counts(pc.ascii_rtrim(decoded, _NOT_SLASH))
    folders, rows = counts.field(0), counts.field(1).to_pylist()
    deepest = _deepest_prefixes(folders, depths)
    if pc.all(pc.equal(pc.binary_length(deepest), pc.binary_length(folders))).as_py() is not False:
        return list(zip(folders.to_pylist(), rows, strict=True))
    added: dict[str, int] = {}
    for prefix, count in zip(deepest.to_pylist(), rows, strict=True):
        added[prefix] = added.get(prefix, 0) + count
    return list(added.items())


#: Every byte a UTF-8 string may hold but ``/``, as characters whose UTF-8 holds them, for
#: ``ascii_rtrim`` (which reads its characters as bytes): ASCII but ``/``; U+0080..U+00BF (0xC2 and
#: every continuation byte, 0x80-0xBF); and a character for each other lead byte, 0xC3-0xDF (two
#: bytes), 0xE0-0xEF (three) and 0xF0-0xF4 (four).
_NOT_SLASH = "".join(
    [chr(c) for c in range(0x80) if c != ord("/")]
    + [chr(c) for c in range(0x80, 0xC0)]
    + [chr(c << 6) for c in range(3, 0x20)]
    + [chr(0x800), *(chr(c << 12) for c in range(1, 0x10))]
    + [chr(0x10000), *(chr(c << 18) for c in range(1, 5))]
)


def _deepest_prefixes(keys: Any, depths: int) -> Any:
    """Each key up to and including its ``depths``-th ``/`` (or its last; "" without one): the key
    without the piece after its first ``depths`` slashes (one split), cut from the keys' own bytes
    (``_without_tails``). A fifth less than splitting, emptying the last piece and joining again."""
    parts = pc.split_pattern(keys, "/", max_splits=depths)
    last_pieces = pc.subtract(parts.offsets.slice(1), 1)
    return _without_tails(keys, pc.take(pc.binary_length(parts.flatten()), last_pieces))


def _without_tails(values: Any, tails: Any) -> Any:
    """Each of ``values`` (a string array) without its last ``tails`` bytes (int32).

    The values' bytes are read as twice as many values, each value's head then its tail: offsets
    that interleave where each value starts and where its tail starts (two int32 in each int64,
    in the machine's byte order, as Arrow's buffers are); the heads are every other one."""
    offsets, _, _ = _offsets(values)
    count = len(values)
    starts = pc.cast(offsets.slice(0, count), pa.int64())
    tail_starts = pc.cast(pc.subtract(offsets.slice(1), tails), pa.int64())
    if sys.byteorder == "little":
        both = pc.bit_wise_or(starts, pc.shift_left(tail_starts, 32))
    else:
        both = pc.bit_wise_or(pc.shift_left(starts, 32), tail_starts)
    interleaved = pa.concat_arrays(
        [pa.Array.from_buffers(pa.int32(), 2 * count, [None, both.buffers()[1]]), offsets.slice(count)]
    )
    halves = pa.Array.from_buffers(
        pa.string(), 2 * count, [None, interleaved.buffers()[1], values.buffers()[2]]
    )
    return pc.take(halves, _even_numbers(count))


def _even_numbers(count: int) -> Any:
    """0, 2, 4, ... (``count`` of them, int32), sliced from one array grown as needed."""
    global _EVEN_NUMBERS
    if len(_EVEN_NUMBERS) < count:
        _EVEN_NUMBERS = pa.array(range(0, 4 * count, 2), pa.int32())
    return _EVEN_NUMBERS.slice(0, count)


_EVEN_NUMBERS = pa.array([], pa.int32()) if pa is not None else None
