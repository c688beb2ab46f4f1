"""`batchpipe` command: the pipeline on the embedded AWS (`local run`) and filter previews (`preview`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

DEFAULT_SPEC = {
    "name": "demo",
    "operation": {"S3PutObjectTagging": {"TagSet": [{"Key": "batchpipe", "Value": "demo"}]}},
}
FORMATS = {"csv": "CSV", "parquet": "Parquet", "orc": "ORC"}


class UsageError(Exception):
    """A bad command line or input file; printed without a traceback."""


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{what} file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} file {path} is not valid JSON: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchpipe", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="run the stack on the embedded AWS")
    local_commands = local.add_subparsers(dest="local_command", required=True)
    run = local_commands.add_parser("run", help="run the whole pipeline once, end to end, in this process")
    run.add_argument("--spec", help="job spec JSON (the execution input); default: tag every object")
    source = run.add_mutually_exclusive_group()
    source.add_argument("--objects", type=int, default=None, help="generate N objects and their S3 Inventory")
    source.add_argument("--inventory", help="a real S3 Inventory on disk: the config-id folder")
    run.add_argument("--inventory-format", choices=sorted(FORMATS), default="csv")
    run.add_argument(
        "--versions", choices=["current", "all"], default="current", help="inventory versions mode"
    )
    run.add_argument("--faults", help="faults JSON for the emulated S3 Batch engine")
    run.add_argument("--event-delivery", choices=["normal", "drop", "duplicate", "shuffle"], default="normal")
    run.add_argument(
        "--key-decoding",
        choices=["percent", "form"],
        default="percent",
        help="how the emulated S3 Batch engine decodes manifest keys ('+' as '+' or as space)",
    )
    run.add_argument(
        "--wait-timeout",
        type=int,
        default=5,
        help="seconds CreateJobAndWait waits for a status event before asking DescribeJob",
    )
    run.add_argument("--name", default="local-1", help="execution name")
    run.add_argument("--seed", type=int, default=7)
    run.add_argument(
        "--out", default="local-run", help="where to write the summary, the pipeline bucket and objects.jsonl"
    )
    run.add_argument("--json", action="store_true", help="print only the run summary (JSON) on stdout")

    preview = commands.add_parser("preview", help="count and sample what a spec selects, without AWS cost")
    preview.add_argument("--spec", required=True)
    preview.add_argument(
        "--inventory", required=True, help="config-id folder on disk, or s3://bucket/prefix/config-id"
    )
    preview.add_argument("--sample", type=int, default=20)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # moto logs every failed state at ERROR; the run summary reports failures better.
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    # Powertools warns on every handler that emitted no metric; locally metrics are disabled anyway.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    try:
        if args.command == "local":
            from .run import local_run

            return local_run(args)
        from .preview import preview

        return preview(args)
    except UsageError as exc:
        print(f"batchpipe: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
