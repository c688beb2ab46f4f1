"""BuildManifest: joins Athena's UNLOAD output into one CSV manifest, server-side.

The rows stay in S3: output files of 5 MiB or more are copied with UploadPartCopy, only smaller ones
are read (see batchpipe_core.multipart). The one other read is a bounded ranged GET of the manifest's
first bytes for the sample of decoded keys.

No object count is taken from Athena: ``GetQueryRuntimeStatistics`` documents ``OutputRows`` as the
rows a query *returns* (an UNLOAD returns none) and says the statistics may be missing. So "nothing
to do" follows only from the UNLOAD having written no bytes, and the exact count comes from S3 Batch
Operations itself when the job is prepared (ConfirmJob); until then ``objects`` is null and Athena's
number, if any, is kept as ``estimatedObjects``. A dry run creates no job, so it counts the rows of
the joined manifest itself (one streamed read).

The same function serves the ``ImportFailures`` state of a spec with ``rerun``: the manifest is then
made from a previous run's failures file (batchpipe_core.rerun), with no Athena query.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from botocore.exceptions import ClientError
from pydantic import Field

from batchpipe_core.config import Config
from batchpipe_core.errors import BatchPipeError, TooManyObjectsError
from batchpipe_core.inventory_table import InventoryNotReadableError
from batchpipe_core.jobs import RunRef, StatePart, is_transient, manifest_fields, transient_as_retryable
from batchpipe_core.keys import as_folder, decode_key
from batchpipe_core.metadata_table import SOURCE as METADATA_SOURCE
from batchpipe_core.multipart import (
    S3_LIMITS,
    Limits,
    Source,
    concatenate,
    list_sources,
    listed_packing_plan,
    packed_key,
    sources_after,
    with_packed,
)
from batchpipe_core.observability import instrumented, logger, metrics
from batchpipe_core.query import UNLOAD_OPTIONS
from batchpipe_core.rerun import manifest_from_failures, rerun_buckets
from batchpipe_core.s3uri import split_s3_uri

SAMPLE_SIZE = 20
# 20 rows of the longest kind (bucket, a 1,024-byte key percent-encoded to 3 characters a byte,
# version ID) fit in 80 KiB; the read is this long at most, whatever the manifest's size.
SAMPLE_BYTES = 128 * 1024
MANIFEST_NAME = "manifest.csv"
PACKED_FOLDER = "manifest-packed/"  # under the run prefix: PackManifest's objects, one per group
# Under the run prefix: Athena's gzip output files, decompressed (one object per file).
PLAIN_FOLDER = "manifest-plain/"
# Decompressed bytes uploaded per part: memory stays bounded whatever a file's size.
PLAIN_PART_BYTES = 16 << 20
COUNT_CHUNK_BYTES = 8 << 20
GZIP_MAGIC = b"\x1f\x8b"


class FilterPart(StatePart):
    versions: str | None = None


class ManifestSpec(StatePart):
    maxObjects: int | None = None
    dryRun: bool = False
    filter: FilterPart | None = None
    source: dict[str, Any] | None = None


class QueryExecutionRef(StatePart):
    id: str


class DeliveryRef(StatePart):
    folder: str
    manifest: str
    files: int = 0
    sizeBytes: int = 0


class QueryRef(StatePart):
    outputPrefix: str
    execution: QueryExecutionRef
    delivery: DeliveryRef | None = None


class BuildManifestInput(StatePart):
    spec: ManifestSpec
    run: RunRef
    query: QueryRef


class RerunPart(StatePart):
    failures: str
    errorCodes: list[str] | None = None
    versions: str | None = None


class RerunSpec(ManifestSpec):
    rerun: RerunPart


class ImportFailuresInput(StatePart):
    spec: RerunSpec
    run: RunRef


class ManifestPackingCursor(StatePart):
    """Where the PackManifest loop is: the state carries it from step to step (``query.packing``), so
    each step lists Athena's output only from where the last one stopped (one key, whatever the
    number of files: the state stays far under its 256 KiB)."""

    done: bool = False
    groups: int = Field(default=0, ge=0)  # groups packed so far
    decompressed: bool = False  # every gzip output file has its plain copy
    after: str | None = None  # the last output file dealt with (ListObjectsV2 StartAfter)


class PackingQueryRef(QueryRef):
    packing: ManifestPackingCursor | None = None  # the PackManifest loop's cursor, once it has run a step


class PackManifestInput(StatePart):
    run: RunRef
    query: PackingQueryRef
    pack: bool


@instrumented
def handler(event: dict, context: Any) -> dict:
    config, s3 = Config.from_env(), boto3.client("s3")
    if "query" not in event:  # the ImportFailures state: a rerun has no query
        return import_failures(parse(event=event, model=ImportFailuresInput), config, s3=s3)
    if event.get("pack"):  # the PackManifest state
        return pack_step(parse(event=event, model=PackManifestInput), config, s3=s3)
    request = parse(event=event, model=BuildManifestInput)
    return build_manifest(request, config, s3=s3, athena=boto3.client("athena"))


def import_failures(request: ImportFailuresInput, config: Config, *, s3: Any) -> dict:
    """The ``manifest`` state document of a rerun: the failures file's rows as a manifest."""
    rerun = request.spec.rerun
    # A stack that reads the S3 Metadata live inventory table reruns its runs' pinned versions too.
    fields = manifest_fields(
        "All" if config.metadata_table_bucket else config.inventory_versions, rerun.versions
    )
    with transient_as_retryable("turning the failures file into a manifest"):
        manifest = manifest_from_failures(
            s3,
            failures_uri=rerun.failures,
            error_codes=rerun.errorCodes,
            bucket=config.pipeline_bucket,
            key=f"{as_folder(request.run.prefix)}{MANIFEST_NAME}",
            versioned="VersionId" in fields,
            max_objects=request.spec.maxObjects or config.default_max_objects,
            allowed_buckets=rerun_buckets(config.source_buckets, config.inventory_prefix),
        )
    metrics.add_metric(name="ManifestObjects", unit=MetricUnit.Count, value=manifest["objects"])
    logger.info(
        "rerun manifest built",
        extra={"failures": rerun.failures, "errorCodes": rerun.errorCodes, "objects": manifest["objects"]},
    )
    # The rows were counted as they were written: exact, and S3's count must agree (ConfirmJob).
    return manifest | {"empty": manifest["objects"] == 0, "estimatedObjects": None, "fields": fields}


