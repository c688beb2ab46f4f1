"""Failures by key prefix: the bounded aggregate the run page (runpage.py) draws its prefix table from.

A bucket policy that denies a prefix, or a prefix that no longer exists, is the usual cause of a
cluster of failures, so the page shows where the failures fall. It cannot read the failures again
(at a billion objects a second pass over them would cost as much as the first), so the report stage
counts them as it writes them: every failed row passes ``PrefixTally.add`` in the part that read it.

Prefixes, per depth 1..``DEPTHS``: a key's prefix at depth d is the key up to and including its d-th
``/``; a key with fewer slashes counts under its own folder (the key up to its last ``/``, or ``""``,
the bucket's top level). So at every depth each failure falls under exactly one prefix and a depth's
counts add up to the attempt's failures. A prefix longer than ``MAX_PREFIX_CHARS`` is cut there (a
cut prefix is still a prefix of every key counted under it) and marked with ``cut``.

Bounded, and exact where it says so:

* a part tracks the first ``TRACKED`` distinct prefixes it meets at each depth and counts each of
  them exactly from its first row on; failures under any later prefix are added to ``other``. A
  cluster of failures is among the first prefixes met unless more than ``TRACKED`` others come first;
* documents (parts, then attempts) merge by adding counts. A merged count is ``exact`` when every
  document that does not list the prefix has nothing in ``other`` (then none of its failures can be
  under it); otherwise it is a lower bound, and the page says "at least";
* an attempt's record keeps the ``KEPT`` prefixes with the most failures per depth and adds the rest
  to ``other``.

A part's document is at most DEPTHS x TRACKED entries of at most MAX_PREFIX_CHARS characters (about
200 KB in the worst case, a few hundred bytes for a typical cluster); a record's is at most
DEPTHS x KEPT (about 25 KB).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

DEPTHS = 4
TRACKED = 200
KEPT = 25
MAX_PREFIX_CHARS = 200
#: Deepest prefixes whose entries a tally keeps (``add_counts``), forgotten all at once when more
#: are met, so that a part whose failures fall in many folders (a folder per failed key is a common
#: layout) holds at most ~18 MB for them: a deepest prefix is at most a key, 1,024 bytes of UTF-8,
#: which Python holds in up to ~4 KB (one character beyond U+FFFF makes every character four bytes),
#: and its entries ~0.3 KB. A deepest prefix met again after a clear costs one more walk of its depths.
KNOWN = 4096


class PrefixTally:
    """One part's failures by prefix, row by row; ``as_document`` for its tally."""

    def __init__(self, depths: int = DEPTHS, tracked: int = TRACKED, known: int = KNOWN) -> None:
        self._tracked = tracked
        self._most_known = known
        # Per depth: prefix -> [permanent, retriable].
        self._counts: list[dict[str, list[int]]] = [{} for _ in range(depths)]
        self._other: list[list[int]] = [[0, 0] for _ in range(depths)]
        self._known: dict[str, list[list[int]]] = {}  # a deepest prefix's entries (add_counts)

    def add(self, key: str, *, retriable: bool) -> None:
        self._add(key, 1 if retriable else 0, 1)

    def add_counts(self, counted: list[tuple[str, int]], *, retriable: bool) -> None:
        """What ``add`` does for many keys at once, from their deepest prefixes (a key up to its
        ``DEPTHS``-th ``/``, or its last: what every prefix of the key is a prefix of) counted in the
        order each first occurs (``failure_columns.prefix_counts``): the same prefixes are tracked (the
        first ``tracked`` met), the same rows go to ``other``.

        Where a deepest prefix's rows go is kept (``_add``): a tracked prefix stays tracked, and a
        prefix not tracked because its depth was full stays so, so a deepest prefix met again in a
        later batch costs one lookup (a report's failures fall in a few folders, met batch after
        batch). A deepest prefix of one row in its batch is not kept: a folder per failed key is a
        common layout, and keeping each such folder would only fill the bound and clear the
        folders that do recur (15% of this step's CPU in the benchmark's 30% report); its rows are
        added as the walk finds each count, with no list of them made."""
        column = 1 if retriable else 0
        known = self._known
        for prefix, rows in counted:
            entries = known.get(prefix)
            if entries is not None:
                for entry in entries:
                    entry[column] += rows
            elif rows == 1:
                self._add(prefix, column, rows)
            else:
                if len(known) >= self._most_known:
                    known.clear()  # bounded: the prefixes met since are found again as they come
                known[prefix] = entries = []
                self._add(prefix, column, rows, entries)

    def _add(self, key: str, column: int, rows: int, kept: list[list[int]] | None = None) -> None:
        """Adds ``rows`` to ``column`` of the counts ``key`` adds to, per depth: its prefix's (tracked
        from here on if the depth has room: the first ``tracked`` prefixes met), else the depth's
        ``other``; appends those counts to ``kept`` when given (``add_counts`` keeps them).

        A key's prefix at depth d+1 determines its prefix at depth d (the part up to its d-th ``/``,
        or all of it when it holds fewer; a prefix cut at ``MAX_PREFIX_CHARS`` likewise, as the cut
        keeps every ``/`` before it), so at every moment depth d+1 has met at least as many distinct
        prefixes as depth d: it fills no later, and a prefix tracked at depth d+1 was met while depth
        d had room too, its depth-d prefix then tracked. So once a depth is full, a key whose prefix
        there is not tracked adds to ``other`` at that depth and every deeper one: no more finds
        (tests/unit/test_prefixes.py holds it against the full walk)."""
        end = 0
        tracked = self._tracked
        for depth, counts in enumerate(self._counts):
            found = key.find("/", end)
            if found >= 0:
                end = found + 1
            prefix = key[:end] if end <= MAX_PREFIX_CHARS else key[:MAX_PREFIX_CHARS]
            entry = counts.get(prefix)
            if entry is None:
                if len(counts) >= tracked:
                    for other in self._other[depth:]:
                        other[column] += rows
                    if kept is not None:
                        kept.extend(self._other[depth:])
                    return
                entry = counts[prefix] = [0, 0]
            entry[column] += rows
            if kept is not None:
                kept.append(entry)

    def as_document(self) -> dict[str, Any]:
        return {
            "depths": [
                {
                    "prefixes": [_entry(prefix, counts, exact=True) for prefix, counts in by_prefix.items()],
                    "other": {"permanent": other[0], "retriable": other[1]},
                }
                for by_prefix, other in zip(self._counts, self._other, strict=True)
            ]
        }


