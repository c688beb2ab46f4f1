"""`batchpipe` command: the pipeline on the embedded AWS (`local run`) and filter previews (`preview`)."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

DEFAULT_SPEC = {
    "name": "demo",
    "operation": {"S3PutObjectTagging": {"TagSet": [{"Key": "batchpipe", "Value": "demo"}]}},
}
FORMATS = {"csv": "CSV", "parquet": "Parquet", "orc": "ORC"}


#: Input files are read whole; anything bigger than this is not a spec or a faults file.
MAX_INPUT_FILE_BYTES = 1024 * 1024


class UsageError(Exception):
    """A bad command line or input file; printed as one line without a traceback."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (and status 2) like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"batchpipe: {message} (see: {self.prog} --help)\n")


def _read_bytes(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            body = fh.read(MAX_INPUT_FILE_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{what} file {path} is a folder: give a JSON file") from None
    except OSError as exc:
        raise UsageError(f"{what} file {path} cannot be read: {exc.strerror or exc}") from None
    if len(body) > MAX_INPUT_FILE_BYTES:
        raise UsageError(f"{what} file {path} is larger than {MAX_INPUT_FILE_BYTES} bytes")
    return body


def _read_json(path: str, what: str) -> Any:
    body = _read_bytes(path, what)
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{what} file {path} is not UTF-8 text (byte {exc.start}): save it as UTF-8"
        ) from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} file {path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise UsageError(f"{what} file {path} nests JSON too deeply") from None


def read_spec(path: str) -> dict:
    """A spec file, read as ValidateSpec reads a spec document (size, encoding, depth, duplicate
    keys); its fields are then checked by the pipeline's ValidateSpec."""
    from batchpipe_core.errors import SpecValidationError
    from batchpipe_core.spec import parse_spec_document

    try:
        spec = parse_spec_document(_read_bytes(path, "spec"))
    except SpecValidationError as exc:
        raise UsageError(f"spec file {path}: {str(exc).removeprefix('spec: ')}") from None
    if not isinstance(spec, dict):
        raise UsageError(
            f"spec file {path} must hold a JSON object (the execution input), not {_json_type(spec)}"
        )
    return spec


def read_faults(path: str) -> list[Any]:
    from .lambda_faults import check_states, shipped_lambda_task_states
    from .s3batch.faults import FaultRuleError, parse_rules

    raw = _read_json(path, "faults")
    try:
        rules = parse_rules(raw)
        check_states(rules, shipped_lambda_task_states())
        return rules
    except FaultRuleError as exc:
        raise UsageError(f"faults file {path}: {exc}") from None


def read_inventory(path: str) -> Any:
    """An inventory folder, every row parsed once up front: a malformed folder is refused (naming the
    file and line) before anything starts, never part-loaded."""
    from . import inventory as inv

    layout = inv.read_inventory_dir(Path(path))
    where = f"{path}/{layout.delivery}/manifest.json"
    try:
        bucket_name(layout.source_bucket)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{where} sourceBucket {layout.source_bucket[:70]!r} {exc}") from None
    for place, row in layout.located_objects():  # streams; rows of another bucket are refused there
        # The objects are created in the emulated bucket: S3's own limits apply (S3 user guide,
        # "Naming Amazon S3 objects": a key is at most 1,024 bytes of UTF-8).
        size = len(row.key.encode("utf-8", "surrogatepass"))
        if not 0 < size <= 1024:
            raise UsageError(f"{path}: {place}: the key is {size} bytes; S3 keys are 1-1,024 bytes of UTF-8")
    return layout


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def whole_number(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, not {text[:40]!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, not {value}")
        return value

    parse.__name__ = "whole number"
    return parse


def execution_name(text: str) -> str:
    """StartExecution's naming rules (Step Functions API reference, StartExecution `name`): 1-80
    characters, none of whitespace, < > { } [ ] ? * " # % \\ ^ | ~ ` $ & , ; : / or control characters.
    The length comes from botocore's model; moto checks none of this, so it is checked here."""
    from batchpipe_core.operation import service_model

    shape = service_model("stepfunctions").operation_model("StartExecution").input_shape.members["name"]
    low, high = shape.metadata.get("min", 1), shape.metadata.get("max", 80)
    if not low <= len(text) <= high:
        raise argparse.ArgumentTypeError(f"must be {low}-{high} characters long, not {len(text)}")
    bad = sorted({c for c in text if c.isspace() or c in _FORBIDDEN_IN_NAMES or _is_control(c)})
    if bad:
        raise argparse.ArgumentTypeError(
            f"Step Functions does not allow {' '.join(repr(c) for c in bad)} in an execution name; "
            "use letters, digits, - and _"
        )
    return text


def bucket_name(text: str) -> str:
    """General purpose bucket naming rules (S3 user guide, "Bucket naming rules"), the common subset."""
    if not _BUCKET.fullmatch(text) or ".." in text:
        raise argparse.ArgumentTypeError(
            "must be 3-63 characters of lowercase letters, digits, dots and hyphens, starting and ending "
            "with a letter or digit"
        )
    return text


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_FORBIDDEN_IN_NAMES = frozenset('<>{}[]?*"#%\\^|~`$&,;:/')


def _is_control(char: str) -> bool:
    point = ord(char)
    return point <= 0x1F or 0x7F <= point <= 0x9F or 0xD800 <= point <= 0xDFFF or point in (0xFFFE, 0xFFFF)


def with_example(parser: argparse.ArgumentParser, *examples: str) -> argparse.ArgumentParser:
    """Every command's --help ends with a command line that works as written."""
    parser.epilog = "example:\n" + "\n".join(f"  {line}" for line in examples)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="batchpipe", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

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
        "--wait-timeout",
        type=whole_number(1),
        default=5,
        help="seconds CreateJobAndWait waits for a status event before asking DescribeJob",
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

    preview = commands.add_parser("preview", help="count and sample what a spec selects, without AWS cost")
    preview.add_argument("--spec", required=True)
    preview.add_argument(
        "--inventory", required=True, help="config-id folder on disk, or s3://bucket/prefix/config-id"
    )
    preview.add_argument("--sample", type=whole_number(0), default=20)
    with_example(
        preview,
        "batchpipe preview --spec examples/tagging-replace.json --inventory my-inventory",
        "batchpipe preview --spec my-spec.json --inventory s3://inventory-bucket/source-bucket/config-id",
    )

    from .ops.parsers import add_operator_commands, add_schema_command, add_serve_command

    add_serve_command(local_commands, FORMATS)
    add_operator_commands(commands)
    add_schema_command(commands)
    return parser


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


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        # A terminal whose encoding lacks ▶ or ✗ (PYTHONIOENCODING=cp1252) shows '?' instead of
        # failing the command with UnicodeEncodeError halfway through a watch.
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a bad flag already reported on one line
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # moto logs every failed state at ERROR; the run summary reports failures better.
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    # Powertools warns on every handler that emitted no metric; locally metrics are disabled anyway.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    from .inventory import InventoryDirError
    from .isolation import isolated_environment
    from .outputs import OutDirError

    with isolated_environment():
        # The X-Ray SDK (under Powertools' Tracer) builds a boto3 client when first imported, reading
        # the shell's profile: an unknown AWS_PROFILE failed every command with ProfileNotFound. Made
        # here with the embedded stack's settings, it is never used (tracing is off outside Lambda).
        import batchpipe_core.observability  # noqa: F401

    try:
        if hasattr(args, "func"):
            return args.func(args)
        if args.command == "local" and args.local_command == "inventory":
            from .make_inventory import local_inventory

            return local_inventory(args)
        if args.command == "local":
            from .run import local_run

            return local_run(args)
        from .preview import preview

        return preview(args)
    except (UsageError, OutDirError, InventoryDirError) as exc:
        print(f"batchpipe: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C: the embedded AWS is gone with the process; what --out holds so far is kept.
        print("batchpipe: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (`| head`) stopped reading: not an error to report. Python's documented recipe:
        # point stdout at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
