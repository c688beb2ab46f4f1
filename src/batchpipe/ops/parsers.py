"""Command-line parsers of the operator commands (wired into batchpipe's main)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from batchpipe.inputs import UsageError, command, execution_name, whole_number
from batchpipe.output import output_option

EXIT_CODES_HELP = (
    "exit status: 0 SUCCEEDED, NOTHING_TO_DO or DRY_RUN; 3 PARTIAL; 4 CANCELLED; 5 FAILED (or ended "
    "without a summary); 6 SKIPPED; 2 bad input or an AWS error (one line on stderr)"
)
CONTROL_EXIT_HELP = "exit status: 0 done; 2 bad input (no such run, nothing to act on) or an AWS error"
STACK_HELP = (
    "CloudFormation stack name (what `sam deploy` created); default: $BATCHPIPE_STACK, else the "
    "stack_name of ./samconfig.toml"
)
ENDPOINT_HELP = (
    "AWS endpoint to call instead of AWS's (e.g. http://127.0.0.1:4566 of `batchpipe local serve`); "
    "boto3's AWS_ENDPOINT_URL does the same"
)


#: The longest pause between two polls of `watch`: an hour still shows a day-long run 24 times.
MAX_INTERVAL_SECONDS = 3600.0


def endpoint_url(text: str) -> str:
    """An http(s) URL with a host; urllib's own ValueError ('Invalid IPv6 URL') became a traceback."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text[:200]!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"{text[:200]!r} is not an http(s) URL with a host, e.g. http://127.0.0.1:4566"
        )
    return text


