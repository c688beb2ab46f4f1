"""Every function of template.yaml, built by `sam build` and run by `sam local invoke` in a Lambda
container, with its event file from events/, against the embedded AWS served by `batchpipe local serve`.

What is real here: the build (SAM's own, for the template's runtime, the ArrowLayer included), the
container (SAM's Runtime Interface Emulator on a locally built base image, tests/samlocal/setup.sh),
the handler code as deployed, and every AWS call it makes, answered by the served engine. A reference
run of the pipeline on the served stack first leaves the state the events name (a manifest, a job, its
completion report); each event file is then filled with that run's names (its execution, bucket, job,
report) where the file's own sample names stand, so the invocation acts on things that exist.

Traffic stays on this machine: the containers sit on a bridge network this test creates and reach the
served endpoint (which listens on loopback only) through a relay on that network's gateway address.

`make test` runs this file with the rest (`make sam-local` runs it alone). Where no container engine
can be started (no root, no apt, no Docker) it skips, saying why; under CI=true it fails instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config

from ..sam import sam_env
from ..serving import serving

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TEMPLATE = REPO / "template.yaml"
# Under .aws-sam/ (ignored by git): kept between runs so a second run rebuilds only what changed.
WORK = REPO / ".aws-sam" / "samlocal"
REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "batchpipe"
# The served endpoint's name inside the containers (a hosts entry for the relay's address): a
# *.localhost name, one of those the endpoint answers to (it refuses other Host headers), and one
# that begins with "localhost", which moto's S3 takes as a path-style request (for a name like
# aws.localhost it would read a bucket "aws" from the Host header, as for bucket.s3.amazonaws.com).
ENDPOINT_NAME = "localhost.localhost"
# In the base image (image/aws-config): path-style S3 requests, so no hosts entry per bucket is needed.
AWS_CONFIG_FILE = "/etc/batchpipe-samlocal/aws-config"

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sam-local")]

# Seconds the set-up and `sam build` took in this session, and each invocation (function, seconds):
# every test's report carries them, and tests/conftest.py prints them at the end of the run.
SECONDS: dict[str, float] = {}
INVOCATIONS: list[tuple[str, float]] = []


@pytest.fixture(autouse=True)
def _report_seconds(record_property: Any) -> Iterator[None]:
    yield
    record_property("samlocal_seconds", {**SECONDS, "invocations": list(INVOCATIONS)})


def _template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=yaml.BaseLoader)


RUNTIME = _template()["Parameters"]["PythonRuntime"]["Default"]
# The template deploys arm64 by default; a container runs natively only on the machine's own
# architecture (no emulator is installed), so that is what is built and invoked here.
ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[
    platform.machine().lower()
]
IMAGE = f"batchpipe-samlocal/{RUNTIME.replace('python', 'python:')}-{ARCH}"
FUNCTIONS = sorted(
    logical_id
    for logical_id, resource in _template()["Resources"].items()
    if resource["Type"] == "AWS::Serverless::Function"
)


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _run(command: list[Any], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, check=False, **kwargs)


def _failed(result: subprocess.CompletedProcess[str], tail: int = 60) -> str:
    lines = (result.stdout + result.stderr).strip().splitlines()
    return f"{' '.join(result.args)}\nexit {result.returncode}:\n" + "\n".join(lines[-tail:])


# ---------------------------------------------------------------- set-up: engine, image, build
@pytest.fixture(scope="module")
def engine() -> None:
    """The container engine running and the base image built (tests/samlocal/setup.sh)."""
    started = time.monotonic()
    result = _run(
        ["bash", HERE / "setup.sh", RUNTIME, ARCH, IMAGE],
        env={**os.environ, "PYTHON": sys.executable},
        timeout=900,
    )
    if result.returncode == 10:
        _unavailable(result.stderr.strip().splitlines()[-1])
    assert result.returncode == 0, _failed(result)
    SECONDS["set-up"] = time.monotonic() - started


@pytest.fixture(scope="module")
def sam_cli() -> Path:
    path = Path(os.environ.get("SAM_CLI", REPO / ".venv-sam" / "bin" / "sam")).absolute()
    if not path.is_file():
        _unavailable(f"SAM CLI not found at {path}: run `make sam-venv` or set SAM_CLI")
    return path


@pytest.fixture(scope="module")
def built(engine: None, sam_cli: Path) -> Path:
    """`sam build` of template.yaml for RUNTIME and ARCH, then the template `sam local invoke` reads:
    the built one with AWS_ENDPOINT_URL declared among the functions' variables.

    --env-vars only sets variables a template declares, and template.yaml must not declare an endpoint
    (it would ship a knob that sends every AWS call elsewhere), so the declaration lives only in this
    copy of the *built* template; what was built is template.yaml's own.
    """
    started = time.monotonic()
    build_dir = WORK / "build"
    # What the build is made from: when none of it changed since the last build, that build stands
    # (even SAM's incremental build copies ~0.8 GB of dependencies again, minutes on a busy machine).
    stamp = WORK / "build.inputs"
    inputs = _build_inputs_hash()
    if not (stamp.is_file() and stamp.read_text() == inputs and (build_dir / "template.yaml").is_file()):
        stamp.unlink(missing_ok=True)
        _sam_build(sam_cli, build_dir)
        stamp.write_text(inputs)
    SECONDS["sam build"] = time.monotonic() - started
    built_template = yaml.safe_load((build_dir / "template.yaml").read_text())
    variables = built_template["Globals"]["Function"]["Environment"]["Variables"]
    variables["AWS_ENDPOINT_URL"] = ""
    variables["AWS_CONFIG_FILE"] = ""
    local = build_dir / "template-samlocal.json"
    local.write_text(json.dumps(built_template, indent=1))
    return local


def _build_inputs_hash() -> str:
    """A hash of everything `sam build` reads here: the template, the functions' and layers' folders
    (code and requirements), SAM CLI's pins, the python3.X command and the base image it runs."""
    files = [TEMPLATE, HERE / "python-in-image.sh", REPO / "requirements" / "sam-constraints.txt"]
    for folder in ("functions", "layers"):
        files += sorted(
            path
            for path in (REPO / folder).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
        )
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(REPO)}\0".encode() + path.read_bytes() + b"\0")
    image_id = _run(["docker", "image", "inspect", "--format", "{{.Id}}", IMAGE]).stdout.strip()
    digest.update(f"{RUNTIME} {ARCH} {image_id}".encode())
    return digest.hexdigest()


