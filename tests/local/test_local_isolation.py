"""A local run, a preview and `local inventory` never leave the process, whatever AWS settings the shell has.

The shell here exports what a user of `batchpipe local serve` or of a real account would: an endpoint
(the README's serve section), a profile that does not exist, a config file naming an endpoint and
credentials that cannot work. A listening loopback socket stands for "anywhere": it must see no
connection at all.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from batchpipe.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def elsewhere():
    """A loopback listener that accepts nothing by itself; its backlog shows whether anyone connected."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.setblocking(False)
        yield listener


def connections(listener: socket.socket) -> int:
    count = 0
    while True:  # bounded by the backlog of 16
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


def hostile_shell(tmp_path: Path, listener: socket.socket) -> dict[str, str]:
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    config = tmp_path / "aws-config"
    config.write_text(f"[profile someone]\nregion = ap-south-2\nendpoint_url = {url}\n")
    credentials = tmp_path / "aws-credentials"
    credentials.write_text("[someone]\ncredential_process = /bin/false\n")
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ENDPOINT_URL_IAM": url,
        "AWS_ENDPOINT_URL_S3": url,
        "AWS_PROFILE": "no-such-profile",
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
        "AWS_REGION": "eu-west-3",
        "AWS_DEFAULT_REGION": "eu-west-3",
        "AWS_ACCESS_KEY_ID": "AKIAREALLOOKING",
        "AWS_SECRET_ACCESS_KEY": "not-a-secret",
    }


def test_a_local_run_in_a_fresh_process_ignores_every_aws_setting_of_the_shell(tmp_path, elsewhere):
    # A fresh process: what the X-Ray SDK and botocore read at import time is part of the test.
    env = {**os.environ, **hostile_shell(tmp_path, elsewhere)}
    out = tmp_path / "out"
    command = [sys.executable, "-m", "batchpipe.cli", "local", "run", "--objects", "5", "--json"]

    done = subprocess.run(
        [*command, "--out", str(out)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["status"] == "SUCCEEDED"
    assert connections(elsewhere) == 0


def test_preview_and_local_inventory_ignore_the_shell_and_give_it_back(
    tmp_path, monkeypatch, capsys, elsewhere
):
    shell = hostile_shell(tmp_path, elsewhere)
    for name, value in shell.items():
        monkeypatch.setenv(name, value)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"operation": {"S3PutObjectTagging": {"TagSet": []}}}))

    assert main(["local", "inventory", "--objects", "7", "--out", str(tmp_path / "inv")]) == 0
    assert main(["preview", "--spec", str(spec), "--inventory", str(tmp_path / "inv")]) == 0

    assert "7" in capsys.readouterr().out
    assert connections(elsewhere) == 0
    assert {name: os.environ.get(name) for name in shell} == shell  # the shell's settings come back
