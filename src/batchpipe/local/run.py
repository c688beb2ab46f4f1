"""`batchpipe local run`: the real state machine and handlers, once, end to end, on the embedded AWS."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from batchpipe.inputs import FORMATS, UsageError, read_json, read_spec
from batchpipe.outcome import EXIT_NO_SUMMARY, EXIT_STATUS, readable_cause
from batchpipe.progress import LiveLine, TerminalBar, task_progress

from . import inventory as inv
from .answers import SUSPENDED_GENERATOR_ANSWERS
from .confirmation import OperatorStandIn
from .lambda_faults import check_states, shipped_lambda_task_states
from .outputs import lambda_logs_to, prepare_out, write_outputs, write_run_page
from .s3batch.faults import FaultRuleError, parse_rules
from .stack import LocalStack, seconds_per_long_wait
from .world import INVENTORY_DEST_PREFIX, World

#: The spec `local run` runs without --spec: tag every object.
DEFAULT_SPEC = {
    "name": "demo",
    "operation": {"S3PutObjectTagging": {"TagSet": [{"Key": "batchpipe", "Value": "demo"}]}},
}


class Progress:
    """Prints each state as the execution enters it, and a progress line for running batch jobs."""

    def __init__(self, stack: LocalStack, execution_arn: str, stream: TextIO, quiet: bool) -> None:
        self.stack = stack
        self.execution_arn = execution_arn
        self.stream = stream
        self.quiet = quiet
        self._seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="progress", daemon=True)
        self._jobs_reported: set[str] = set()
        self._failures_shown: set[tuple[str, str]] = set()
        # A running batch job's bar, redrawn in place on a terminal (never in logs or pipes).
        self._live = LiveLine(stream)

    def __enter__(self) -> Progress:
        if not self.quiet:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if not self.quiet:
            self._poll()

    def say(self, text: str) -> None:
        if not self.quiet:
            self._live.clear()
            print(text, file=self.stream, flush=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            self._poll()

    def _poll(self) -> None:
        # Only the events since the last poll: reading the whole history five times a second cost
        # CPU growing with it, quadratic in a long job's wait (LocalStack.history_after).
        events = self.stack.history_after(self.execution_arn, self._seen)
        for event in events:
            self._describe(event)
        self._seen += len(events)
        self._job_progress()

    def _describe(self, event: dict) -> None:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            state_input = json.loads(event["stateEnteredEventDetails"].get("input") or "{}")
            detail = ""
            if name == "CreateJobAndWait" and isinstance(state_input.get("current"), dict):
                current = state_input["current"]
                objects = current.get("manifest", {}).get("objects")
                counted = "S3 has not counted the objects yet" if objects is None else f"{objects} objects"
                detail = f"  attempt {current.get('attempt')}: {counted}"
            elif name in ("Backoff", "WaitForQuery"):
                detail = "  (waits are compressed locally)"
            self.say(f"▶ {name}{detail}")
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            output = json.loads(event["stateExitedEventDetails"].get("output") or "{}")
            if name == "BuildManifest" and isinstance(output.get("manifest"), dict):
                manifest = output["manifest"]
                counted = (
                    "objects not counted yet (S3 Batch Operations counts them)"
                    if manifest.get("objects") is None
                    else f"{manifest['objects']} objects"
                )
                self.say(f"  manifest: {counted}, {manifest.get('bytesScanned')} bytes scanned")
            elif name == "ConfirmJob" and isinstance(output.get("current"), dict):
                current = output["current"]
                self.say(
                    f"  attempt {current.get('attempt')}: S3 counted {current['manifest'].get('objects')} objects; "
                    "within maxObjects"
                )
            elif name == "CancelJobs" and isinstance(output.get("cancelled"), dict):
                for job in output["cancelled"].get("jobs", []):
                    self.say(f"  ✗ job {job.get('jobId')} cancelled by the pipeline: {job.get('reason')}")
            elif name == "ProcessReport" and isinstance(output.get("processed"), dict):
                p = output["processed"]
                self.say(
                    f"  attempt {p.get('attempt')}: {p.get('succeeded')} succeeded, "
                    f"{p.get('failedRetriable')} retriable, {p.get('failedPermanent')} permanent"
                )
        elif kind in ("TaskFailed", "LambdaFunctionFailed", "ExecutionFailed"):
            details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
            failure = (str(details.get("error")), readable_cause(details.get("cause")))
            if failure not in self._failures_shown:  # a task's failure is the execution's again
                self._failures_shown.add(failure)
                self.say(f"  ✗ {failure[0]}: " + "\n    ".join(failure[1].splitlines() or [""]))
        elif kind == "TaskTimedOut":
            self.say("  … no job status event in time: asking DescribeJob (CheckJob)")

    def _job_progress(self) -> None:
        s3control = self.stack.client("s3control")
        try:
            jobs = s3control.list_jobs(AccountId=self.stack.account_id)["Jobs"]
        except Exception:  # noqa: BLE001 - progress is best effort
            return
        for job in jobs:
            if job["JobId"] in self._jobs_reported:
                continue
            line = (
                f"  job {job['JobId'][:8]} {job['Status']}: {task_progress(job.get('ProgressSummary', {}))}"
            )
            if job["Status"] in ("Complete", "Failed", "Cancelled"):
                self._jobs_reported.add(job["JobId"])
                self.say(line)
            elif job["Status"] == "Active":
                self._live.show(line)


def headline(summary: dict, out: Path) -> str:
    """One sentence a person reads first: what happened to the objects and where the failures are."""
    status, totals = summary.get("status"), summary.get("totals") or {}
    if status in ("SUCCEEDED", "PARTIAL"):
        text = (
            f"{status}: {totals.get('succeeded')} of {totals.get('objects')} objects succeeded "
            f"in {len(summary.get('attempts', []))} attempt(s)"
        )
        failed = (totals.get("failedPermanent") or 0) + (totals.get("failedRetriesExhausted") or 0)
        if failed:
            local = str(summary.get("permanentFailures", "")).removeprefix("s3://")
            text += (
                f"; {failed} did not (each with its last error in {out / local}). On AWS, after fixing "
                f'the cause, rerun just those: {{"rerun": {{"failures": "{summary.get("permanentFailures")}"}}, '
                '"operation": ...} (docs/OPERATIONS.md)'
            )
        return text + "."
    if status == "CANCELLED":
        local = str(summary.get("permanentFailures", "")).removeprefix("s3://")
        return (
            f"CANCELLED: someone cancelled the job; {totals.get('succeeded')} of {totals.get('objects')} "
            f"objects succeeded, {totals.get('notRun')} never ran (error NotRun in {out / local}). No "
            f'further attempt was made; rerun them: {{"rerun": {{"failures": "{summary.get("permanentFailures")}", '
            '"errorCodes": ["NotRun"]}, "operation": ...} (docs/OPERATIONS.md).'
        )
    if status == "FAILED":
        return f"FAILED: {summary.get('error')} (the messages above; summary.json has them too)"
    manifest = summary.get("manifest") or {}
    why = f": {manifest['why']}" if manifest.get("why") else ""
    return f"{status}: {manifest.get('objects')} objects selected{why}."


def world_of(args: argparse.Namespace) -> tuple[World, Any]:
    """The source bucket and inventory a local stack acts on: a real delivery (`--inventory`) or generated
    objects. `local run` and `local serve` share it, so both accept the same inventories."""
    object_lock = getattr(args, "object_lock", False)
    if args.inventory:
        layout = inv.read_inventory(args.inventory)
        world = World(
            source_bucket=layout.source_bucket,
            fmt=layout.file_format,
            versions=layout.versions,
            object_lock=object_lock,
        )
        return world, layout
    world = World(
        fmt=FORMATS[args.inventory_format], versions=args.versions.capitalize(), object_lock=object_lock
    )
    if getattr(args, "inventory_fields", None) is not None:
        world.fields = args.inventory_fields
    return world, None


def stack_parameters(world: World, layout: Any) -> dict[str, Any]:
    """The template parameters of the local stack: every one within what template.yaml accepts (the
    job waits are compressed by the stack's ``timeout_scale``, not by an out-of-range value)."""
    parameters = world.parameters()
    if layout is not None:
        # A real delivery may be of any date: a deployment for it would start the projection there.
        parameters["InventoryStartDate"] = layout.dt
    return parameters


def populate(stack: LocalStack, world: World, layout: Any, args: argparse.Namespace, stream: TextIO) -> int:
    """Creates the source bucket's objects and their inventory delivery on the stack; how many objects."""
    s3 = stack.client("s3")
    if layout is not None:
        world.create_buckets(s3)
        count = inv.load_inventory_dir(
            s3,
            layout,
            dest_bucket=world.inventory_bucket,
            dest_prefix=INVENTORY_DEST_PREFIX,
            config_id=world.config_id,
        )
        print(f"loaded the inventory of {world.source_bucket}: {count} objects ({world.fmt})", file=stream)
        return count
    n = 2000 if args.objects is None else args.objects
    objects = world.generated(n, seed=args.seed)
    with TerminalBar(stream, "seeding", n) as seeding:
        world.seed(s3, objects, progress=seeding)
    del objects
    world.objects = []  # the bucket and its inventory hold them now: not a copy for the run
    print(
        f"generated {n} objects in s3://{world.source_bucket} and their S3 Inventory ({world.fmt})",
        file=stream,
    )
    return n


def reads_metadata_table(spec: Any) -> bool:
    """A spec whose source is the bucket's S3 Metadata live inventory table (the demo stack's default
    source is the inventory)."""
    source = spec.get("source") if isinstance(spec, dict) else None
    return isinstance(source, dict) and "metadataTable" in source


def local_run(args: argparse.Namespace) -> int:
    spec = read_spec(args.spec) if args.spec else DEFAULT_SPEC
    faults = read_faults(args.faults) if args.faults else []
    stream = sys.stderr if args.json else sys.stdout
    out = Path(args.out)

    world, layout = world_of(args)
    parameters = stack_parameters(world, layout)
    started = time.monotonic()
    prepare_out(out)
    with (
        lambda_logs_to(out / "lambda-logs.jsonl"),
        LocalStack(
            parameters=parameters,
            event_delivery=args.event_delivery,
            faults=faults,
            key_decoding=args.key_decoding,
            engine_options=SUSPENDED_GENERATOR_ANSWERS[args.suspended_generator],
            timeout_scale=seconds_per_long_wait(args.wait_timeout),
            # The AWS managed table bucket aws-s3 (a source.metadataTable run's table) in the run's folder.
            table_bucket_dir=out / "s3tables" / "aws-s3",
        ) as stack,
    ):
        count = populate(stack, world, layout, args, stream)
        if reads_metadata_table(spec):
            folder = stack.write_metadata_table(world.source_bucket)
            print(
                f"wrote the S3 Metadata live inventory table of {world.source_bucket} to {folder}",
                file=stream,
            )

        execution_arn = stack.start(spec, args.name)
        with (
            Progress(stack, execution_arn, stream, quiet=False) as progress,
            OperatorStandIn(
                stack.client("s3control"),
                stack.account_id,
                mode=args.confirm,
                say=progress.say,
                spec_asks_confirmation=spec.get("confirmationRequired") is True,
            ),
        ):
            execution = stack.wait(execution_arn, timeout=3600)
        if stack.router is not None:
            stack.router.flush()
        summary = (
            execution.output
            if execution.status == "SUCCEEDED"
            else {
                "name": spec.get("name"),
                "executionId": execution_arn,
                "status": "FAILED",
                "error": execution.error,
                "cause": execution.message,
            }
        )
        with TerminalBar(stream, "writing outputs", count) as writing:
            write_outputs(stack, out, summary, exclude_buckets={stack.pipeline_bucket}, progress=writing)
        described = stack.client("stepfunctions").describe_execution(executionArn=execution_arn)
        write_run_page(
            out,
            summary,
            pipeline_bucket=stack.pipeline_bucket,
            started=described.get("startDate"),
            finished=described.get("stopDate"),
        )

    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(json.dumps(summary, indent=2), file=stream)
        print(f"\n{headline(summary, out)}", file=stream)
        print(
            f"Done in {elapsed:.1f}s. Everything is under {out}/ "
            "(summary.json, report.html: the run page, objects.jsonl, lambda-logs.jsonl, the pipeline "
            "bucket mirrored at its keys).",
            file=stream,
        )
    # The operator commands' table, so a script reads `local run` and `watch` the same way.
    return EXIT_STATUS.get(summary.get("status"), EXIT_NO_SUMMARY)


def read_faults(path: str) -> list[Any]:
    """A faults file (docs/LOCAL.md, "Fault injection"), every rule checked before anything starts."""
    raw = read_json(path, "faults")
    try:
        rules = parse_rules(raw)
        check_states(rules, shipped_lambda_task_states())
        return rules
    except FaultRuleError as exc:
        raise UsageError(f"faults file {path}: {exc}") from None
