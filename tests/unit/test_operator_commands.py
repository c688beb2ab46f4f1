"""The operator commands' answers to what the embedded AWS cannot stage: AWS's own error responses,
given through botocore's Stubber (the requests are still validated against botocore's models)."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from batchpipe import outcome
from batchpipe.cli import build_parser, main
from batchpipe.ops import commands, stack
from batchpipe.ops.aws import Aws, OperatorError

REPO = Path(__file__).resolve().parents[2]
STATE_MACHINE = "arn:aws:states:eu-west-1:111122223333:stateMachine:batchpipe-pipeline"
EXECUTION = "arn:aws:states:eu-west-1:111122223333:execution:batchpipe-pipeline:run-1"


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return Aws(region="eu-west-1")


def stubbed(aws: Aws, service: str) -> Stubber:
    client = boto3.client(service, region_name="eu-west-1")
    aws._clients[service] = client
    stubber = Stubber(client)
    stubber.activate()
    return stubber


def _stack(outputs: dict[str, str]) -> dict:
    return {
        "Stacks": [
            {
                "StackName": "prod",
                "CreationTime": datetime(2026, 1, 1, tzinfo=UTC),
                "StackStatus": "CREATE_COMPLETE",
                "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
            }
        ]
    }


def test_the_outputs_the_commands_need_are_template_outputs():
    template = yaml.load((REPO / "template.yaml").read_text(), Loader=yaml.BaseLoader)

    assert set(stack.REQUIRED_OUTPUTS) <= set(template["Outputs"])
    from batchpipe.local.template import load_template

    template = load_template()
    # What `start` checks a spec with, and where `watch` finds a new job: the stack's own outputs.
    assert template["Outputs"][stack.VALIDATE_SPEC_OUTPUT]["Value"] == {"Ref": "ValidateSpecFunction"}
    assert template["Outputs"][stack.TOKEN_TABLE_OUTPUT]["Value"] == {"Ref": "TokenTable"}
    # `watch` of an execution ARN finds its stack by the state machine's name.
    name = template["Resources"]["PipelineStateMachine"]["Properties"]["Name"]
    assert name == {"Fn::Sub": "${AWS::StackName}" + stack.PIPELINE_SUFFIX}


def test_access_denied_is_one_line_with_what_to_do(aws):
    cfn = stubbed(aws, "cloudformation")
    cfn.add_client_error(
        "describe_stacks",
        "AccessDenied",
        "User: arn:aws:iam::1:user/x is not authorized",
        http_status_code=403,
    )

    with pytest.raises(OperatorError) as refused:
        stack.find_stack(aws, "prod")

    message = str(refused.value)
    assert message.startswith("finding stack 'prod': AccessDenied: User:")
    assert "lack this permission" in message and "\n" not in message


def test_a_missing_stack_names_the_region(aws):
    cfn = stubbed(aws, "cloudformation")
    cfn.add_client_error("describe_stacks", "ValidationError", "Stack with id prod does not exist")

    with pytest.raises(
        OperatorError, match=r"stack 'prod' not found in eu-west-1: check --stack and --region"
    ):
        stack.find_stack(aws, "prod")


def test_a_stack_of_something_else_is_not_taken_for_batchpipe(aws):
    cfn = stubbed(aws, "cloudformation")
    cfn.add_response("describe_stacks", _stack({"ApiUrl": "https://x"}), {"StackName": "prod"})

    with pytest.raises(
        OperatorError, match=r"is not a batchpipe stack \(no StateMachineArn, PipelineBucketName"
    ):
        stack.find_stack(aws, "prod")


def test_a_name_taken_within_90_days_says_so(aws):
    sfn = stubbed(aws, "stepfunctions")
    sfn.add_client_error("start_execution", "ExecutionAlreadyExists", "Execution Already Exists")

    with pytest.raises(
        OperatorError, match=r"already exists \(names are unique for 90 days\): pass another --name"
    ):
        commands.start_execution(aws, STATE_MACHINE, {"operation": {}}, "run-1", io.StringIO())


def test_expired_credentials_say_refresh(aws):
    sfn = stubbed(aws, "stepfunctions")
    sfn.add_client_error("describe_execution", "ExpiredTokenException", "The security token expired")

    with pytest.raises(OperatorError, match="refresh your credentials"):
        stack.describe(aws, EXECUTION)


def test_no_credentials_is_one_line(monkeypatch, tmp_path, capsys):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    code = main(["runs", "--stack", "prod", "--region", "eu-west-1"])

    err = capsys.readouterr().err
    assert code == 2
    assert "no AWS credentials found" in err and "Traceback" not in err


def test_no_region_is_one_line(monkeypatch, tmp_path, capsys):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))

    code = main(["runs", "--stack", "prod"])

    assert code == 2
    assert "no AWS region: pass --region" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("status", "code"),
    [("SUCCEEDED", 0), ("NOTHING_TO_DO", 0), ("DRY_RUN", 0), ("PARTIAL", 3), ("CANCELLED", 4), ("FAILED", 5)],
)
def test_watch_exit_status_tells_the_outcome(aws, status, code):
    sfn = stubbed(aws, "stepfunctions")
    summary = {"status": status, "totals": {"objects": 1, "succeeded": 1}, "attempts": []}
    described = {
        "executionArn": EXECUTION,
        "stateMachineArn": STATE_MACHINE,
        "status": "SUCCEEDED",
        "startDate": datetime(2026, 1, 1, tzinfo=UTC),
        "output": json.dumps(summary),
    }
    sfn.add_response("describe_execution", described, {"executionArn": EXECUTION})
    sfn.add_response("get_execution_history", {"events": []})
    out = io.StringIO()

    assert commands.watch(aws, EXECUTION, out=out, interval=0.01) == code
    assert _unstamped(out.getvalue()).startswith(status)


def test_an_execution_that_ended_without_a_summary_is_a_failure(aws):
    sfn = stubbed(aws, "stepfunctions")
    described = {
        "executionArn": EXECUTION,
        "stateMachineArn": STATE_MACHINE,
        "status": "ABORTED",
        "startDate": datetime(2026, 1, 1, tzinfo=UTC),
        "error": "States.Aborted",
    }
    sfn.add_response("describe_execution", described, {"executionArn": EXECUTION})
    sfn.add_response("get_execution_history", {"events": []})
    out = io.StringIO()

    assert commands.watch(aws, EXECUTION, out=out, interval=0.01) == outcome.EXIT_NO_SUMMARY
    assert _unstamped(out.getvalue()).startswith("ABORTED: the execution ended without a summary")


def _unstamped(line: str) -> str:
    """A watch line without its UTC time (and time since the start, once the run's start is known)."""
    stamped = re.match(r"\d\d:\d\d:\d\dZ (\+\d+:\d\d:\d\d )?(.*)", line, re.DOTALL)
    assert stamped, line
    return stamped[2]


def test_a_rerun_keeps_the_operation_and_drops_the_selection():
    original = {
        "name": "retag",
        "inventory": {"date": "latest"},
        "filter": {"prefixes": ["a/"]},
        "dryRun": False,
        "operation": {"S3PutObjectTagging": {"TagSet": []}},
        "retry": {"maxAttempts": 2},
    }

    spec = commands.rerun_spec(original, "s3://b/runs/x/permanent-failures.csv", ["AccessDenied"], None)

    assert spec == {
        "name": "retag",
        "operation": {"S3PutObjectTagging": {"TagSet": []}},
        "retry": {"maxAttempts": 2},
        "rerun": {"failures": "s3://b/runs/x/permanent-failures.csv", "errorCodes": ["AccessDenied"]},
    }


def test_a_rerun_of_a_scheduled_run_takes_the_spec_out_of_the_schedule_input():
    scheduled = {
        "schedule": {"scheduledTime": "2026-12-01T03:00:00Z"},
        "spec": {"name": "nightly", "operation": {"S3PutObjectTagging": {"TagSet": []}}},
    }

    spec = commands.rerun_spec(scheduled, "s3://b/f.csv", None, None)

    assert spec == {
        "name": "nightly",
        "operation": {"S3PutObjectTagging": {"TagSet": []}},
        "rerun": {"failures": "s3://b/f.csv"},
    }


def test_every_command_shows_an_example_in_its_help():
    def walk(parser, path):
        for action in parser._subparsers._group_actions if parser._subparsers else []:
            for name, sub in action.choices.items():
                if sub._subparsers:
                    yield from walk(sub, [*path, name])
                else:
                    yield [*path, name], sub

    leaves = list(walk(build_parser(), []))

    assert len(leaves) >= 8
    missing = [" ".join(path) for path, sub in leaves if "example" not in sub.format_help()]
    assert missing == []


def _described(summary: dict) -> dict:
    return {
        "executionArn": EXECUTION,
        "stateMachineArn": STATE_MACHINE,
        "status": "SUCCEEDED",
        "startDate": datetime(2026, 1, 1, 3, 0, tzinfo=UTC),
        "stopDate": datetime(2026, 1, 1, 3, 20, tzinfo=UTC),
        "output": json.dumps(summary),
    }


def test_summary_html_saves_the_run_page_summarize_wrote(aws, tmp_path, monkeypatch, capsys):
    page = b"<!DOCTYPE html><title>the page Summarize wrote</title>"
    summary = {"status": "SUCCEEDED", "attempts": [], "report": "s3://pipe/runs/r/run-1/t/report.html"}
    sfn, s3 = stubbed(aws, "stepfunctions"), stubbed(aws, "s3")
    sfn.add_response("describe_execution", _described(summary), {"executionArn": EXECUTION})
    s3.add_response(
        "get_object", {"Body": io.BytesIO(page)}, {"Bucket": "pipe", "Key": "runs/r/run-1/t/report.html"}
    )
    opened = []
    monkeypatch.setattr(commands.webbrowser, "open", opened.append)
    target = tmp_path / "page.html"

    code = commands.show_summary(
        aws,
        execution=EXECUTION,
        stack_name=None,
        failures=None,
        out=io.StringIO(),
        html=str(target),
        open_page=True,
    )

    assert code == 0
    assert target.read_bytes() == page
    assert opened == [target.resolve().as_uri()]
    assert f"wrote {target}" in capsys.readouterr().err
    # A second time, the file exists (or is a link planted there): refused, nothing overwritten.
    sfn.add_response("describe_execution", _described(summary), {"executionArn": EXECUTION})
    (tmp_path / "link.html").symlink_to(tmp_path / "elsewhere.html")
    for existing in (target, tmp_path / "link.html"):
        with pytest.raises(OperatorError, match="exists; give a new file name"):
            commands.save_run_page(aws, summary, _described(summary), existing, out=io.StringIO())
    assert not (tmp_path / "elsewhere.html").exists()


def test_summary_html_of_a_run_older_than_the_page_renders_it_from_the_summary(aws, tmp_path, monkeypatch):
    summary = {
        "name": "retag",
        "executionId": EXECUTION,
        "status": "PARTIAL",
        "attempts": [
            {"attempt": 1, "jobId": "j-1", "jobStatus": "Complete", "total": 4, "succeeded": 3,
             "failedRetriable": 0, "failedPermanent": 1, "errors": {"403 AccessDenied": 1}},
        ],
        "totals": {"objects": 4, "succeeded": 3, "failedPermanent": 1, "failedRetriesExhausted": 0},
        "estimatedCostUsd": 0.25,
    }  # fmt: skip
    sfn = stubbed(aws, "stepfunctions")
    sfn.add_response("describe_execution", _described(summary), {"executionArn": EXECUTION})
    monkeypatch.chdir(tmp_path)

    code = commands.show_summary(
        aws, execution=EXECUTION, stack_name=None, failures=None, out=io.StringIO(), html=""
    )

    assert code == 0
    page = (tmp_path / "report-run-1.html").read_text(encoding="utf-8")
    assert "PARTIAL" in page and "403 AccessDenied" in page and "20 min" in page
    assert "https://eu-west-1.console.aws.amazon.com/states/home" in page


LAMBDA_ERROR = json.dumps(
    {
        "errorMessage": "filter.where: column 'sise' is not\na column of the inventory",
        "errorType": "SpecValidationError",
        "stackTrace": ['  File "/var/task/app.py", line 12, in handler\n'],
    }
)


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (LAMBDA_ERROR, "filter.where: column 'sise' is not a column of the inventory"),
        (json.dumps({"Message": "Query failed: Division by zero"}), "Query failed: Division by zero"),
        ("States.Timeout after\n 900 s", "States.Timeout after 900 s"),
        (
            json.dumps({"State": "FAILED", "StateChangeReason": "DIVISION_BY_ZERO: Division by zero"}),
            "DIVISION_BY_ZERO: Division by zero",
        ),
        (None, ""),
    ],
)
def test_a_cause_is_shown_as_one_readable_line_never_json_or_a_stack_trace(cause, expected):
    assert outcome.readable_cause(cause) == expected
    summary = {"status": "FAILED", "error": "SpecValidationError", "cause": cause}
    line = commands.headline(summary, {"status": "SUCCEEDED"})
    assert line == f"FAILED: SpecValidationError: {expected}"
    assert "stackTrace" not in line and "\n" not in line


