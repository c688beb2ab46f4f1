"""Command-line parsers of the embedded AWS's commands: `local run`, `local inventory`, `local serve`
and `preview` (wired into batchpipe's main, which calls the ``func`` each sets)."""

from __future__ import annotations

import argparse
from typing import Any

from batchpipe.inputs import (
    FORMATS,
    bucket_name,
    command,
    execution_name,
    positive_number,
    whole_number,
    with_example,
)
from batchpipe.local.answers import SUSPENDED_GENERATOR_ANSWERS
from batchpipe.output import output_option


def add_local_commands(commands: Any) -> None:
    local = commands.add_parser("local", help="run the stack on the embedded AWS")
    local_commands = local.add_subparsers(dest="local_command", required=True)
    run = local_commands.add_parser("run", help="run the whole pipeline once, end to end, in this process")
    run.add_argument("--spec", help="job spec JSON (the execution input); default: tag every object")
    source = run.add_mutually_exclusive_group()
    source.add_argument(
        "--objects", type=whole_number(0), default=None, help="generate N objects and their S3 Inventory"
    )
    source.add_argument("--inventory", help="a real S3 Inventory on disk: the config-id folder")
    run.add_argument("--inventory-format", choices=sorted(FORMATS), default="csv")
    run.add_argument(
        "--versions", choices=["current", "all"], default="current", help="inventory versions mode"
    )
    run.add_argument(
        "--object-lock",
        action="store_true",
        help="create the source bucket with S3 Object Lock (S3PutObjectLegalHold and S3PutObjectRetention need it)",
    )
    _inventory_fields_option(run)
    run.add_argument("--faults", help="faults JSON for the emulated S3 Batch engine")
    run.add_argument("--event-delivery", choices=["normal", "drop", "duplicate", "shuffle"], default="normal")
    run.add_argument(
        "--key-decoding",
        choices=["percent", "form"],
        default="percent",
        help="how the emulated S3 Batch engine decodes manifest keys ('+' as '+' or as space)",
    )
    run.add_argument(
        "--suspended-generator",
        choices=sorted(SUSPENDED_GENERATOR_ANSWERS),
        default="neither",
        help="what a Suspended source.bucket job shows before confirmation (AWS documents neither): its "
        "generated manifest, its count, both, or neither (the default, which ConfirmJob refuses to confirm)",
    )
    run.add_argument(
        "--wait-timeout",
        type=whole_number(1),
        default=5,
        help="real seconds CreateJobAndWait waits for a status event before asking DescribeJob "
        "(JobWaitTimeoutSeconds stays the template's; every task timeout is compressed in proportion)",
    )
    run.add_argument(
        "--name", type=execution_name, default="local-1", help="execution name (Step Functions' naming rules)"
    )
    run.add_argument(
        "--confirm",
        choices=["auto", "decline"],
        default="auto",
        help="what the operator's stand-in does with a job left waiting for a person's confirmation: "
        "confirm it (UpdateJobStatus Ready) or decline it (Cancelled); see docs/LOCAL.md",
    )
    run.add_argument("--seed", type=int, default=7)
    run.add_argument(
        "--out", default="local-run", help="where to write the summary, the pipeline bucket and objects.jsonl"
    )
    run.add_argument("--json", action="store_true", help="print only the run summary (JSON) on stdout")
    with_example(
        run, "batchpipe local run --objects 2000 --faults examples/local/faults.json --out local-run"
    )
    run.set_defaults(func=_run)

    made = local_commands.add_parser(
        "inventory",
        help="write a generated S3 Inventory folder (for preview and local run --inventory)",
        description="Writes N generated objects' S3 Inventory to DIR as S3 delivers it (the config-id "
        "folder: <YYYY-MM-DDTHH-MMZ>/manifest.json, data/, hive/).",
    )
    made.add_argument("--objects", type=whole_number(0), default=1000, help="how many objects (default 1000)")
    made.add_argument(
        "--out", required=True, help="a new or empty folder (or an earlier one of this command)"
    )
    made.add_argument("--format", choices=sorted(FORMATS), default="csv")
    made.add_argument("--versions", choices=["current", "all"], default="current")
    made.add_argument(
        "--bucket", type=bucket_name, default="batchpipe-demo-source", help="source bucket name"
    )
    made.add_argument("--seed", type=int, default=7)
    _inventory_fields_option(made)
    with_example(made, "batchpipe local inventory --objects 5000 --format parquet --out my-inventory")
    made.set_defaults(func=_inventory)
    _add_serve(local_commands)

    add_preview_command(commands)


