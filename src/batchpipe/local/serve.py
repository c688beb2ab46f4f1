"""`batchpipe local serve`: the embedded AWS as an HTTP endpoint on this machine, until stopped.

Every request a boto3 client sends to the endpoint (``--endpoint-url`` or ``AWS_ENDPOINT_URL``) is
answered by the same in-process emulation that `local run` and the tests use: the request is turned
back into the AWS URL it stands for (service and region from its SigV4 credential scope) and handed
to moto's request dispatcher, which the project's S3 Batch Operations engine and Athena hook into.
So the operator commands (`start`, `watch`, `runs`, `summary`, `rerun`) run unchanged against it.

CloudFormation is the one service answered here rather than by moto: the served stack is not
created through CloudFormation (SAM transforms are not emulated), but `DescribeStacks` for its name
returns template.yaml's Outputs, resolved, as a deployed stack's would.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import json
import re
import signal
import socket
import sys
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from botocore.awsrequest import AWSPreparedRequest
from botocore.compat import HTTPHeaders
from moto.core import models as moto_models
from moto.core.serialize import SerializationContext, get_serializer_class
from moto.core.utils import get_service_model

from batchpipe.inputs import UsageError

# A request signed with SigV4 names its region and signing service in the credential scope, in the
# Authorization header or, for a presigned URL, in X-Amz-Credential.
_SCOPE = re.compile(r"Credential=[^/,&]+/\d{8}/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)/aws4_request")
_S3CONTROL_PATH = "/v20180820/"
_GLOBAL_SERVICES = {"iam": "iam.amazonaws.com"}


class NotAnAwsRequest(Exception):
    pass


#: The largest request body the endpoint reads (413 above it, before reading it). The emulator holds
#: a body in memory several times over (moto copies it), so a 1 GiB PUT needed 2.7 GiB; boto3 and
#: the AWS CLI upload anything over 8 MiB in 8 MiB parts, far below this.
MAX_BODY_BYTES = 64 * 1024 * 1024
#: A body over 8 MiB (more than boto3's and the AWS CLI's part size) is read and handled by at most
#: two requests at once; others wait their turn. One 64 MiB body raises the server's peak RSS by
#: about 200 MiB (benchmarks/bench_serve_body.py), so concurrent clients cannot multiply that.
LARGE_BODY_BYTES = 8 * 1024 * 1024
LARGE_BODIES = threading.BoundedSemaphore(2)


class Refused(Exception):
    """A request the endpoint answers with a 4xx and one line, before any emulated service sees it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def aws_url(path: str, headers: Any, served_host: str) -> str:
    """The AWS URL a request to the local endpoint stands for.

    Only a request with a SigV4 Authorization header is one: a page in a browser can send a form
    POST or a presigned-style URL (credential scope in the query) to 127.0.0.1 from any site, but
    not an Authorization header without a CORS preflight, which this endpoint never grants.
    """
    scope = _SCOPE.search(headers.get("Authorization", ""))
    if scope is None or not headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 "):
        raise NotAnAwsRequest(
            "unsigned request: the embedded AWS answers requests with a SigV4 Authorization header "
            "(boto3, AWS CLI); presigned URLs and browser forms are refused"
        )
    region, service = scope["region"], scope["service"]
    if service == "s3" and path.startswith(_S3CONTROL_PATH):
        account = headers.get("x-amz-account-id", "")
        if not re.fullmatch(r"\d{12}", account):
            raise NotAnAwsRequest("s3control request without an x-amz-account-id header")
        host = f"{account}.s3-control.{region}.amazonaws.com"
    elif service == "s3":
        # Virtual-hosted style against a local name (bucket.localhost:port) becomes AWS's own.
        request_host = headers.get("Host", "")
        bucket = request_host[: -len(served_host) - 1] if request_host.endswith("." + served_host) else ""
        host = f"{bucket}.s3.amazonaws.com" if bucket else "s3.amazonaws.com"
    else:
        host = _GLOBAL_SERVICES.get(service, f"{service}.{region}.amazonaws.com")
    return f"https://{host}{path}"


