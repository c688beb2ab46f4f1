"""`batchpipe preview` (a FilterStack: the dry-run path's resources, its states walked by
batchpipe.local.asl_walk) says what a dry run of the whole stack says (a LocalStack, as `local run`
stands it up: moto's Step Functions interpreter over the same definition and handlers): the same count,
sample, bytes scanned, estimated cost and SQL, the same refusal and the same failed query, for specs
over an inventory folder and over an S3 Metadata live inventory table.

A `source.bucket` spec's dry run is a job in which S3 Batch lists the bucket: preview runs it on the whole
embedded stack (tests/local/test_preview_bucket_source.py).
"""

from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from batchpipe.cli import main
from batchpipe.local import inventory as inv
from batchpipe.local.run import populate, stack_parameters
from batchpipe.local.stack import LocalStack
from batchpipe.local.world import World
from batchpipe.outcome import readable_cause

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")
REPO = Path(__file__).resolve().parents[2]
OPERATION = {"S3PutObjectTagging": {"TagSet": [{"Key": "k", "Value": "v"}]}}
TAGGED_PREFIX = "photos/2023/"

# Each a spec over the demo's inventory; together they cover prefixes and a regex, every other filter
# field, an empty selection, a spec ValidateSpec refuses and a query PlanQuery fails (a field the
# delivery lacks).
INVENTORY_SPECS = {
    "example": json.loads((REPO / "examples" / "tagging-replace.json").read_text()),
    "everything": {"operation": OPERATION},
    "fields": {
        "operation": OPERATION,
        "filter": {
            "prefixes": ["logs/", "backups/"],
            "storageClasses": ["STANDARD", "STANDARD_IA"],
            "minSizeBytes": 1000,
            "maxSizeBytes": 50_000_000,
            "modifiedAfter": "2020-01-01T00:00:00Z",
            "encryptionStatuses": ["SSE-S3", "NOT-SSE"],
            "where": "size > 2048 OR storage_class = 'STANDARD_IA'",
        },
    },
    "nothing": {"operation": OPERATION, "filter": {"prefixes": ["no-such-folder/"]}},
    "refused": {"operation": OPERATION, "filter": {"prefix": ["logs/"]}},
    "missing-field": {"operation": OPERATION, "filter": {"where": "object_access_control_list IS NULL"}},
}
METADATA_SPECS = {
    "tags": {
        "source": {"metadataTable": {}},
        "operation": OPERATION,
        "filter": {"prefixes": ["photos/"], "tags": {"allOf": [{"key": "project", "value": "atlas"}]}},
    },
    "logs": {
        "source": {"metadataTable": {}},
        "operation": OPERATION,
        "filter": {"prefixes": ["logs/"], "maxSizeBytes": 1_000_000},
    },
}


def _normalized_sql(sql: str) -> str:
    """The statement without its run's folder (runs/<name>/<execution>/<start time>/), which names
    the execution and its start."""
    return re.sub(r"s3://[^/']+/runs/[^']*/athena/", "s3://<pipeline>/runs/<run>/athena/", sql)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("agree")
    assert main(["local", "inventory", "--objects", "2000", "--out", str(root / "inventory")]) == 0
    return {"inventory": root / "inventory", "tables": root / "aws-s3", "specs": root}


