"""Completion-report processing speed and memory: the report stage's handlers and readers vs pyarrow.csv alone.

Not a test. Generates a report in AWS's layout on local disk (``job-<id>/manifest.json`` plus
headerless ``results/<hash>.csv`` files split by task status and cut every 250,000 rows, HTTP status
5th, quoted messages with commas and newlines) with realistic keys - spaces, ``+``, accents, CJK,
emoji, deep folders, one in 20 about 450 characters long, URL-encoded as BuildManifest's Athena query
writes them - and ``--fail-rate`` of the tasks failed (default 5%), half retriable (503 SlowDown,
Lambda TemporaryFailure), half permanent (404 NoSuchKey, 403 AccessDenied). Each mode runs in a
fresh process so peak memory is its own:

* ``handlers``        **what users run, what Lambda bills**: the report stage's real handlers in
                      the state machine's order - PlanReport, ReportPart over every window of every
                      results file, the PackParts loop, ProcessReport - over the report uploaded
                      before the timer to moto's S3 server in a child process (the handlers'
                      clients reach it through ``AWS_ENDPOINT_URL``). The figure is this process's
                      CPU alone (user + system: sending requests, reading bodies off the socket,
                      as a function does); the server's is S3's work, shown apart (``S3 CPU s``,
                      ``s3CpuSeconds``). The job outcome has what DescribeJob gives for a Complete
                      job (the S3 user guide's ``describe-job`` example, "Use DescribeJob with an
                      AWS SDK or CLI": ``TotalNumberOfTasks``, ``NumberOfTasksSucceeded``,
                      ``NumberOfTasksFailed``), counted in the generated report, so its files of
                      successes are not read (``fanout.s3_counted_every_task``)
* ``handlers-uncounted`` the same with S3's counts of tasks that succeeded and failed withheld (they
                      are optional): the files of successes are counted, as before issue 23's fifth pass
* ``handlers-inprocess`` the same over moto's in-process mock (``mock_aws``): moto's request
                      handling is inside the figure (the mode ``handlers`` was before issue 23's
                      fourth pass, kept for continuity)
* ``handlers-join``   the same handlers, S3 out of process as in ``handlers``, for a job that failed
                      before running 5% of its manifest's objects: the manifest and the report
                      scattered into hash partitions (``JOIN_PARTITION_ROWS`` in the environment
                      sets their size) and joined. Every handler mode reports the handlers' S3
                      requests by operation (``requests``; the benchmark's own, uploading the report
                      and reading the Maps' item lists, are not in it). Its join is regrouped
                      where the plan says so (``fanout.regroup_fan_in``; ``REGROUP_FAN_IN`` in the
                      environment sets the fan-in)
* ``handlers-join-direct`` the same join with every partition reading every scattered window (the
                      fan-in past the windows: no regroup, the join before issue 23 §3's second
                      level), for the ratio
* ``process-pyarrow`` ReportPart's work for a Complete job without S3: every window through
                      ``accounting.tally_results``; files of successes only counted, failed rows
                      classified, decoded, counted by prefix and written column-wise
                      (``attempts.AttemptOutputs.on_columns``) to local files
* ``process-pyarrow-rows`` the same with every failed row a ReportRow through the per-row sinks
                      (the path before issue 23), for the ratio
* ``process-csv``     the same with the csv-module fallback (every row a ReportRow, classified in Python)
* ``parse-pyarrow``   batchpipe_core.report.read_result_rows with pyarrow: every row as a ReportRow
* ``parse-csv``       the same with the csv-module fallback
* ``join``            the Failed/Cancelled-job path: the manifest (5% more rows than the report: tasks
                      never run) joined with the report (pyarrow reader) by hash-partitioning to disk,
                      then processed row by row
* ``join-in-memory``  the same join with the whole report in a dict (what a report under the
                      join's memory_rows bound gets; shown at sizes it is not allowed, for its cost)
* ``pyarrow-stream``  **baseline**: pyarrow.csv.open_csv over the same files on one thread, batches
                      counted
* ``pyarrow-stream-threads`` the same on pyarrow's thread pool (its default)
* ``pyarrow-table``   pyarrow.csv.read_csv, whole table per file (shows what not streaming costs)

Every mode's rate is compared with both baselines round by round (the modes run one after another,
``--repeat`` rounds), and the median ratio shown: ``vs 1-thread`` and ``vs threads``.

Optional modes, run only where awswrangler, pandas and moto import (not the project's .venv; see
docs/PERFORMANCE.md for the venv they were measured in), for issue 6's other candidate, awswrangler's
chunked S3 CSV reader:

* ``pandas-stream``       pandas.read_csv(chunksize=100,000) over the same file objects, chunks
                          counted (the parser awswrangler uses, without rows)
* ``pandas-chunked``      the same, each chunk turned into ReportRows the way parse-pyarrow turns a
                          batch (awswrangler's parser without S3)
* ``awswrangler-chunked`` awswrangler.s3.read_csv(chunksize=100,000) over the files uploaded to an
                          in-process moto S3 (before the timer starts), the same ReportRows
* ``parse-pyarrow-moto``  batchpipe_core.report.iter_report_rows with pyarrow over the same moto S3
                          (get_object bodies): parse-pyarrow plus moto's overhead, for comparison.
                          moto serves every GET, ranged or not, by copying the whole object, and
                          awswrangler reads in 5 MiB ranges, so moto costs it far more than one GET

Files are opened in Python and handed to the readers as file objects, as S3 bodies are in Lambda;
the baseline gets paths (pyarrow's native reads), i.e. the best pyarrow alone can do.

Peak memory is the growth of the process's peak RSS over its RSS after imports (ru_maxrss), so
native (pyarrow) allocations count too.

    .venv/bin/python benchmarks/bench_report.py                      # 1M rows, 5% failed, every mode
    .venv/bin/python benchmarks/bench_report.py --fail-rate 0.3      # 30% failed
    .venv/bin/python benchmarks/bench_report.py --rows 10000000      # 10M rows (~1.6 GB of CSV)
    .venv/bin/python benchmarks/bench_report.py --repeat 3 --json    # one JSON object per mode on stdout
    /tmp/wr-venv/bin/python benchmarks/bench_report.py               # a venv with awswrangler, pandas and
                                                                     # moto too: the optional modes as well
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "functions"))

ROWS_PER_FILE = 250_000  # results files per task status are cut at this many rows: several files
FAIL_RATE = 0.05  # the default share of failed tasks (--fail-rate), half retriable, half permanent
NOT_RUN_EXTRA = 0.05  # the join mode's manifest has 5% more objects than the report
IN_MEMORY_JOIN_MAX_ROWS = 2_000_000
REPORT_PART_ROWS = 10_000_000  # template.yaml's ReportPartRows default
MODES = [
    "handlers",
    "handlers-uncounted",
    "handlers-inprocess",
    "handlers-join",
    "handlers-join-direct",
    "process-pyarrow",
    "process-pyarrow-rows",
    "process-csv",
    "parse-pyarrow",
    "parse-csv",
    "join",
    "join-in-memory",
    "pyarrow-stream",
    "pyarrow-stream-threads",
    "pyarrow-table",
]
#: The report stage's real handlers (handler_chain).
HANDLER_MODES = (
    "handlers",
    "handlers-uncounted",
    "handlers-inprocess",
    "handlers-join",
    "handlers-join-direct",
)
#: A fan-in no join reaches: every partition reads every window (``handlers-join-direct``).
DIRECT_FAN_IN = str(1 << 40)
#: Run only when awswrangler, pandas and moto import (OPTIONAL_PACKAGES).
OPTIONAL_MODES = ["pandas-stream", "pandas-chunked", "awswrangler-chunked", "parse-pyarrow-moto"]
OPTIONAL_PACKAGES = ("awswrangler", "pandas", "moto")
PANDAS_CHUNK_ROWS = 100_000
RESULT_COLUMNS = ["bucket", "key", "version", "status", "http", "code", "message"]
MOTO_BUCKET = "report-bucket-example"
#: (HTTP status, error code, message as written in the CSV): retriable and permanent in turn.
FAILURES = [
    ("503", "SlowDown", "Please reduce your request rate."),
    ("404", "NoSuchKey", "The specified key does not exist."),
    (
        "200",
        "TemporaryFailure",
        '"Lambda returned function error: {""errorMessage"":""Throttled, retry""}\nat x"',
    ),
    ("403", "AccessDenied", '"Access Denied, check the role"'),
]
#: Keys as buckets hold them (one in 20 each): spaces, ``+``, accents, CJK, emoji, deep folders, and
#: one in 20 long (~450 characters, ~760 bytes of UTF-8, ~2 KB encoded).
KEY_TEMPLATES = [
    *[lambda i: f"photos/{2015 + i % 11}/{i % 12 + 1:02d}/IMG {i:09d}+é.jpg"] * 8,
    *[lambda i: f"logs/app/2025-{i % 12 + 1:02d}-{i % 28 + 1:02d}/part-{i:07d}.log.gz"] * 4,
    lambda i: f"données/été/café naïve {i}.txt",
    lambda i: f"données/été/café naïve {i}.txt",
    lambda i: f"日本語/フォルダ/ファイル{i}.txt",
    lambda i: f"emoji/🎉/party-{i}.png",
    lambda i: f"My Documents/Quarterly Report {i % 7 + 2019} Q{i % 4 + 1} (final) v{i}.pdf",
    lambda i: "deep/" + "/".join(f"level{d}" for d in range(i % 12 + 4)) + f"/leaf-{i}.bin",
    lambda i: f"c++/src/lib+extra/{i}+plus.h",
    lambda i: f"long/{i}/" + "é" * 150 + "x" * 300,
]


def key_of(i: int) -> str:
    """The key of task ``i`` as S3 Batch Operations repeats it from the manifest: URL-encoded the
    way BuildManifest's Athena query writes it (``replace(url_encode(key), '+', '%20')``: every byte
    but letters, digits and ``.-*_`` escaped, ``/`` too)."""
    from urllib.parse import quote

    return quote(KEY_TEMPLATES[i % len(KEY_TEMPLATES)](i), safe="*")


def failed_task(i: int, fail_rate: float) -> bool:
    """Whether task ``i`` failed: ``fail_rate`` of them, spread through the job (a multiplicative
    hash of i, so neither clustered nor in step with the key templates)."""
    return (i * 2654435761) % 4294967296 < fail_rate * 4294967296


# ------------------------------------------------------------------------------ generation


def generate(
    directory: Path, rows: int, bucket: str = "source-bucket-example", fail_rate: float = FAIL_RATE
) -> Path:
    """Writes the report (and, for the join mode, its manifest); returns the manifest.json path."""
    job = directory / "job-bench"
    results = job / "results"
    results.mkdir(parents=True)
    entries = []

    def open_result(status: str):
        name = hashlib.sha1(f"{status}-{len(entries)}".encode()).hexdigest()
        entries.append(
            {"TaskExecutionStatus": status, "Bucket": bucket, "MD5Checksum": "-", "Key": f"{name}.csv"}
        )
        return open(results / f"{name}.csv", "w", buffering=1 << 20)

    # Files are written as rows are generated: the generator stays small, like what it measures.
    succeeded_file = failed_file = None
    succeeded_rows = failed_rows = 0
    try:
        for i in range(rows):
            if failed_task(i, fail_rate):
                http, code, message = FAILURES[failed_rows % len(FAILURES)]
                if failed_file is None or failed_rows % ROWS_PER_FILE == 0:
                    if failed_file is not None:
                        failed_file.close()
                    failed_file = open_result("failed")
                failed_file.write(f"{bucket},{key_of(i)},,failed,{http},{code},{message}\n")
                failed_rows += 1
                continue
            if succeeded_file is None or succeeded_rows == ROWS_PER_FILE:
                if succeeded_file is not None:
                    succeeded_file.close()
                succeeded_file, succeeded_rows = open_result("succeeded"), 0
            succeeded_file.write(f"{bucket},{key_of(i)},,succeeded,200,,Successful\n")
            succeeded_rows += 1
    finally:
        for handle in (succeeded_file, failed_file):
            if handle is not None:
                handle.close()
    manifest = {
        "Format": "Report_CSV_20180820",
        "ReportCreationDate": "2026-01-01T00:00:00.000Z",
        "Results": entries,
        "ReportSchema": "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage",
    }
    (job / "manifest.json").write_text(json.dumps(manifest))
    with open(directory / "manifest.csv", "w") as out:
        for i in range(int(rows * (1 + NOT_RUN_EXTRA))):
            out.write(f"{bucket},{key_of(i)}\n")
    return job / "manifest.json"


# ------------------------------------------------------------------------------ measurement


def result_files(manifest_json: Path) -> list[Path]:
    document = json.loads(manifest_json.read_text())
    return [manifest_json.parent / "results" / entry["Key"] for entry in document["Results"]]


def report_rows(files, reader: str):
    from batchpipe_core.report import read_result_rows

    for path in files:
        with open(path, "rb") as binary:
            yield from read_result_rows(binary, reader)


def result_entries(manifest_json: Path) -> list[tuple[Path, str]]:
    """Each results file with its TaskExecutionStatus in manifest.json."""
    document = json.loads(manifest_json.read_text())
    results = manifest_json.parent / "results"
    return [(results / entry["Key"], entry["TaskExecutionStatus"]) for entry in document["Results"]]


def windows(path: Path) -> Iterator[Callable[[], Any]]:
    """For each window ReportPartFunction would count of ``path`` (at the stack's default
    ReportPartRows and the counted window's byte bound), a function that opens it
    (``tally_results`` may open it twice)."""
    from batchpipe_core.byte_window import ByteWindow
    from batchpipe_core.fanout import COUNT_WINDOW_MAX_BYTES
    from batchpipe_core.report import MIN_RESULT_RECORD_BYTES

    size, offset = path.stat().st_size, 0
    while offset < size:
        opened: list = []

        def open_window(start: int = offset, opened: list = opened) -> ByteWindow:
            if opened:
                opened[-1].close()
            binary = open(path, "rb")
            binary.seek(start)
            opened.append(binary)
            stream = ByteWindow(binary, REPORT_PART_ROWS, COUNT_WINDOW_MAX_BYTES, MIN_RESULT_RECORD_BYTES)
            opened.append(stream)
            return stream

        yield open_window
        offset += opened[-1].consumed
        opened[0].close()


class DiskS3:
    """The S3 requests a part's outputs (attempts.AttemptOutputs, csv_upload.CsvUpload) make, onto local
    files, so ``process-*`` time ReportPart's own work and not an S3 client."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uploads: dict[str, Any] = {}

    def _file(self, key: str, mode: str) -> Any:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, mode)

    def put_object(self, Bucket: str, Key: str, Body: bytes, **_: Any) -> dict:
        with self._file(Key, "wb") as out:
            out.write(Body)
        return {"ETag": '"local"'}

    def create_multipart_upload(self, Bucket: str, Key: str, **_: Any) -> dict:
        self.uploads[Key] = self._file(Key, "wb")
        return {"UploadId": Key}

    def upload_part(self, UploadId: str, Body: bytes, **_: Any) -> dict:
        self.uploads[UploadId].write(Body)
        return {"ETag": '"part"'}

    def complete_multipart_upload(self, UploadId: str, **_: Any) -> dict:
        self.uploads.pop(UploadId).close()
        return {"ETag": '"local"'}

    def abort_multipart_upload(self, UploadId: str, **_: Any) -> None:
        self.uploads.pop(UploadId).close()


