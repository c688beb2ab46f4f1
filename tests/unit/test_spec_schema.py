"""The committed JSON Schema of the job spec is the model's, and every shipped example satisfies it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from batchpipe_local.cli import main
from batchpipe_local.spec_schema import COMMITTED_PATH, spec_schema

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.json"))


@pytest.fixture(scope="module")
def validator():
    schema = json.loads((REPO / COMMITTED_PATH).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_committed_schema_is_the_models():
    committed = json.loads((REPO / COMMITTED_PATH).read_text())

    assert committed == spec_schema(), f"regenerate it: .venv/bin/batchpipe spec-schema > {COMMITTED_PATH}"


def test_the_command_prints_the_schema(capsys):
    assert main(["spec-schema"]) == 0
    assert json.loads(capsys.readouterr().out) == spec_schema()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_satisfies_the_schema(validator, example):
    errors = [e.message for e in validator.iter_errors(json.loads(example.read_text()))]

    assert errors == []


@pytest.mark.parametrize(
    "spec",
    [
        {"operation": {"S3PutObjectTagging": {"TagSet": []}}, "priorty": 1},  # a typo is an unknown field
        {},  # operation is required
        {"operation": {}},  # one operation
        {"operation": {"S3PutObjectTagging": {}, "S3DeleteObjectTagging": {}}},
        {"operation": {"S3InitiateRestoreObject": {"GlacierJobTier": "FAST"}}},  # enum from botocore
        {"operation": {"S3PutObjectTagging": {"TagSet": [{"Key": "k"}]}}},  # Value is required
        {"operation": {"S3PutObjectTagging": {"TagSet": []}}, "filter": {"prefixes": "photos/"}},
    ],
)
def test_the_schema_flags_what_an_editor_should(validator, spec):
    assert list(validator.iter_errors(spec))