def test_a_long_cause_is_cut_to_its_limit_with_a_mark():
    assert outcome.readable_cause("x" * 600, 500) == "x" * 499 + "…"


def test_an_endpoint_from_the_environment_that_is_not_a_url_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://[::1")

    code = main(["runs", "--stack", "batchpipe", "--region", "eu-west-1"])

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "endpoint 'http://[::1' is not a usable URL" in err and "AWS_ENDPOINT_URL" in err


def test_summary_html_into_a_missing_folder_is_refused_before_any_aws_call(aws, tmp_path):
    stubbed(aws, "stepfunctions")  # no response stubbed: any call would fail the test differently
    with pytest.raises(OperatorError, match=r"--html .*: folder .* does not exist"):
        commands.show_summary(
            aws,
            execution=EXECUTION,
            stack_name=None,
            failures=None,
            out=io.StringIO(),
            html=str(tmp_path / "no-such-folder" / "page.html"),
        )


def test_runs_pages_past_a_thousand_executions_in_one_call_per_thousand(monkeypatch, capsys):
    """ListExecutions gives at most 1,000 a page; --max 1005 reads the second page too, and nothing
    else: no call per run unless --counts asks for the runs' summaries."""
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        sfn = boto3.client("stepfunctions", region_name="eu-west-1")
        machine = sfn.create_state_machine(
            name="batchpipe-pipeline",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )["stateMachineArn"]
        for n in range(1005):
            sfn.start_execution(stateMachineArn=machine, name=f"run-{n:04d}", input="{}")
        monkeypatch.setattr(commands, "find_stack", lambda aws, name: stack.Stack(name, machine, "bucket"))

        out = io.StringIO()
        listed = commands.runs(
            Aws(region="eu-west-1", debug=True),
            stack_name="prod",
            limit=1005,
            counts=False,
            output="json",
            out=out,
        )
        calls = [line for line in capsys.readouterr().err.splitlines() if " -> " not in line]
        table = io.StringIO()
        assert (
            commands.runs(
                Aws(region="eu-west-1"), stack_name="prod", limit=3, counts=True, output="text", out=table
            )
            == 0
        )

    assert listed == 0
    assert [line.split(" {")[0] for line in calls] == ["aws: stepfunctions ListExecutions"] * 2
    rows = json.loads(out.getvalue())
    assert len(rows) == 1005
    assert {row["execution"] for row in rows} == {f"run-{n:04d}" for n in range(1005)}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["start"]) for row in rows)
    assert {row["status"] for row in rows} <= {"RUNNING", "SUCCEEDED"}  # moto runs none of them
    header, *lines = table.getvalue().splitlines()
    assert header.split() == [
        "execution",
        "status",
        "start",
        "stop",
        "name",
        "outcome",
        "objects",
        "succeeded",
        "failed",
        "costUsd",
    ]
    assert len(lines) == 3  # these executions have no summary: their counts are unknown, shown "-"
    assert all(line.split()[4:] == ["-"] * 6 for line in lines)


