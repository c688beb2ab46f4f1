"""`batchpipe` command: the pipeline on the embedded AWS (`local run`) and filter previews (`preview`)."""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import warnings
from typing import NoReturn

from .inputs import UsageError
from .local.parsers import add_local_commands
from .ops.parsers import add_operator_commands, add_schema_command

# The front door: the parser of every command and its dispatch. Nothing imports this module but the
# `batchpipe` console script (and tests); each room's parsers say what its commands are.


#: Set to any value: an unexpected error shows its traceback (as --debug does on the operator commands).
DEBUG_ENV = "BATCHPIPE_DEBUG"
#: A failure nothing names: a bug to report (bad input and AWS errors are 2, a run's outcome its own).
EXIT_UNEXPECTED = 1


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (and status 2) like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"batchpipe: {message} (see: {self.prog} --help)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("batchpipe")
    except PackageNotFoundError:  # run from a checkout without installing it
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="batchpipe", description=__doc__)
    parser.add_argument("--version", action="version", version=f"batchpipe {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_local_commands(commands)
    add_operator_commands(commands)
    add_schema_command(commands)
    return parser


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
    # The embedded AWS's own errors are imported only for the commands that stand it up: the operator
    # commands never import moto (1 s and more at every start-up).
    bad_input: tuple[type[Exception], ...] = (UsageError,)
    if args.command in ("local", "preview"):
        from .local.inventory import InventoryDirError
        from .local.outputs import OutDirError

        bad_input += (InventoryDirError, OutDirError)

    try:
        return args.func(args)
    except bad_input as exc:
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
    except Exception as exc:
        # A failure nothing above names (a bug, or an AWS answer no command expects): still one line
        # a person reads; --debug (or BATCHPIPE_DEBUG=1) shows the traceback to report.
        if getattr(args, "debug", False) or os.environ.get(DEBUG_ENV):
            raise
        what = " ".join(str(exc).split())[:500]
        print(
            f"batchpipe: unexpected error: {type(exc).__name__}: {what} (run again with --debug or "
            f"{DEBUG_ENV}=1 for the traceback to report)",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED


if __name__ == "__main__":
    sys.exit(main())