def _sam_build(sam_cli: Path, build_dir: Path) -> None:
    shim_dir = WORK / "bin"
    shim_dir.mkdir(parents=True, exist_ok=True)
    shim = shim_dir / RUNTIME
    shim.unlink(missing_ok=True)
    shim.symlink_to(HERE / "python-in-image.sh")
    env = sam_env(REGION)
    env.update(
        PATH=f"{shim_dir}{os.pathsep}{env['PATH']}",
        BATCHPIPE_SAMLOCAL_IMAGE=IMAGE,
        BATCHPIPE_SAMLOCAL_ROOT=str(REPO),
    )
    result = _run(
        [
            sam_cli,
            "build",
            "--template-file",
            TEMPLATE,
            "--build-dir",
            build_dir,
            "--cache-dir",
            WORK / "cache",
            "--cached",
            "--parameter-overrides",
            f"Architecture={ARCH}",
        ],
        # SAM keeps the dependencies of its incremental builds in .aws-sam/deps under the working
        # directory: here, with the rest of this test's build.
        cwd=WORK,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, _failed(result)


# ---------------------------------------------------------------- the served embedded AWS
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`batchpipe local serve` in a child process on a free loopback port; yields its endpoint."""
    tmp = tmp_path_factory.mktemp("serve")
    with serving("--objects", 40, "--out", tmp / "out", "--wait-timeout", 30, cwd=tmp) as served:
        yield served.endpoint


class Relay:
    """Accepts TCP connections on one address and pipes each to the served endpoint on loopback.

    The served endpoint listens on loopback only, which a container cannot reach; the relay listens on
    the gateway address of the test's own bridge network, which only that network's containers reach.
    """

    def __init__(self, listen_host: str, target: tuple[str, int]) -> None:
        self.target = target
        # The served port number: the endpoint answers only requests whose Host names its own port.
        self.server = socket.create_server((listen_host, target[1]))
        self.address = self.server.getsockname()[:2]
        self.thread = threading.Thread(target=self._accept, name="samlocal-relay", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.target, timeout=30)
            except OSError:
                client.close()
                continue
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        # One direction ended: pass the end on, and let the other direction's thread finish.
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.server.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _bridge_interface() -> str:
    """The host interface of the test's bridge: a name of ours (at most 15 characters, Linux's
    limit), which the egress count matches on."""
    return f"bpsl{os.getpid()}"[:15]


@pytest.fixture(scope="module")
def network(engine: None) -> Iterator[tuple[str, str]]:
    """A bridge network of this test's own (name, gateway address) for the function containers."""
    # Networks an interrupted run left behind (Docker has room for a few dozen bridge networks): those
    # whose process (the number in the name) is gone, never another live run's.
    names = _run(["docker", "network", "ls", "--format", "{{.Name}}", "--filter", "name=batchpipe-samlocal-"])
    leftovers = [n for n in names.stdout.split() if not _alive(int(n.rsplit("-", 1)[-1]))]
    if leftovers:
        _run(["docker", "network", "rm", *leftovers])
    name = f"batchpipe-samlocal-{os.getpid()}"
    option = f"com.docker.network.bridge.name={_bridge_interface()}"
    created = _run(["docker", "network", "create", "--driver", "bridge", "--opt", option, name])
    assert created.returncode == 0, _failed(created)
    try:
        inspected = _run(["docker", "network", "inspect", "--format", "{{json .IPAM.Config}}", name])
        gateway = json.loads(inspected.stdout)[0]["Gateway"]
        yield name, gateway
    finally:
        _run(["docker", "network", "rm", name])


