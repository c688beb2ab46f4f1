"""The report stage fanned out with tiny bounds: at most 1,000 records per worker, 20,000 objects.

Real pipeline.asl.json (its two Distributed Maps run by moto's interpreter, children and all) and
real handlers on the embedded AWS. Three kinds of job end an attempt: Complete (its report counted
window by window), Failed at S3's failure threshold and cancelled by a person (both joined with their
manifest through hash partitions). Each test checks the accounting and the retry manifest exactly,
against an oracle that reads S3's report with the csv module, and counts the state transitions.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from urllib.parse import unquote

import boto3

from batchpipe_core.s3uri import split_s3_uri
from tests.statemachine.test_pipeline import TAGGING, pipeline, read_s3_uri, run_folder_uri

OBJECTS = 20_000
ROWS_PER_WORKER = 1_000
BOUNDS = {"ReportPartRows": str(ROWS_PER_WORKER), "JoinPartitionRows": str(ROWS_PER_WORKER)}
DONE = {"batchpipe": "done"}
ODD = ["a b", "plus+sign", "100%", 'quote"comma,', "ünï/日本"]
# The report stage's states in the parent execution, per attempt: counted, or joined (the PackParts
# loop shown once, however many steps it took).
PACK_LOOP = ["PackParts", "PartsPacked?"]
COUNT_STATES = ["PlanReport", "ReadReportParts", "JoinNeeded?", *PACK_LOOP, "ProcessReport"]
JOIN_STATES = ["PlanReport", "ReadReportParts", "JoinNeeded?", "JoinPartitions", *PACK_LOOP, "ProcessReport"]
# A join large enough to regroup (more windows than RegroupFanIn) runs its regroup Map first.
REGROUP_STATES = [*JOIN_STATES[:3], "RegroupPartitions", *JOIN_STATES[3:]]


def keys(bad: int = 0) -> list[str]:
    """``bad`` keys (a-bad/) first in key order - S3 Inventory lists keys in order and the job runs
    its manifest in order - then 2% slow/ (503 once), 0.25% gone/ (404) and ok/; some keys with
    characters that need encoding."""

    def group(i: int) -> str:
        if i < bad:
            return "a-bad"
        return "slow" if i % 50 == 1 else "gone" if i % 400 == 3 else "ok"

    return [f"{group(i)}/{ODD[i % len(ODD)] if i % 97 == 0 else ''}{i:05d}.bin" for i in range(OBJECTS)]


def of(all_keys: list[str], group: str) -> list[str]:
    return [k for k in all_keys if k.startswith(group + "/")]


FAULTS = [
    {"keyRegex": "^slow/", "httpStatus": 503, "errorCode": "SlowDown", "times": 1},
    {"keyRegex": "^gone/", "httpStatus": 404, "errorCode": "NoSuchKey"},
]


def tagged(stack, some_keys: list[str]) -> list[str]:
    """Those of ``some_keys`` that carry the run's tag (asked one by one: a sample, not all 20,000)."""
    s3, bucket = stack.client("s3"), stack.world.source_bucket
    done = []
    for key in some_keys:
        tag_set = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
        if {t["Key"]: t["Value"] for t in tag_set} == DONE:
            done.append(key)
    return done