def test_runs_counts_are_bounded_to_what_one_burst_of_calls_reads(aws):
    with pytest.raises(OperatorError, match=r"--counts reads each run's summary .* --max 100 or fewer"):
        commands.runs(aws, stack_name="prod", limit=101, counts=True, output="text", out=io.StringIO())


def test_start_takes_the_schedules_own_input_and_checks_the_spec_inside(tmp_path):
    spec = {"name": "weekly", "operation": {"S3PutObjectTagging": {"TagSet": []}}, "dryRun": True}
    wrapped = tmp_path / "scheduled.json"
    wrapped.write_text(json.dumps({"schedule": {"scheduledTime": "2026-12-06T03:00:00Z"}, "spec": spec}))
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"schedule": {"scheduledTime": "2026-12-06T03:00:00Z"}, "spec": {**spec, "priorty": 1}})
    )

    assert commands.read_spec(str(wrapped))["spec"] == spec
    assert commands.default_execution_name(commands.read_spec(str(wrapped))).startswith("weekly-")
    with pytest.raises(OperatorError, match="priorty: unknown field"):
        commands.read_spec(str(bad))


def test_the_stack_defaults_to_the_environment_then_samconfig(tmp_path, monkeypatch):
    monkeypatch.delenv("BATCHPIPE_STACK", raising=False)
    with pytest.raises(OperatorError, match="no stack: pass --stack"):
        stack.default_stack_name(tmp_path)

    (tmp_path / "samconfig.toml").write_text(
        'version = 0.1\n[default.global.parameters]\nstack_name = "everywhere"\n'
    )
    assert stack.default_stack_name(tmp_path) == "everywhere"
    (tmp_path / "samconfig.toml").write_text(
        '[default.global.parameters]\nstack_name = "everywhere"\n[default.deploy.parameters]\nstack_name = "prod"\n'
    )
    assert stack.default_stack_name(tmp_path) == "prod"
    monkeypatch.setenv("BATCHPIPE_STACK", "from-env")
    assert stack.default_stack_name(tmp_path) == "from-env"