def build_manifest(request: BuildManifestInput, config: Config, *, s3: Any, athena: Any) -> dict:
    """The ``manifest`` state document (location, bucket, key, etag, objects, empty, ...)."""
    query_id = request.query.execution.id
    estimate, bytes_scanned = query_statistics(athena, query_id)
    metrics.add_metric(name="AthenaBytesScanned", unit=MetricUnit.Bytes, value=bytes_scanned)
    max_objects = request.spec.maxObjects or config.default_max_objects
    result = {
        "location": None,
        "bucket": config.pipeline_bucket,
        "key": None,
        "etag": None,
        "objects": 0,
        "empty": True,
        "estimatedObjects": estimate,
        "sizeBytes": 0,
        "bytesScanned": bytes_scanned,
        "sample": [],
        "why": None,
        # The UNLOAD's columns (batchpipe_core.query): every later attempt's CreateJob names these.
        "fields": manifest_fields(
            # The S3 Metadata live inventory table lists version IDs whatever the stack's inventory does.
            "All" if METADATA_SOURCE in (request.spec.source or {}) else config.inventory_versions,
            request.spec.filter and request.spec.filter.versions,
        ),
    }
    output_bucket, output_prefix = split_s3_uri(request.query.outputPrefix)
    run_prefix = as_folder(request.run.prefix)
    with transient_as_retryable("joining Athena's output into the manifest"):
        sources = manifest_sources(s3, output_bucket, output_prefix, f"{run_prefix}{PACKED_FOLDER}", config)
        joined = concatenate(
            s3,
            bucket=config.pipeline_bucket,
            key=f"{run_prefix}{MANIFEST_NAME}",
            sources=sources,
            scratch_prefix=f"{run_prefix}manifest-parts/",
            source_bucket=output_bucket,
        )
        if joined is None:
            # The UNLOAD wrote no bytes: a fact, whatever Athena's statistics say.
            result["why"] = why_nothing(athena, query_id, request.query.delivery, bytes_scanned)
            logger.info(
                "nothing to do: the query wrote no rows",
                extra={"queryExecutionId": query_id, "why": result["why"], "athenaEstimate": estimate},
            )
            return result
        sample = read_sample(s3, joined.bucket, joined.key, joined.size)
        objects = count_rows(s3, joined.bucket, joined.key) if request.spec.dryRun else None
    _delete_quietly(s3, config.pipeline_bucket, joined.intermediates)
    if objects is not None:
        metrics.add_metric(name="ManifestObjects", unit=MetricUnit.Count, value=objects)
        if objects > max_objects:
            raise TooManyObjectsError(
                f"The filter selected {objects} objects, more than maxObjects ({max_objects}). Narrow the "
                "filter (prefixes, keyRegex, sizes, dates) or raise maxObjects in the spec."
            )
    logger.info(
        "manifest built",
        extra={
            "objects": objects,
            "athenaEstimatedRows": estimate,  # an estimate at best, never a count
            "sizeBytes": joined.size,
            "files": len(sources),
            "parts": joined.parts,
        },
    )
    return result | {
        "location": f"s3://{joined.bucket}/{joined.key}",
        "key": joined.key,
        "etag": joined.etag,
        "objects": objects,
        "empty": False,
        "sizeBytes": joined.size,
        "sample": sample,
    }


