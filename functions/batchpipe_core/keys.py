"""S3 keys: their encoding in CSV manifests and inventories, and prefixes keys are appended to.

S3 Batch Operations wants URL-encoded keys in CSV manifests; whether it decodes ``+`` as a space is
unverified, so we emit an encoding on which percent-decoding and form-decoding agree: never a bare
``+`` (space -> ``%20``, ``+`` -> ``%2B``). Athena's equivalent is
``replace(url_encode(key), '+', '%20')``.
"""

from __future__ import annotations

from urllib.parse import quote, unquote, unquote_plus


def encode_key(key: str) -> str:
    """Manifest form of an S3 key; ``unquote`` and ``unquote_plus`` both give ``key`` back."""
    return quote(key, safe="/")


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
