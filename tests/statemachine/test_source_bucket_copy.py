"""A spec.source run whose generated manifest takes ConfirmJob several invocations to copy (issue #26).

Real pipeline.asl.json and handlers on the embedded AWS. The generated manifest crosses S3's multipart
boundaries: its first data file converts into a piece past 5 MiB (joined by UploadPartCopy), the
others into small pieces (read and sent together). ConfirmJob is given so little time that it copies
one data file per invocation and the state's Retry (ManifestCountIncomplete) goes on; the run's
manifest must come out byte for byte what one invocation writes, with exact totals. A copy that needs
more invocations than the Retry's MaxAttempts allows fails the run with its job cancelled untouched.
"""

from __future__ import annotations

import csv
import io

import boto3
import pytest

from batchpipe.local.lambda_faults import all_states, shipped_definition
from batchpipe.local.s3batch import generator as engine_generator
from batchpipe_core import generated_copy
from batchpipe_core.keys import encode_key
from batchpipe_core.multipart import MiB
from tests.statemachine.test_pipeline import TAGGING, jobs, pipeline, read_s3_uri, tags_by_key
from tests.statemachine.test_source_bucket import COUNT_AT_SUSPENDED, MANIFEST_AT_SUSPENDED, all_succeeded

#: Rows per data file of the generated manifest (S3 does not document its split).
ROWS_PER_FILE = 1_800
# Keys of S3's longest (1,024 UTF-8 bytes), in three-byte characters: ~3 KB each once URL-encoded, so
# the first data file (these keys sort first) converts into a piece past 5 MiB.
LONG = [f"big/{n:05d}/" + "日" * 338 for n in range(ROWS_PER_FILE)]
# Then data files of short hostile keys, the last one partly filled: small pieces.
SHORT = [f'small/{n:05d} a+b,c%"ü.txt' for n in range(2 * ROWS_PER_FILE + 40)]
KEYS = LONG + SHORT
DATA_FILES = 4


@pytest.fixture
def small_data_files(monkeypatch):
    monkeypatch.setattr(engine_generator, "ROWS_PER_FILE", ROWS_PER_FILE)
    monkeypatch.setattr(generated_copy, "PIECE_INPUT_BYTES", 1)  # a piece per data file


def part_copies() -> list[str]:
    """The CopySource of every UploadPartCopy the handlers' clients (boto3's default session) make
    from now on (the stack's moto resets that session when it starts)."""
    seen: list[str] = []
    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register(
        "provide-client-params.s3.UploadPartCopy", lambda params, **_: seen.append(str(params["CopySource"]))
    )
    return seen


def source_run(stack, name: str, **fields):
    spec = {"name": name, "source": {"bucket": stack.world.source_bucket}, "operation": TAGGING} | fields
    return stack.run(spec, name=name, timeout=900)


def invocations(execution, function: str = "ConfirmJob") -> int:
    """The Lambda invocations of ``function`` (a name in its ARN) the execution scheduled."""
    return sum(
        1
        for event in execution.history
        if event["type"] == "TaskScheduled" and function in event["taskScheduledEventDetails"]["parameters"]
    )


def confirm_invocations(execution) -> int:
    return invocations(execution, "ConfirmJob")


def test_a_copy_over_several_invocations_is_the_one_invocation_copy_with_exact_totals(
    small_data_files, monkeypatch
):
    assert len(LONG[0].encode()) == 1024
    # The invocation that joins the pieces (and confirms the job) runs to its end and then times out
    # (Lambda.Unknown), twice: retried, it joins the same pieces again (an invocation ended by
    # ManifestCountIncomplete is an error already, which the rule leaves alone).
    timeouts = [{"lambdaTimeout": {"state": "ConfirmJob", "times": 2}}]
    with pipeline(KEYS, faults=timeouts, **MANIFEST_AT_SUSPENDED) as stack:
        # Each ConfirmJob invocation has time for one step only.
        monkeypatch.setattr(generated_copy, "COPY_MARGIN_SECONDS", 10_000.0)
        copied = part_copies()
        resumed = source_run(stack, "copymany")
        copied_parts = list(copied)
        manifest = read_s3_uri(stack, resumed.output["manifest"]["location"])
        tags = tags_by_key(stack)
        # The same selection copied in one invocation.
        monkeypatch.undo()
        monkeypatch.setattr(engine_generator, "ROWS_PER_FILE", ROWS_PER_FILE)
        monkeypatch.setattr(generated_copy, "PIECE_INPUT_BYTES", 1)
        in_one = source_run(stack, "copyone", dryRun=True)
        one_manifest = read_s3_uri(stack, in_one.output["manifest"]["location"])
        states = resumed.states_entered
        statuses = sorted(job["Status"] for job in jobs(stack))
    boto3.DEFAULT_SESSION = None  # without the hook

    # One invocation per data file and one for the join; the first run's copy took one.
    assert states.count("ConfirmJob") == 1
    assert confirm_invocations(resumed) == DATA_FILES + 1 + 2  # the join twice more
    assert confirm_invocations(in_one) == 1
    assert manifest == one_manifest
    assert len(manifest.encode()) > 5 * MiB
    # The piece of the first data file (past 5 MiB) was copied inside S3, each time the pieces were joined.
    assert len(copied_parts) == 3 and all("files-000000-000001.csv" in source for source in copied_parts)
    rows = list(csv.reader(io.StringIO(manifest, newline="")))
    assert sorted(key for _, key in rows) == sorted(encode_key(k) for k in KEYS)
    summary = resumed.output
    assert summary["status"] == "SUCCEEDED"
    assert summary["manifest"]["objects"] == len(KEYS)
    assert summary["totals"] == all_succeeded(len(KEYS))
    assert all(tag == {"batchpipe": "done"} for tag in tags.values()) and len(tags) == len(KEYS)
    assert in_one.output["status"] == "DRY_RUN"
    assert in_one.output["manifest"]["objects"] == len(KEYS)
    assert in_one.output["manifest"]["sample"] == LONG[:20]
    assert statuses == ["Cancelled", "Complete"]


