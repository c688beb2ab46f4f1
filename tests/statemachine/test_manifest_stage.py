"""The BuildManifest stage through the real state machine: for CSV.gz, Parquet and ORC inventories,
current and all versions, the manifest a dry run writes equals a Python reference computed from the
same inventory rows, for every filter field, with keys of every awkward shape (the cases and the
reference are the ones the handler-level tests in tests/unit/test_query_athena.py use)."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from datetime import UTC, datetime
from urllib.parse import unquote, unquote_plus

import pytest

from batchpipe.local.stack import LocalStack
from batchpipe.local.world import World
from batchpipe_core.s3uri import split_s3_uri
from tests.unit.test_query_athena import CASES, SOURCE, Case, reference, rows_of

# ValidateSpec defaults latestOnly to true (acting on noncurrent versions must be asked for), so a
# case that does not set it selects latest versions only; this one asks for every version.
CASES = {**CASES, "all versions": Case({"latestOnly": False}, lambda o: True)}

LAYOUTS = [(fmt, versions) for versions in ("Current", "All") for fmt in ("CSV", "Parquet", "ORC")]
TAGGING = {"S3PutObjectTagging": {"TagSet": [{"Key": "k", "Value": "v"}]}}

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


@pytest.fixture(scope="module", params=LAYOUTS, ids=[f"{f}-{v}" for f, v in LAYOUTS])
def layout(request):
    fmt, versions = request.param
    world = World(source_bucket=SOURCE, fmt=fmt, versions=versions)
    rows = rows_of(versions)
    with LocalStack(parameters=world.parameters()) as stack:
        s3 = stack.client("s3")
        world.create_buckets(s3)
        # Only the inventory matters for the manifest: the objects themselves are not needed.
        world.deliver(s3, rows, delivery_time=datetime(2024, 5, 1, tzinfo=UTC), rows_per_file=100)
        yield stack, rows, versions


@pytest.mark.parametrize("case", sorted(CASES))
def test_dry_run_manifest_equals_the_python_reference(layout, case):
    stack, rows, versions = layout
    spec = {"name": "manifest", "filter": CASES[case].filter, "operation": TAGGING, "dryRun": True}

    execution = stack.run(spec, name=re.sub(r"[^A-Za-z0-9-]", "-", case))

    summary = execution.output
    assert summary["status"] == "DRY_RUN", summary
    selected = CASES[case]
    if "latestOnly" not in selected.filter:
        selected = Case(selected.filter, lambda o, keep=selected.keep: keep(o) and o.is_latest is not False)
    expected = reference(rows, selected, versions)
    assert summary["manifest"]["objects"] == sum(expected.values())
    if not expected:
        assert summary["manifest"]["location"] is None
        return
    manifest = manifest_rows(stack, summary, versions, expected)
    assert all(len(row) == (3 if versions == "All" else 2) for row in manifest)


def manifest_rows(stack, summary: dict, versions: str, expected: Counter) -> list[list[str]]:
    """The dry run's manifest rows, checked to decode (percent and form) to exactly ``expected``."""
    bucket, key = split_s3_uri(summary["manifest"]["location"])
    body = stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    manifest = list(csv.reader(io.StringIO(body)))
    for decode in (unquote, unquote_plus):
        decoded = Counter(
            (row[0], decode(row[1]), *([row[2]] if versions == "All" else [])) for row in manifest
        )
        assert decoded == expected
    return manifest