def process(entries: list[tuple[Path, str]], reader: str, out_dir: Path, *, columns: bool = True) -> dict:
    """ReportPartFunction's work on a Complete job's report (local files for S3): every window of
    every results file through ``accounting.tally_results`` with the file's status, failures written
    by the part's ``AttemptOutputs`` (retry manifest, failures file, prefixes): column-wise
    (``columns``, what the handler does) or row by row (the path before issue 23)."""
    from batchpipe_core.accounting import AttemptTally, tally_results
    from batchpipe_core.attempts import AttemptOutputs
    from batchpipe_core.classification import Disposition

    counts = AttemptTally()
    s3 = DiskS3(out_dir)
    for number, (path, status) in enumerate(entries):
        for window, open_window in enumerate(windows(path)):
            outputs = AttemptOutputs(
                s3, "b", f"out/{number}-{window}/", last_attempt=False, fields=lambda: 2, part=True
            )
            tally_results(
                open_window,
                status,
                reader=reader,
                unknown=Disposition.PERMANENT,
                on_retriable=outputs.on_retriable,
                on_permanent=outputs.on_permanent,
                on_columns=outputs.on_columns if columns and reader == "pyarrow" else None,
                counts=counts,
            )
            for upload in outputs.uploads():
                upload.close()
    return outcome_counts(counts)


