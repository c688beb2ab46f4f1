"""`batchpipe local run` and `batchpipe preview`, run in-process as a user would run them."""

from __future__ import annotations

import io
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batchpipe.cli import main
from batchpipe.local import inventory as inv
from batchpipe.outcome import EXIT_STATUS
from batchpipe_core.s3uri import split_s3_uri

from .conftest import write_their_inventory

REPO = Path(__file__).resolve().parents[2]


def test_local_run_json_prints_only_the_summary_and_leaves_every_artifact(tmp_path, capsys):
    out = tmp_path / "run"

    code = main(["local", "run", "--objects", "150", "--json", "--out", str(out), "--name", "cli-json"])

    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["status"] == "SUCCEEDED"
    assert summary["totals"]["objects"] == summary["manifest"]["objects"] == 150
    assert json.loads((out / "summary.json").read_text()) == summary
    bucket, manifest_key = split_s3_uri(summary["manifest"]["location"])
    assert (out / bucket / manifest_key).read_text().count("\n") == 150
    report_key = summary["attempts"][0]["report"].removeprefix(f"s3://{bucket}/")
    assert json.loads((out / bucket / report_key).read_text())["Format"] == "Report_CSV_20180820"
    records = [json.loads(line) for line in (out / "objects.jsonl").read_text().splitlines()]
    source = [r for r in records if r["bucket"] == "batchpipe-demo-source"]
    assert len(source) == 150
    assert all(r["tags"] == {"batchpipe": "demo"} for r in source)
    assert (out / "lambda-logs.jsonl").read_text().count('"correlation_id"') > 0


