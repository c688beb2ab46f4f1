"""`batchpipe preview`: what a spec's filter selects from an inventory, with no AWS cost.

It is the pipeline's own dry run: the real ValidateSpec, PlanQuery and BuildManifest handlers, with
the Athena SQL run by DuckDB over the inventory files, so the count, the sample and the SQL printed are
exactly what a deployed run would produce. It stands up only what evaluates the filter
(filter_stack.FilterStack): no state machine, job engine or event router. A `source.bucket` spec is
the exception: its dry run is a job in which S3 Batch lists the bucket, so it runs on the whole embedded
stack, over a bucket made from the inventory's rows. An `s3://` inventory is downloaded first (the
newest delivery only, with the caller's AWS credentials); nothing else touches AWS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from batchpipe.inputs import UsageError, read_spec
from batchpipe.outcome import readable_cause
from batchpipe.output import JSON, print_json
from batchpipe_core.generator_rules import generator_filter
from batchpipe_core.metadata_table import default_namespace
from batchpipe_core.s3uri import split_s3_uri

from . import inventory as inv
from .filter_stack import FilterStack
from .metadata_table import MetadataTableError, download_table, read_table, table_folder
from .outputs import lambda_logs_to
from .stack import LocalStack
from .world import INVENTORY_DEST_PREFIX, World

_DELIVERY = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z$")
PLACEHOLDER_OPERATION = {"S3PutObjectTagging": {"TagSet": [{"Key": "preview", "Value": "preview"}]}}


def download_inventory(uri: str, target: Path, s3: Any = None) -> Path:
    """Copies the newest complete delivery of `s3://bucket/prefix/config-id` into `target`, laid out
    as S3 wrote it (`<delivery>/manifest.json`, `data/...`)."""
    import boto3

    s3 = s3 or boto3.client("s3")
    bucket, prefix = split_s3_uri(uri)
    prefix = prefix.strip("/")
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/", Delimiter="/")
    deliveries = sorted(
        p["Prefix"].rstrip("/").rsplit("/", 1)[-1]
        for p in listing.get("CommonPrefixes", [])
        if _DELIVERY.match(p["Prefix"].rstrip("/").rsplit("/", 1)[-1])
    )
    for delivery in reversed(deliveries):
        try:
            body = s3.get_object(Bucket=bucket, Key=f"{prefix}/{delivery}/manifest.json")["Body"].read()
        except s3.exceptions.NoSuchKey:
            continue  # a delivery still being written
        where = f"s3://{bucket}/{prefix}/{delivery}/manifest.json"
        try:
            keys = [str(entry["key"]) for entry in json.loads(body)["files"]]
        except (ValueError, KeyError, TypeError, RecursionError):
            raise UsageError(f"{where} is not an S3 Inventory manifest (no files[].key)") from None
        (target / delivery).mkdir(parents=True, exist_ok=True)
        (target / delivery / "manifest.json").write_bytes(body)
        for key in keys:
            # The manifest is someone else's file: its keys must stay inside the folder downloaded.
            path = (target / key.removeprefix(f"{prefix}/")).resolve()
            if not key.startswith(f"{prefix}/") or not path.is_relative_to(target.resolve()):
                raise UsageError(f"{where} names a data file outside {uri}: {key[:200]!r}")
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(path))
        return target
    raise UsageError(f"no complete inventory delivery (a <date>/manifest.json) under {uri}")


class Steps:
    """One line per step on a terminal's stderr as it starts, with how long it took, so a preview is
    never a silent wait. stdout keeps only the result, and logs and pipes get nothing (as
    TerminalBar): a refused spec stays one line there."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.started = stream, None
        isatty = getattr(stream, "isatty", None)
        self.enabled = bool(isatty and isatty())

    def begin(self, what: str) -> None:
        self.end()
        if self.enabled:
            print(f"preview: {what}...", file=self.stream, end="", flush=True)
            self.started = time.monotonic()

    def end(self) -> None:
        if self.started is not None:
            print(f" {time.monotonic() - self.started:.1f} s", file=self.stream, flush=True)
            self.started = None

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()  # an error's line starts on a line of its own


