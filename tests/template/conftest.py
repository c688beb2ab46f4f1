"""Shared inputs of the template checks: the template, the ASL, and the tool environment.

The template is read with cfn-lint's own YAML loader rather than the project's loader in
`batchpipe.local.template`, so these checks stay an independent second reading of the same file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from ..sam import sam_env as sam_environment

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
STATE_MACHINE_ID = "PipelineStateMachine"

# SAM's DefinitionSubstitutions syntax. ASL itself never uses `${`, so every match is a placeholder.
PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")

FAKE_REGION = "us-east-1"
FAKE_ACCOUNT = "123456789012"
LAMBDA_FUNCTION_TYPES = frozenset({"AWS::Serverless::Function", "AWS::Lambda::Function"})


def _plain(node: Any) -> Any:
    """cfn-lint's node classes carry line marks; plain JSON types keep assertion output readable."""
    return json.loads(json.dumps(node))


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return _plain(cfn_yaml.load(str(TEMPLATE_PATH)))


@pytest.fixture(scope="session")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


@pytest.fixture(scope="session")
def state_machine_properties(resources: dict[str, Any]) -> dict[str, Any]:
    return resources[STATE_MACHINE_ID]["Properties"]


@pytest.fixture(scope="session")
def substitutions(state_machine_properties: dict[str, Any]) -> dict[str, Any]:
    return state_machine_properties.get("DefinitionSubstitutions", {})


@pytest.fixture(scope="session")
def asl_path(state_machine_properties: dict[str, Any]) -> Path:
    return REPO_ROOT / state_machine_properties["DefinitionUri"]


@pytest.fixture(scope="session")
def asl_text(asl_path: Path) -> str:
    return asl_path.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def asl(asl_text: str) -> dict[str, Any]:
    # The shipped file is JSON with placeholders only inside strings, so it parses as is.
    return json.loads(asl_text)


@pytest.fixture(scope="session")
def asl_placeholders(asl_text: str) -> set[str]:
    return set(PLACEHOLDER.findall(asl_text))


@pytest.fixture(scope="session")
def lambda_functions(resources: dict[str, Any]) -> dict[str, Any]:
    """Logical ID -> resource, for every Lambda function the template declares."""
    return {
        logical_id: resource
        for logical_id, resource in resources.items()
        if resource["Type"] in LAMBDA_FUNCTION_TYPES
    }


