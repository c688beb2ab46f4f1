"""A job's generated manifest copied into the run's own CSV manifest, in bounded, resumable steps.

S3 writes the manifest it generates for a spec.source run as a manifest.json naming CSV.gz data files
(``S3InventoryReport_CSV_20211130``; S3 API reference, S3GeneratedManifestDescriptor). The run needs
one plain ``Bucket,Key`` CSV (``copy_generated_manifest`` says why), and a
selection of billions of objects takes far longer to convert than one Lambda invocation has. So:

* The data files are cut into *pieces*: consecutive files, a new piece starting once the files of the
  current one reach ``PIECE_INPUT_BYTES`` (their compressed sizes, from manifest.json). The cut depends
  on the manifest alone, never on timing, so every run of the copy (one invocation or many, retried
  or not) makes the same pieces and the same manifest.
* Each piece is converted whole (pyarrow's CSV reader over the gzip stream when the layer provides it,
  else the csv module) into its own object, keyed by the data files it holds, so a retried
  invocation overwrites its own output. After each piece the progress (the pieces done, their rows,
  sizes and ETags, the first keys) is saved in S3 beside them; only what the progress names counts.
* Before a piece that the invocation's remaining time may not cover (its input at this invocation's
  rate, twice, plus ``COPY_MARGIN_SECONDS``), the copy stops and raises ManifestCountIncomplete: the
  ConfirmJob state's Retry invokes the function again, which goes on from the progress. Each
  invocation does at least one step, so the copy always advances.
* The last step checks the rows against S3's count (when given) and joins the pieces into the one
  manifest object inside S3 (``batchpipe_core.multipart.concatenate``: UploadPartCopy of pieces of
  5 MiB or more, smaller ones read and sent together).

Every piece is written by ``CsvUpload`` exactly as the csv module writes the rows (keys as S3 wrote
them, encoded), so the manifest's lines do not depend on the reader.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from batchpipe_core.csv_upload import CsvUpload
from batchpipe_core.errors import AccountingError, ManifestCountIncomplete
from batchpipe_core.failure_columns import csv_pieces
from batchpipe_core.jobs import ManifestRef, transient_as_retryable
from batchpipe_core.keys import decode_key
from batchpipe_core.multipart import Source, concatenate
from batchpipe_core.report import ARROW_BLOCK_BYTES, ARROW_THREADS, open_paced_csv, pa, pacsv

# Keys shown by a dry run (as BuildManifest shows an inventory run's).
SAMPLE_KEYS = 20
#: A piece holds consecutive data files until their compressed bytes reach this: a few seconds of
#: conversion (so a lost invocation loses little) and, at typical key lengths and gzip ratios, some
#: hundreds of MB of manifest, so that even a manifest of several TB joins in well under 10,000 parts.
PIECE_INPUT_BYTES = 64 << 20
#: The copy stops before a step when less than this (plus twice the step's estimated time) remains.
COPY_MARGIN_SECONDS = 60.0
#: The columns the run's manifest keeps, as the generated manifest's fileSchema names them.
COPIED_COLUMNS = ("Bucket", "Key")
PYARROW, CSV_MODULE = "pyarrow", "csv"


@dataclass(frozen=True)
class Piece:
    """Data files ``first``..``end - 1`` of the generated manifest, converted into object ``key``."""

    key: str
    first: int
    end: int
    rows: int
    size: int
    etag: str


def piece_bounds(sizes: list[int], input_bytes: int) -> list[tuple[int, int]]:
    """The data files (by their compressed ``sizes``) cut into pieces ``(first, end)``: a piece ends
    at the file that brings its bytes to ``input_bytes``. No files: one empty piece, so that every
    copy has a step that writes the (empty) manifest."""
    bounds: list[tuple[int, int]] = []
    first, total = 0, 0
    for index, size in enumerate(sizes):
        total += size
        if total >= input_bytes:
            bounds.append((first, index + 1))
            first, total = index + 1, 0
    if first < len(sizes) or not bounds:
        bounds.append((first, len(sizes)))
    return bounds


def copy_folder(manifest: ManifestRef, job_id: str) -> str:
    """Where the pieces and the progress of job ``job_id``'s copy live: beside the run's manifest."""
    folder = manifest.key.rpartition("/")[0]
    return f"{folder}/generated-copy/job-{job_id}/" if folder else f"generated-copy/job-{job_id}/"


def piece_key(folder: str, first: int, end: int) -> str:
    return f"{folder}files-{first:06d}-{end:06d}.csv"


def copy_generated_manifest(
    s3: Any,
    *,
    job_id: str,
    at: tuple[str, str],
    manifest: ManifestRef,
    objects: int | None,
    remaining_seconds: Callable[[], float] = lambda: float("inf"),
    reader: str | None = None,
) -> dict[str, Any]:
    """The job's generated manifest (its manifest.json ``at``) as the run's own CSV manifest (at
    ``manifest``'s key); its ManifestRef, with the first SAMPLE_KEYS decoded keys as ``sample``.

    S3 writes the generated manifest in S3InventoryReport_CSV_20211130 form (a manifest.json naming
    CSV.gz files), which the report stage does not read and a later CreateJob cannot take as its
    Manifest (JobManifestSpec knows only the 20161130 inventory format). Copied into the plain
    Bucket,Key CSV every other run has, the report join, the retry manifests and the failures file
    work on it as on any run. Keys are copied as S3 wrote them (encoded), so report rows and manifest
    rows spell each key alike. The rows are the count; they must add up to S3's (``objects``) when
    S3 gave one.

    The copy goes in pieces (module docstring): when ``remaining_seconds`` runs short it saves its
    progress and raises ManifestCountIncomplete, and the next call goes on. ``reader``: PYARROW or
    CSV_MODULE (default: pyarrow when importable).
    """
    started = time.monotonic()
    bucket, key = at
    with transient_as_retryable("GetObject"):
        document = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    schema = [name.strip() for name in document["fileSchema"].split(",")]
    missing = [name for name in COPIED_COLUMNS if name not in schema]
    if missing:
        raise AccountingError(
            f"the generated manifest of job {job_id} (s3://{bucket}/{key}) has no {', '.join(missing)} "
            f"column in its fileSchema {document['fileSchema']!r}"
        )
    files = document["files"]
    folder = copy_folder(manifest, job_id)
    bounds = piece_bounds([int(entry.get("size") or 0) for entry in files], PIECE_INPUT_BYTES)
    done, sample = _read_progress(s3, manifest.bucket, folder, bounds)
    reader = reader or (PYARROW if pacsv is not None else CSV_MODULE)
    steps, read_bytes = 0, 0
    for first, end in bounds[len(done) :]:
        needed = sum(int(entry.get("size") or 0) for entry in files[first:end])
        if steps and not _time_for(needed, read_bytes, time.monotonic() - started, remaining_seconds()):
            _stop(job_id, done)
        piece, sample = _convert(
            s3,
            bucket,
            files[first:end],
            schema,
            manifest.bucket,
            piece_key(folder, first, end),
            sample,
            reader,
        )
        done.append(Piece(piece.key, first, end, piece.rows, piece.size, piece.etag))
        _write_progress(s3, manifest.bucket, folder, done, sample)
        steps += 1
        read_bytes += needed
    rows = sum(piece.rows for piece in done)
    if objects is not None and rows != objects:
        raise AccountingError(
            f"the generated manifest of job {job_id} lists {rows} objects; S3 counted {objects}"
        )
    if steps and remaining_seconds() < COPY_MARGIN_SECONDS:
        _stop(job_id, done)
    etag = _join(s3, manifest, folder, done)
    return {
        "bucket": manifest.bucket,
        "key": manifest.key,
        "etag": etag,
        "objects": rows,
        "fields": list(COPIED_COLUMNS),
        "generated": False,
        "sample": sample,
    }


def _time_for(needed: int, read_bytes: int, elapsed: float, remaining: float) -> bool:
    """Whether a step of ``needed`` input bytes fits in ``remaining`` seconds at this invocation's
    rate so far (``read_bytes`` in ``elapsed``), with a factor of two and the margin to spare."""
    rate = read_bytes / elapsed if elapsed > 0 and read_bytes else None
    estimate = needed / rate if rate else 0.0
    return remaining >= COPY_MARGIN_SECONDS + 2 * estimate


def _stop(job_id: str, done: list[Piece]) -> None:
    raise ManifestCountIncomplete(
        f"copied {sum(piece.rows for piece in done)} rows of job {job_id}'s generated manifest "
        f"({len(done)} pieces); the copy goes on in the next invocation"
    )


def _progress_key(folder: str) -> str:
    return f"{folder}progress.json"


def _read_progress(
    s3: Any, bucket: str, folder: str, bounds: list[tuple[int, int]]
) -> tuple[list[Piece], list[str]]:
    """The pieces a previous invocation finished (in plan order) and its first keys; none when no
    progress was saved or it does not match this plan."""
    try:
        with transient_as_retryable("reading the copy's progress"):
            body = s3.get_object(Bucket=bucket, Key=_progress_key(folder))["Body"].read()
    except s3.exceptions.NoSuchKey:  # the first invocation (a 404 only with s3:ListBucket granted)
        return [], []
    saved = json.loads(body)
    pieces = [Piece(**piece) for piece in saved["pieces"]]
    if [(piece.first, piece.end) for piece in pieces] != bounds[: len(pieces)]:
        return [], []
    return pieces, list(saved["sample"])


def _write_progress(s3: Any, bucket: str, folder: str, done: list[Piece], sample: list[str]) -> None:
    body = json.dumps({"pieces": [asdict(piece) for piece in done], "sample": sample}).encode()
    with transient_as_retryable("saving the copy's progress"):
        s3.put_object(Bucket=bucket, Key=_progress_key(folder), Body=body, ContentType="application/json")


def _convert(
    s3: Any,
    bucket: str,
    entries: list[dict[str, Any]],
    schema: list[str],
    out_bucket: str,
    out_key: str,
    sample: list[str],
    reader: str,
) -> tuple[Any, list[str]]:
    """The rows of data files ``entries`` as one CSV object ``out_key``; (its Uploaded, the sample)."""
    upload = CsvUpload(s3, out_bucket, out_key)
    sample = list(sample)
    try:
        for entry in entries:
            # Streamed: a data file is never held whole, compressed or not.
            with transient_as_retryable("GetObject"):
                body = s3.get_object(Bucket=bucket, Key=entry["key"])["Body"]
                with gzip.GzipFile(fileobj=body) as raw:
                    convert = _convert_arrow if reader == PYARROW else _convert_csv
                    for keys in convert(raw, schema, upload, entry["key"]):
                        if len(sample) < SAMPLE_KEYS:
                            sample.extend(decode_key(k) for k in keys[: SAMPLE_KEYS - len(sample)])
        written = upload.close()
    except BaseException:
        upload.abort()
        raise
    assert written is not None  # never skipped: skip_if_empty is off
    return written, sample


def _convert_csv(raw: Any, schema: list[str], upload: CsvUpload, name: str) -> Iterator[list[str]]:
    """The csv module's conversion, row by row (no pyarrow); yields the first keys it wrote."""
    at_bucket, at_key = schema.index("Bucket"), schema.index("Key")
    with io.TextIOWrapper(raw, "utf-8", newline="") as text:
        for row in csv.reader(text):
            if not row:
                continue
            if len(row) != len(schema):
                raise _bad_row(name, len(row), schema)
            upload.writerow([row[at_bucket], row[at_key]])
            if upload.rows <= SAMPLE_KEYS:
                yield [row[at_key]]


def _convert_arrow(raw: Any, schema: list[str], upload: CsvUpload, name: str) -> Iterator[list[str]]:
    """pyarrow's conversion, a record batch at a time: every column read as a string (keys exactly
    as S3 wrote them), quoted values may hold newlines, written by ``failure_columns.csv_pieces``
    exactly as the csv module writes them; yields the first keys it wrote."""
    try:
        batches = open_paced_csv(
            raw,
            read_options=pacsv.ReadOptions(
                column_names=schema, block_size=ARROW_BLOCK_BYTES, use_threads=ARROW_THREADS
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(schema, pa.string()),
                check_utf8=False,  # open_paced_csv's stream checks it
                include_columns=list(COPIED_COLUMNS),
            ),
        )
    except pa.ArrowInvalid as error:
        raise _unreadable(name, error) from error
    if batches is None:
        return  # an empty data file
    with batches:  # closed (and no read left held) however the caller stops taking keys
        try:
            for batch in batches:
                if not batch.num_rows:
                    continue
                keys = batch.column(1)
                upload.write_block(csv_pieces([batch.column(0), keys]), batch.num_rows)
                if upload.rows - batch.num_rows < SAMPLE_KEYS:
                    yield keys.slice(0, SAMPLE_KEYS).to_pylist()
        except pa.ArrowInvalid as error:
            raise _unreadable(name, error) from error


def _bad_row(name: str, fields: int, schema: list[str]) -> AccountingError:
    return AccountingError(
        f"the generated manifest's data file {name} has a row of {fields} fields where its fileSchema "
        f"names {len(schema)} ({', '.join(schema)}): its objects cannot be accounted for"
    )


def _unreadable(name: str, error: Exception) -> AccountingError:
    return AccountingError(
        f"the generated manifest's data file {name} is not the CSV its fileSchema describes ({error}): "
        "its objects cannot be accounted for"
    )


def _join(s3: Any, manifest: ManifestRef, folder: str, done: list[Piece]) -> str:
    """The pieces joined into the run's manifest inside S3; its ETag. Joined again on a retry: the
    same pieces make the same object."""
    sources = [Source(piece.key, piece.size, piece.etag) for piece in done]
    with transient_as_retryable("joining the generated manifest's pieces"):
        joined = concatenate(
            s3, bucket=manifest.bucket, sources=sources, key=manifest.key, scratch_prefix=f"{folder}join/"
        )
        if joined is not None:
            return joined.etag
        # No rows at all: S3 has no zero-part upload, so the empty manifest is one PutObject.
        empty = s3.put_object(Bucket=manifest.bucket, Key=manifest.key, Body=b"", ContentType="text/csv")
        return empty["ETag"].strip('"')