def s3_json(stack, bucket: str, key: str):
    return json.loads(stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def list_keys(stack, bucket: str, prefix: str) -> list[str]:
    pages = stack.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [entry["Key"] for page in pages for entry in page.get("Contents", [])]


def parts(stack, record: dict, mode: str) -> tuple[list[dict], list[dict]]:
    """The attempt's part documents: (tallies of counted windows or joined partitions, scattered windows)."""
    bucket, key = split_s3_uri(record["uri"])
    prefix = key.rsplit("/", 1)[0] + f"/parts/{mode}/"
    documents = {
        k: s3_json(stack, bucket, k) for k in list_keys(stack, bucket, prefix) if k.endswith(".json")
    }
    tallies = [d for k, d in documents.items() if k.endswith("/tally.json")]
    scattered = [d for k, d in documents.items() if "/scattered/" in k]
    return tallies, scattered


def report_oracle(stack, report_uri: str) -> dict[str, str]:
    """decoded key -> task status, read from S3's report files with the csv module alone."""
    bucket, key = split_s3_uri(report_uri)
    document = s3_json(stack, bucket, key)
    statuses: dict[str, str] = {}
    for result in document["Results"]:
        text = read_s3_uri(stack, f"s3://{result['Bucket']}/{result['Key']}")
        for row in csv.reader(io.StringIO(text, newline="")):
            statuses[unquote(row[1])] = row[3]
    return statuses


def retry_manifest_keys(stack, uri: str | None) -> list[str]:
    if uri is None:
        return []
    return [unquote(row[1]) for row in csv.reader(io.StringIO(read_s3_uri(stack, uri), newline=""))]


def attempt_records(stack, execution) -> list[dict]:
    """Each attempt's record.json (under the run's folder, where the manifest lies), with its URI."""
    folder = run_folder_uri(execution)
    records = []
    for attempt in execution.output["attempts"]:
        uri = f"{folder}attempt-{attempt['attempt']}/record.json"
        records.append(json.loads(read_s3_uri(stack, uri)) | {"uri": uri})
    return records


def report_stage_transitions(execution) -> list[list[str]]:
    """The parent execution's states from PlanReport to ProcessReport, per attempt."""
    stages, current = [], None
    for name in execution.states_entered:
        if name == "PlanReport" and current is None:
            current = []
        if current is not None:
            current.append(name)
            if name == "ProcessReport" and current.count("PlanReport") == current.count("ProcessReport"):
                stages.append(current)
                current = None
        if name == "JoinReport" and stages:
            current = [*stages.pop(), name]
    return [_one_pack_loop(stage) for stage in stages]


def _one_pack_loop(states: list[str]) -> list[str]:
    collapsed: list[str] = []
    for name in states:
        if collapsed[-2:] == PACK_LOOP and name == "PackParts":
            collapsed.pop()
            collapsed.pop()
        collapsed.append(name)
    return collapsed


def child_transitions(tallies: list[dict], scattered: list[dict]) -> int:
    """States entered in the Maps' children: per file read in w windows, ReadPart and MoreOfFile? w
    times, NextWindow w-1 times, FileRead once (3w); per partition, JoinPartition once."""
    windows = len(scattered) if scattered else len(tallies)
    partitions = len(tallies) if scattered else 0
    return 3 * windows + partitions


def assert_bounded(tallies: list[dict], scattered: list[dict]) -> None:
    windows = scattered or tallies
    assert len(windows) > OBJECTS // ROWS_PER_WORKER  # really fanned out
    assert max(w.get("rows", 0) for w in windows) <= ROWS_PER_WORKER
    if scattered:  # a partition's worker holds its manifest rows: at most JoinPartitionRows
        assert (
            max(t["succeeded"] + t["failedRetriable"] + t["failedPermanent"] for t in tallies)
            <= ROWS_PER_WORKER
        )


def test_a_complete_job_is_counted_window_by_window_and_its_retry_manifest_is_exact():
    all_keys = keys()
    slow, gone = of(all_keys, "slow"), of(all_keys, "gone")
    spec = {"name": "fan-complete", "operation": TAGGING, "retry": {"maxAttempts": 3, "backoffSeconds": 0}}

    # Athena writes 10 files of 2,000 rows (~80 KB); PackManifest packs them ~200 KB at a time.
    with pipeline(all_keys, faults=FAULTS, parameters={**BOUNDS, "ManifestPackBytes": "200000"}) as stack:
        stack.athena.unload_rows_per_file = 2_000
        execution = stack.run(spec, name="fan-complete", timeout=600)
        manifest_rows = read_s3_uri(stack, execution.output["manifest"]["location"]).splitlines()
        records = attempt_records(stack, execution)
        oracle = report_oracle(stack, records[0]["report"])
        retry_keys = retry_manifest_keys(stack, records[0]["retryManifest"])
        tallies, scattered = parts(stack, records[0], "count")
        sample = of(all_keys, "ok")[::200] + slow[::10] + gone
        done = tagged(stack, sample)

    summary = execution.output
    assert execution.states_entered.count("PackManifest") == 4  # groups of 3, 3, 3 and 1 files
    # The first attempt's small retry and permanent part files: one PackParts step packs the kind of
    # several files, and passes over the kind of one (a group of one is not packed: the merge takes
    # the file itself); the second attempt has no failures, so one step that finds nothing to pack.
    assert execution.states_entered.count("PackParts") == 2
    assert sorted(unquote(row.split(",")[1]) for row in manifest_rows) == sorted(all_keys)
    assert summary["status"] == "PARTIAL"
    first, second = summary["attempts"]
    assert (first["jobStatus"], first["total"]) == ("Complete", OBJECTS)
    assert (first["succeeded"], first["failedRetriable"], first["failedPermanent"]) == (
        OBJECTS - len(slow) - len(gone),
        len(slow),
        len(gone),
    )
    assert first["errors"] == {"503 SlowDown": len(slow), "404 NoSuchKey": len(gone)}
    assert Counter(oracle.values()) == {
        "succeeded": OBJECTS - len(slow) - len(gone),
        "failed": len(slow) + len(gone),
    }
    assert sorted(retry_keys) == sorted(slow)  # exactly the retriable ones, each once
    assert (second["total"], second["succeeded"]) == (len(slow), len(slow))
    assert summary["totals"] == {
        "objects": OBJECTS,
        "succeeded": OBJECTS - len(gone),
        "failedPermanent": len(gone),
        "failedRetriesExhausted": 0,
    }
    assert sorted(done) == sorted(set(sample) - set(gone))
    assert scattered == [] and len(tallies) > OBJECTS // ROWS_PER_WORKER
    assert_bounded(tallies, scattered)
    assert report_stage_transitions(execution) == [COUNT_STATES, COUNT_STATES]
    print(f"complete job: {len(tallies)} windows, {child_transitions(tallies, scattered)} child transitions")


def failure_file_keys(stack, uri: str) -> list[str]:
    return [row["key"] for row in csv.DictReader(io.StringIO(read_s3_uri(stack, uri), newline=""))]


def test_a_job_failed_at_the_threshold_is_joined_with_its_manifest_and_its_unrun_objects_retried():
    all_keys = keys(bad=1_500)  # the first 1,000 tasks all fail: S3 fails the job (> 50% failed)
    gone = of(all_keys, "gone")
    faults = [{"keyRegex": "^a-bad/", "httpStatus": 503, "errorCode": "SlowDown", "times": 1}, *FAULTS]
    spec = {"name": "fan-failed", "operation": TAGGING, "retry": {"maxAttempts": 4, "backoffSeconds": 0}}

    with pipeline(all_keys, faults=faults, parameters=BOUNDS) as stack:
        execution = stack.run(spec, name="fan-failed", timeout=600)
        records = attempt_records(stack, execution)
        oracle = report_oracle(stack, records[0]["report"])
        retry_keys = retry_manifest_keys(stack, records[0]["retryManifest"])
        tallies, scattered = parts(stack, records[0], "join")
        done = tagged(stack, all_keys[:1_500:50] + all_keys[1_500::400] + gone)

    summary = execution.output
    first = summary["attempts"][0]
    ran_ok = {k for k, status in oracle.items() if status == "succeeded"}
    ran_gone = [k for k in gone if k in oracle]
    assert (first["jobStatus"], first["total"]) == ("Failed", OBJECTS)
    assert len(oracle) < OBJECTS  # S3 stopped the job: the rest never ran
    assert (first["succeeded"], first["failedPermanent"]) == (len(ran_ok), len(ran_gone))
    assert first["failedRetriable"] == OBJECTS - len(ran_ok) - len(ran_gone)
    assert first["errors"]["NotRun"] == OBJECTS - len(oracle)
    # Every object that neither succeeded nor failed for good, once: the never-run ones included.
    assert len(retry_keys) == len(set(retry_keys))
    assert set(retry_keys) == set(all_keys) - ran_ok - set(ran_gone)
    assert summary["status"] == "PARTIAL"
    assert summary["totals"] == {
        "objects": OBJECTS,
        "succeeded": OBJECTS - len(gone),
        "failedPermanent": len(gone),
        "failedRetriesExhausted": 0,
    }
    assert sorted(done) == sorted(set(all_keys[:1_500:50] + all_keys[1_500::400]) - set(gone))
    assert_bounded(tallies, scattered)
    stages = report_stage_transitions(execution)
    assert stages[0] == JOIN_STATES
    assert all(stage in (COUNT_STATES, JOIN_STATES) for stage in stages[1:])
    print(
        f"failed job: {len(scattered)} windows, {len(tallies)} partitions, "
        f"{child_transitions(tallies, scattered)} child transitions"
    )


def test_a_persons_cancel_is_joined_and_lists_every_object_that_did_not_succeed():
    all_keys = keys()
    gone = of(all_keys, "gone")
    ran = 5_000
    faults = [{"cancelJob": {"attempt": 1, "afterTasks": ran}}, *FAULTS]
    spec = {"name": "fan-cancel", "operation": TAGGING, "retry": {"maxAttempts": 3, "backoffSeconds": 0}}

    with pipeline(all_keys, faults=faults, parameters=BOUNDS) as stack:
        execution = stack.run(spec, name="fan-cancel", timeout=600)
        records = attempt_records(stack, execution)
        oracle = report_oracle(stack, records[0]["report"])
        listed = failure_file_keys(stack, records[0]["retriesExhausted"])
        failures = failure_file_keys(stack, execution.output["permanentFailures"])
        tallies, scattered = parts(stack, records[0], "join")

    summary = execution.output
    (attempt,) = summary["attempts"]
    ran_ok = {k for k, status in oracle.items() if status == "succeeded"}
    ran_gone = {k for k in gone if k in oracle}
    assert summary["status"] == "CANCELLED"
    assert (attempt["jobStatus"], attempt["cancelledBy"]) == ("Cancelled", "operator")
    assert len(oracle) == ran
    assert summary["totals"] == {
        "objects": OBJECTS,
        "succeeded": len(ran_ok),
        "failedPermanent": len(ran_gone),
        "failedRetriesExhausted": ran - len(ran_ok) - len(ran_gone),
        "notRun": OBJECTS - ran,
    }
    # Listed for a rerun, each once: the never-run objects and the ones that failed retriably.
    assert len(listed) == len(set(listed))
    assert set(listed) == set(all_keys) - ran_ok - ran_gone
    assert sorted(failures) == sorted(set(all_keys) - ran_ok)
    assert_bounded(tallies, scattered)
    assert report_stage_transitions(execution) == [JOIN_STATES]


def s3_gets() -> list[str]:
    """The key of every GetObject made from now on by a client created from boto3's default session,
    as the handlers' clients are (the embedded stack gives the process a fresh default session, and
    a client created after the hook carries it)."""
    keys_read: list[str] = []
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: keys_read.append(params.get("Key", ""))
    )
    return keys_read