def process_rows(rows: Iterable, out_dir: Path) -> dict:
    """The same outputs over rows from elsewhere (the join's), row by row."""
    from batchpipe_core.accounting import tally
    from batchpipe_core.attempts import AttemptOutputs
    from batchpipe_core.classification import Disposition

    outputs = AttemptOutputs(DiskS3(out_dir), "b", "out/", last_attempt=False, fields=lambda: 2, part=True)
    counts = tally(
        rows,
        unknown=Disposition.PERMANENT,
        on_retriable=outputs.on_retriable,
        on_permanent=outputs.on_permanent,
    )
    for upload in outputs.uploads():
        upload.close()
    return outcome_counts(counts)


# ------------------------------------------------------------------ the handlers, on emulated S3

HANDLER_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "ACCOUNT_ID": "123456789012",
    "PIPELINE_BUCKET": MOTO_BUCKET,
    "TOKEN_TABLE": "tokens",
    "INVENTORY_BUCKET": "inventory",
    "INVENTORY_PREFIX": "inventory",
    "INVENTORY_FORMAT": "CSV",
    "INVENTORY_VERSIONS": "Current",
    "INVENTORY_DATABASE": "db",
    "INVENTORY_TABLE": "inventory",
    "ATHENA_WORKGROUP": "wg",
    "BATCH_ROLE_ARN": "arn:aws:iam::123456789012:role/batch",
    "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:topic",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