def test_the_repositorys_samconfig_names_the_stack_local_serve_serves():
    assert stack.default_stack_name(REPO) == build_parser().parse_args(["local", "serve"]).stack_name


def test_an_unexpected_failure_is_one_line_and_debug_shows_its_traceback(aws, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ValueError("a field\nno command expects")

    monkeypatch.setattr(commands, "runs", broken)
    monkeypatch.delenv("BATCHPIPE_DEBUG", raising=False)

    assert main(["runs", "--stack", "prod", "--region", "eu-west-1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(
        "batchpipe: unexpected error: ValueError: a field no command expects (run again with --debug"
    )
    with pytest.raises(ValueError, match="no command expects"):
        main(["runs", "--stack", "prod", "--region", "eu-west-1", "--debug"])


SPEC = {"name": "retag", "operation": {"S3PutObjectTagging": {"TagSet": []}}}


@pytest.mark.parametrize("case", ["older-stack", "no-permission"])
def test_start_without_the_stacks_settings_notes_it_and_leaves_the_check_to_validate_spec(
    aws, tmp_path, capsys, case
):
    """A stack deployed before the ValidateSpecFunctionName output, or credentials without
    lambda:GetFunctionConfiguration: one note on stderr, and the run starts (ValidateSpec checks it)."""
    outputs = {"StateMachineArn": STATE_MACHINE, "PipelineBucketName": "pipe"}
    if case == "no-permission":
        outputs["ValidateSpecFunctionName"] = "prod-ValidateSpecFunction"
        stubbed(aws, "lambda").add_client_error(
            "get_function_configuration", "AccessDeniedException", "not authorized", http_status_code=403
        )
    stubbed(aws, "cloudformation").add_response("describe_stacks", _stack(outputs), {"StackName": "prod"})
    stubbed(aws, "stepfunctions").add_response(
        "start_execution",
        {"executionArn": EXECUTION, "startDate": datetime(2026, 1, 1, tzinfo=UTC)},
        {"stateMachineArn": STATE_MACHINE, "name": "run-1", "input": json.dumps(SPEC)},
    )
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    out = io.StringIO()

    code = commands.start(aws, stack_name="prod", spec_path=str(spec), name="run-1", watch_it=False, out=out)

    note = capsys.readouterr().err
    assert code == 0 and out.getvalue().startswith(f"started {EXECUTION}")
    assert note.count("\n") == 1 and note.startswith("batchpipe: note: ")
    assert note.rstrip().endswith("the stack's own checks run when the run starts (ValidateSpec)")
    assert {"older-stack": "no ValidateSpecFunctionName output", "no-permission": "AccessDeniedException"}[
        case
    ] in note


def test_start_refuses_an_operation_the_deployed_stack_does_not_allow(aws, tmp_path, monkeypatch):
    """The stack's settings are its ValidateSpec function's environment (never this shell's): an
    operation its AllowedOperations leaves out is refused before StartExecution (none is stubbed)."""
    from .test_spec import STACK_ENV

    for name in (*STACK_ENV, "ALLOWED_OPERATIONS"):
        monkeypatch.delenv(name, raising=False)
    outputs = {
        "StateMachineArn": STATE_MACHINE,
        "PipelineBucketName": "pipe",
        "ValidateSpecFunctionName": "prod-ValidateSpecFunction",
    }
    stubbed(aws, "cloudformation").add_response("describe_stacks", _stack(outputs), {"StackName": "prod"})
    stubbed(aws, "lambda").add_response(
        "get_function_configuration",
        {"Environment": {"Variables": {**STACK_ENV, "ALLOWED_OPERATIONS": "S3PutObjectTagging"}}},
        {"FunctionName": "prod-ValidateSpecFunction"},
    )
    stubbed(aws, "stepfunctions")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "untag", "operation": {"S3DeleteObjectTagging": {}}}))

    with pytest.raises(OperatorError) as refused:
        commands.start(
            aws, stack_name="prod", spec_path=str(spec), name="run-1", watch_it=False, out=io.StringIO()
        )

    assert str(refused.value).startswith(
        f"spec {spec} is not valid:\n  operation: S3DeleteObjectTagging is not allowed by this stack "
        "(AllowedOperations: S3PutObjectTagging); redeploy the stack with S3DeleteObjectTagging added"
    )