def query_statistics(athena: Any, query_id: str) -> tuple[int | None, int]:
    """(Athena's OutputRows if it reports any - an estimate at best -, bytes scanned) of a finished query."""
    with transient_as_retryable("reading Athena's query statistics"):
        execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        try:
            runtime = athena.get_query_runtime_statistics(QueryExecutionId=query_id)["QueryRuntimeStatistics"]
        except ClientError as exc:
            if is_transient(exc):
                raise
            runtime = {}  # documented as possibly unavailable; it is only an estimate anyway
    rows = runtime.get("Rows", {}).get("OutputRows")
    return (None if rows is None else int(rows)), int(
        execution.get("Statistics", {}).get("DataScannedInBytes", 0)
    )


def count_rows(s3: Any, bucket: str, key: str) -> int:
    """Rows of the joined manifest (a dry run's exact count): newlines, plus an unterminated last row."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    rows, last = 0, b"\n"
    while chunk := body.read(COUNT_CHUNK_BYTES):
        rows += chunk.count(b"\n")
        last = chunk[-1:]
    return rows + (last != b"\n")


def why_nothing(athena: Any, query_id: str, delivery: DeliveryRef | None, bytes_scanned: int) -> str:
    """Why a query selected no objects, or InventoryNotReadableError when it could not read the delivery.

    A query over a partition the table cannot see (outside its projection range, a symlink.txt that
    lists no files, a location other than the delivery's) succeeds with no rows: that must fail the
    run naming what to fix, never end as "nothing to do".
    """
    if delivery is None:
        return "the filter matched no rows of the inventory"
    with transient_as_retryable("reading Athena's query statistics"):
        runtime = athena.get_query_runtime_statistics(QueryExecutionId=query_id)["QueryRuntimeStatistics"]
    rows_read = runtime.get("Rows", {}).get("InputRows")
    if delivery.sizeBytes > 0 and bytes_scanned == 0:
        raise InventoryNotReadableError(
            f"Athena read nothing from the inventory delivery {delivery.folder} ({delivery.files} files, "
            f"{delivery.sizeBytes} bytes, {delivery.manifest}): the table does not see that partition. "
            "Check that the stack's InventoryStartDate is at or before the delivery, that InventoryBucket "
            "and InventoryPrefix name the folder holding the delivery's hive/ folder, and that "
            f"hive/dt=.../symlink.txt lists the data files."
        )
    if rows_read == 0:
        return f"the inventory delivery {delivery.folder} lists no objects ({delivery.manifest})"
    read = f"{rows_read} rows" if rows_read is not None else "the rows"
    return f"the filter matched none of {read} of the inventory delivery {delivery.folder}"


def pack_step(request: PackManifestInput, config: Config, *, s3: Any, limits: Limits = S3_LIMITS) -> dict:
    """One bounded step of packing Athena's small output files (under 5 MiB, which cannot be parts
    of a multipart upload but the last) into objects BuildManifest can copy inside S3.

    The state runs it until ``done``, each step given the last one's cursor (``query.packing``; none
    at first). First the gzip output files are decompressed, at most ``ManifestPackBytes`` of them
    (and at least one) a step; then the groups are those ``multipart.packing_groups`` cuts from the
    output files in key order (gzip ones by their plain copies): a step lists from the cursor until
    it has the next group, packs it - at most ``ManifestPackBytes`` plus one file read - and moves
    the cursor past it. So each output file is listed a bounded number of times in all, not once per
    step. BuildManifest finds the packed objects by their keys (``multipart.packing_plan``); a
    retried step packs the same group into the same object.
    """
    cursor = request.query.packing or ManifestPackingCursor()
    output_bucket, output_prefix = split_s3_uri(request.query.outputPrefix)
    if output_bucket != config.pipeline_bucket:  # BuildManifest then joins the files as they are
        return ManifestPackingCursor(done=True).model_dump() | {"bytesPacked": 0}
    outputs = OutputFiles(s3, output_bucket, output_prefix, as_folder(request.run.prefix), limits)
    budget = config.manifest_pack_bytes
    if not cursor.decompressed:
        with transient_as_retryable("decompressing Athena's gzip output files"):
            after = outputs.decompress_from(cursor.after, budget)
        cursor = cursor.model_copy(update={"after": after, "decompressed": after is None})
        if not cursor.decompressed:
            return cursor.model_dump() | {"bytesPacked": 0}
    packed_bytes = 0
    with transient_as_retryable("packing Athena's small output files"):
        group, last = outputs.next_group(cursor.after, budget)
        if group:
            concatenate(
                s3,
                bucket=config.pipeline_bucket,
                key=packed_key(outputs.packed_prefix, cursor.groups, group),
                sources=group,
                scratch_prefix=f"{outputs.packed_prefix}scratch/",
                limits=limits,
                source_bucket=output_bucket,
            )
            packed_bytes = sum(source.size for source in group)
            cursor = cursor.model_copy(update={"groups": cursor.groups + 1, "after": last})
        # The next group's first file looked for, so ``done`` comes with the step packing the last.
        cursor = cursor.model_copy(update={"done": not group or not outputs.next_group(cursor.after, 1)[0]})
    logger.info(
        "manifest files packed",
        extra={"groups": cursor.groups, "done": cursor.done, "bytesPacked": packed_bytes},
    )
    return cursor.model_dump() | {"bytesPacked": packed_bytes}


@dataclass(frozen=True)
class OutputFiles:
    """Athena's output files under ``output_prefix``, listed from a cursor on (``sources_after``)."""

    s3: Any
    bucket: str
    output_prefix: str
    run_prefix: str
    limits: Limits

    @property
    def packed_prefix(self) -> str:
        return f"{self.run_prefix}{PACKED_FOLDER}"

    def decompress_from(self, after: str | None, budget: int) -> str | None:
        """Decompresses the gzip files after key ``after`` until ``budget`` compressed bytes are read
        (at least one file, so every step makes progress); returns the last key dealt with, or None
        once every file is."""
        read, last = 0, after
        for source in sources_after(self.s3, bucket=self.bucket, prefix=self.output_prefix, after=after):
            if source.size and is_gzip(self.s3, self.bucket, source):
                if read and read + source.size > budget:
                    return last
                written = decompress(self.s3, self.bucket, source, plain_key(self.run_prefix, source))
                read += source.size
                logger.info(
                    "gzip output decompressed",
                    extra={"key": source.key, "bytes": source.size, "plainBytes": written},
                )
            last = source.key
        return None

    def next_group(self, after: str | None, budget: int) -> tuple[list[Source], str | None]:
        """The ``packing_groups`` group of the readable output files that follows the one ending at
        output key ``after``, and the output key it ends at: cut where ``packing_groups`` cuts them
        over the whole listing (a group ends at the first small file that brings it to ``budget``)."""
        group: list[Source] = []
        size, last = 0, after
        for source in sources_after(self.s3, bucket=self.bucket, prefix=self.output_prefix, after=after):
            readable = self.readable(source)
            if not 0 < readable.size < self.limits.min_part:
                continue
            group.append(readable)
            size, last = size + readable.size, source.key
            if size >= budget:
                break
        return group, last

    def readable(self, source: Source) -> Source:
        """``source``, or its plain copy if it is gzip (decompressed by the steps before)."""
        if source.size == 0 or not is_gzip(self.s3, self.bucket, source):
            return source
        key = plain_key(self.run_prefix, source)
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
            raise BatchPipeError(f"the gzip output file {source.key} was not decompressed") from error
        return Source(key, head["ContentLength"], head.get("ETag"))