def _entry(prefix: str, counts: list[int], *, exact: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"prefix": prefix, "permanent": counts[0], "retriable": counts[1], "exact": exact}
    if len(prefix) >= MAX_PREFIX_CHARS:
        entry["cut"] = True
    return entry


def merge(documents: Iterable[dict[str, Any] | None], *, kept: int = KEPT) -> dict[str, Any] | None:
    """Documents added up (parts into an attempt, attempts into a run); the ``kept`` prefixes with the
    most failures per depth, the rest in ``other``. None when no document had any (older records)."""
    present = [d for d in documents if d]
    if not present:
        return None
    depths = max(len(d["depths"]) for d in present)
    merged = []
    for depth in range(depths):
        levels = [d["depths"][depth] for d in present if depth < len(d["depths"])]
        totals: dict[str, list[int]] = {}
        inexact: set[str] = set()
        other = [0, 0]
        for level in levels:
            other[0] += level["other"]["permanent"]
            other[1] += level["other"]["retriable"]
            for entry in level["prefixes"]:
                counts = totals.setdefault(entry["prefix"], [0, 0])
                counts[0] += entry["permanent"]
                counts[1] += entry["retriable"]
                if not entry.get("exact", True):
                    inexact.add(entry["prefix"])
        # A document that does not list a prefix but has failures in its `other` may hide some of it.
        hiding = [
            {entry["prefix"] for entry in level["prefixes"]}
            for level in levels
            if level["other"]["permanent"] or level["other"]["retriable"]
        ]
        ranked = sorted(totals.items(), key=lambda item: (-(item[1][0] + item[1][1]), item[0]))
        shown = [
            _entry(
                prefix,
                counts,
                exact=prefix not in inexact and all(prefix in listed for listed in hiding),
            )
            for prefix, counts in ranked[:kept]
        ]
        for _prefix, counts in ranked[kept:]:
            other[0] += counts[0]
            other[1] += counts[1]
        merged.append({"prefixes": shown, "other": {"permanent": other[0], "retriable": other[1]}})
    return {"depths": merged}


def run_prefixes(records: Iterable[Any]) -> dict[str, Any] | None:
    """The run's failures by prefix: each attempt record's ``failuresByPrefix``, split into what
    failed for good (permanent failures of every attempt; the last attempt's retriable failures when
    no attempt followed) and what was retried (retriable failures a later attempt ran again).

    Returns ``{"depths": [{"prefixes": [{prefix, failed, retried, exact, cut?}], "other": {failed,
    retried}}]}``, or None when no record has the aggregate (records written before it existed)."""
    records = list(records)
    documents = []
    for position, record in enumerate(records):
        document = getattr(record, "failuresByPrefix", None)
        if not document:
            if record.failedRetriable or record.failedPermanent:
                return None  # an attempt with failures but no aggregate: the table would understate
            continue
        retried = position < len(records) - 1
        documents.append(_as_run_columns(document, retried=retried))
    merged = merge(documents)
    if merged is None:
        return None
    for level in merged["depths"]:
        level["prefixes"] = [
            {
                "prefix": e["prefix"],
                "failed": e["permanent"],
                "retried": e["retriable"],
                "exact": e["exact"],
                **({"cut": True} if e.get("cut") else {}),
            }
            for e in level["prefixes"]
        ]
        level["other"] = {"failed": level["other"]["permanent"], "retried": level["other"]["retriable"]}
    return merged


def _as_run_columns(document: dict[str, Any], *, retried: bool) -> dict[str, Any]:
    """An attempt's document with its columns renamed for the run: permanent -> failed for good;
    retriable -> retried, or failed for good when this attempt was the last."""

    def columns(counts: dict[str, Any]) -> dict[str, int]:
        if retried:
            return {"permanent": counts["permanent"], "retriable": counts["retriable"]}
        return {"permanent": counts["permanent"] + counts["retriable"], "retriable": 0}

    return {
        "depths": [
            {
                "prefixes": [e | columns(e) for e in level["prefixes"]],
                "other": columns(level["other"]),
            }
            for level in document["depths"]
        ]
    }