class EgressCount:
    """Packets the function containers sent towards any other network while the tests ran.

    SAM starts each function container on Docker's default bridge (its own port to the emulator) and
    then joins it to the test's network, so both bridges are counted: one iptables rule per bridge in
    DOCKER-USER (the chain Docker leaves to the administrator, first in FORWARD) matches a packet that
    came in from the bridge and is routed out of it, to the machine's network or beyond; it counts and
    lets it go on as before (RETURN). Packets for the host's own addresses (the relay on the gateway,
    SAM's published port) are delivered locally, never forwarded, so they are not counted; nor is
    traffic between containers of one bridge.
    """

    def __init__(self, interfaces: list[str]) -> None:
        self.tag = f"batchpipe-samlocal-{os.getpid()}"
        self.rules = [
            ["DOCKER-USER", "-i", i, "!", "-o", i, "-m", "comment", "--comment", self.tag, "-j", "RETURN"]
            for i in interfaces
        ]
        for rule in self.rules:
            added = _run(["iptables", "-I", *rule])
            assert added.returncode == 0, _failed(added)

    def packets(self) -> int:
        listed = _run(["iptables", "-L", "DOCKER-USER", "-v", "-x", "-n"])
        assert listed.returncode == 0, _failed(listed)
        return sum(int(line.split()[0]) for line in listed.stdout.splitlines() if f"/* {self.tag} */" in line)

    def remove(self) -> None:
        for rule in self.rules:
            _run(["iptables", "-D", *rule])