# ------------------------------------------------------------------ gzip output, decompressed
#
# The UNLOAD asks for compression = 'NONE', but AWS's pages disagree on whether Athena honours it for
# TEXTFILE output (gzip is UNLOAD's default), and S3 Batch Operations needs a plain CSV manifest
# (gzip manifests: undocumented). So either answer works: PackManifest decompresses every gzip
# output file (recognized by its content, not its name) into a plain object, streamed and a bounded
# number of compressed bytes per step, and the files are joined from those.


def plain_key(run_prefix: str, source: Source) -> str:
    """Where a gzip output file's decompressed copy goes: named by the file's key and ETag, so a
    retried step rewrites the same object and a changed file gets a new one."""
    digest = hashlib.sha256(f"{source.key}\n{source.etag}".encode()).hexdigest()[:32]
    return f"{run_prefix}{PLAIN_FOLDER}{digest}.csv"


def is_gzip(s3: Any, bucket: str, source: Source) -> bool:
    if source.size < len(GZIP_MAGIC):
        return False
    head = s3.get_object(Bucket=bucket, Key=source.key, Range=f"bytes=0-{len(GZIP_MAGIC) - 1}")["Body"].read()
    return head == GZIP_MAGIC


def readable_sources(
    s3: Any, bucket: str, output_prefix: str, run_prefix: str
) -> tuple[list[Source], list[Source]]:
    """(the output files with each gzip one replaced by its plain copy, the gzip files not yet decompressed)."""
    plain = {s.key: s for s in list_sources(s3, bucket, f"{run_prefix}{PLAIN_FOLDER}")}
    sources, pending = [], []
    for source in list_sources(s3, bucket, output_prefix):
        if source.size == 0 or not is_gzip(s3, bucket, source):
            sources.append(source)
        elif (copy := plain.get(plain_key(run_prefix, source))) is not None:
            sources.append(copy)
        else:
            pending.append(source)
    return sources, pending