class _Context:
    function_name = "bench"
    memory_limit_in_mb = 1769
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"


def count_records(files: list[Path]) -> int:
    """Records in the results files (messages may hold newlines: parsed, not line-counted)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = ["bucket", "key", "version", "status", "http", "code", "message"]
    options = (
        pacsv.ReadOptions(column_names=names),
        pacsv.ParseOptions(newlines_in_values=True),
        pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), include_columns=["status"]),
    )
    return sum(pacsv.read_csv(path, *options).num_rows for path in files)


#: Set (by ``--tls``) for the ``--measure`` children: the handler modes' S3 server serves HTTPS.
TLS_ENVIRONMENT = "BATCHPIPE_BENCH_TLS"


class S3Server:
    """moto's S3 served from a child process (moto's server app under werkzeug, run by this script's hidden
    ``--serve-s3``), as S3 is to a Lambda function: its request handling - parsing requests, copying
    the objects it serves, hashing uploads - is that process's CPU, not the handlers'. The child
    answers each line on its stdin with its own CPU seconds so far (user + system, every thread)."""

    def __init__(self, tls: bool = False) -> None:
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--serve-s3", *(["--tls"] if tls else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._stdin, self._stdout = self._process.stdin, self._process.stdout
        self.endpoint = self._stdout.readline().strip()
        if not self.endpoint:
            raise SystemExit(f"moto's server did not start (exit status {self._process.wait()})")
        #: With ``tls``, the server's self-signed certificate, for the clients to trust (``AWS_CA_BUNDLE``).
        self.certificate = self._stdout.readline().strip() if tls else None

    def cpu_seconds(self) -> float:
        self._stdin.write("cpu\n")
        self._stdin.flush()
        return float(self._stdout.readline())

    def stop(self) -> None:
        self._stdin.close()  # the child stops when its stdin ends
        self._process.wait(timeout=60)


def serve_s3(tls: bool) -> None:
    """The child of S3Server: moto's threaded server on a free local port, its URL (and with
    ``tls`` the path of its certificate) on stdout, then its CPU seconds for each line read, until
    stdin ends. With ``tls`` it serves HTTPS, as S3's endpoints do, from a self-signed certificate
    for 127.0.0.1; werkzeug closes every connection after one response, so each request pays a TLS
    handshake that S3 (which keeps connections open) would spare."""
    import logging
    import ssl
    import threading

    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per request
    context = None
    if tls:
        directory = tempfile.mkdtemp(prefix="batchpipe-bench-tls-")
        certificate, key = _self_signed_certificate(Path(directory))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificate, key)
    server = make_server(
        "127.0.0.1",
        0,
        DomainDispatcherApplication(create_backend_app),
        threaded=True,
        request_handler=MotoRequestHandler,
        ssl_context=context,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    print(f"{'https' if tls else 'http'}://{host}:{port}", flush=True)
    if tls:
        print(certificate, flush=True)
    for _ in sys.stdin:
        print(time.process_time(), flush=True)
    server.shutdown()


def _self_signed_certificate(directory: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files in ``directory``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_path, key_path = directory / "certificate.pem", directory / "key.pem"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(certificate_path), str(key_path)


def handler_chain(
    manifest_json: Path, status: str = "Complete", *, in_process: bool = False, counted: bool = True
) -> tuple[Callable[[], dict], Any]:
    """The report stage as the state machine runs it - PlanReport, ReportPart over every window of
    every results file, the PackParts loop, ProcessReport - with the real handlers, over the report
    uploaded to moto's S3 before the timer (uploading is not part of the stage): served by a child
    process (S3Server; every AWS endpoint of the handlers' clients pointed at it through
    ``AWS_ENDPOINT_URL``), or with ``in_process`` by moto's mock in this process, inside the figure.
    ``status`` ``Failed``: the job stopped before running 5% of its manifest's objects, so the stage
    joins the manifest with the report (scatter windows, join partitions). ``counted``: the Complete
    job's outcome has S3's counts of tasks that succeeded and failed, as DescribeJob gives them.
    Returns the stage to time, and the S3 (an S3Server, or the mock) to stop afterwards."""
    os.environ.update(HANDLER_ENV)
    if in_process:
        from moto import mock_aws

        server: Any = mock_aws()
        server.start()
    else:
        server = S3Server(tls=bool(os.environ.get(TLS_ENVIRONMENT)))
        os.environ["AWS_ENDPOINT_URL"] = server.endpoint
        if server.certificate:
            os.environ["AWS_CA_BUNDLE"] = server.certificate
    import boto3

    from batchpipe_core.clients import s3_client
    from batchpipe_core.fanout import PackingCursor
    from plan_report import app as plan_app
    from process_report import app as process_app
    from report_part import app as part_app

    # The benchmark's own requests (the upload, reading the Maps' item lists as Step Functions'
    # ItemReader does) go through a session of their own, outside the handlers' request counts.
    s3 = boto3.session.Session().client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=MOTO_BUCKET)
    document = json.loads(manifest_json.read_text())
    for entry in document["Results"]:
        entry["Bucket"] = MOTO_BUCKET
        entry["Key"] = f"report/job-bench/results/{entry['Key']}"
        s3.upload_file(
            str(manifest_json.parent / "results" / Path(entry["Key"]).name), MOTO_BUCKET, entry["Key"]
        )
    s3.put_object(
        Bucket=MOTO_BUCKET, Key="report/job-bench/manifest.json", Body=json.dumps(document).encode()
    )
    rows = count_records(result_files(manifest_json))
    if status == "Complete":
        manifest = s3.put_object(
            Bucket=MOTO_BUCKET, Key="run/manifest.csv", Body=b"source-bucket-example,k\n"
        )
        job_counts = {"total": rows}
        if counted:
            successes = [path for path, status in result_entries(manifest_json) if status == "succeeded"]
            succeeded = count_records(successes)
            job_counts |= {"succeeded": succeeded, "failed": rows - succeeded}
    else:
        manifest_csv = manifest_json.parent.parent / "manifest.csv"
        s3.upload_file(str(manifest_csv), MOTO_BUCKET, "run/manifest.csv")
        manifest = s3.head_object(Bucket=MOTO_BUCKET, Key="run/manifest.csv")
        ran, rows = rows, sum(1 for _ in open(manifest_csv, "rb"))
        job_counts = {"total": rows, "succeeded": ran, "failed": 0}  # only the total matters here
    event = {
        "spec": {"name": "bench", "operation": {"S3PutObjectTagging": {"TagSet": []}}},
        "run": {"name": "bench", "executionId": "bench", "bucket": MOTO_BUCKET, "prefix": "run/"},
        "current": {
            "attempt": 1,
            "manifest": {
                "location": f"s3://{MOTO_BUCKET}/run/manifest.csv",
                "bucket": MOTO_BUCKET,
                "key": "run/manifest.csv",
                "etag": manifest["ETag"].strip('"'),
                "objects": rows,
                "fields": ["Bucket", "Key"],  # BuildManifest's, as the state carries them
            },
        },
        "job": {
            "jobId": "bench",
            "status": status,
            "terminal": True,
            **job_counts,
            "report": {"bucket": MOTO_BUCKET, "prefix": "report", "scope": "AllTasks"},
        },
    }

    # Every S3 request the handlers make, by operation: they create their clients from boto3's
    # default session, whose event handlers each new client copies.
    requests: Counter[str] = Counter()
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register(
        "before-call.s3", lambda model, **_: requests.update([model.name]), unique_id="bench-requests"
    )
    # The handlers' client, created before the timer as their modules are imported before it: a warm
    # function keeps its client (batchpipe_core/clients.py). Creating one in a fresh process costs
    # ~0.1 CPU-s (botocore loading S3's models), once per execution environment, not per report.
    s3_client()

    def stage() -> dict:
        requests.clear()
        context = _Context()
        ref = plan_app.handler(event, context)
        # The Maps as JoinNeeded? chooses them: RegroupPartitions only when the plan regroups,
        # JoinPartitions only when there are partitions (their items are written only then).
        regroup = [ref["regroupItems"]] if ref["regroups"] else []
        for items in [ref["readItems"], *regroup, *([ref["joinItems"]] if ref["partitions"] else [])]:
            for item in json.loads(s3.get_object(Bucket=MOTO_BUCKET, Key=items)["Body"].read()):
                offset = 0
                while offset is not None:
                    offset = part_app.handler({"plan": ref, "item": item, "offset": offset}, context)[
                        "offset"
                    ]
        packed = False
        while not packed:  # the PackParts loop: the state carries each step's cursor into the next
            step = process_app.handler({"reportPlan": ref, "pack": True}, context)
            ref = ref | {"packing": {name: step[name] for name in PackingCursor.model_fields}}
            packed = step["done"]
        done = process_app.handler({**event, "reportPlan": ref}, context)
        outcomes = {
            "succeeded": done["succeeded"],
            "retriable": done["failedRetriable"],
            "permanent": done["failedPermanent"],
            "requests": dict(sorted(requests.items())),
        }
        if ref["mode"] != "join":
            return outcomes
        # What the scatter wrote, for the PutObject count (one object per window since issue 23 §3).
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=MOTO_BUCKET, Prefix=f"{ref['prefix']}scatter"
        )
        scatter = sum(page.get("KeyCount", 0) for page in pages)
        return outcomes | {
            "partitions": ref["partitions"],
            "scatterObjects": scatter,
            "regroupObjects": ref["regroups"],
        }

    return stage, server


def report_part_runtime_environment() -> dict[str, str]:
    """The variables of ReportPartFunction's environment (template.yaml) that are read when its
    process starts - the allocators' settings - for the handler modes' processes, as Lambda starts
    the function's with them. PlanReport and ProcessReport run in the same process here, so they
    have them too."""
    from batchpipe.local.template import function_properties, load_template

    properties = function_properties(load_template(ROOT / "template.yaml"), "ReportPartFunction")
    variables = properties["Environment"]["Variables"]
    return {name: str(variables[name]) for name in RUNTIME_VARIABLES if name in variables}


#: What the C libraries read from the environment when the process starts (setting them later,
#: as HANDLER_ENV is set, would change nothing): glibc's malloc tunables, mimalloc's options.
RUNTIME_VARIABLES = ("GLIBC_TUNABLES", "MIMALLOC_PURGE_DELAY", "MIMALLOC_ALLOW_THP")


def outcome_counts(counts) -> dict:
    return {
        "succeeded": counts.succeeded,
        "retriable": counts.failed_retriable,
        "permanent": counts.failed_permanent,
    }


# --------------------------------------------------------------- optional: awswrangler and pandas


def missing_optional_packages() -> list[str]:
    import importlib.util

    return [name for name in OPTIONAL_PACKAGES if importlib.util.find_spec(name) is None]


def pandas_options() -> dict:
    """read_csv options for a results CSV, for pandas.read_csv and awswrangler.s3.read_csv alike.

    Every column a string, "" kept as "" (no NaN). ``lineterminator="\n"`` matters for awswrangler:
    without it, it opens the S3 object as text with universal newlines, which turns a quoted ``\r\n``
    (or ``\r``) inside a message into ``\n``; with it, nothing is translated. ``index_col=False``
    stops pandas from silently taking the first column as the index when a row has 8 fields.
    """
    return {
        "header": None,
        "names": RESULT_COLUMNS,
        "dtype": str,
        "keep_default_na": False,
        "na_filter": False,
        "index_col": False,
        "lineterminator": "\n",
        "chunksize": PANDAS_CHUNK_ROWS,
    }


def frame_rows(frame) -> Iterator:
    """One pandas chunk as ReportRows, the way batchpipe_core.report.batch_rows converts an Arrow batch.

    A column with one value throughout is repeated rather than converted per row; the HTTP status
    column is recognised with the same rule (per row only when a chunk mixes both orders); rows are
    built by ``map`` without a Python call per row.
    """
    from batchpipe_core.report import _HTTP_STATUS, ReportRow, _status_and_code

    rows = len(frame)
    if not rows:
        return iter(())
    bucket, key, version_id, status, fifth, sixth, message = (frame[name] for name in RESULT_COLUMNS)
    fifth_values = fifth.tolist()
    http_statuses: Iterable = list(map(_HTTP_STATUS.get, fifth_values))
    if None in http_statuses:  # the 6th column is the status in some or all rows: decide per row
        pairs = list(map(_status_and_code, fifth_values, sixth.tolist()))
        http_statuses = [pair[0] for pair in pairs]
        error_codes: Iterable = [pair[1] for pair in pairs]
    else:
        error_codes = _frame_values(sixth, rows)
    columns = zip(
        _frame_values(bucket, rows),
        key.tolist(),
        _frame_values(version_id, rows),
        _frame_values(status.str.lower(), rows),
        http_statuses,
        error_codes,
        _frame_values(message, rows),
        strict=False,  # constant columns are endless repeats; the key list sets the length
    )
    return map(functools.partial(tuple.__new__, ReportRow), columns)


def _frame_values(series, rows: int) -> Iterable:
    first = series.iat[0]
    if (series == first).all():
        return itertools.repeat(first, rows)
    return series.tolist()


def pandas_rows(files) -> Iterator:
    """ReportRows of local results files read by pandas.read_csv in chunks (awswrangler's parser)."""
    import pandas as pd

    for path in files:
        with open(path, "rb") as binary, pd.read_csv(binary, **pandas_options()) as chunks:
            for frame in chunks:
                yield from frame_rows(frame)


def awswrangler_rows(paths: list[str]) -> Iterator:
    """ReportRows of results files on S3 read by awswrangler.s3.read_csv in chunks."""
    import awswrangler as wr

    for frame in wr.s3.read_csv(paths, **pandas_options()):
        yield from frame_rows(frame)


def moto_s3(files):
    """Starts moto's in-process S3 and uploads the results files; returns (mock, client, keys)."""
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    import boto3
    from moto import mock_aws

    mock = mock_aws()
    mock.start()
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=MOTO_BUCKET)
    keys = []
    for path in files:
        key = f"job-bench/results/{path.name}"
        with open(path, "rb") as body:
            s3.put_object(Bucket=MOTO_BUCKET, Key=key, Body=body)
        keys.append(key)
    _release_freed_memory()  # else the uploads' freed heap hides the reading's growth in RSS
    return mock, s3, keys


