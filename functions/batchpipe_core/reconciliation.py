"""The join of a manifest with its completion report: one outcome per manifest row.

Which manifest rows the report does not mention is the one question that relates rows to each
other. Both sides are partitioned by hash to local files when the report is too large for memory,
so the join holds at most ``memory_rows`` rows at once (a grace hash join).
"""

from __future__ import annotations

import itertools
import math
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack

from batchpipe_core.keys import report_key
from batchpipe_core.report import ManifestRow, ReportRow

_new_tuple = tuple.__new__  # builds a NamedTuple without a Python-level __new__ call per row

MEMORY_ROWS = 200_000  # ~150 MB of rows in a dict: comfortable in a 1,024 MB function
MAX_PARTITIONS = 128  # two files per partition stay far below Lambda's 1,024 open files
MAX_DEPTH = 4  # more only helps if one object fills a partition alone, which dedup already handles

Identity = tuple[str, str, str]


def identity(bucket: str, key: str, version_id: str) -> Identity:
    """What makes two rows the same object: bucket, *decoded* key and version.

    The S3 user guide's report examples repeat each key as the manifest gave it, but nothing
    promises the same bytes: a report that spells a key differently (``%2F`` for ``/``, ``+`` for a
    space, lower-case hex) must still find its manifest row, or the object would look unrun and be
    counted twice. So keys are compared decoded (``keys.report_key``). ``null`` and "" are the same
    (null) version: S3 wants the string ``null`` in manifests but may leave the report's field empty.
    """
    return bucket, report_key(key), "" if version_id == "null" else version_id


class Reconciliation:
    """One outcome per manifest row: the report's row for that object, else ``absent(row)``.

    When the report has several rows for one object (tasks run at least once), ``prefer`` picks one.
    Report rows that match no manifest row are counted in ``unmatched``, not returned: the attempt's
    total is its manifest, and an object must not be counted twice. Iterate once.

    The report is loaded into a dict while it fits in ``memory_rows`` (the usual case: a job that
    failed or was cancelled early) and the manifest streams past it. A larger report and the
    manifest are both hash-partitioned to local files (pickled batches of plain tuples, the cheapest
    format to write and read back) and joined partition by partition, re-partitioning any that is
    still too large. Memory is therefore bounded by ``memory_rows`` rows whatever the sizes.
    """

    def __init__(
        self,
        manifest_rows: Iterable[ManifestRow],
        report_rows: Iterable[ReportRow],
        *,
        absent: Callable[[ManifestRow], ReportRow],
        prefer: Callable[[ReportRow, ReportRow], ReportRow],
        expected_rows: int,
        memory_rows: int = MEMORY_ROWS,
        workdir: str | None = None,
    ) -> None:
        self._manifest_rows, self._report_rows = manifest_rows, report_rows
        self._absent, self._prefer = absent, prefer
        self._expected_rows, self._memory_rows = expected_rows, memory_rows
        self._workdir = workdir
        self._held: list[ReportRow] = []
        self.unmatched = 0

    def __iter__(self) -> Iterator[ReportRow]:
        report_rows = iter(self._report_rows)
        reported = self._load(report_rows, limit=self._memory_rows)
        if reported is not None:
            yield from self._probe(self._manifest_rows, reported)
            return
        with tempfile.TemporaryDirectory(prefix="batchpipe-join-", dir=self._workdir) as spill:
            rows = max(self._expected_rows, self._memory_rows + 1)
            yield from self._join_spilled(self._manifest_rows, report_rows, spill, depth=0, rows=rows)

    def _load(self, report_rows: Iterator[ReportRow], limit: int | None) -> dict[Identity, ReportRow] | None:
        """The report by identity, or None once it outgrows ``limit``: it then stays in ``self._held``."""
        reported: dict[Identity, ReportRow] = {}
        prefer = self._prefer
        for row in report_rows:
            ident = identity(row[0], row[1], row[2])
            earlier = reported.get(ident)
            reported[ident] = row if earlier is None else prefer(earlier, row)
            if limit is not None and len(reported) > limit:
                self._held = list(reported.values())
                return None
        return reported

    def _probe(self, manifest_rows: Iterable[ManifestRow], reported: dict[Identity, ReportRow]):
        matched: dict[Identity, ReportRow] = {}
        for manifest_row in manifest_rows:
            ident = identity(*manifest_row)
            outcome = reported.pop(ident, None) or matched.get(ident)
            if outcome is None:
                yield self._absent(manifest_row)
            else:
                matched[ident] = outcome
                yield outcome
        self.unmatched += len(reported)

    def _join_spilled(self, manifest_rows, report_rows, spill: str, depth: int, rows: int):
        partitions = min(MAX_PARTITIONS, max(2, math.ceil(2 * rows / self._memory_rows)))
        base = os.path.join(spill, f"d{depth}-{os.urandom(4).hex()}")
        if depth == 0:  # the rows read before the report proved too large for memory
            report_rows = itertools.chain(self._held, report_rows)
            self._held = []
        manifest_counts = _partition(manifest_rows, f"{base}-m", partitions, depth, self._memory_rows)
        report_counts = _partition(report_rows, f"{base}-r", partitions, depth, self._memory_rows)
        for index in range(partitions):
            manifest_path, report_path = f"{base}-m{index}", f"{base}-r{index}"
            part_manifest = _read_partition(manifest_path, ManifestRow)
            part_report = _read_partition(report_path, ReportRow)
            size = max(manifest_counts[index], report_counts[index])
            if size <= self._memory_rows or depth + 1 >= MAX_DEPTH:
                reported = self._load(part_report, limit=None)
                assert reported is not None
                yield from self._probe(part_manifest, reported)
            else:
                yield from self._join_spilled(part_manifest, part_report, spill, depth + 1, size)
            os.remove(manifest_path)
            os.remove(report_path)


def _partition(rows: Iterable[tuple], base: str, partitions: int, salt: int, memory_rows: int) -> list[int]:
    """Writes rows to ``base<i>`` by hash of their identity; returns the row count per file.

    ``salt`` (the depth) makes a re-partitioned file spread instead of landing in one partition again.
    Python's string hash is per process, which is all a spill file needs. Buffers hold at most a
    quarter of ``memory_rows`` rows in all.
    """
    batch = max(100, memory_rows // (4 * partitions))
    counts = [0] * partitions
    buffers: list[list[tuple]] = [[] for _ in range(partitions)]
    with ExitStack() as stack:
        files = [stack.enter_context(open(f"{base}{i}", "wb")) for i in range(partitions)]
        for row in rows:
            index = hash((salt, *identity(row[0], row[1], row[2]))) % partitions
            buffer = buffers[index]
            buffer.append(tuple(row))
            if len(buffer) >= batch:
                pickle.dump(buffer, files[index], protocol=pickle.HIGHEST_PROTOCOL)
                counts[index] += len(buffer)
                buffer.clear()
        for index, buffer in enumerate(buffers):
            if buffer:
                pickle.dump(buffer, files[index], protocol=pickle.HIGHEST_PROTOCOL)
                counts[index] += len(buffer)
    return counts


def _read_partition(path: str, row_type: type) -> Iterator:
    """Rows of a partition file, one pickled batch in memory at a time. Only this process wrote it."""
    with open(path, "rb") as spilled:
        while True:
            try:
                batch = pickle.load(spilled)  # noqa: S301 - our own spill file in a private temp dir
            except EOFError:
                return
            for row in batch:
                yield _new_tuple(row_type, row)