@pytest.fixture(scope="module")
def egress(network: tuple[str, str]) -> Iterator[EgressCount]:
    chain = _run(["iptables", "-L", "DOCKER-USER", "-n"])
    if chain.returncode != 0:
        _unavailable(f"cannot count the containers' packets (iptables DOCKER-USER): {_failed(chain, 3)}")
    interfaces = [_bridge_interface()]
    default_bridge = _run(
        [
            "docker",
            "network",
            "inspect",
            "--format",
            '{{index .Options "com.docker.network.bridge.name"}}',
            "bridge",
        ]
    )
    interfaces.append(default_bridge.stdout.strip() or "docker0")
    count = EgressCount(interfaces)
    try:
        yield count
    finally:
        count.remove()


@pytest.fixture(scope="module")
def endpoint_for_containers(served: str, network: tuple[str, str]) -> Iterator[str]:
    host, port = served.removeprefix("http://").rsplit(":", 1)
    relay = Relay(network[1], (host, int(port)))
    try:
        yield f"http://{ENDPOINT_NAME}:{relay.address[1]}"
    finally:
        relay.close()


def _client(endpoint: str, service: str) -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 2}),
    )


def _s3control(endpoint: str) -> Any:
    """botocore puts the account ID in front of any s3control endpoint's host (docs/LOCAL.md): the
    request is sent to the served host itself, before signing, as the batchpipe commands do."""
    client = _client(endpoint, "s3control")
    host = endpoint.removeprefix("http://")

    def strip(request: Any, **_: Any) -> None:
        request.url = request.url.replace(f"//{ACCOUNT}.{host}", f"//{host}", 1)

    client.meta.events.register_first("before-sign.s3-control.*", strip)
    return client