@pytest.fixture(scope="module")
def dry_runs(folders) -> dict[str, dict]:
    """Each spec's dry run on one LocalStack loaded with the inventory folder as `local run
    --inventory` loads it; the metadata table written from the bucket (some objects tagged)."""
    layout = inv.read_inventory(str(folders["inventory"]))
    world = World(source_bucket=layout.source_bucket, fmt=layout.file_format, versions=layout.versions)
    results: dict[str, dict] = {}
    with LocalStack(parameters=stack_parameters(world, layout), table_bucket_dir=folders["tables"]) as stack:
        populate(stack, world, layout, argparse.Namespace(), io.StringIO())  # as `local run --inventory`
        s3 = stack.client("s3")
        tagged = s3.list_objects_v2(Bucket=world.source_bucket, Prefix=TAGGED_PREFIX)["Contents"][::2]
        assert tagged
        for entry in tagged:
            s3.put_object_tagging(
                Bucket=world.source_bucket,
                Key=entry["Key"],
                Tagging={"TagSet": [{"Key": "project", "Value": "atlas"}]},
            )
        folders["table"] = stack.write_metadata_table(world.source_bucket)
        for label, spec in {**INVENTORY_SPECS, **METADATA_SPECS}.items():
            execution = stack.run({**spec, "dryRun": True}, name=f"dry-{label}", timeout=600)
            planned = execution.task_outputs("PlanQuery")
            manifest = ((execution.output or {}).get("manifest") or {}).get("location")
            results[label] = {
                "selected": _manifest_keys(s3, manifest) if manifest else set(),
                "status": execution.status,
                "error": execution.error,
                "message": execution.message,
                "summary": execution.output,
                "sql": planned[0].get("query", {}).get("sql") if planned else None,
            }
    return results


def _manifest_keys(s3, location: str) -> set[str]:
    """The decoded keys of a manifest (``bucket,percent-encoded key`` rows)."""
    bucket, key = location.removeprefix("s3://").split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return {unquote(row.split(",")[1]) for row in body.splitlines() if row}


def _preview(folders: dict[str, Path], label: str, spec: dict, capsys) -> tuple[int, str, str]:
    path = folders["specs"] / f"{label}.json"
    path.write_text(json.dumps(spec))
    source = (
        ["--metadata-table", str(folders["table"])]
        if "source" in spec
        else ["--inventory", str(folders["inventory"])]
    )
    code = main(["preview", "--spec", str(path), *source, "--sample", "1000", "--output", "json"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("label", [*INVENTORY_SPECS, *METADATA_SPECS])
def test_preview_says_what_a_dry_run_of_the_stack_says(folders, dry_runs, label, capsys):
    spec = {**INVENTORY_SPECS, **METADATA_SPECS}[label]
    expected = dry_runs[label]

    code, out, err = _preview(folders, label, spec, capsys)

    if expected["status"] != "SUCCEEDED":  # ValidateSpec refused the spec: the execution failed
        assert code == 2, out + err
        assert err == f"batchpipe: the spec was rejected: {expected['error']}: {expected['message']}\n"
        return
    summary = expected["summary"]
    if summary["status"] == "FAILED":  # the query could not be planned or run
        assert code == 2, out + err
        assert err == f"batchpipe: the query failed: {summary['error']}: {readable_cause(summary['cause'])}\n"
        return
    assert code == 0, err
    printed = json.loads(out)
    manifest = summary["manifest"]
    assert printed["objects"] == manifest["objects"]
    # Athena promises no row order (nor does DuckDB reading several files): the sample is the same
    # number of keys, each one the dry run selected.
    assert len(printed["sample"]) == len(manifest.get("sample", [])) == min(20, manifest["objects"])
    assert set(printed["sample"]) <= expected["selected"]
    assert len(expected["selected"]) == manifest["objects"]
    assert printed["bytesScanned"] == manifest["bytesScanned"]
    assert printed["estimatedCostUsd"] == summary["estimatedCostUsd"]
    assert _normalized_sql(printed["sql"]) == _normalized_sql(expected["sql"])


def test_the_specs_cover_what_they_say(dry_runs):
    """The comparison above means something only if the cases are what their names say."""
    outcomes = {
        label: (
            run["status"],
            (run["summary"] or {}).get("status"),
            ((run["summary"] or {}).get("manifest") or {}).get("objects"),
        )
        for label, run in dry_runs.items()
    }
    assert outcomes["refused"][0] == "FAILED"
    assert outcomes["missing-field"][1] == "FAILED"
    assert outcomes["nothing"][2] == 0
    for label in ("example", "everything", "fields", "tags", "logs"):
        assert outcomes[label][1] == "DRY_RUN" and outcomes[label][2] > 0, (label, outcomes[label])
    assert outcomes["tags"][2] < outcomes["everything"][2]