def preview(args: argparse.Namespace) -> int:
    spec = read_spec(args.spec)
    if "rerun" in spec:
        raise UsageError(
            "preview shows what a spec selects from an inventory; a spec with rerun selects the rows of a "
            'failures file instead: start it with "dryRun": true on the stack that wrote the file'
        )
    source = spec.get("source")
    if args.metadata_table is not None:
        if (isinstance(source, dict) and "metadataTable" not in source) or "inventory" in spec:
            raise UsageError(
                "--metadata-table previews a spec over an S3 Metadata live inventory table; this spec names "
                'another source: give "source": {"metadataTable": {}} (or no source), or use --inventory'
            )
        spec = {**spec, "source": {"metadataTable": {}}}
    elif isinstance(source, dict) and "metadataTable" in source:
        raise UsageError(
            "this spec selects from the S3 Metadata live inventory table: preview it with --metadata-table "
            "<the table's folder> instead of --inventory"
        )
    generated = isinstance(source, dict) and "bucket" in source
    filter_ = spec.get("filter")
    sized = [f for f in ("minSizeBytes", "maxSizeBytes") if isinstance(filter_, dict) and f in filter_]
    if generated and sized:
        # The emulated bucket is made from the inventory's rows without their bytes (every object is
        # empty there), so a size bound would select differently than on AWS: refused, not guessed.
        raise UsageError(
            f"filter.{sized[0]}: preview lists a source.bucket spec over objects recreated from the inventory "
            "without their bytes, so sizes cannot be previewed; preview the same filter without source (the "
            "inventory query applies the same bounds)"
        )
    spec = {**spec, "dryRun": True}
    spec.setdefault("operation", PLACEHOLDER_OPERATION)
    with Steps(sys.stderr) as steps:
        if args.metadata_table is not None:
            execution, described = _preview_metadata_table(spec, args.metadata_table, steps)
        else:
            execution, described = _preview_inventory(spec, args.inventory, steps, bucket_source=generated)

    # The spec (its filter) is the only input here: a refusal or a failed query is bad input, exit
    # status 2, printed as the one-line reason (never the Lambda error's JSON or a stack trace).
    if execution.status != "SUCCEEDED":
        raise UsageError(f"the spec was rejected: {execution.error}: {execution.message}")
    summary = execution.output
    if summary.get("status") == "FAILED":
        raise UsageError(f"the query failed: {summary.get('error')}: {readable_cause(summary.get('cause'))}")
    manifest = summary.get("manifest", {})
    if args.output == JSON:
        print_json(
            {
                "objects": manifest.get("objects"),
                "source": described,
                "bytesScanned": manifest.get("bytesScanned"),
                "estimatedCostUsd": summary.get("estimatedCostUsd"),
                "sample": manifest.get("sample", [])[: args.sample],
                **(
                    {"manifestGenerator": generator_filter(spec.get("filter"))}
                    if generated
                    else {"sql": execution.task_outputs("PlanQuery")[0]["query"]["sql"]}
                ),
            },
            sys.stdout,
        )
        return 0
    print(f"objects selected: {manifest.get('objects')}")
    print(described)
    if not generated:
        print(f"bytes Athena would scan (upper bound: whole data files): {manifest.get('bytesScanned')}")
    print(f"estimated cost of the run (USD): {summary.get('estimatedCostUsd')}")
    print(f"sample (up to {args.sample} keys):")
    for key in manifest.get("sample", [])[: args.sample]:
        print(f"  {key}")
    if generated:
        print("ManifestGenerator filter S3 Batch would apply (CreateJob JobManifestGeneratorFilter):")
        print(json.dumps(generator_filter(spec.get("filter")), default=str, ensure_ascii=False, indent=2))
        return 0
    (planned,) = execution.task_outputs("PlanQuery")
    print("SQL that Athena would run:")
    print(planned["query"]["sql"])
    return 0


_STANDING_UP = "standing up what evaluates the filter (template.yaml's buckets, tables, Athena on DuckDB)"
_DRY_RUN = "running the dry run: ValidateSpec, the Athena query (DuckDB), the manifest"


# A source.bucket preview's engine: the generated manifest is written while the job is Suspended, so
# the dry run's count and sample come from it (AWS documents neither answer; docs/FILTERS.md).
_PREVIEW_GENERATOR = {"generated_manifest_before_run": True}