# ---------------------------------------------------------------- the reference run
class Reference:
    """One pipeline run on the served stack, and what each function received and returned in it."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.sfn = _client(endpoint, "stepfunctions")
        self.s3 = _client(endpoint, "s3")
        outputs = _client(endpoint, "cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]["Outputs"]
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in outputs}
        self.inputs: dict[str, list[Any]] = {}
        self.results: dict[str, list[Any]] = {}

    def run(self, name: str, spec: dict) -> dict:
        arn = self.sfn.start_execution(
            stateMachineArn=self.outputs["StateMachineArn"], name=name, input=json.dumps(spec)
        )["executionArn"]
        self.execution_arn = arn
        # Bounded: a run of 40 objects ends in seconds; 600 polls are far more than it ever needs.
        for _ in range(600):
            described = self.sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                break
            time.sleep(0.5)
        assert described["status"] == "SUCCEEDED", described
        self._read_history(arn)
        return json.loads(described["output"])

    def _read_history(self, arn: str) -> None:
        events: dict[int, dict] = {}
        for page in self.sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
            for event in page["events"]:
                events[event["id"]] = event
        scheduled: dict[int, str] = {}
        for event_id, event in sorted(events.items()):
            details = event.get("taskScheduledEventDetails")
            if details and details["resourceType"] == "lambda":
                parameters = json.loads(details["parameters"])
                logical_id = parameters["FunctionName"].rsplit(":", 1)[-1].removeprefix(f"{STACK}-")
                self.inputs.setdefault(logical_id, []).append(parameters["Payload"])
                scheduled[event_id] = logical_id
            succeeded = event.get("taskSucceededEventDetails")
            if succeeded and succeeded["resourceType"] == "lambda":
                # Back along previousEventId to the task's TaskScheduled (TaskStarted, TaskSubmitted, ...).
                previous = event["previousEventId"]
                while previous not in scheduled:
                    previous = events[previous]["previousEventId"]
                logical_id = scheduled[previous]
                output = json.loads(succeeded["output"])
                self.results.setdefault(logical_id, []).append(output.get("Payload", output))


@pytest.fixture(scope="module")
def reference(served: str) -> Reference:
    reference = Reference(served)
    summary = reference.run(
        "samlocal-reference",
        {
            "name": "samlocal",
            "operation": {"S3PutObjectTagging": {"TagSet": [{"Key": "seen", "Value": "yes"}]}},
        },
    )
    assert summary["status"] == "SUCCEEDED", summary
    reference.summary = summary
    return reference


def _with_real_values(sample: Any, real: Any) -> Any:
    """The event file's document with the reference run's values wherever both have the key: names
    and IDs that exist in the served world replace the file's sample ones; the file's shape stays."""
    if isinstance(sample, dict) and isinstance(real, dict):
        return {
            key: _with_real_values(value, real[key]) if key in real else value
            for key, value in sample.items()
        }
    return real


def event_from_file(logical_id: str, real: Any) -> dict:
    handler = _template()["Resources"][logical_id]["Properties"]["Handler"]
    sample = json.loads((REPO / "events" / f"{handler.split('.')[0]}.json").read_text())
    return _with_real_values(sample, real)


# ---------------------------------------------------------------- sam local invoke
class Invoker:
    def __init__(
        self, sam_cli: Path, template: Path, network: tuple[str, str], endpoint: str, served: str
    ) -> None:
        self.sam_cli, self.template, self.network, self.endpoint = sam_cli, template, network[0], endpoint
        self.lambda_client = _client(served, "lambda")
        self.env_file = template.parent / "env-samlocal.json"
        # The s3control client of the functions (plain boto3) puts the account ID in front of the
        # endpoint's host; inside the containers both names are the relay's address.
        self.hosts = [f"{ENDPOINT_NAME}:{network[1]}", f"{ACCOUNT}.{ENDPOINT_NAME}:{network[1]}"]

    def environment(self, logical_id: str) -> dict[str, str]:
        """The served function's environment (template.yaml's variables resolved for the served
        stack: its bucket, table and role names), plus the endpoint."""
        configuration = self.lambda_client.get_function_configuration(FunctionName=f"{STACK}-{logical_id}")
        return {
            **configuration["Environment"]["Variables"],
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_CONFIG_FILE": AWS_CONFIG_FILE,
        }

    def __call__(self, logical_id: str, event: dict) -> tuple[Any, str]:
        self.env_file.write_text(json.dumps({logical_id: self.environment(logical_id)}))
        event_file = self.template.parent / f"event-{logical_id}.json"
        event_file.write_text(json.dumps(event))
        command = [
            self.sam_cli,
            "local",
            "invoke",
            logical_id,
            "--template-file",
            self.template,
            "--event",
            event_file,
            "--env-vars",
            self.env_file,
            "--parameter-overrides",
            f"Architecture={ARCH}",
            # The locally built image (tests/samlocal/setup.sh) under its own name; never a registry.
            "--invoke-image",
            IMAGE,
            "--skip-pull-image",
            "--docker-network",
            self.network,
        ]
        for host in self.hosts:
            command += ["--add-host", host]
        started = time.monotonic()
        result = _run(command, cwd=REPO, env=sam_env(REGION), timeout=600)
        INVOCATIONS.append((logical_id, time.monotonic() - started))
        # A function error still exits 0: the result on stdout says what happened.
        assert result.returncode == 0, _failed(result)
        output = result.stdout.strip().splitlines()
        assert output, _failed(result)
        payload = json.loads(output[-1])
        if isinstance(payload, dict) and "errorType" in payload and "stackTrace" in payload:
            pytest.fail(
                f"{logical_id} raised {payload['errorType']}: {payload.get('errorMessage')}\n{result.stderr[-3000:]}"
            )
        return payload, result.stderr


@pytest.fixture(scope="module")
def invoke(
    sam_cli: Path,
    built: Path,
    network: tuple[str, str],
    endpoint_for_containers: str,
    served: str,
    egress: EgressCount,
) -> Invoker:
    return Invoker(sam_cli, built, network, endpoint_for_containers, served)


# ---------------------------------------------------------------- the tests
def test_every_function_is_invoked_here() -> None:
    assert sorted(INVOKED) == FUNCTIONS


INVOKED = (
    "ValidateSpecFunction",
    "RunLockFunction",
    "PlanQueryFunction",
    "BuildManifestFunction",
    "CreateJobFunction",
    "JobStatusFunction",
    "CheckJobFunction",
    "ConfirmJobFunction",
    "CancelJobsFunction",
    "SweepJobsFunction",
    "PlanReportFunction",
    "ReportPartFunction",
    "ProcessReportFunction",
    "SummarizeFunction",
)


# Functions whose event, filled from the reference run, is what they received in it: the container's
# result must be the reference run's (same code, same state, another runtime), and what they write
# is written again (deleted first, so it is this invocation's).
SAME_AS_REFERENCE = {
    "RunLockFunction": None,
    "PlanQueryFunction": None,
    "BuildManifestFunction": lambda event, result: (result["bucket"], result["key"]),
    "PlanReportFunction": lambda event, result: (result["bucket"], result["readItems"]),
    "ProcessReportFunction": None,
    "SummarizeFunction": lambda event, result: (
        event["run"]["bucket"],
        f"{event['run']['prefix']}summary.json",
    ),
}


@pytest.mark.parametrize("logical_id", list(SAME_AS_REFERENCE))
def test_same_result_as_the_reference_run(logical_id: str, invoke: Invoker, reference: Reference) -> None:
    event = event_from_file(logical_id, reference.inputs[logical_id][-1])
    expected = reference.results[logical_id][-1]
    written = SAME_AS_REFERENCE[logical_id]
    if written:
        bucket, key = written(event, expected)
        reference.s3.delete_object(Bucket=bucket, Key=key)
    result, _ = invoke(logical_id, event)
    assert result == expected
    if written:
        assert reference.s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_validate_spec_accepts_the_file_spec(invoke: Invoker, reference: Reference) -> None:
    """The event file's own spec (every filter field set) for the reference execution: accepted as
    written, and the run it describes takes the served stack's settings."""
    event = event_from_file("ValidateSpecFunction", reference.inputs["ValidateSpecFunction"][-1])
    result, _ = invoke("ValidateSpecFunction", event)
    written = event["spec"]["filter"]
    assert {key: result["spec"]["filter"][key] for key in written} == written
    assert result["spec"]["operation"] == event["spec"]["operation"]
    expected_run = reference.results["ValidateSpecFunction"][-1]["run"]
    assert result["run"] == {**expected_run, "name": event["spec"]["name"], "prefix": result["run"]["prefix"]}
    assert result["run"]["prefix"].startswith(
        f"runs/{event['spec']['name']}/{expected_run['executionName']}/"
    )


