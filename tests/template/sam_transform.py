"""Prints template.yaml as SAM transforms it for CloudFormation, as JSON on stdout.

Run by tests/template/test_hard_limits.py with the Python of .venv-sam, where samtranslator lives
(aws-sam-cli pins boto3, so it has a virtualenv of its own). `sam deploy` would upload the local
code folders and the definition file first; here the folders become S3 locations that are never
read, and the definition is inlined (with its DefinitionSubstitutions) so that the transformed
template holds the definition Step Functions receives.

Usage: python sam_transform.py TEMPLATE.yaml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

CODE_LOCATION = {"Bucket": "code-bucket", "Key": "code.zip"}


class NoManagedPolicies:
    """The template names managed policies by ARN only; SAM asks IAM for the map of names otherwise."""

    def load(self) -> dict[str, str]:
        return {}


def prepared(path: Path) -> dict[str, Any]:
    template = yaml_parse(path.read_text(encoding="utf-8"))
    function_globals = template.get("Globals", {}).get("Function", {})
    if "CodeUri" in function_globals:
        function_globals["CodeUri"] = dict(CODE_LOCATION)
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function" and "CodeUri" in properties:
            properties["CodeUri"] = dict(CODE_LOCATION)
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            properties["ContentUri"] = dict(CODE_LOCATION)
        if resource["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in properties:
            definition = path.parent / properties.pop("DefinitionUri")
            properties["Definition"] = json.loads(definition.read_text(encoding="utf-8"))
    return template


def main() -> None:
    (path,) = sys.argv[1:]
    json.dump(transform(prepared(Path(path)), {}, NoManagedPolicies()), sys.stdout)


if __name__ == "__main__":
    main()