def test_local_run_with_faults_and_lost_events_ends_partial(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["local", "run", "--objects", "300", "--faults", str(REPO / "examples" / "local" / "faults.json")]
    args += ["--event-delivery", "drop", "--wait-timeout", "1", "--out", str(out), "--name", "cli-faults"]

    code = main(args)

    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert code == EXIT_STATUS["PARTIAL"] == 3
    assert summary["status"] == "PARTIAL"
    assert len(summary["attempts"]) == 2
    assert "attempt 2:" in printed
    # Every event was lost, so every wait ended through a fallback: CheckJob after the wait timeout,
    # or CreateJob's own DescribeJob when the job had already moved on. Which one depends on the
    # emulated job's pace, so either is right; a status event is not.
    logs = [json.loads(line) for line in (out / "lambda-logs.jsonl").read_text().splitlines()]
    completed_by = {r["by"] for r in logs if r.get("message") == "task completed"}
    assert completed_by <= {"create_job"}
    assert not any("JobStatus" in r.get("function_name", "") for r in logs)


@pytest.mark.parametrize("fmt", ["Parquet", "ORC"])
def test_local_run_on_a_real_inventory_folder(tmp_path, capsys, fmt):
    objects = inv.generate_objects(80, seed=5, bucket="their-bucket")
    inv.write_inventory_dir(
        tmp_path / "inv",
        source_bucket="their-bucket",
        dest_bucket="dest",
        dest_prefix="inv",
        config_id="cfg",
        objects=objects,
        fmt=fmt,
        versions="Current",
        delivery_time=datetime(2026, 11, 1, tzinfo=UTC),
    )

    code = main(
        ["local", "run", "--inventory", str(tmp_path / "inv"), "--json", "--out", str(tmp_path / "out")]
    )

    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["totals"]["succeeded"] == 80
    records = [json.loads(line) for line in (tmp_path / "out" / "objects.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in records if r["bucket"] == "their-bucket") == sorted(
        o.key for o in objects
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_preview_counts_what_the_filter_selects(tmp_path, capsys, monkeypatch):
    objects = inv.generate_objects(400, seed=9, bucket="their-bucket")
    write_their_inventory(tmp_path / "inv", objects)
    spec = {
        "filter": {"prefixes": ["logs/"], "minSizeBytes": 1000},
        "operation": {"S3DeleteObjectTagging": {}},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))

    monkeypatch.setattr(sys, "stderr", _Terminal())

    code = main(["preview", "--spec", str(tmp_path / "spec.json"), "--inventory", str(tmp_path / "inv")])

    printed = capsys.readouterr().out
    expected = [o.key for o in objects if o.key.startswith("logs/") and o.size >= 1000]
    assert code == 0
    assert f"objects selected: {len(expected)}" in printed
    # On a terminal each step is announced as it starts, with how long it took: never a silent wait.
    steps = sys.stderr.getvalue().splitlines()
    assert [line.split("...")[0] for line in steps] == [
        "preview: standing up what evaluates the filter (template.yaml's buckets, tables, Athena on DuckDB)",
        "preview: loading the inventory delivery 2026-11-01T00-00Z of s3://their-bucket",
        "preview: running the dry run: ValidateSpec, the Athena query (DuckDB), the manifest",
    ]
    assert all(re.search(r"\.\.\. \d+\.\d s$", line) for line in steps)
    assert "UNLOAD (" in printed
    sample = [
        line.strip() for line in printed.split("sample")[1].split("SQL")[0].splitlines()[1:] if line.strip()
    ]
    assert sample and set(sample) <= set(expected)


def test_a_bad_spec_is_reported_with_the_field(tmp_path, capsys):
    (tmp_path / "spec.json").write_text(
        json.dumps({"operation": {"S3DeleteObjectTagging": {}}, "filter": {"prefix": ["a/"]}})
    )

    code = main(
        [
            "local",
            "run",
            "--objects",
            "5",
            "--spec",
            str(tmp_path / "spec.json"),
            "--out",
            str(tmp_path / "o"),
        ]
    )

    printed = capsys.readouterr().out
    assert code == EXIT_STATUS["FAILED"] == 5
    assert "  ✗ SpecValidationError: filter.prefix: unknown field; did you mean 'prefixes'?" in printed
    assert printed.count("filter.prefix: unknown field") == 2  # the progress line and summary.json's cause
    assert "stackTrace" not in printed and "errorMessage" not in printed
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["cause"].startswith("filter.prefix: unknown field")


def test_a_missing_spec_file_is_a_usage_error(tmp_path, capsys):
    code = main(["local", "run", "--spec", str(tmp_path / "nope.json")])

    assert code == 2
    assert "spec file not found" in capsys.readouterr().err


def test_preview_of_a_rerun_spec_says_where_to_dry_run_it(tmp_path, capsys):
    code = main(
        ["preview", "--spec", str(REPO / "examples" / "rerun-failures.json"), "--inventory", str(tmp_path)]
    )

    assert code == 2
    assert 'a spec with rerun selects the rows of a failures file instead: start it with "dryRun": true' in (
        capsys.readouterr().err
    )


def test_preview_counts_tag_matches_over_a_metadata_table_folder(tmp_path, capsys):
    """A table folder (here one S3's backfill writes from a bucket of objects whose keys and tags need
    encoding) is previewed with the pipeline's own statement; a tags filter without the table is refused."""
    import boto3
    from moto import mock_aws

    from batchpipe.local.isolation import isolated_environment
    from batchpipe.local.metadata_table import backfill

    keys = {"a b/ü+.jpg": "atlas", "a b/100%.jpg": "atlas", "c/plain.txt": "other"}
    with isolated_environment(), mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="my-tagged-bucket")
        for key, project in keys.items():
            s3.put_object(Bucket="my-tagged-bucket", Key=key, Body=b"x", Tagging=f"project={project}")
        folder = backfill(s3, "my-tagged-bucket", tmp_path / "aws-s3")
    spec = tmp_path / "by-tag.json"
    spec.write_text(json.dumps({"filter": {"tags": {"allOf": [{"key": "project", "value": "atlas"}]}}}))

    code = main(["preview", "--spec", str(spec), "--metadata-table", str(folder)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "objects selected: 2" in out
    assert "S3 Metadata live inventory table: s3://my-tagged-bucket (3 rows" in out
    assert {line.strip() for line in out.splitlines() if line.startswith("  ")} >= {
        "a b/ü+.jpg",
        "a b/100%.jpg",
    }
    assert '"s3tablescatalog/aws-s3"."b_my-tagged-bucket"."inventory"' in out

    refused = main(["preview", "--spec", str(spec), "--inventory", str(tmp_path)])

    assert refused == 2


def test_preview_output_json_is_one_document_with_the_count_sample_and_sql(tmp_path, capsys):
    objects = inv.generate_objects(200, seed=3, bucket="their-bucket")
    write_their_inventory(tmp_path / "inv", objects)
    (tmp_path / "spec.json").write_text(
        json.dumps({"filter": {"prefixes": ["logs/"]}, "operation": {"S3PutObjectTagging": {"TagSet": []}}})
    )

    spec, inventory = str(tmp_path / "spec.json"), str(tmp_path / "inv")
    code = main(["preview", "--spec", spec, "--inventory", inventory, "--sample", "3", "--output", "json"])

    shown = json.loads(capsys.readouterr().out)  # stdout holds the document and nothing else
    expected = {o.key for o in objects if o.key.startswith("logs/")}
    assert code == 0
    assert shown["objects"] == len(expected) > 3
    assert len(shown["sample"]) == 3 and set(shown["sample"]) <= expected
    assert shown["sql"].startswith("UNLOAD (") and shown["source"].startswith("inventory: s3://their-bucket")
    assert shown["estimatedCostUsd"] > 0 and shown["bytesScanned"] > 0


@pytest.mark.parametrize(
    ("answer", "status", "objects"),
    [("manifest", "SUCCEEDED", 120), ("count", "SUCCEEDED", 120), ("neither", "FAILED", None)],
)
def test_local_run_of_a_bucket_source_with_each_suspended_generator_answer(
    tmp_path, capsys, answer, status, objects
):
    spec = tmp_path / "source.json"
    spec.write_text(
        json.dumps(
            {"source": {"bucket": "batchpipe-demo-source"}, "operation": {"S3DeleteObjectTagging": {}}}
        )
    )
    args = ["local", "run", "--objects", "120", "--spec", str(spec), "--json", "--out", str(tmp_path / "out")]

    code = main([*args, "--suspended-generator", answer, "--name", f"gen-{answer}"])

    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == status
    assert (code == 0) == (status == "SUCCEEDED")
    if objects is None:
        assert summary["error"] == "UncountedJobError"  # the default: AWS promises neither answer
    else:
        assert summary["totals"]["objects"] == summary["totals"]["succeeded"] == objects