def _release_freed_memory() -> None:
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the peak reads low, never high


def measure(mode: str, manifest_json: Path) -> dict:
    """Runs one mode in this (fresh) process and reports rows, seconds and peak RSS growth."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    # Imported before the RSS baseline and the timer, as pyarrow is for the baselines: a warm
    # function has its modules loaded (attempts and fanout bring Powertools and pydantic models,
    # 0.05 CPU-s that were inside the process modes' figures).
    from batchpipe_core import accounting, attempts, byte_window, fanout, report  # noqa: F401

    files = result_files(manifest_json)
    try:
        # Where pandas is installed, pyarrow imports it on the first pyarrow.compute.cast (~0.3 s,
        # once per process): imported before the baseline in every mode, as pyarrow is.
        import pandas  # noqa: F401
    except ImportError:
        pass
    mock = None
    if mode == "awswrangler-chunked":
        import awswrangler  # noqa: F401
    if mode in ("awswrangler-chunked", "parse-pyarrow-moto"):
        mock, s3, keys = moto_s3(files)  # uploading is not part of reading
    if mode in HANDLER_MODES:
        status = "Failed" if mode.startswith("handlers-join") else "Complete"
        if mode == "handlers-join-direct":
            os.environ["REGROUP_FAN_IN"] = DIRECT_FAN_IN
        stage, mock = handler_chain(
            manifest_json,
            status,
            in_process=mode == "handlers-inprocess",
            counted=mode != "handlers-uncounted",
        )
    server = mock if isinstance(mock, S3Server) else None
    rss_before = _current_rss_bytes()
    server_cpu_started = server.cpu_seconds() if server is not None else 0.0
    started, cpu_started = time.perf_counter(), time.process_time()
    detail: dict = {}
    if mode in ("parse-pyarrow", "parse-csv"):
        rows = sum(1 for _ in report_rows(files, mode.removeprefix("parse-")))
    elif mode in HANDLER_MODES:
        detail = stage()
        rows = detail["succeeded"] + detail["retriable"] + detail["permanent"]
    elif mode in ("process-pyarrow", "process-pyarrow-rows", "process-csv"):
        reader = "csv" if mode == "process-csv" else "pyarrow"
        with tempfile.TemporaryDirectory() as out:
            detail = process(
                result_entries(manifest_json), reader, Path(out), columns=mode == "process-pyarrow"
            )
        rows = sum(detail.values())
    elif mode in ("join", "join-in-memory"):
        from batchpipe_core.reconciliation import Reconciliation
        from batchpipe_core.report import ManifestRow, ReportRow, parse_manifest_rows

        manifest_csv = manifest_json.parent.parent / "manifest.csv"
        expected = sum(1 for _ in open(manifest_csv))
        # counting the manifest's lines is not part of the join
        started, cpu_started = time.perf_counter(), time.process_time()

        def not_run(row: ManifestRow) -> ReportRow:
            return ReportRow(row.bucket, row.key, row.version_id, "failed", None, "NotRun", "not run")

        with open(manifest_csv, newline="") as manifest_file, tempfile.TemporaryDirectory() as out:
            joined = Reconciliation(
                parse_manifest_rows(manifest_file),
                report_rows(files, "pyarrow"),
                absent=not_run,
                prefer=lambda earlier, later: later,
                expected_rows=expected,
                workdir=out,
                **({"memory_rows": 10 * expected} if mode == "join-in-memory" else {}),
            )
            detail = process_rows(joined, Path(out))
        rows = sum(detail.values())
    elif mode in ("pyarrow-stream", "pyarrow-stream-threads", "pyarrow-table"):
        names = ["bucket", "key", "version", "status", "http", "code", "message"]
        read_options = pacsv.ReadOptions(column_names=names, use_threads=mode != "pyarrow-stream")
        parse_options = pacsv.ParseOptions(newlines_in_values=True)
        convert_options = pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()))
        rows = 0
        for path in files:
            if mode != "pyarrow-table":
                with pacsv.open_csv(path, read_options, parse_options, convert_options) as reader:
                    for batch in reader:
                        rows += batch.num_rows
            else:
                rows += pacsv.read_csv(path, read_options, parse_options, convert_options).num_rows
    elif mode == "pandas-stream":
        import pandas as pd

        rows = 0
        for path in files:
            with open(path, "rb") as binary, pd.read_csv(binary, **pandas_options()) as chunks:
                for frame in chunks:
                    rows += len(frame)
    elif mode == "pandas-chunked":
        rows = sum(1 for _ in pandas_rows(files))
    elif mode == "awswrangler-chunked":
        rows = sum(1 for _ in awswrangler_rows([f"s3://{MOTO_BUCKET}/{key}" for key in keys]))
    elif mode == "parse-pyarrow-moto":
        from batchpipe_core.report import ReportManifest, ResultFile, iter_report_rows

        manifest = ReportManifest(
            bucket=MOTO_BUCKET,
            key="job-bench/manifest.json",
            results=tuple(ResultFile("", MOTO_BUCKET, key) for key in keys),
            schema="",
        )
        rows = sum(1 for _ in iter_report_rows(s3, manifest, "pyarrow"))
    else:
        raise SystemExit(f"unknown mode {mode}")
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    if server is not None:
        detail["s3CpuSeconds"] = server.cpu_seconds() - server_cpu_started
    if mock is not None:
        mock.stop()
    return {
        "mode": mode,
        "rows": rows,
        "seconds": seconds,
        "cpuSeconds": cpu_seconds,
        "peakMiB": max(0, _peak_rss_bytes() - rss_before) / 2**20,
        **detail,
    }


def _peak_rss_bytes() -> int:
    """VmHWM: this process image's peak RSS (ru_maxrss would carry the parent's over fork/exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _current_rss_bytes() -> int:
    """RSS now, after resetting the peak (VmHWM) to it, so the peak read later is the measured phase's."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass  # without the reset, the peak may be the imports'; growth then reads low, never high
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------------------ driver


def run(
    rows: int,
    keep: bool,
    modes: list[str],
    as_json: bool,
    repeat: int = 1,
    reuse: Path | None = None,
    fail_rate: float = FAIL_RATE,
) -> list[dict]:
    """Generates a report of ``rows`` rows (or reuses one kept earlier) and measures each mode; a
    table, or JSON lines on stdout."""
    say = functools.partial(print, file=sys.stderr if as_json else sys.stdout)
    directory = reuse or Path(tempfile.mkdtemp(prefix=f"batchpipe-bench-{rows}-"))
    keep = keep or reuse is not None
    try:
        started = time.perf_counter()
        manifest_json = directory / "job-bench" / "manifest.json"
        if reuse is None:
            generate(directory, rows, fail_rate=fail_rate)
        size = sum(p.stat().st_size for p in result_files(manifest_json))
        say(
            f"\n{rows:,} rows: {size / 2**20:,.0f} MiB of results CSV in {len(result_files(manifest_json))} files "
            f"(generated in {time.perf_counter() - started:.0f} s)"
        )
        runs: dict[str, list[dict]] = {}
        for _ in range(repeat):  # modes interleaved, so a busy spell on a shared machine hits all alike
            for mode in modes:
                if mode == "join-in-memory" and rows > IN_MEMORY_JOIN_MAX_ROWS:
                    continue  # ~0.7 GB per million rows: the reason the join spills
                child = subprocess.run(
                    [sys.executable, __file__, "--measure", mode, str(manifest_json)],
                    check=True,
                    capture_output=True,
                    text=True,
                    env=os.environ | (report_part_runtime_environment() if mode in HANDLER_MODES else {}),
                )
                runs.setdefault(mode, []).append(json.loads(child.stdout.strip().splitlines()[-1]))
        results = []
        for mode, measured in runs.items():
            result = dict(sorted(measured, key=lambda r: r["cpuSeconds"])[len(measured) // 2])  # median run
            result["rows_per_cpu_s"] = round(result["rows"] / result["cpuSeconds"])
            result["peak_mib"] = round(max(r["peakMiB"] for r in measured), 1)
            result["runs_rows_per_cpu_s"] = [round(r["rows"] / r["cpuSeconds"]) for r in measured]
            # Ratios within a round (the modes ran one after another), then their median: a busy
            # spell on a shared machine slows a round's modes alike.
            for baseline in ("pyarrow-stream", "pyarrow-stream-threads"):
                if baseline in runs:
                    ratios = sorted(
                        (r["rows"] / r["cpuSeconds"]) / (b["rows"] / b["cpuSeconds"])
                        for r, b in zip(measured, runs[baseline], strict=False)
                    )
                    result[f"vs_{baseline.replace('-', '_')}"] = round(ratios[len(ratios) // 2], 3)
                    result[f"runs_vs_{baseline.replace('-', '_')}"] = [round(x, 3) for x in ratios]
            result["mode"] = mode
            results.append(result)
            if as_json:
                print(json.dumps(result), flush=True)
        say(
            f"{'mode':<23}{'rows':>12}{'wall s':>8}{'CPU s':>8}{'rows/CPU-s':>12}"
            f"{'vs 1-thread':>12}{'vs threads':>11}{'peak MiB':>10}{'S3 CPU s':>10}"
        )
        for r in results:
            s3_cpu = f"{r['s3CpuSeconds']:>10.2f}" if "s3CpuSeconds" in r else f"{'-':>10}"
            say(
                f"{r['mode']:<23}{r['rows']:>12,}{r['seconds']:>8.2f}{r['cpuSeconds']:>8.2f}"
                f"{r['rows_per_cpu_s']:>12,}{r.get('vs_pyarrow_stream', float('nan')):>11.2f}x"
                f"{r.get('vs_pyarrow_stream_threads', float('nan')):>10.2f}x{r['peak_mib']:>10.1f}{s3_cpu}"
            )
        return results
    finally:
        if keep:
            say(f"kept {directory}")
        else:
            shutil.rmtree(directory)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--10m", dest="ten_million", action="store_true", help="also run 10M rows")
    parser.add_argument("--rows", type=int, help="run this many rows instead")
    parser.add_argument(
        "--fail-rate",
        type=float,
        default=FAIL_RATE,
        help="share of failed tasks in the generated report (default 0.05; half retriable, half permanent)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per mode and size on stdout (mode, rows, rows_per_cpu_s, peak_mib, ...); "
        "the table goes to stderr",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per mode, interleaved; the median (CPU s) is shown, peak MiB the highest",
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        metavar="DIR",
        help="measure a report kept by an earlier --keep run (its --rows)",
    )
    parser.add_argument("--modes", help="comma-separated modes to run (default: all that can run)")
    parser.add_argument("--measure", nargs=2, metavar=("MODE", "MANIFEST_JSON"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--tls",
        action="store_true",
        help="handler modes: serve S3 over HTTPS, as AWS does (a self-signed certificate; every "
        "request pays a TLS handshake, as moto's server closes each connection)",
    )
    parser.add_argument("--serve-s3", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_s3:
        serve_s3(args.tls)
        return
    if args.tls:
        os.environ[TLS_ENVIRONMENT] = "1"  # read by the --measure children
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]))))
        return
    import platform

    say = functools.partial(print, file=sys.stderr if args.json else sys.stdout)
    say(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    if args.modes:
        modes = args.modes.split(",")
        unknown = sorted(set(modes) - set(MODES + OPTIONAL_MODES))
        if unknown:
            parser.error(
                f"--modes: unknown {', '.join(unknown)}; choose from {', '.join(MODES + OPTIONAL_MODES)}"
            )
    else:
        missing = missing_optional_packages()
        if missing:
            say(f"skipping {', '.join(OPTIONAL_MODES)}: {', '.join(missing)} not importable")
        modes = MODES + ([] if missing else OPTIONAL_MODES)
    sizes = [args.rows] if args.rows else [1_000_000] + ([10_000_000] if args.ten_million else [])
    for rows in sizes:
        run(rows, args.keep, modes, args.json, max(1, args.repeat), args.reuse, args.fail_rate)


if __name__ == "__main__":
    main()
