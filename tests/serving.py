"""`batchpipe local serve` in a child process, for the tests that drive the served embedded AWS
(tests/local/test_operator_cli.py, tests/samlocal)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: How long the child may take to seed its objects and print its endpoint (on a loaded machine too).
START_SECONDS = 300


@dataclass
class Served:
    endpoint: str
    #: What serve printed before serving: the endpoint, the exports, the pace of waits.
    banner: str = ""
    #: Set once the child has stopped: its exit status and what it printed after its start-up lines.
    returncode: int | None = None
    output: str = ""


@contextmanager
def serving(*args: object, cwd: Path) -> Iterator[Served]:
    """`batchpipe local serve --port 0 ARGS` on a free loopback port until the block ends, then SIGTERM
    (as Ctrl-C stops it); the child's exit status and last output are on the yielded ``Served``."""
    command = [sys.executable, "-m", "batchpipe.cli", "local", "serve", "--port", "0", *map(str, args)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd)
    assert child.stdout is not None
    try:
        lines: list[str] = []
        deadline = time.monotonic() + START_SECONDS
        # The banner's last line is the pace of waits (batchpipe.local.serve): then it serves.
        while time.monotonic() < deadline and not (lines and "Wait states" in lines[-1]):
            line = child.stdout.readline()
            if not line:
                break
            lines.append(line)
        found = re.search(r"at (http://127\.0\.0\.1:\d+) ", "".join(lines))
        assert found, "local serve did not start:\n" + "".join(lines)
        served = Served(found[1], banner="".join(lines))
        yield served
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            rest, _ = child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            rest, _ = child.communicate()
    served.returncode, served.output = child.returncode, rest


def point_shell_at(endpoint: str, monkeypatch) -> None:
    """The environment of a user's shell after `local serve`'s exports: boto3's own AWS_ENDPOINT_URL,
    a region and test credentials, and no profile or session token from the real shell."""
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
