"""S3 keys: their encoding in CSV manifests and inventories, and prefixes keys are appended to.

S3 Batch Operations wants URL-encoded keys in CSV manifests; whether it decodes ``+`` as a space is
unverified, so we emit an encoding on which percent-decoding and form-decoding agree: never a bare
``+`` (space -> ``%20``, ``+`` -> ``%2B``). Athena's equivalent is
``replace(url_encode(key), '+', '%20')``.

A retry manifest's keys come from a completion report, which spells each key as the job's manifest
gave it (S3 User Guide, "Examples: S3 Batch Operations completion reports",
https://docs.aws.amazon.com/AmazonS3/latest/userguide/batch-ops-examples-reports.html). Such a
spelling that is ASCII, holds no ``+`` and whose every ``%`` starts a two-hex-digit escape already
names its key under either decoding, so ``manifest_key`` writes it again byte for byte (``%2F`` stays
``%2F`` where ``encode_key`` writes ``/``) and re-encodes only other spellings.
"""

from __future__ import annotations

from urllib.parse import quote, unquote, unquote_plus


def encode_key(key: str) -> str:
    """Manifest form of an S3 key; ``unquote`` and ``unquote_plus`` both give ``key`` back."""
    return quote(key, safe="/")


def manifest_key(spelled: str, decoded: str) -> str:
    """A retry manifest's key for a report key ``spelled`` whose ``report_key`` is ``decoded``:
    ``spelled`` itself when it is ASCII, holds no ``+`` and every ``%`` in it starts an escape, else
    ``encode_key(decoded)``; ``unquote`` and ``unquote_plus`` both give ``decoded`` back either way.

    The escapes are checked by length: decoding takes exactly two bytes off per ``%`` when every one
    is an escape, a ``%`` that is none keeps its two bytes, and bytes that are not UTF-8 never decode
    shorter (U+FFFD is three bytes). ``failure_columns.manifest_keys`` applies the same rule per batch.
    """
    if (
        spelled.isascii()
        and "+" not in spelled
        and len(decoded.encode()) == len(spelled) - 2 * spelled.count("%")
    ):
        return spelled
    return encode_key(decoded)


def decode_key(encoded: str, *, plus_is_space: bool = False) -> str:
    """Key from its URL-encoded form (CSV inventories, manifests, completion reports)."""
    return unquote_plus(encoded) if plus_is_space else unquote(encoded)


def report_key(encoded: str) -> str:
    """Key from a completion report or manifest row: the one decoding both sides of the join share.

    Our manifests never hold a bare ``+`` (``encode_key``; Athena's ``replace(url_encode(key), '+',
    '%20')``), so a ``+`` in a report can only be a space spelled form-style, and decoding it as one is
    right for every spelling that names the same key: ``%2F`` or ``/``, ``%20`` or ``+``, ``%2b`` or
    ``%2B``. That is ``unquote_plus`` where a ``+`` occurs, else ``unquote``; an ASCII key (reports
    URL-encode keys, so nearly all are) takes a shorter road to the same result, a third less CPU
    (every failed row of a report is decoded; tests/unit/test_keys_property.py holds them equal).
    """
    if "+" in encoded:
        encoded = encoded.replace("+", " ")
    if "%" not in encoded:
        return encoded
    if not encoded.isascii():
        return unquote(encoded)
    pieces = encoded.encode("ascii").split(b"%")
    decoded = [pieces[0]]
    for piece in pieces[1:]:
        byte = _HEX_PAIRS.get(piece[:2])
        decoded.append(byte + piece[2:] if byte is not None else b"%" + piece)
    return b"".join(decoded).decode("utf-8", "replace")


_HEX_DIGITS = "0123456789ABCDEFabcdef"
_HEX_PAIRS = {(a + b).encode(): bytes.fromhex(a + b) for a in _HEX_DIGITS for b in _HEX_DIGITS}


def as_folder(prefix: str) -> str:
    """``prefix`` with a trailing ``/`` (added only if missing), so that key names can be appended."""
    return prefix if prefix.endswith("/") else f"{prefix}/"