def _stack_for(bucket_source: bool, **options: Any) -> LocalStack:
    """A source.bucket dry run creates a job (S3 lists the bucket inside it), so it needs the whole
    embedded stack and its S3 Batch engine; any other needs only what evaluates the filter."""
    if bucket_source:
        return LocalStack(engine_options=_PREVIEW_GENERATOR, **options)
    return FilterStack(**options)


def _preview_inventory(
    spec: dict, inventory: str, steps: Steps, *, bucket_source: bool = False
) -> tuple[Any, str]:
    """The spec over the inventory delivery; a source.bucket spec over the emulated bucket made from it
    (every object it lists, with its size, dates, storage class and encryption), listed by the engine's
    manifest generator inside a dry-run job."""
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(inventory)
        if inventory.startswith("s3://"):
            steps.begin(f"downloading the newest delivery of {inventory}")
            try:
                directory = download_inventory(inventory, Path(scratch))
            except (BotoCoreError, ClientError) as exc:
                raise UsageError(f"cannot read the inventory at {inventory}: {exc}") from None
        layout = inv.read_inventory(str(directory))
        world = World(source_bucket=layout.source_bucket, fmt=layout.file_format, versions=layout.versions)
        steps.begin(_STANDING_UP)
        with (
            lambda_logs_to(Path(os.devnull)),
            _stack_for(
                bucket_source,
                # A delivery may be of any date: a stack deployed for it starts its projection there.
                parameters=world.parameters(InventoryStartDate=layout.dt),
            ) as stack,
        ):
            steps.begin(f"loading the inventory delivery {layout.delivery} of s3://{layout.source_bucket}")
            s3 = stack.client("s3")
            world.create_buckets(s3)
            try:
                inv.load_inventory_dir(
                    s3,
                    layout,
                    dest_bucket=world.inventory_bucket,
                    dest_prefix=INVENTORY_DEST_PREFIX,
                    config_id=world.config_id,
                    create_objects=bucket_source,
                )
            except inv.InventoryDirError as exc:
                raise UsageError(str(exc)) from None
            steps.begin(_DRY_RUN)
            execution = stack.run(spec, name="preview")
    if bucket_source:
        return execution, (
            f"bucket: s3://{layout.source_bucket} as its inventory delivery {layout.delivery} lists it, "
            "listed by S3 Batch's manifest generator (emulated) inside a dry-run job"
        )
    return execution, (
        f"inventory: s3://{layout.source_bucket} ({world.fmt}, {world.versions.lower()} versions, "
        f"delivery {layout.delivery})"
    )


def _preview_metadata_table(spec: dict, source: str, steps: Steps) -> tuple[Any, str]:
    """The spec over a copy of the table (a folder, or a table of S3 Tables downloaded first), in the
    local table bucket aws-s3 under the namespace of the one bucket its rows name."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(source)
        try:
            if source.startswith("s3tables://"):
                steps.begin(f"downloading the current snapshot of {source}")
                folder = download_table(source, Path(scratch) / "download")
            steps.begin(f"reading the table at {folder}")
            rows = read_table(folder).rows
        except (BotoCoreError, ClientError, MetadataTableError, OSError) as exc:
            raise UsageError(f"cannot read the S3 Metadata table at {source}: {exc}") from None
        buckets = sorted(set(rows.column("bucket").to_pylist())) if "bucket" in rows.column_names else []
        if len(buckets) != 1:
            raise UsageError(
                f"{source}: an S3 Metadata live inventory table lists one bucket's objects; this one lists "
                f"{len(buckets)} buckets"
            )
        (bucket,) = buckets
        world = World(source_bucket=bucket)
        table_bucket = Path(scratch) / "aws-s3"
        # A copy in the local table bucket (the user's folder is only read); its metadata still names
        # the files under the table's own location, which the copy holds at the same paths.
        shutil.copytree(folder, table_folder(table_bucket, default_namespace(bucket)))
        steps.begin(_STANDING_UP)
        with (
            lambda_logs_to(Path(os.devnull)),
            FilterStack(parameters=world.parameters(), table_bucket_dir=table_bucket) as stack,
        ):
            world.create_buckets(stack.client("s3"))
            steps.begin(_DRY_RUN)
            execution = stack.run(spec, name="preview")
    return execution, f"S3 Metadata live inventory table: s3://{bucket} ({rows.num_rows} rows, {source})"
