"""Hostile input to the `batchpipe` command: every bad spec, flag and file is one line on stderr and
exit status 2, never a traceback, and nothing the user owns is touched."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batchpipe.cli import main
from batchpipe.local import inventory as inv
from batchpipe.local.outputs import MARKER
from batchpipe.local.world import World

REPO = Path(__file__).resolve().parents[2]
VALID_RULE = {"keyRegex": "^a", "httpStatus": 503, "errorCode": "SlowDown"}


def _inventory(
    directory: Path, keys: list[str] | None = None, fmt: str = "CSV", stray_row: int | None = None
) -> Path:
    """``stray_row`` (0-based) is listed as an object of another bucket, as no real delivery has it."""
    world = World(source_bucket="their-bucket")
    objects = world.objects_with_keys(keys or [f"k/{i}" for i in range(5)])
    if stray_row is not None:
        objects[stray_row] = dataclasses.replace(objects[stray_row], bucket="other-bucket")
    inv.write_inventory_dir(
        directory,
        source_bucket="their-bucket",
        dest_bucket="dest",
        dest_prefix="inv",
        config_id="cfg",
        objects=objects,
        fmt=fmt,
        versions="Current",
        delivery_time=datetime(2026, 11, 1, tzinfo=UTC),
    )
    return directory


def _replace_data(directory: Path, body: bytes) -> Path:
    """Swaps the one data file's bytes and fixes the manifest's checksum, as a consistent but broken
    delivery would have it."""
    (manifest_path,) = directory.glob("*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    (data,) = (directory / "data").iterdir()
    data.write_bytes(body)
    manifest["files"][0]["MD5checksum"] = hashlib.md5(body, usedforsecurity=False).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    return data


def _csv_rows(directory: Path) -> list[str]:
    (data,) = (directory / "data").iterdir()
    return gzip.decompress(data.read_bytes()).decode().splitlines()


def _write(path: Path, content: str | bytes) -> str:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _spec(tmp: Path, content: str | bytes) -> list[str]:
    return ["local", "run", "--spec", _write(tmp / "spec.json", content)]


def _start_retaining(tmp: Path, until: str) -> list[str]:
    """`batchpipe start` with a spec whose RetainUntilDate is ``until`` (JSON text)."""
    return [
        "start",
        "--region",
        "us-east-1",
        "--stack",
        "x",
        "--spec",
        _write(tmp / "s.json", RETAIN % until),
    ]


def _faults(tmp: Path, rules: object) -> list[str]:
    return ["local", "run", "--faults", _write(tmp / "faults.json", json.dumps(rules))]


def _bad_inventory(tmp: Path, damage) -> list[str]:
    directory = _inventory(tmp / "inv")
    damage(directory)
    return ["local", "run", "--inventory", str(directory)]


def _truncated(d: Path) -> None:
    (data,) = (d / "data").iterdir()
    _replace_data(d, data.read_bytes()[:-20])


def _extra_field(d: Path) -> None:
    rows = _csv_rows(d)
    rows[2] += ',"surplus"'
    _replace_data(d, gzip.compress("\n".join(rows).encode()))


def _missing_field(d: Path) -> None:
    rows = _csv_rows(d)
    rows[3] = rows[3].rsplit(",", 1)[0]
    _replace_data(d, gzip.compress("\n".join(rows).encode()))


def _bad_source_bucket(d: Path) -> None:
    manifest_path = next(d.glob("*/manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    manifest["sourceBucket"] = "../Not A Bucket"
    manifest_path.write_text(json.dumps(manifest))


def _long_key(u: Path, t: Path) -> list[str]:
    directory = _inventory(t / "inv", keys=["ok", "k" * 1025])
    return ["local", "run", "--inventory", str(directory)]


def _stray_bucket(fmt: str) -> Callable[[Path, Path], list[str]]:
    return lambda u, t: ["local", "run", "--inventory", str(_inventory(t / "inv", fmt=fmt, stray_row=2))]


def _md5_mismatch(d: Path) -> None:
    (data,) = (d / "data").iterdir()
    data.write_bytes(data.read_bytes() + b"\0")


def _no_manifest(d: Path) -> None:
    next(d.glob("*/manifest.json")).unlink()


def _bad_manifest_json(d: Path) -> None:
    next(d.glob("*/manifest.json")).write_text('{"sourceBucket": ')


# The data files' keys as in manifest.json: a folder error names the file so (then the line or row).
DATA = "inv/their-bucket/cfg/data/"
RETAIN = (
    '{"operation": {"S3PutObjectRetention": {"Retention": {"RetainUntilDate": %s, "Mode": "GOVERNANCE"}}}}'
)

# (case id, argv from (the user's folder, a scratch folder), text(s) the one line must contain)
CASES = [
    ("spec-list", lambda u, t: _spec(t, "[]"), "must hold a JSON object (the execution input), not a list"),
    ("spec-string", lambda u, t: _spec(t, '"tag it"'), "not a string"),
    ("spec-null", lambda u, t: _spec(t, "null"), "not null"),
    ("spec-folder", lambda u, t: ["local", "run", "--spec", str(t)], "is a folder"),
    ("spec-latin1", lambda u, t: _spec(t, '{"name": "caf\xe9"}'.encode("latin-1")), "is not UTF-8"),
    ("spec-utf16", lambda u, t: _spec(t, '{"name": "x"}'.encode("utf-16")), "UTF-16"),
    ("spec-deep", lambda u, t: _spec(t, "[" * 10_000 + "]" * 10_000), "nests objects and lists more than"),
    (
        "faults-deep",
        lambda u, t: ["local", "run", "--faults", _write(t / "f.json", "[" * 100_000 + "]" * 100_000)],
        "nests JSON too deeply",
    ),
    ("spec-duplicate-key", lambda u, t: _spec(t, '{"name": "a", "name": "b"}'), "appears twice"),
    ("spec-too-large", lambda u, t: _spec(t, '{"name": "' + "x" * 40_000 + '"}'), "the maximum is 32,768"),
    ("spec-not-json", lambda u, t: _spec(t, "{name: x}"), "is not valid JSON"),
    (
        "preview-spec-list",
        lambda u, t: ["preview", "--spec", _write(t / "s.json", "[1]"), "--inventory", str(t)],
        "not a list",
    ),
    (
        "start-retain-until-1e308",
        lambda u, t: _start_retaining(t, '"1e308"'),
        "RetainUntilDate: '1e308' is out of range as epoch seconds; use ISO 8601 between",
    ),
    (
        "start-retain-until-2-63",
        lambda u, t: _start_retaining(t, str(2**63 - 1)),
        "RetainUntilDate: 9223372036854775807 is out of range",
    ),
    (
        "watch-interval-inf",
        lambda u, t: ["watch", "x", "--interval", "inf"],
        "argument --interval: inf: give",
    ),
    (
        "watch-interval-nan",
        lambda u, t: ["watch", "x", "--interval", "nan"],
        "argument --interval: nan: give",
    ),
    ("watch-interval-huge", lambda u, t: ["watch", "x", "--interval", "1e300"], "at most 3600"),
    (
        "endpoint-url-ipv6",
        lambda u, t: ["runs", "--stack", "x", "--endpoint-url", "http://[::1"],
        "argument --endpoint-url: 'http://[::1' is not a URL (Invalid IPv6 URL)",
    ),
    (
        "endpoint-url-no-scheme",
        lambda u, t: ["runs", "--stack", "x", "--endpoint-url", "127.0.0.1:4566"],
        "is not an http(s) URL with a host",
    ),
    (
        "summary-failures-missing-folder",
        lambda u, t: [
            "summary",
            "x",
            "--stack",
            "s",
            "--region",
            "us-east-1",
            "--failures",
            str(t / "nowhere" / "f.csv"),
        ],
        ("--failures ", "/nowhere does not exist; create it"),
    ),
    (
        "output-json-with-watch",
        lambda u, t: ["rerun", "x", "--stack", "s", "--yes", "--watch", "--output", "json"],
        "--watch prints lines for a person, --output json one document for a script: use one",
    ),
    ("output-yaml", lambda u, t: ["runs", "--stack", "s", "--output", "yaml"], "argument --output: invalid"),
    (
        "runs-counts-too-many",
        lambda u, t: ["runs", "--stack", "s", "--counts", "--max", "101"],
        "--max 100 or",
    ),
    ("faults-object", lambda u, t: _faults(t, {"keyRegex": "a"}), "must hold a JSON list of rules"),
    (
        "faults-status",
        lambda u, t: _faults(t, [VALID_RULE, {**VALID_RULE, "httpStatus": "503"}]),
        "faults[1].httpStatus: must be an HTTP status",
    ),
    ("faults-regex", lambda u, t: _faults(t, [{**VALID_RULE, "keyRegex": "("}]), "faults[0].keyRegex"),
    ("faults-unknown", lambda u, t: _faults(t, [{**VALID_RULE, "time": 1}]), "faults[0].time: unknown field"),
    ("faults-times", lambda u, t: _faults(t, [{**VALID_RULE, "times": -1}]), "faults[0].times"),
    (
        "faults-missing",
        lambda u, t: _faults(t, [{"keyRegex": "a", "httpStatus": 503}]),
        "faults[0].errorCode",
    ),
    ("faults-not-object", lambda u, t: _faults(t, [VALID_RULE, 5]), "faults[1]: must be a JSON object"),
    (
        "faults-lambda-timeout-state",
        lambda u, t: _faults(t, [VALID_RULE, {"lambdaTimeout": {"state": "NoSuchState"}}]),
        "faults[1].lambdaTimeout.state: 'NoSuchState' is not a Task state that invokes a Lambda function",
    ),
    (
        "faults-lambda-timeout-times",
        lambda u, t: _faults(t, [{"lambdaTimeout": {"state": "Summarize", "times": 0}}]),
        "faults[0].lambdaTimeout.times: must be a whole number >= 1",
    ),
    (
        "faults-lambda-timeout-field",
        lambda u, t: _faults(t, [{"lambdaTimeout": {"state": "Summarize", "after": 1}}]),
        "faults[0].lambdaTimeout.after: unknown field",
    ),
    (
        "inventory-source-bucket",
        lambda u, t: _bad_inventory(t, _bad_source_bucket),
        "sourceBucket '../Not A Bucket' must be 3-63 characters",
    ),
    ("inventory-long-key", _long_key, (DATA, ".csv.gz line 2: the key is 1025 bytes")),
    (
        "inventory-stray-bucket-csv",
        _stray_bucket("CSV"),
        (DATA, ".csv.gz line 3: bucket 'other-bucket' is not the manifest's sourceBucket 'their-bucket'"),
    ),
    (
        "inventory-stray-bucket-parquet",
        _stray_bucket("Parquet"),
        (DATA, ".parquet row 3: bucket 'other-bucket' is not the manifest's sourceBucket"),
    ),
    (
        "inventory-stray-bucket-orc",
        _stray_bucket("ORC"),
        (DATA, ".orc row 3: bucket 'other-bucket' is not the manifest's sourceBucket"),
    ),
    (
        "inventory-md5-mismatch",
        lambda u, t: _bad_inventory(t, _md5_mismatch),
        ("data file " + DATA, ".csv.gz (", "does not match the manifest's MD5checksum"),
    ),
    ("inventory-no-manifest", lambda u, t: _bad_inventory(t, _no_manifest), "manifest.json"),
    (
        "inventory-bad-json",
        lambda u, t: _bad_inventory(t, _bad_manifest_json),
        "is not a readable JSON manifest",
    ),
    (
        "inventory-not-gzip",
        lambda u, t: _bad_inventory(t, lambda d: _replace_data(d, b"Bucket,Key\n")),
        "is not gzip-compressed",
    ),
    ("inventory-truncated", lambda u, t: _bad_inventory(t, _truncated), "is not gzip-compressed"),
    (
        "inventory-extra-field",
        lambda u, t: _bad_inventory(t, _extra_field),
        (DATA, ".csv.gz line 3: 16 fields, but the manifest's fileSchema lists 15"),
    ),
    (
        "inventory-missing-field",
        lambda u, t: _bad_inventory(t, _missing_field),
        (DATA, ".csv.gz line 4: 14 fields"),
    ),
    (
        "inventory-parquet-garbage",
        lambda u, t: ["local", "run", "--inventory", str(_parquet_garbage(t / "inv"))],
        "is not a readable Parquet file",
    ),
    (
        "out-is-a-file",
        lambda u, t: ["local", "run", "--out", _write(u / "precious.txt", "mine")],
        "is not a folder",
    ),
    ("out-user-folder", lambda u, t: ["local", "run", "--out", str(u)], "did not create"),
    ("out-dot", lambda u, t: ["local", "run", "--out", "."], "--out . is a non-empty folder"),
    ("inventory-out-user-folder", lambda u, t: ["local", "inventory", "--out", str(u)], "did not create"),
    (
        "objects-negative",
        lambda u, t: ["local", "run", "--objects", "-5"],
        "argument --objects: must be 0 or more",
    ),
    (
        "objects-word",
        lambda u, t: ["local", "run", "--objects", "many"],
        "argument --objects: must be a whole number",
    ),
    (
        "wait-timeout-negative",
        lambda u, t: ["local", "run", "--wait-timeout", "-1"],
        "argument --wait-timeout",
    ),
    (
        "name-space",
        lambda u, t: ["local", "run", "--name", "my run"],
        "argument --name: Step Functions does not allow",
    ),
    ("name-slash", lambda u, t: ["local", "run", "--name", "a/b"], "'/'"),
    ("name-too-long", lambda u, t: ["local", "run", "--name", "n" * 81], "must be 1-80 characters"),
    ("name-control", lambda u, t: ["local", "run", "--name", "a\x07b"], "argument --name"),
    (
        "sample-negative",
        lambda u, t: ["preview", "--spec", "x", "--inventory", "y", "--sample", "-1"],
        "--sample",
    ),
    ("confirm-unknown", lambda u, t: ["local", "run", "--confirm", "maybe"], "argument --confirm"),
    (
        "bucket-name",
        lambda u, t: ["local", "inventory", "--out", str(t / "i"), "--bucket", "Bad_Bucket"],
        "--bucket",
    ),
]


def _parquet_garbage(directory: Path) -> Path:
    _inventory(directory, fmt="Parquet")
    _replace_data(directory, b"PAR1 not really parquet")
    return directory


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("build", "culprit"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(tmp_path, monkeypatch, capsys, build, culprit):
    user = tmp_path / "user"  # the user's own folder: the working directory, full of their files
    user.mkdir()
    (user / "thesis.tex").write_text("years of work")
    (user / "notes").mkdir()
    (user / "notes" / "todo.txt").write_text("keep me")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    monkeypatch.chdir(user)
    argv = build(user, inputs)
    before = _snapshot(user)

    code = main(argv)

    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("batchpipe: ")
    for part in culprit if isinstance(culprit, tuple) else (culprit,):
        assert part in err
    assert _snapshot(user) == before
    assert not (user / "local-run").exists()


def test_blank_lines_in_a_csv_delivery_are_skipped_not_errors(tmp_path):
    directory = _inventory(tmp_path / "inv", keys=["a", "b", "c"])
    rows = _csv_rows(directory)
    _replace_data(directory, gzip.compress(("\n".join([rows[0], "", rows[1], rows[2]]) + "\n\n").encode()))

    keys = [o.key for o in inv.read_inventory_dir(directory).objects()]

    assert keys == ["a", "b", "c"]


def test_local_inventory_writes_a_folder_that_preview_reads(tmp_path, capsys):
    out = tmp_path / "inv"

    code = main(["local", "inventory", "--objects", "120", "--out", str(out), "--format", "parquet"])

    assert code == 0
    layout = inv.read_inventory_dir(out)
    assert layout.file_format == "Parquet"
    assert layout.source_bucket == "batchpipe-demo-source"
    assert len(list(layout.objects())) == 120
    (tmp_path / "spec.json").write_text(json.dumps({"operation": {"S3DeleteObjectTagging": {}}}))
    capsys.readouterr()
    assert main(["preview", "--spec", str(tmp_path / "spec.json"), "--inventory", str(out)]) == 0
    assert "objects selected: 120" in capsys.readouterr().out


def test_an_earlier_output_folder_is_reused_and_only_its_own_entries_replaced(tmp_path):
    out = tmp_path / "inv"
    assert main(["local", "inventory", "--objects", "10", "--out", str(out)]) == 0
    (out / "my-notes.txt").write_text("mine")

    assert main(["local", "inventory", "--objects", "30", "--out", str(out), "--seed", "3"]) == 0

    assert (out / "my-notes.txt").read_text() == "mine"
    assert len(list(inv.read_inventory_dir(out).objects())) == 30
    assert json.loads((out / MARKER).read_text())["entries"]


def test_a_hand_edited_marker_cannot_reach_outside_the_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "precious.txt").write_text("mine")
    (out / MARKER).write_text(json.dumps({"entries": ["../precious.txt", "..", "/etc"]}))

    assert main(["local", "inventory", "--objects", "1", "--out", str(out)]) == 0

    assert (tmp_path / "precious.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "key", ["inv/cfg/../../escape.csv.gz", "elsewhere/data/x.csv.gz", "inv/cfg/data/../../../x"]
)
def test_a_downloaded_manifest_cannot_write_outside_the_folder(tmp_path, key):
    import boto3
    from moto import mock_aws

    from batchpipe.inputs import UsageError
    from batchpipe.local.preview import download_inventory

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="dest")
        s3.put_object(Bucket="dest", Key=key, Body=b"x")
        manifest = {"files": [{"key": key}]}
        s3.put_object(Bucket="dest", Key="inv/cfg/2026-11-01T00-00Z/manifest.json", Body=json.dumps(manifest))
        target = tmp_path / "scratch"
        target.mkdir()

        with pytest.raises(UsageError, match="names a data file outside"):
            download_inventory("s3://dest/inv/cfg", target, s3=s3)

    assert not any(p.is_file() and p.name != "manifest.json" for p in tmp_path.rglob("*"))


def test_ctrl_c_is_one_line_not_a_traceback(monkeypatch, capsys):
    import batchpipe.local.run

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(batchpipe.local.run, "local_run", interrupted)

    assert main(["local", "run"]) == 130
    assert capsys.readouterr().err == "batchpipe: interrupted\n"
