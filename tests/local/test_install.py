"""`pip install` of a built wheel gives a working `batchpipe`: a fresh virtualenv with the wheel and the
dependencies it declares (pinned to the tested set), no checkout on its path.

The installed command runs the operator commands against a `local serve` of this checkout, checks a
spec before any AWS call, and says in one line that the embedded AWS needs a checkout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from ..serving import serving

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("served-embedded-aws")]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The `batchpipe` script of a fresh virtualenv holding the built wheel."""
    tmp = tmp_path_factory.mktemp("install")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp / "dist"), str(REPO)], check=True, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("batchpipe-*.whl")
    venv.create(tmp / "venv", with_pip=True)
    python = tmp / "venv" / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            str(wheel),
            "-c",
            str(REPO / "requirements" / "constraints.txt"),
        ],
        check=True,
        cwd=tmp,
    )
    return tmp / "venv" / "bin" / "batchpipe"


def _run(
    batchpipe: Path, *args: str, env: dict[str, str] | None = None, cwd: Path
) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHONPATH"))}
    return subprocess.run(
        [str(batchpipe), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**clean, **(env or {})},
        timeout=300,
    )


def test_the_installed_command_checks_a_spec_before_any_aws_call(installed, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"operation": {"S3PutObjectTagging": {"TagSet": []}}, "priorty": 1}))

    done = _run(
        installed, "start", "--stack", "s", "--spec", str(spec), env={"AWS_REGION": "us-east-1"}, cwd=tmp_path
    )

    assert done.returncode == 2
    assert "priorty: unknown field; did you mean 'priority'?" in done.stderr
    assert "Traceback" not in done.stderr
    assert re.fullmatch(r"batchpipe \d+\.\d+\.\d+\n", _run(installed, "--version", cwd=tmp_path).stdout)


def test_the_installed_command_says_the_embedded_aws_needs_a_checkout(installed, tmp_path):
    done = _run(installed, "local", "run", "--objects", "10", "--out", str(tmp_path / "out"), cwd=tmp_path)

    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "run it from a checkout" in done.stderr


def test_the_installed_command_runs_the_operators_loop_against_local_serve(installed, tmp_path):
    with serving("--objects", 100, "--out", tmp_path / "out", cwd=tmp_path) as served:
        shell = {
            "AWS_ENDPOINT_URL": served.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        spec = tmp_path / "spec.json"
        spec.write_text(
            json.dumps({"name": "installed", "operation": {"S3PutObjectTagging": {"TagSet": []}}})
        )

        started = _run(
            installed,
            "start",
            "--stack",
            "batchpipe",
            "--spec",
            str(spec),
            "--name",
            "installed-1",
            "--watch",
            env=shell,
            cwd=tmp_path,
        )
        listed = _run(installed, "runs", "--stack", "batchpipe", "--json", env=shell, cwd=tmp_path)

    assert started.returncode == 0, started.stderr
    assert [run["execution"] for run in json.loads(listed.stdout)] == ["installed-1"]
