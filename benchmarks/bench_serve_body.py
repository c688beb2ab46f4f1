"""How much memory `batchpipe local serve` needs for the largest body it reads, and for one it refuses.

Not a test. Starts `batchpipe local serve --port 0` as a child process, then measures the child's
peak RSS (the kernel's high-water mark, /proc/<pid>/status VmHWM, reset through clear_refs before
each step) while it is sent:

* a body over the limit (MAX_BODY_BYTES + 1, streamed 1 MiB at a time): how many bytes the server
  took before it answered, its status and one-line reason, and how far its peak rose;
* a PutObject of exactly MAX_BODY_BYTES through boto3 (the largest body it reads);
* four such PutObjects at once (bodies over 8 MiB are handled two at a time);
* after all, a ListBuckets (the server stays up).

Prints a table (or ``--json``); docs/SECURITY.md records the figures. The ratio column compares each
step's rise with the bytes sent.

    .venv/bin/python benchmarks/bench_serve_body.py
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config

from batchpipe.local.serve import MAX_BODY_BYTES

MIB = 1024 * 1024
SIGNED = (
    "Authorization: AWS4-HMAC-SHA256 Credential=testing/20261206/us-east-1/s3/aws4_request, "
    "SignedHeaders=host, Signature=00\r\n"
)


def _status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def serve(tmp: Path) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "batchpipe.cli", "local", "serve", "--port", "0"]
    command += ["--objects", "10", "--out", str(tmp / "out")]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        found = re.search(r"at (http://127\.0\.0\.1:\d+) ", line or "")
        if found:
            return child, found[1]
        if not line:
            break
    child.kill()
    raise SystemExit("local serve did not start")


def send_oversize(endpoint: str, size: int) -> tuple[int, str, int]:
    """Streams a PUT of ``size`` bytes; (status, reason, bytes the server took before answering)."""
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    head = (
        f"PUT /batchpipe-demo-source/oversize HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Length: {size}\r\n{SIGNED}\r\n"
    ).encode()
    chunk = b"x" * MIB
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head)
        connection.settimeout(0.05)
        answer = b""
        while sent < size:
            try:
                answer += connection.recv(65536)
                if answer:
                    break
            except TimeoutError:
                pass
            try:
                connection.sendall(chunk[: size - sent])
                sent += min(len(chunk), size - sent)
            except OSError:
                break
        connection.settimeout(30)
        while b"\r\n\r\n" not in answer:
            more = connection.recv(65536)
            if not more:
                break
            answer += more
    head_text, _, body = answer.partition(b"\r\n\r\n")
    status = int(head_text.split()[1]) if head_text else 0
    return status, body.decode(errors="replace")[:200], sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        child, endpoint = serve(Path(tmp))
        try:
            s3 = boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                config=Config(retries={"max_attempts": 1}),
            )
            idle = _status(child.pid)["VmRSS"]
            rows = []

            _reset_peak(child.pid)
            start = _status(child.pid)["VmRSS"]
            status, reason, took = send_oversize(endpoint, MAX_BODY_BYTES + 1)
            rise = _status(child.pid)["VmHWM"] - start
            rows.append({"step": "oversize body", "body": MAX_BODY_BYTES + 1, "status": status,
                         "reason": reason, "sent_before_answer": took, "peak_rise": rise})  # fmt: skip

            _reset_peak(child.pid)
            start = _status(child.pid)["VmRSS"]
            s3.put_object(Bucket="batchpipe-demo-source", Key="largest", Body=b"y" * MAX_BODY_BYTES)
            rise = _status(child.pid)["VmHWM"] - start
            rows.append({"step": "largest body read", "body": MAX_BODY_BYTES, "status": 200,
                         "reason": "", "sent_before_answer": MAX_BODY_BYTES, "peak_rise": rise})  # fmt: skip
            s3.delete_object(Bucket="batchpipe-demo-source", Key="largest")

            _reset_peak(child.pid)
            start = _status(child.pid)["VmRSS"]
            with ThreadPoolExecutor(4) as pool:
                keys = [f"largest-{n}" for n in range(4)]
                body = b"z" * MAX_BODY_BYTES
                list(
                    pool.map(
                        lambda key: s3.put_object(Bucket="batchpipe-demo-source", Key=key, Body=body), keys
                    )
                )
            rise = _status(child.pid)["VmHWM"] - start
            rows.append({"step": "4 at once", "body": 4 * MAX_BODY_BYTES, "status": 200,
                         "reason": "", "sent_before_answer": 4 * MAX_BODY_BYTES, "peak_rise": rise})  # fmt: skip
            for key in keys:
                s3.delete_object(Bucket="batchpipe-demo-source", Key=key)
            up = bool(s3.list_buckets()["Buckets"])
        finally:
            child.send_signal(signal.SIGTERM)
            child.communicate(timeout=120)
    if args.json:
        print(json.dumps({"idle_rss": idle, "steps": rows, "still_serving": up}, indent=2))
        return 0
    print(f"idle RSS {idle / MIB:.0f} MiB; limit {MAX_BODY_BYTES / MIB:.0f} MiB; still serving: {up}")
    print(f"{'step':<20}{'body MiB':>10}{'status':>8}{'sent MiB':>10}{'peak rise MiB':>15}{'rise/body':>11}")
    for row in rows:
        print(
            f"{row['step']:<20}{row['body'] / MIB:>10.1f}{row['status']:>8}{row['sent_before_answer'] / MIB:>10.1f}"
            f"{row['peak_rise'] / MIB:>15.1f}{row['peak_rise'] / row['body']:>11.2f}"
        )
        if row["reason"]:
            print(f"  reason: {row['reason']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