def decompress(s3: Any, bucket: str, source: Source, key: str) -> int:
    """Streams one gzip file (every member) into a plain object, ``PLAIN_PART_BYTES`` at a time."""
    stream = gzip.GzipFile(fileobj=s3.get_object(Bucket=bucket, Key=source.key)["Body"], mode="rb")
    first = stream.read(PLAIN_PART_BYTES)
    if len(first) < PLAIN_PART_BYTES:  # one part: a plain PUT
        s3.put_object(Bucket=bucket, Key=key, Body=first)
        return len(first)
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts, total, chunk = [], 0, first
    try:
        while chunk:
            number = len(parts) + 1
            etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=chunk)[
                "ETag"
            ]
            parts.append({"PartNumber": number, "ETag": etag})
            total += len(chunk)
            chunk = stream.read(PLAIN_PART_BYTES)
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
        raise
    return total


def manifest_sources(
    s3: Any, output_bucket: str, output_prefix: str, packed_prefix: str, config: Config
) -> list[Source]:
    """What BuildManifest joins: Athena's output files (gzip ones by their plain copies), with
    PackManifest's objects in place of the groups of small ones it packed (``multipart.with_packed``)."""
    if output_bucket != config.pipeline_bucket:
        return [s for s in list_sources(s3, output_bucket, output_prefix) if s.size > 0]
    run_prefix = packed_prefix.removesuffix(PACKED_FOLDER)
    readable, pending = readable_sources(s3, output_bucket, output_prefix, run_prefix)
    if pending:  # PackManifest decompresses them all before BuildManifest runs
        raise BatchPipeError(f"{len(pending)} gzip output files were not decompressed, e.g. {pending[0].key}")
    outputs = [s for s in readable if s.size > 0]
    plan = listed_packing_plan(
        s3,
        bucket=config.pipeline_bucket,
        sources=outputs,
        packed_prefix=packed_prefix,
        budget=config.manifest_pack_bytes,
    )
    return with_packed(outputs, plan)


def read_sample(s3: Any, bucket: str, key: str, size: int, limit: int = SAMPLE_SIZE) -> list[str]:
    """Up to ``limit`` decoded keys from the start of the joined manifest (one bounded ranged GET).

    The manifest rather than the first output file: Athena may spread a small result over files of a
    few rows each, while the manifest's first bytes always hold ``min(limit, objects)`` rows.
    """
    data = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{SAMPLE_BYTES - 1}")["Body"].read()
    if data.startswith(GZIP_MAGIC):
        # UNLOAD compresses TEXTFILE output with gzip unless told otherwise; S3 Batch Operations needs
        # a plain CSV manifest. Fails here rather than with an unreadable manifest in the job.
        raise BatchPipeError(
            f"Athena wrote gzip-compressed output into s3://{bucket}/{key}; the UNLOAD statement must ask "
            f"for {UNLOAD_OPTIONS!r} (see batchpipe_core.query)."
        )
    lines = data.split(b"\n")
    if len(data) < size:
        lines = lines[:-1]  # the last line was cut by the range
    keys = []
    for line in lines:
        fields = line.rstrip(b"\r").split(b",")
        if len(fields) >= 2:
            keys.append(decode_key(fields[1].decode("utf-8")))
        if len(keys) == limit:
            break
    return keys


def _delete_quietly(s3: Any, bucket: str, keys: list[str]) -> None:
    """Intermediate objects (only past 10,000 parts); the bucket's lifecycle rule removes leftovers."""
    for start in range(0, len(keys), 1000):
        batch = keys[start : start + 1000]
        try:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
        except ClientError as error:
            logger.warning("could not delete intermediate manifest parts", extra={"error": str(error)})