def add_preview_command(commands: Any) -> None:
    preview = commands.add_parser("preview", help="count and sample what a spec selects, without AWS cost")
    preview.add_argument("--spec", required=True)
    chosen = preview.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--inventory", help="config-id folder on disk, or s3://bucket/prefix/config-id")
    chosen.add_argument(
        "--metadata-table",
        help="an S3 Metadata live inventory table: s3tables://aws-s3/<namespace>/inventory (downloaded "
        "first), or a table's folder (Iceberg metadata/ and data/), downloaded or one that `batchpipe local "
        "run` wrote under <out>/s3tables/aws-s3/<namespace>/inventory",
    )
    preview.add_argument("--sample", type=whole_number(0), default=20)
    output_option(preview, "the count, the source, the bytes scanned, the cost, the sample and the SQL")
    with_example(
        preview,
        "batchpipe preview --spec examples/tagging-replace.json --inventory my-inventory",
        "batchpipe preview --spec my-spec.json --inventory s3://inventory-bucket/source-bucket/config-id",
        "batchpipe preview --spec by-tags.json --metadata-table local-run/s3tables/aws-s3/b_my-bucket/inventory",
        "batchpipe preview --spec by-tags.json --metadata-table s3tables://aws-s3/b_my-bucket/inventory",
    )
    preview.set_defaults(func=_preview)


def _add_serve(local_commands: Any) -> None:
    serve = command(
        local_commands,
        "serve",
        "keep the embedded AWS running as a local endpoint for the operator commands, until stopped",
        "batchpipe local serve --objects 2000 --faults examples/local/faults.json --port 4566",
        _serve,
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=whole_number(0), default=4566, help="TCP port (default 4566; 0 picks a free one)"
    )
    serve.add_argument(
        "--stack",
        "--stack-name",
        dest="stack_name",
        default="batchpipe",
        help="name the served stack answers to (default batchpipe, as this repository's samconfig.toml)",
    )
    source = serve.add_mutually_exclusive_group()
    source.add_argument(
        "--objects", type=whole_number(0), default=2000, help="generate N objects and their S3 Inventory"
    )
    source.add_argument("--inventory", help="a real S3 Inventory on disk: the config-id folder")
    serve.add_argument("--inventory-format", choices=sorted(FORMATS), default="csv")
    serve.add_argument("--versions", choices=["current", "all"], default="current")
    serve.add_argument("--faults", help="faults JSON for the S3 Batch engine; re-read when the file changes")
    serve.add_argument(
        "--wait-timeout",
        type=int,
        default=5,
        help="real seconds of the served stack's job waits (JobWaitTimeoutSeconds compressed to them)",
    )
    serve.add_argument(
        "--speed",
        type=positive_number,
        help="rehearse waits in time: Wait states and retry intervals last 1/SPEED of their time "
        "(1 = real time, 60 = a minute a second; a concurrency wait's 300 s polls take 5 s); "
        "default: no waiting at all",
    )
    serve.add_argument("--seed", type=int, default=7)
    serve.add_argument("--out", default="local-serve", help="Lambda logs now; at stop, the runs and buckets")


def _inventory_fields_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--inventory-fields",
        type=inventory_fields,
        default=None,
        help="the inventory configuration's optional fields: comma-separated names (e.g. "
        "Size,LastModifiedDate,StorageClass) or one of required|typical|all; default: the 13 fields "
        "template.yaml's table declares",
    )


def inventory_fields(text: str) -> tuple[str, ...]:
    """``--inventory-fields``: a named selection or S3 Inventory field names (any order, S3 sorts them)."""
    from .inventory.fields import BY_CSV_NAME, FIELD_SELECTIONS, VERSION_FIELDS

    if text in FIELD_SELECTIONS:
        return FIELD_SELECTIONS[text]
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    optional = sorted(set(BY_CSV_NAME) - {"Bucket", "Key", *VERSION_FIELDS})
    unknown = [n for n in names if n not in optional]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown optional field(s) {', '.join(unknown)}; use {', '.join(FIELD_SELECTIONS)} or names from: "
            + ", ".join(optional)
        )
    return names


def _run(args: argparse.Namespace) -> int:
    from .run import local_run

    return local_run(args)


def _inventory(args: argparse.Namespace) -> int:
    from .make_inventory import local_inventory

    return local_inventory(args)


def _serve(args: argparse.Namespace) -> int:
    from .serve import local_serve

    return local_serve(args)


def _preview(args: argparse.Namespace) -> int:
    from .preview import preview

    return preview(args)