class FakeStack:
    """Plausible deployed values for the intrinsic functions that DefinitionSubstitutions may use.

    Only what the linter needs to see a realistic definition: ARNs shaped as AWS shapes them.
    An intrinsic or resource type it does not know is a test failure that says what to add here.
    """

    _ARN_BY_TYPE = {
        "AWS::Serverless::Function": "arn:aws:lambda:{region}:{account}:function:{name}",
        "AWS::Lambda::Function": "arn:aws:lambda:{region}:{account}:function:{name}",
        "AWS::DynamoDB::Table": "arn:aws:dynamodb:{region}:{account}:table/{name}",
        "AWS::S3::Bucket": "arn:aws:s3:::{name}",
        "AWS::SQS::Queue": "arn:aws:sqs:{region}:{account}:{name}",
        "AWS::IAM::Role": "arn:aws:iam::{account}:role/{name}",
        "AWS::Serverless::StateMachine": "arn:aws:states:{region}:{account}:stateMachine:{name}",
        "AWS::StepFunctions::StateMachine": "arn:aws:states:{region}:{account}:stateMachine:{name}",
        "AWS::Events::EventBus": "arn:aws:events:{region}:{account}:event-bus/{name}",
    }
    # Resources whose Ref is an ARN rather than a name.
    _REF_IS_ARN = frozenset(
        {"AWS::SNS::Topic", "AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"}
    )
    _PSEUDO = {
        "AWS::Region": FAKE_REGION,
        "AWS::AccountId": FAKE_ACCOUNT,
        "AWS::Partition": "aws",
        "AWS::StackName": "batchpipe",
        "AWS::URLSuffix": "amazonaws.com",
    }

    def __init__(self, template: dict[str, Any]) -> None:
        self._resources = template.get("Resources", {})
        self._parameters = template.get("Parameters", {})

    def _name(self, logical_id: str) -> str:
        # Physical names are lowercase in most services (S3 requires it); a readable one suffices.
        return f"batchpipe-{logical_id.lower()}"

    def _arn(self, logical_id: str) -> str:
        rtype = self._resources[logical_id]["Type"]
        if rtype == "AWS::SNS::Topic":
            return f"arn:aws:sns:{FAKE_REGION}:{FAKE_ACCOUNT}:{self._name(logical_id)}"
        if rtype not in self._ARN_BY_TYPE:
            raise AssertionError(f"FakeStack has no ARN shape for {rtype} ({logical_id}): add one")
        return self._ARN_BY_TYPE[rtype].format(
            region=FAKE_REGION, account=FAKE_ACCOUNT, name=self._name(logical_id)
        )

    def ref(self, target: str) -> str:
        if target in self._PSEUDO:
            return self._PSEUDO[target]
        if target in self._parameters:
            return str(self._parameters[target].get("Default", f"{target}-value"))
        if target in self._resources:
            if self._resources[target]["Type"] in self._REF_IS_ARN:
                return self._arn(target)
            return self._name(target)
        raise AssertionError(f"Ref to unknown name {target!r}")

    def get_att(self, logical_id: str, attribute: str) -> str:
        if logical_id not in self._resources:
            raise AssertionError(f"GetAtt of unknown resource {logical_id!r}")
        if attribute in ("Arn", "TopicArn"):
            return self._arn(logical_id)
        if attribute in ("Name", "TopicName", "QueueName"):
            return self._name(logical_id)
        raise AssertionError(f"FakeStack cannot fake {logical_id}.{attribute}: add it")

    def _sub(self, text: str) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return self.ref(name)

        return PLACEHOLDER.sub(one, text)

    def value(self, node: Any) -> str:
        if isinstance(node, str | int | float):
            return str(node)
        if isinstance(node, dict) and len(node) == 1:
            ((function, argument),) = node.items()
            if function == "Ref":
                return self.ref(argument)
            if function == "Fn::GetAtt":
                logical_id, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
                return self.get_att(logical_id, attribute)
            if function == "Fn::Sub" and isinstance(argument, str):
                return self._sub(argument)
        raise AssertionError(f"FakeStack cannot evaluate {node!r}: teach it this intrinsic")


@pytest.fixture(scope="session")
def fake_stack(template: dict[str, Any]) -> FakeStack:
    return FakeStack(template)


@pytest.fixture(scope="session")
def substituted_asl(asl_text: str, substitutions: dict[str, Any], fake_stack: FakeStack) -> dict[str, Any]:
    """The definition as Step Functions would receive it after `sam deploy` fills the placeholders."""
    values = {name: fake_stack.value(node) for name, node in substitutions.items()}
    for name, value in values.items():
        # Values are spliced into JSON text, as SAM does; anything needing escaping would corrupt it.
        assert '"' not in value and "\\" not in value, f"{name} = {value!r} would need JSON escaping"
    missing = sorted(set(PLACEHOLDER.findall(asl_text)) - values.keys())
    assert not missing, f"placeholders without a DefinitionSubstitutions entry: {missing}"
    return json.loads(PLACEHOLDER.sub(lambda m: values[m.group(1)], asl_text))


@pytest.fixture(scope="session")
def sam_cli() -> Path:
    """aws-sam-cli lives in its own virtualenv (it pins boto3); `make test` passes its path."""
    path = Path(os.environ.get("SAM_CLI", REPO_ROOT / ".venv-sam" / "bin" / "sam")).absolute()
    if not path.is_file():
        message = f"SAM CLI not found at {path}: run `make sam-venv` or set SAM_CLI"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def sam_env() -> dict[str, str]:
    """Environment for SAM CLI runs: a region and dummy credentials, never a real profile."""
    return sam_environment(FAKE_REGION)