def interval(text: str) -> float:
    """Seconds between polls: finite and within (0, MAX_INTERVAL_SECONDS]; inf and nan are not."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:50]!r} is not a number of seconds") from None
    if not 0 < value <= MAX_INTERVAL_SECONDS:  # False for nan as well
        raise argparse.ArgumentTypeError(
            f"{text[:50]}: give a number of seconds above 0 and at most {MAX_INTERVAL_SECONDS:.0f}"
        )
    return value


def _aws_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("AWS")
    group.add_argument("--region", help="AWS region of the stack (default: AWS_REGION / your profile's)")
    group.add_argument("--profile", help="named AWS profile (default: AWS_PROFILE / the default chain)")
    group.add_argument("--endpoint-url", type=endpoint_url, help=ENDPOINT_HELP)
    group.add_argument("--debug", action="store_true", help="print each AWS call on stderr as it is made")


def _execution_arguments(parser: argparse.ArgumentParser) -> None:
    """The run a command is about: an execution ARN, or its name and the stack it ran on."""
    parser.add_argument("execution", help="execution ARN, or its name with --stack")
    parser.add_argument("--stack", help=STACK_HELP)


def add_operator_commands(commands: Any) -> None:
    start = command(
        commands,
        "start",
        "validate a spec locally, then start a run of a deployed stack",
        "batchpipe start --stack batchpipe --spec examples/tagging-replace.json --watch",
        _start,
    )
    start.add_argument("--stack", help=STACK_HELP)
    start.add_argument("--spec", required=True, help="job spec JSON (the execution input)")
    start.add_argument("--name", type=execution_name, help="execution name (default: <spec name>-<UTC time>)")
    start.add_argument("--watch", action="store_true", help="follow the run until it ends (see `watch`)")
    output_option(start, "the started run's ARN and console link")
    start.epilog += f"\n\nwith --watch, {EXIT_CODES_HELP}"

    watch = command(
        commands,
        "watch",
        "follow a run live: state, attempt, Athena and batch-job progress, then its headline",
        "batchpipe watch retag-prod-20261202T030000Z --stack batchpipe",
        _watch,
    )
    _execution_arguments(watch)
    watch.add_argument("--interval", type=interval, default=2.0, help="seconds between polls (default 2)")
    watch.add_argument("--verbose", action="store_true", help="also the Choice states the run passes")
    watch.epilog += f"\n\n{EXIT_CODES_HELP}"

    runs = command(
        commands,
        "runs",
        "recent runs of a stack: execution, status, start and stop (ListExecutions); --counts adds each run's counts",
        "batchpipe runs --stack batchpipe --max 50 --counts --output json",
        _runs,
    )
    runs.add_argument("--stack", help=STACK_HELP)
    runs.add_argument(
        "--max",
        type=whole_number(1),
        default=20,
        help="how many runs, newest first (default 20; one ListExecutions call per 1,000)",
    )
    runs.add_argument(
        "--counts",
        action="store_true",
        help="also each run's name, outcome, objects, succeeded, failed and cost, from its summary "
        "(one DescribeExecution per run: --max 100 at most)",
    )
    output_option(runs, "a table")
    # The flag of earlier releases, kept for the scripts that use it.
    runs.add_argument("--json", dest="output", action="store_const", const="json", help=argparse.SUPPRESS)

    summary = command(
        commands,
        "summary",
        "print a run's summary; --failures downloads the objects that did not succeed, --html the run page",
        "batchpipe summary retag-prod-20261202T030000Z --stack batchpipe --failures failed.csv --html --open",
        _summary,
    )
    _execution_arguments(summary)
    summary.add_argument(
        "--failures", metavar="FILE", help="download the failures file to FILE (must not exist)"
    )
    summary.add_argument(
        "--html",
        metavar="FILE",
        nargs="?",
        const="",
        help="save the run page (report.html) to FILE (must not exist; default report-<execution>.html)",
    )
    summary.add_argument("--open", action="store_true", help="open the saved run page in a browser")
    output_option(summary, "the headline, counts, error codes, cost and where the files are")

    rerun = command(
        commands,
        "rerun",
        "start a new run over the objects a run failed on (after you fixed the cause)",
        "batchpipe rerun retag-prod-20261202T030000Z --stack batchpipe --error-codes AccessDenied --yes",
        _rerun,
    )
    _execution_arguments(rerun)
    rerun.add_argument("--error-codes", nargs="+", metavar="CODE", help="only the failures with these codes")
    rerun.add_argument(
        "--operation", metavar="FILE", help="JSON of another operation (default: the run's own)"
    )
    rerun.add_argument("--name", type=execution_name, help="execution name of the rerun")
    rerun.add_argument("--yes", action="store_true", help="start without asking")
    rerun.add_argument("--watch", action="store_true", help="follow the rerun until it ends")
    output_option(rerun, "the failures counted and the started run")

    # Every operator command reaches AWS (or `local serve`) the same way: the AWS options come last.
    for parser in (start, watch, runs, summary, rerun):
        _aws_options(parser)

    acting = {}
    for name, what, example, func in (
        (
            "stop",
            "stop a run (StopExecution); the pipeline cancels its jobs that are still going",
            'batchpipe stop retag-prod-20261202T030000Z --stack batchpipe --reason "wrong tag value"',
            _stop,
        ),
        (
            "confirm",
            "confirm the run's job that waits for a person (confirmationRequired), after checking its count",
            "batchpipe confirm legal-hold-case-4711-20261202T030000Z --stack batchpipe",
            _confirm,
        ),
        (
            "cancel",
            "cancel the run's job as a person: the run ends CANCELLED, its objects not run listed for a rerun",
            "batchpipe cancel retag-prod-20261202T030000Z --stack batchpipe",
            _cancel,
        ),
        (
            "jobs",
            "every S3 Batch Operations job of a run: attempt, job ID, status, counts, times",
            "batchpipe jobs retag-prod-20261202T030000Z --stack batchpipe --output json",
            _jobs,
        ),
    ):
        acting[name] = command(commands, name, what, example, func)
        _execution_arguments(acting[name])
    acting["stop"].add_argument(
        "--reason", required=True, help="why: the execution's abort cause, kept in its history"
    )
    output_option(acting["jobs"], "a table")
    for name in ("stop", "confirm", "cancel"):
        output_option(acting[name], "one line of what was done")
    for parser in acting.values():
        parser.epilog += f"\n\n{CONTROL_EXIT_HELP}"
        _aws_options(parser)


def add_schema_command(commands: Any) -> None:
    command(
        commands,
        "spec-schema",
        "print the job spec's JSON Schema (for editors; committed as docs/job-spec.schema.json)",
        "batchpipe spec-schema > job-spec.schema.json",
        _spec_schema,
    )


def _spec_schema(args: argparse.Namespace) -> int:
    import json

    from batchpipe.spec_schema import spec_schema

    print(json.dumps(spec_schema(), indent=2, sort_keys=True))
    return 0


def _stack(args: argparse.Namespace, needed: bool = True) -> str | None:
    from .stack import default_stack_name

    return args.stack or (default_stack_name() if needed else None)


def _aws(args: argparse.Namespace) -> Any:
    from .aws import Aws

    return Aws(region=args.region, endpoint_url=args.endpoint_url, profile=args.profile, debug=args.debug)


def _start(args: argparse.Namespace) -> int:
    from .commands import start

    _watch_or_json(args)
    return start(
        _aws(args),
        stack_name=_stack(args),
        spec_path=args.spec,
        name=args.name,
        watch_it=args.watch,
        out=sys.stdout,
        output=args.output,
    )


def _watch_or_json(args: argparse.Namespace) -> None:
    """A watch is lines for a person: JSON for a script comes from the commands that print a document."""
    if args.watch and args.output == "json":
        raise UsageError(
            "--watch prints lines for a person, --output json one document for a script: use one "
            "(then `batchpipe watch`, or `batchpipe summary --output json` once the run ended)"
        )


def _watch(args: argparse.Namespace) -> int:
    from .commands import watch

    aws, arn = _on_run(args)
    return watch(aws, arn, out=sys.stdout, interval=args.interval, verbose=args.verbose)


def _on_run(args: argparse.Namespace) -> tuple[Any, str]:
    from .stack import execution_arn

    aws = _aws(args)
    return aws, execution_arn(aws, args.execution, _stack(args, needed=not args.execution.startswith("arn:")))


def _stop(args: argparse.Namespace) -> int:
    from .control import stop

    aws, arn = _on_run(args)
    return stop(aws, arn, reason=args.reason, out=sys.stdout, output=args.output)


def _confirm(args: argparse.Namespace) -> int:
    from .control import confirm

    aws, arn = _on_run(args)
    return confirm(aws, arn, out=sys.stdout, output=args.output)


def _cancel(args: argparse.Namespace) -> int:
    from .control import cancel

    aws, arn = _on_run(args)
    return cancel(aws, arn, out=sys.stdout, output=args.output)


def _jobs(args: argparse.Namespace) -> int:
    from .control import jobs

    aws, arn = _on_run(args)
    return jobs(aws, arn, output=args.output, out=sys.stdout)


def _runs(args: argparse.Namespace) -> int:
    from .commands import check_counted, runs

    check_counted(args.max, args.counts)
    return runs(
        _aws(args),
        stack_name=_stack(args),
        limit=args.max,
        counts=args.counts,
        output=args.output,
        out=sys.stdout,
    )


def _summary(args: argparse.Namespace) -> int:
    from .commands import show_summary

    return show_summary(
        _aws(args),
        execution=args.execution,
        stack_name=_stack(args),
        failures=args.failures,
        out=sys.stdout,
        html=args.html,
        open_page=args.open,
        output=args.output,
    )


def _rerun(args: argparse.Namespace) -> int:
    from .commands import rerun

    _watch_or_json(args)
    return rerun(
        _aws(args),
        execution=args.execution,
        stack_name=_stack(args),
        error_codes=args.error_codes,
        operation_path=args.operation,
        name=args.name,
        assume_yes=args.yes,
        watch_it=args.watch,
        out=sys.stdout,
        output=args.output,
    )
