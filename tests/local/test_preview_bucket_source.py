"""`batchpipe preview` of a source.bucket spec: the emulated bucket made from an inventory folder, listed
by the engine's manifest generator inside a dry-run job, selects what the inventory query selects."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batchpipe.cli import main
from batchpipe.local import inventory as inv

BUCKET = "their-bucket"
SAMPLE = 50


def _inventory(tmp_path: Path, count: int) -> list[inv.InventoryObject]:
    """``count`` generated objects' CSV inventory in tmp_path/inv (keys with spaces, '+', '%', unicode)."""
    objects = inv.generate_objects(count, seed=11, bucket=BUCKET, versioned=False)
    inv.write_inventory_dir(
        tmp_path / "inv", source_bucket=BUCKET, dest_bucket="dest", dest_prefix="inv", config_id="cfg",
        objects=objects, fmt="CSV", versions="Current", delivery_time=datetime(2025, 3, 4, 5, 6, tzinfo=UTC),
    )  # fmt: skip
    return objects


def _preview(tmp_path: Path, spec: dict, capsys) -> tuple[int, str, str]:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    code = main(
        ["preview", "--spec", str(path), "--inventory", str(tmp_path / "inv"), "--sample", str(SAMPLE)]
    )
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _listed(printed: str) -> tuple[int, set[str]]:
    count = int(printed.split("objects selected: ", 1)[1].split("\n", 1)[0])
    sample: set[str] = set()
    for line in printed.split("keys):\n", 1)[1].split("\n"):
        if not line.startswith("  "):
            break
        sample.add(line[2:])
    return count, sample


AFTER = datetime(2022, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("filter_", "selects"),
    [
        # Keys with spaces: '+' in the inventory CSV, a space in the bucket.
        ({"substrings": [" "]}, lambda o: " " in o.key),
        (
            {"suffixes": [".pdf"], "modifiedAfter": "2022-01-01T00:00:00Z"},
            lambda o: o.key.endswith(".pdf") and o.last_modified_date >= AFTER,
        ),
        (
            {"prefixes": ["odd/"], "encryptionStatuses": ["SSE-KMS"]},
            lambda o: o.key.startswith("odd/") and o.encryption_status == "SSE-KMS",
        ),
    ],
    ids=["substring", "suffix-date", "prefix-encryption"],
)
def test_a_bucket_source_preview_selects_what_the_inventory_does(tmp_path, capsys, filter_, selects):
    objects = _inventory(tmp_path, 200)

    code, from_inventory, err = _preview(tmp_path, {"filter": filter_}, capsys)
    assert code == 0, err
    code, from_bucket, err = _preview(tmp_path, {"source": {"bucket": BUCKET}, "filter": filter_}, capsys)
    assert code == 0, err

    expected = {o.key for o in objects if selects(o)}
    count, sample = _listed(from_bucket)
    assert count == _listed(from_inventory)[0] == len(expected) > 0
    # Each shows its first keys (up to 20): the inventory's in its files' order, the bucket's in key order.
    assert sample <= expected and _listed(from_inventory)[1] <= expected
    assert len(sample) == min(count, 20)
    assert f"bucket: s3://{BUCKET}" in from_bucket
    assert "ManifestGenerator filter S3 Batch would apply" in from_bucket
    assert "SQL that Athena would run" not in from_bucket


@pytest.mark.parametrize(
    ("filter_", "line"),
    [
        ({"keyRegex": "x$"}, "filter.keyRegex: a regular expression needs the inventory source"),
        # The emulated bucket's objects are recreated without their bytes: sizes are not guessed.
        (
            {"maxSizeBytes": 10},
            "filter.maxSizeBytes: preview lists a source.bucket spec over objects recreated",
        ),
    ],
)
def test_a_bucket_source_preview_refuses_what_it_cannot_show(tmp_path, capsys, filter_, line):
    _inventory(tmp_path, 20)

    code, _, err = _preview(tmp_path, {"source": {"bucket": BUCKET}, "filter": filter_}, capsys)

    assert code == 2
    assert line in err