def test_report_part_reads_the_reference_report(invoke: Invoker, reference: Reference) -> None:
    """ReportPart (with pyarrow from ArrowLayer) reads the reference job's completion report: the
    first item of the plan PlanReport wrote, as the Distributed Map hands it over."""
    plan = reference.results["PlanReportFunction"][-1]
    items = json.loads(reference.s3.get_object(Bucket=plan["bucket"], Key=plan["readItems"])["Body"].read())
    before = _keys(reference.s3, plan["bucket"], plan["prefix"])
    written = [
        k for k in before if k.rsplit("/", 1)[-1] not in ("plan.json", "read-items.json", "join-items.json")
    ]
    for key in written:
        reference.s3.delete_object(Bucket=plan["bucket"], Key=key)
    result, logs = invoke(
        "ReportPartFunction", event_from_file("ReportPartFunction", {"plan": plan, "item": items[0]})
    )
    assert result == {"offset": None}
    assert written and set(written) <= set(_keys(reference.s3, plan["bucket"], plan["prefix"]))
    # The function's own log lines reach us (its last one is there), and none is the warning
    # batchpipe_core.report logs when pyarrow cannot be imported (the layer missing in the container).
    assert "report part done" in logs, logs[-3000:]
    assert "pyarrow is not importable" not in logs, logs[-3000:]


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_check_job_describes_the_reference_job(invoke: Invoker, reference: Reference) -> None:
    """CheckJob (the lost-event fallback) finds the attempt's job through the token table and asks
    DescribeJob: the served engine's finished reference job."""
    job_id = reference.summary["attempts"][0]["jobId"]
    create = reference.inputs["CreateJobFunction"][-1]
    result, _ = invoke("CheckJobFunction", event_from_file("CheckJobFunction", create))
    # CheckJob answers the attempt's next wait (current) beside the job's outcome (job).
    outcome = result["job"]
    assert outcome["jobId"] == job_id and outcome["status"] == "Complete", result


