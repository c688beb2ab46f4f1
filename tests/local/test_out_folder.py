"""--out writes only inside its folder: planted links are refused by name, never followed, and
pipeline-bucket keys that cannot be file names are mirrored under safe names instead of crashing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from batchpipe.cli import main
from batchpipe.local.outputs import RENAMED, mirror_bucket


def _everything(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def victim(tmp_path):
    """Files and a folder outside every --out: none of them may change."""
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "precious.txt").write_text("years of work")
    return folder


def _reused_out(tmp_path: Path, capsys) -> Path:
    out = tmp_path / "out"
    assert main(["local", "inventory", "--objects", "3", "--out", str(out)]) == 0  # an earlier output
    capsys.readouterr()
    return out


@pytest.mark.parametrize("entry", ["summary.json", "objects.jsonl", "lambda-logs.jsonl", "report.html"])
def test_a_planted_link_to_a_file_is_refused_by_name_and_its_target_untouched(
    tmp_path, capsys, victim, entry
):
    out = _reused_out(tmp_path, capsys)
    (out / entry).symlink_to(victim / "precious.txt")
    before = _everything(victim)

    code = main(["local", "run", "--objects", "3", "--out", str(out)])

    err = capsys.readouterr().err
    assert code == 2
    assert (
        err.strip()
        == f"batchpipe: {out / entry} is a link: batchpipe writes nothing through a link; remove it"
    )
    assert _everything(victim) == before
    assert (out / entry).is_symlink()  # not ours: left as it was


def test_a_planted_link_as_the_pipeline_bucket_folder_is_refused_and_nothing_lands_outside(
    tmp_path, capsys, victim
):
    out = _reused_out(tmp_path, capsys)
    (out / "batchpipe-pipelinebucket").symlink_to(victim, target_is_directory=True)
    before = _everything(victim)

    code = main(["local", "run", "--objects", "3", "--out", str(out)])

    err = capsys.readouterr().err
    assert code == 2
    assert f"{out / 'batchpipe-pipelinebucket'} is a link" in err and len(err.strip().splitlines()) == 1
    assert _everything(victim) == before
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]


def test_a_planted_marker_link_is_refused(tmp_path, capsys, victim):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".batchpipe-out").symlink_to(victim / "precious.txt")

    code = main(["local", "inventory", "--objects", "3", "--out", str(out)])

    assert code == 2
    assert "is a link" in capsys.readouterr().err
    assert (victim / "precious.txt").read_text() == "years of work"


def test_local_inventory_does_not_follow_a_planted_data_link(tmp_path, capsys, victim):
    out = _reused_out(tmp_path, capsys)
    # A later delivery hour would not clean `data` if the marker had lost it; plant it unclaimed.
    marker = json.loads((out / ".batchpipe-out").read_text())
    marker["entries"] = [e for e in marker["entries"] if e != "data"]
    (out / ".batchpipe-out").write_text(json.dumps(marker))
    for child in sorted((out / "data").iterdir()):
        child.unlink()
    (out / "data").rmdir()
    (out / "data").symlink_to(victim, target_is_directory=True)

    code = main(["local", "inventory", "--objects", "3", "--out", str(out)])

    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"batchpipe: {out / 'data'} is a link: batchpipe writes nothing through a link; remove it"
    )
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]


UNUSABLE = {
    "a/b": b"child of a key",  # "a" is a key too: a file cannot also be a folder
    "nul\x00byte": b"nul",
    "long/" + "s" * 300 + "/x": b"long",
    "../escape": b"climb",
    "double//slash": b"double",
    "folder/": b"",
    f"{RENAMED}/index.jsonl": b"pretends to be the index",
}


def test_keys_that_cannot_be_file_names_are_mirrored_under_safe_names(tmp_path):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="pipeline")
        s3.put_object(Bucket="pipeline", Key="a", Body=b"the parent key")
        s3.put_object(Bucket="pipeline", Key="runs/x/manifest.csv", Body=b"plain")
        for key, body in UNUSABLE.items():
            s3.put_object(Bucket="pipeline", Key=key, Body=body)

        mirror_bucket(s3, "pipeline", tmp_path / "mirror")

    mirror = tmp_path / "mirror"
    assert (mirror / "a").read_bytes() == b"the parent key"
    assert (mirror / "runs/x/manifest.csv").read_bytes() == b"plain"
    index = [json.loads(line) for line in (mirror / RENAMED / "index.jsonl").read_text().splitlines()]
    assert sorted(entry["key"] for entry in index) == sorted(UNUSABLE)
    for entry in index:
        assert entry["file"] == f"{RENAMED}/{hashlib.sha256(entry['key'].encode()).hexdigest()}"
        assert (mirror / entry["file"]).read_bytes() == UNUSABLE[entry["key"]]
    # Nothing outside the mirror: "../escape" did not climb.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mirror"]
