"""`local run` with `confirmationRequired: true`: the operator's stand-in answers the job the pipeline
left for a person, so the shipped examples run end to end instead of waiting for an hour."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batchpipe.cli import main
from batchpipe.local import inventory as inv
from batchpipe.local.world import World
from batchpipe.outcome import EXIT_STATUS

REPO = Path(__file__).resolve().parents[2]
LEGAL_HOLD, RETENTION = "My Documents/", "backups/db/"  # what the shipped examples select
KEYS = (
    [f"{LEGAL_HOLD}report {i}.pdf" for i in range(4)]
    + [f"{RETENTION}dump_{i}.sql.gz" for i in range(3)]
    + ["misc/x"]
)


@pytest.fixture(scope="module")
def inventory_dir(tmp_path_factory) -> Path:
    """A bucket with the keys the shipped examples select (all modified in 2023)."""
    directory = tmp_path_factory.mktemp("inv")
    inv.write_inventory_dir(
        directory,
        source_bucket="their-bucket",
        dest_bucket="dest",
        dest_prefix="inv",
        config_id="cfg",
        objects=World(source_bucket="their-bucket").objects_with_keys(KEYS),
        fmt="CSV",
        versions="Current",
        delivery_time=datetime(2026, 11, 1, tzinfo=UTC),
    )
    return directory


def _objects(out: Path) -> dict[str, dict]:
    records = [json.loads(line) for line in (out / "objects.jsonl").read_text().splitlines()]
    return {r["key"]: r for r in records if r["bucket"] == "their-bucket"}


def _run(inventory_dir: Path, out: Path, example: str, *extra: str) -> list[str]:
    return [
        "local", "run", "--inventory", str(inventory_dir), "--spec", str(REPO / "examples" / example),
        "--object-lock", "--out", str(out), *extra,
    ]  # fmt: skip


def test_both_shipped_confirmation_examples_run_end_to_end_into_one_reused_folder(
    inventory_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    out.mkdir()  # an existing empty folder is fine

    assert main(_run(inventory_dir, out, "legal-hold.json")) == 0

    printed = capsys.readouterr().out
    assert "job " in printed and "waits for a person to confirm S3PutObjectLegalHold on 4 objects" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "SUCCEEDED"
    assert summary["totals"]["succeeded"] == 4
    held = {key for key, r in _objects(out).items() if r["legalHold"] == "ON"}
    assert held == {k for k in KEYS if k.startswith(LEGAL_HOLD)}

    (out / "my-notes.txt").write_text("mine")  # the user's file in an earlier output folder
    assert main(_run(inventory_dir, out, "retention.json", "--json")) == 0

    captured = capsys.readouterr()
    assert "waits for a person to confirm S3PutObjectRetention on 3 objects" in captured.err
    summary = json.loads(captured.out)
    assert summary["status"] == "SUCCEEDED"
    assert json.loads((out / "summary.json").read_text()) == summary
    retained = {key: r["retention"]["mode"] for key, r in _objects(out).items() if r["retention"]["mode"]}
    assert retained == {k: "GOVERNANCE" for k in KEYS if k.startswith(RETENTION)}
    assert (out / "my-notes.txt").read_text() == "mine"


def test_declining_leaves_every_object_untouched(inventory_dir, tmp_path, capsys):
    out = tmp_path / "out"

    code = main(_run(inventory_dir, out, "retention.json", "--confirm", "decline", "--json"))

    summary = json.loads(capsys.readouterr().out)
    assert code == EXIT_STATUS["CANCELLED"] == 4  # as `watch` would exit on the same run
    assert summary["status"] == "CANCELLED"  # a person's cancel is final: no further attempt
    assert [a["jobStatus"] for a in summary["attempts"]] == ["Cancelled"]
    assert summary["totals"]["succeeded"] == 0
    assert summary["totals"]["notRun"] == 3
    assert not any(r["retention"]["mode"] for r in _objects(out).values())