def _new_run(reference: Reference, name: str) -> dict:
    """CreateJob's reference input for a run of another execution: a new token, so a new job."""
    create = json.loads(json.dumps(reference.inputs["CreateJobFunction"][-1]))
    old_execution, old_name = create["run"]["executionName"], create["run"]["name"]
    for key in ("executionId", "executionName", "runId", "prefix"):
        create["run"][key] = create["run"][key].replace(old_execution, name)
    create["run"]["prefix"] = create["run"]["prefix"].replace(f"runs/{old_name}/", f"runs/{name}/")
    create["run"]["name"] = create["spec"]["name"] = name
    # CreateJob renews the run name's lock for its execution, which exists in no state machine here:
    # a run with "concurrency": "force" (the documented override) never needs the name.
    create["spec"]["concurrency"] = "force"
    return create


@pytest.fixture(scope="module")
def created_jobs(invoke: Invoker, reference: Reference) -> dict[str, tuple[dict, str]]:
    """CreateJob invoked for a new execution: it creates a job in the served engine."""
    s3control = _s3control(reference.endpoint)
    before = {j["JobId"] for j in s3control.list_jobs(AccountId=ACCOUNT)["Jobs"]}
    created = {}
    for name in ("samlocal-confirm",):
        create = _new_run(reference, name)
        result, _ = invoke("CreateJobFunction", event_from_file("CreateJobFunction", create))
        assert result["jobId"] and result["jobId"] not in before, result
        created[name] = (create, result["jobId"])
    after = {j["JobId"] for j in s3control.list_jobs(AccountId=ACCOUNT)["Jobs"]}
    assert after - before == {job_id for _, job_id in created.values()}
    return created


def test_create_job_creates_jobs_in_the_served_engine(created_jobs: dict, reference: Reference) -> None:
    s3control = _s3control(reference.endpoint)
    for create, job_id in created_jobs.values():
        job = s3control.describe_job(AccountId=ACCOUNT, JobId=job_id)["Job"]
        assert job["Manifest"]["Location"]["ETag"].strip('"') == create["current"]["manifest"]["etag"].strip(
            '"'
        )
        assert job["ConfirmationRequired"] is True


def _job_ends(s3control: Any, job_id: str) -> dict:
    # Bounded: a 40-object job ends in seconds; the bound only stops a broken engine from hanging.
    for _ in range(240):
        job = s3control.describe_job(AccountId=ACCOUNT, JobId=job_id)["Job"]
        if job["Status"] in ("Complete", "Failed", "Cancelled"):
            return job
        time.sleep(0.5)
    return job


