"""What a person gives a command, read and checked: spec and JSON files, names, numbers, flag help.

The bottom floor of the `batchpipe` package: every command (the operator's and the embedded AWS's)
reads its inputs here and raises the one `UsageError` the front door prints as one line. It imports
nothing of the package, only `batchpipe_core` (the pipeline's own spec reading).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from typing import Any

#: The inventory formats a command line names, and S3 Inventory's own names for them.
FORMATS = {"csv": "CSV", "parquet": "Parquet", "orc": "ORC"}

#: Input files are read whole; anything bigger than this is not a spec or a faults file.
MAX_INPUT_FILE_BYTES = 1024 * 1024


class UsageError(Exception):
    """A bad command line or input file; printed as one line without a traceback."""


def read_bytes(path: str, what: str) -> bytes:
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


def read_json(path: str, what: str) -> Any:
    body = read_bytes(path, what)
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
    from batchpipe_core.spec_document import parse_spec_document

    try:
        spec = parse_spec_document(read_bytes(path, "spec"))
    except SpecValidationError as exc:
        raise UsageError(f"spec file {path}: {str(exc).removeprefix('spec: ')}") from None
    if not isinstance(spec, dict):
        raise UsageError(
            f"spec file {path} must hold a JSON object (the execution input), not {_json_type(spec)}"
        )
    return spec


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


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a positive number (e.g. 1 or 60)")
    return value


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


def command(commands: Any, name: str, help_: str, example: str, func: Any) -> argparse.ArgumentParser:
    """A subcommand whose --help describes it and ends with an example; ``func(args)`` runs it."""
    parser = with_example(commands.add_parser(name, help=help_, description=help_), example)
    parser.set_defaults(func=func)
    return parser