def test_a_cancelled_jobs_join_regrouped_has_the_same_outcomes_and_fewer_gets():
    """Issue 23 §3: with a fan-in under its windows (RegroupFanIn 4: groups of partitions and
    batches of windows of about four), the join goes through RegroupPartitions; its outcomes are
    exactly those of the same run reading every window from every partition (the default fan-in,
    64, over this job's ~25 windows: no regroup), with fewer GETs of scattered rows."""
    all_keys = keys()
    faults = [{"cancelJob": {"attempt": 1, "afterTasks": 5_000}}, *FAULTS]
    spec = {"name": "fan-regroup", "operation": TAGGING, "retry": {"maxAttempts": 3, "backoffSeconds": 0}}
    runs = {}
    for fan_in in ("64", "4"):
        with pipeline(all_keys, faults=faults, parameters=BOUNDS | {"RegroupFanIn": fan_in}) as stack:
            gets = s3_gets()
            execution = stack.run(spec, name=f"fan-regroup-{fan_in}", timeout=600)
            (record,) = attempt_records(stack, execution)
            tallies, scattered = parts(stack, record, "join")
            bucket, key = split_s3_uri(record["uri"])
            regrouped = list_keys(stack, bucket, key.rsplit("/", 1)[0] + "/parts/join/regroup/")
            runs[fan_in] = {
                "summary": execution.output,
                "listed": sorted(failure_file_keys(stack, record["retriesExhausted"])),
                "failures": sorted(failure_file_keys(stack, execution.output["permanentFailures"])),
                "stages": report_stage_transitions(execution),
                "windows": len(scattered),
                "partitions": len(tallies),
                "regrouped": regrouped,
                "GetObject": len(gets),
                "rows read": sum(
                    1 for k in gets if "/parts/join/scatter/" in k or "/parts/join/regroup/" in k
                ),
            }
    direct, regroup = runs["64"], runs["4"]
    for field in ("totals", "status"):
        assert regroup["summary"][field] == direct["summary"][field]
    counts = ("total", "succeeded", "failedRetriable", "failedPermanent", "errors", "jobStatus")
    (one,), (other,) = direct["summary"]["attempts"], regroup["summary"]["attempts"]
    assert {c: one[c] for c in counts} == {c: other[c] for c in counts}
    assert regroup["listed"] == direct["listed"] and regroup["failures"] == direct["failures"]
    assert direct["stages"] == [JOIN_STATES] and not direct["regrouped"]
    assert regroup["stages"] == [REGROUP_STATES]
    windows, partitions = direct["windows"], direct["partitions"]
    assert (regroup["windows"], regroup["partitions"]) == (windows, partitions)
    assert direct["rows read"] == windows * partitions  # every partition, every (strided) window
    # Four groups of adjacent partitions; each group reads each (strided) window once, and each
    # partition one range of each of its group's objects (one a batch).
    groups = {k.split("/regroup/")[1][:6] for k in regroup["regrouped"]}
    batches = len(regroup["regrouped"]) // len(groups)
    assert len(groups) == 4 and len(regroup["regrouped"]) == 4 * batches
    assert regroup["rows read"] <= windows * 4 + partitions * batches < direct["rows read"]
    print(
        f"join of {windows} windows x {partitions} partitions, {batches} batches: GetObject of rows "
        f"{direct['rows read']} -> {regroup['rows read']}, in all {direct['GetObject']} -> {regroup['GetObject']}"
    )