def test_confirm_job_confirms_the_new_job_and_it_runs(
    created_jobs: dict, invoke: Invoker, reference: Reference
) -> None:
    create, job_id = created_jobs["samlocal-confirm"]
    s3control = _s3control(reference.endpoint)
    # Suspended once S3 Batch counted the manifest; then it is the pipeline's to confirm.
    for _ in range(240):
        if s3control.describe_job(AccountId=ACCOUNT, JobId=job_id)["Job"]["Status"] == "Suspended":
            break
        time.sleep(0.5)
    # The file's job (Suspended, still to be counted) is the new job.
    real = {
        "spec": create["spec"],
        "run": create["run"],
        "current": create["current"],
        "job": {"jobId": job_id},
    }
    result, _ = invoke("ConfirmJobFunction", event_from_file("ConfirmJobFunction", real))
    # S3 Batch Operations' own count of the manifest, checked against maxObjects before confirming.
    assert result["attempt"] == create["current"]["attempt"] and result["manifest"]["objects"] == 40, result
    job = _job_ends(s3control, job_id)
    # The counts of tasks done are withheld, as AWS may (docs/LOCAL.md, "Unkind answers"); the total stays.
    assert job["Status"] == "Complete" and job["ProgressSummary"]["TotalNumberOfTasks"] == 40, job


def test_job_status_takes_the_new_jobs_event(
    created_jobs: dict, invoke: Invoker, reference: Reference
) -> None:
    """The JobStatusChanged event of a job CreateJob made: the handler finds its token item."""
    _, job_id = created_jobs["samlocal-confirm"]
    details = {"jobId": job_id, "jobArn": f"arn:aws:s3:{REGION}:{ACCOUNT}:job/{job_id}", "status": "Complete"}
    result, _ = invoke(
        "JobStatusFunction",
        event_from_file("JobStatusFunction", {"detail": {"serviceEventDetails": details}}),
    )
    assert result["jobId"] == job_id and result["result"] != "ignored-malformed", result


def test_cancel_jobs_cleans_up_after_the_reference_execution(invoke: Invoker, reference: Reference) -> None:
    """The status event of an execution that ended early, for the reference execution (CancelJobs
    reads its history, which only a real execution has): its job had ended, so none is cancelled."""
    create = reference.inputs["CreateJobFunction"][-1]
    arn = create["run"]["executionId"]
    # The execution's start time (milliseconds) is part of the run's ID, which keys its token items.
    started = datetime.fromisoformat(create["run"]["startTime"].replace("Z", "+00:00"))
    detail = {
        "startDate": int(started.timestamp() * 1000),
        "executionArn": arn,
        "name": create["run"]["executionName"],
        "status": "ABORTED",
        "stateMachineArn": reference.outputs["StateMachineArn"],
    }
    event = event_from_file("CancelJobsFunction", {"resources": [arn], "detail": detail})
    result, _ = invoke("CancelJobsFunction", event)
    assert result["cancelledJobs"] == [], result
    job_id = reference.summary["attempts"][0]["jobId"]
    job = _s3control(reference.endpoint).describe_job(AccountId=ACCOUNT, JobId=job_id)["Job"]
    assert job["Status"] == "Complete"


def test_sweep_jobs_lists_the_served_stacks_jobs(invoke: Invoker, reference: Reference) -> None:
    """One tick of the hourly sweep, last (it may cancel the jobs the tests above created for runs
    whose execution is not running): it lists the served engine's jobs and cancels only those."""
    result, _ = invoke("SweepJobsFunction", event_from_file("SweepJobsFunction", {}))
    assert result["listed"] >= result["foreign"] + result["running"], result
    assert all(entry["executionStatus"] != "RUNNING" for entry in result["cancelled"]), result
    job_id = reference.summary["attempts"][0]["jobId"]
    job = _s3control(reference.endpoint).describe_job(AccountId=ACCOUNT, JobId=job_id)["Job"]
    assert job["Status"] == "Complete"  # an ended job is never listed, never touched


def test_no_packet_left_for_another_network(invoke: Invoker, egress: EgressCount) -> None:
    """Last in this file: every invocation above addressed only the relay (the served endpoint) on
    the test's bridge, so no function container sent a packet anywhere else, not even a DNS query."""
    assert len(INVOCATIONS) >= len(FUNCTIONS)
    assert egress.packets() == 0