class StackOutputs:
    """Answers CloudFormation DescribeStacks for the served stack from template.yaml's Outputs."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.created = datetime.now(UTC)
        self.operation = get_service_model("cloudformation").operation_model("DescribeStacks")

    def outputs(self) -> list[dict[str, str]]:
        return [
            {"OutputKey": key, "OutputValue": str(self.stack.resolver.resolve(output["Value"]))}
            for key, output in self.stack.template.get("Outputs", {}).items()
        ]

    def answer(self, body: bytes) -> tuple[int, dict, str] | None:
        params = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if params.get("Action") != "DescribeStacks":
            return None
        serializer = get_serializer_class("cloudformation", "query")(
            self.operation, context=SerializationContext(request_id=uuid.uuid4().hex)
        )
        name = params.get("StackName")
        if name not in (self.stack.stack_name, self.stack.resolver.pseudo["AWS::StackId"]):
            error = _ValidationError(f"Stack with id {name} does not exist")
            response = serializer.serialize(error)
            return 400, response["headers"], response["body"]
        stack = {
            "StackName": self.stack.stack_name,
            "StackId": self.stack.resolver.pseudo["AWS::StackId"],
            "CreationTime": self.created,
            "StackStatus": "CREATE_COMPLETE",
            "Outputs": self.outputs(),
        }
        response = serializer.serialize({"Stacks": [stack]})
        return response["status_code"], response["headers"], response["body"]


class _ValidationError(Exception):
    """CloudFormation's answer for an unknown stack (shape: the query protocol's error)."""

    code = "ValidationError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _loopback_name(name: str) -> bool:
    """A Host name that only this machine answers to: a loopback address, localhost, *.localhost."""
    name = name.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def check_request_host(host_header: str | None, served_host: str, port: int) -> None:
    """The Host header must name this endpoint: a DNS-rebinding page reaches 127.0.0.1 under its own
    name (Host: attacker.example), which is refused, as is a missing Host or another port."""
    if not host_header:
        raise Refused(400, "no Host header: the embedded AWS answers HTTP/1.1 requests to its own address")
    name, _, given_port = (
        host_header.rpartition(":") if not host_header.endswith("]") else (host_header, "", "")
    )
    if not name or (given_port and not given_port.isdigit()):
        name, given_port = host_header, ""
    if given_port and int(given_port) != port:
        raise Refused(403, f"Host {host_header[:100]!r} is not this endpoint (port {port})")
    bare = name.lower().rstrip(".")
    served = served_host.lower().strip("[]")
    if not (_loopback_name(bare) or bare.strip("[]") == served or bare.endswith("." + served)):
        raise Refused(
            403, f"Host {host_header[:100]!r} is not this endpoint: it answers only to its loopback address"
        )


def origin_form(target: str, host_header: str | None) -> str:
    """The path of a request sent to this endpoint as to an HTTP proxy (absolute-form, RFC 9112
    section 3.2.2: ``PUT http://123456789012.127.0.0.1:4566/v20180820/... HTTP/1.1``).

    The AWS CLI's s3control commands put the account ID in front of the endpoint's host, a name no
    resolver knows; with ``HTTP_PROXY`` set to the endpoint the client sends the request here without
    resolving it (docs/LOCAL.md). Only a request for this endpoint itself is answered: the URL's
    authority must be the Host header (which check_request_host then holds to this endpoint); the
    endpoint never forwards anything anywhere.
    """
    if target.startswith("/") or target == "*":
        return target
    scheme, _, rest = target.partition("://")
    authority, slash, path = rest.partition("/")
    if scheme.lower() not in ("http", "https") or not slash:
        raise Refused(400, f"request target {target[:100]!r} is neither a path nor an http:// URL")
    if authority.lower() != (host_header or "").lower():
        raise Refused(
            403,
            f"request for {authority[:100]!r} through this endpoint: it answers for itself only, it is no proxy",
        )
    return "/" + path


def request_length(headers: Any) -> int:
    """The body's length from Content-Length: digits only, at most MAX_BODY_BYTES; no chunked bodies."""
    if headers.get("Transfer-Encoding"):
        raise Refused(411, "Transfer-Encoding is not supported: send a Content-Length")
    text = headers.get("Content-Length")
    if text is None:
        return 0
    if not (text.isascii() and text.isdigit()):
        raise Refused(400, f"Content-Length {text[:40]!r} is not a number of bytes")
    length = int(text)
    if length > MAX_BODY_BYTES:
        raise Refused(
            413,
            f"a {length}-byte body is more than the embedded AWS reads in one request ({MAX_BODY_BYTES}); "
            "upload it in parts (boto3's upload_file and the AWS CLI do so above 8 MiB)",
        )
    return length


def refusal_body(refused: Refused, headers: Any) -> tuple[dict[str, str], bytes]:
    """The refusal's one line, as S3's XML error when the request is signed for S3 (so boto3 and the
    AWS CLI print it: "An error occurred (EntityTooLarge) ...: <the line>"), else as plain text."""
    scope = _SCOPE.search(headers.get("Authorization", ""))
    if scope is None or scope["service"] != "s3":
        return {"Content-Type": "text/plain"}, str(refused).encode()
    code = "EntityTooLarge" if refused.status == 413 else "InvalidRequest"
    xml = f"<Error><Code>{code}</Code><Message>{escape(str(refused))}</Message></Error>"
    return {"Content-Type": "application/xml"}, xml.encode()


def make_handler(
    stack: Any, served_host: str, before_request: Any = None, port: int | None = None
) -> type[BaseHTTPRequestHandler]:
    cloudformation = StackOutputs(stack)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per request would drown the console

        def _checked_length(self) -> int | None:
            """The body's length, or None after answering a refusal (the body, if any, unread)."""
            try:
                self.path = origin_form(self.path, self.headers.get("Host"))
                check_request_host(
                    self.headers.get("Host"), served_host, port or self.server.server_address[1]
                )
                return request_length(self.headers)
            except Refused as exc:
                self.close_connection = True
                self._send(exc.status, *refusal_body(exc, self.headers))
                return None

        def handle_expect_100(self) -> bool:
            # boto3 sends "Expect: 100-continue" with S3 bodies and waits: a refusal goes out as the
            # final answer instead of "100 Continue" (RFC 9110, 10.1.1), so the client never sends
            # the body and reads the one line.
            if self._checked_length() is None:
                return False
            return super().handle_expect_100()

        def _answer(self) -> None:
            length = self._checked_length()
            if length is None:
                return
            with LARGE_BODIES if length > LARGE_BODY_BYTES else contextlib.nullcontext():
                body = self.rfile.read(length) if length else b""
                try:
                    url = aws_url(self.path, self.headers, served_host)
                except NotAnAwsRequest as exc:
                    self._send(400, {"Content-Type": "text/plain"}, str(exc).encode())
                    return
                try:
                    self._dispatch(url, body)
                except Exception as exc:  # noqa: BLE001 - one line to the client, never a traceback
                    self.close_connection = True
                    self._send(
                        500,
                        {"Content-Type": "text/plain"},
                        f"the embedded AWS failed: {type(exc).__name__}".encode(),
                    )

        def _dispatch(self, url: str, body: bytes) -> None:
            if before_request is not None:
                before_request()
            answered = None
            if url.startswith("https://cloudformation."):
                answered = cloudformation.answer(body)
            if answered is None:
                headers = HTTPHeaders()
                for key, value in self.headers.items():
                    headers[key] = value
                request = AWSPreparedRequest(
                    method=self.command, url=url, headers=headers, body=body, stream_output=False
                )
                answered = moto_models.botocore_stubber.process_request(request)
            if answered is None:
                self._send(
                    501, {"Content-Type": "text/plain"}, f"the embedded AWS does not serve {url}".encode()
                )
                return
            status, headers, content = answered
            if isinstance(content, str):
                content = content.encode("utf-8")
            elif content is None:
                content = b""
            elif not isinstance(content, bytes):
                content = b"".join(content)
            self._send(status, headers, content)

        def _send(self, status: int, headers: dict, content: bytes) -> None:
            self.send_response(int(status))
            for key, value in (headers or {}).items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                    self.send_header(key, str(value))
            self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(content)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _answer

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            # http.server's own answer to malformed HTTP (bad request line, too-long header): a plain
            # 4xx without its HTML page; the connection closes.
            self.close_connection = True
            self.request_version = "HTTP/1.1"  # an unparsed line reads as HTTP/0.9, which has no status line
            self._send(
                code, {"Content-Type": "text/plain"}, (message or "bad request").encode("utf-8", "replace")
            )

    return Handler


class FaultsFile:
    """The faults file is read again when it changes, so a rehearsal can 'fix the cause' between runs."""

    def __init__(self, path: Path | None, engine: Any, load: Any) -> None:
        self.path, self.engine, self.load = path, engine, load
        self.mtime = path.stat().st_mtime_ns if path else None
        self.lock = threading.Lock()

    def refresh(self) -> None:
        if self.path is None:
            return
        with self.lock:
            try:
                mtime = self.path.stat().st_mtime_ns
            except OSError:
                return
            if mtime == self.mtime:
                return
            self.mtime = mtime
            try:
                rules = self.load(str(self.path))
                from .s3batch.faults import FaultInjector

                self.engine.faults = FaultInjector(rules)
            except (UsageError, ValueError, TypeError) as exc:
                print(f"batchpipe: faults file {self.path} not reloaded: {exc}", file=sys.stderr, flush=True)
                return
            print(f"faults reloaded from {self.path}: {len(rules)} rule(s)", flush=True)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-request is not the operator's problem: no traceback on stderr.
        pass


def bind(host: str, port: int) -> ThreadingHTTPServer:
    """The listening server on ``host`` (IPv4 or IPv6 loopback), or one line why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("Server", (_Server,), {"address_family": family})
    try:
        return server_class((host, port), BaseHTTPRequestHandler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"--port {port}: already in use on {host}; stop what listens there or pick another"
            ) from None
        raise UsageError(
            f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})"
        ) from None


def check_host(host: str) -> str:
    """The emulator answers anyone who reaches it without credentials: it listens on loopback only."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise UsageError(f"--host {host[:100]!r}: the embedded AWS listens on loopback only (127.0.0.1, ::1)")
    return host


def local_serve(args: argparse.Namespace) -> int:
    from .outputs import lambda_logs_to, prepare_out, write_outputs
    from .run import populate, read_faults, stack_parameters, world_of
    from .stack import LocalStack, seconds_per_long_wait

    host = check_host(args.host)
    if args.port > 65535:
        raise UsageError(f"--port {args.port}: a TCP port is 0-65535 (0 picks a free one)")
    faults_path = Path(args.faults) if args.faults else None
    faults = read_faults(args.faults) if args.faults else []
    world, layout = world_of(args)
    out = Path(args.out)
    prepare_out(out)
    with (
        lambda_logs_to(out / "lambda-logs.jsonl"),
        LocalStack(
            parameters=stack_parameters(world, layout),
            # The job waits (JobWaitTimeoutSeconds) last --wait-timeout real seconds.
            timeout_scale=seconds_per_long_wait(args.wait_timeout),
            stack_name=args.stack_name,
            faults=faults,
            # Waits take no time unless asked: then 1/speed of it (--speed 1 is real time).
            time_scale=1 / args.speed if args.speed else 0.0,
        ) as stack,
    ):
        server = bind(host, args.port)  # before seeding: a port in use is known at once
        port = server.server_address[1]
        count = populate(stack, world, layout, args, sys.stdout)
        reload_faults = FaultsFile(faults_path, stack.engine, read_faults)
        server.RequestHandlerClass = make_handler(stack, host, reload_faults.refresh, port)
        endpoint = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        print(
            f"serving stack {stack.stack_name!r} on the embedded AWS at {endpoint} "
            f"({count} objects in s3://{world.source_bucket}); Ctrl-C stops it\n"
            f"  export AWS_ENDPOINT_URL={endpoint} AWS_REGION={stack.region} AWS_DEFAULT_REGION={stack.region} "
            "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing\n"
            f"  batchpipe start --stack {stack.stack_name} --spec examples/tagging-replace.json --watch\n"
            f"  the AWS CLI's s3control commands: HTTP_PROXY={endpoint} aws s3control list-jobs "
            f"--account-id {stack.account_id}\n"
            f"  {_pace(args.speed)}",
            flush=True,
        )
        # SIGTERM (a test fixture, systemd, `kill`) stops it as Ctrl-C does.
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
            summaries = _summaries(stack)
            write_outputs(stack, out, {"runs": summaries}, exclude_buckets={stack.pipeline_bucket})
            print(f"stopped; {len(summaries)} run(s), everything is under {out}/", flush=True)
    return 0


def _pace(speed: float | None) -> str:
    if not speed:
        return "Wait states and retry intervals take no time (--speed N rehearses them at N times real time)"
    if speed == 1:
        return "Wait states and retry intervals take their real time"
    return f"Wait states and retry intervals take 1/{speed:g} of their time (a 300 s wait: {300 / speed:g} s)"


def _summaries(stack: Any) -> list[Any]:
    sfn = stack.client("stepfunctions")
    runs = []
    for execution in sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]:
        output = sfn.describe_execution(executionArn=execution["executionArn"]).get("output")
        runs.append(
            json.loads(output)
            if output
            else {"executionId": execution["executionArn"], "status": execution["status"]}
        )
    return runs