def count_retries(state: str = "ConfirmJob") -> int:
    """A state's MaxAttempts for ManifestCountIncomplete, as the shipped definition says."""
    (retry,) = [
        rule
        for rule in all_states(shipped_definition())[state]["Retry"]
        if rule["ErrorEquals"] == ["ManifestCountIncomplete"]
    ]
    return retry["MaxAttempts"]


def test_a_copy_longer_than_the_retries_allow_fails_with_its_job_cancelled_untouched(monkeypatch):
    # One row per data file and one step per invocation: a selection of MaxAttempts objects takes
    # every invocation the Retry allows (one per file, then the join); one more object is too many.
    retries = count_retries()
    monkeypatch.setattr(engine_generator, "ROWS_PER_FILE", 1)
    monkeypatch.setattr(generated_copy, "PIECE_INPUT_BYTES", 1)
    monkeypatch.setattr(generated_copy, "COPY_MARGIN_SECONDS", 10_000.0)
    keys = [f"fits/{n:03d}+ü.txt" for n in range(retries)] + ["over/one.txt"]
    with pipeline(keys, **MANIFEST_AT_SUSPENDED) as stack:
        fits = source_run(stack, "copyfits", dryRun=True, filter={"prefixes": ["fits/"]})
        over = source_run(stack, "copyover")
        tags = tags_by_key(stack)
        statuses = [job["Status"] for job in jobs(stack)]

    assert fits.output["status"] == "DRY_RUN"
    assert fits.output["manifest"]["objects"] == retries
    assert confirm_invocations(fits) == retries + 1
    assert over.output["status"] == "FAILED"
    assert over.output["error"] == "ManifestCountIncomplete"
    assert f"copied {retries + 1} rows" in over.output["cause"]
    assert confirm_invocations(over) == retries + 1
    assert statuses == ["Cancelled", "Cancelled"]
    assert all(tag == {} for tag in tags.values())


def test_a_manifest_s3_writes_only_once_the_job_ran_is_copied_by_plan_report_in_pieces(
    small_data_files, monkeypatch
):
    # S3 gave its count at Suspended but no manifest (the other answer AWS leaves open): ConfirmJob holds
    # maxObjects on the count and PlanReport copies the manifest after the run, as ConfirmJob would,
    # one data file per invocation, its state's Retry (ManifestCountIncomplete) going on.
    assert count_retries("PlanReport") >= DATA_FILES + 1
    with pipeline(KEYS, **COUNT_AT_SUSPENDED) as stack:
        monkeypatch.setattr(generated_copy, "COPY_MARGIN_SECONDS", 10_000.0)
        copied = part_copies()
        resumed = source_run(stack, "copyafter")
        copied_parts = list(copied)
        manifest = read_s3_uri(stack, resumed.output["manifest"]["location"])
        tags = tags_by_key(stack)
    boto3.DEFAULT_SESSION = None  # without the hook

    assert confirm_invocations(resumed) == 1  # the count, no copy
    assert invocations(resumed, "PlanReport") == DATA_FILES + 1
    assert len(copied_parts) == 1 and "files-000000-000001.csv" in copied_parts[0]
    rows = list(csv.reader(io.StringIO(manifest, newline="")))
    assert [key for _, key in rows] == [encode_key(k) for k in KEYS]
    summary = resumed.output
    assert summary["status"] == "SUCCEEDED"
    assert summary["manifest"]["objects"] == len(KEYS)
    assert summary["totals"] == all_succeeded(len(KEYS))
    assert all(tag == {"batchpipe": "done"} for tag in tags.values()) and len(tags) == len(KEYS)
