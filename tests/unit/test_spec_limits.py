"""Hostile spec documents (issue 11): limits are checked at ValidateSpec, naming the field and the limit,
and no document, however large, deep or oddly encoded, ends in a traceback or a huge message."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path

import pytest

from batchpipe_core.config import Config
from batchpipe_core.errors import SpecValidationError
from batchpipe_core.spec import normalize_spec
from batchpipe_core.spec_document import MAX_SPEC_BYTES, MAX_SPEC_DEPTH, parse_spec_document
from tests.unit.test_spec import STACK_ENV, TAGGING, LambdaContext

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(monkeypatch) -> Config:
    for name, value in STACK_ENV.items():
        monkeypatch.setenv(name, value)
    return Config.from_env()


def rejected(spec, config: Config) -> list[str]:
    with pytest.raises(SpecValidationError) as raised:
        normalize_spec(spec, config)
    return str(raised.value).splitlines()


def spec_with(**fields) -> dict:
    return {"operation": copy.deepcopy(TAGGING), **fields}


def nested(depth: int) -> list:
    """A list nested ``depth`` deep, built without recursion."""
    document: list = []
    for _ in range(depth - 1):
        document = [document]
    return document


# ---------------------------------------------------------------- the reported exploit


def test_the_nested_cast_exploit_fails_at_validate_spec_naming_filter_where(config):
    where = (
        'cast(size as decimal(10, """1)) > 0) UNION ALL SELECT bucket, key FROM db.t '
        'WHERE (CAST(size AS DECIMAL(10, 1""")) > 0'
    )
    (line,) = rejected(spec_with(filter={"prefixes": ["nothing/"], "where": where}), config)
    assert line.startswith("filter.where: type parameters must be integer literals")


# ---------------------------------------------------------------- sizes and numbers


def test_a_spec_over_32_kib_is_refused_naming_the_limit(config):
    prefixes = [f"{index:05d}/" + "p" * 90 for index in range(400)]

    (line,) = rejected(spec_with(filter={"prefixes": prefixes}), config)

    assert line.startswith("spec: is ")
    assert f"bytes of JSON; the maximum is {MAX_SPEC_BYTES:,} (32 KiB)" in line
    assert normalize_spec(spec_with(filter={"prefixes": prefixes[:250]}), config)


def test_a_10_mb_field_is_refused_in_one_short_line(config):
    (line,) = rejected(spec_with(name="x" * 10_000_000), config)

    assert line.startswith("spec: is 10,000,") and len(line) < 300


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("name", "n" * 20_000),
        ("inventory.database", "d" * 20_000),
        ("inventory.date", "2" * 20_000),
        ("filter.storageClasses", ["S" * 20_000]),
        ("filter.modifiedAfter", "t" * 20_000),
        ("filter.where", "k" * 20_000),
        ("filter.keyRegex", "(" * 20_000),
        ("rerun.failures", "f" * 20_000),
        ("report.scope", "r" * 20_000),
        ("operation", {"S3PutObjectTagging": {"TagSet": [{"Key": "k", "Value": "v" * 20_000}]}}),
        ("operation", {"S3PutObjectAcl": {"AccessControlPolicy": {"CannedAccessControlList": "c" * 20_000}}}),
        ("u" * 20_000, True),
    ],
)
def test_error_messages_echo_only_a_short_prefix_of_a_value(config, path, value):
    spec = spec_with()
    *parents, leaf = path.split(".")
    node = spec
    for parent in parents:
        node = node.setdefault(parent, {})
    node[leaf] = value

    lines = rejected(spec, config)

    assert lines and all(len(line) < 500 for line in lines), [len(line) for line in lines]


@pytest.mark.parametrize("field", ["minSizeBytes", "maxSizeBytes"])
def test_sizes_beyond_athenas_bigint_fail_at_validate_spec(config, field):
    assert normalize_spec(spec_with(filter={field: 2**63 - 1}), config)["filter"][field] == 2**63 - 1
    for beyond in (2**63, 10**43):
        assert rejected(spec_with(filter={field: beyond}), config) == [
            f"filter.{field}: is beyond 64-bit integers (at most 9223372036854775807); use a smaller number"
        ]
    assert rejected(json.loads(json.dumps(spec_with(filter={field: 1e43}))), config) == [
        f"filter.{field}: must be an integer, got the number 1e+43"
    ]


def test_any_integer_beyond_64_bits_is_refused_where_it_is(config):
    spec = spec_with(maxObjects=10**400)
    spec["operation"]["S3PutObjectTagging"]["TagSet"][0]["Value"] = -(10**30)

    assert rejected(spec, config) == [
        "operation.S3PutObjectTagging.TagSet[0].Value: is beyond 64-bit integers (at most 9223372036854775807); "
        "use a smaller number",
        "maxObjects: is beyond 64-bit integers (at most 9223372036854775807); use a smaller number",
    ]


# ---------------------------------------------------------------- nesting and encodings


def test_a_value_nested_100000_deep_is_a_clear_error(config):
    assert rejected(spec_with(name=nested(100_000)), config) == [
        f"spec: nests objects and lists more than {MAX_SPEC_DEPTH} levels deep; a spec needs at most 8"
    ]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "spec: is 200,000 bytes of JSON; the maximum is 32,768"),
        ('{"a":' * 40 + "1" + "}" * 40, "spec: nests objects and lists more than 32 levels deep"),
        ('{"name": "' + "[" * 5000 + '", "operation": {}}', None),
        (
            json.dumps(spec_with()).encode("utf-16"),
            "spec: starts with a UTF-16 byte order mark; save it as UTF-8 without one",
        ),
        (
            json.dumps(spec_with()).encode("utf-16-le"),
            "spec: contains NUL bytes, as UTF-16 or UTF-32 text does",
        ),
        (json.dumps(spec_with()).encode("utf-32"), "spec: starts with a UTF-32 byte order mark"),
        (b"\xef\xbb\xbf" + json.dumps(spec_with()).encode(), "spec: starts with a UTF-8 byte order mark"),
        ('{"name": "caf\xe9"}'.encode("latin-1"), "spec: is not UTF-8 text (byte 13); save it as UTF-8"),
        ('{"operation": {}', "spec: is not valid JSON (Expecting ',' delimiter at line 1, column 17)"),
        ('{"maxObjects": NaN}', "spec: NaN is not a JSON number; write a number or a string"),
        ('{"name": "a", "name": "b"}', "spec: the key 'name' appears twice in one object; keep one"),
        ('{"maxObjects": ' + "9" * 5000 + "}", "spec: "),
        ("", "spec: is not valid JSON (Expecting value at line 1, column 1)"),
    ],
)
def test_a_spec_document_is_json_utf8_and_small_or_one_clear_line(document, message):
    if message is None:
        assert parse_spec_document(document)["name"] == "[" * 5000
        return
    with pytest.raises(SpecValidationError) as raised:
        parse_spec_document(document)

    (line,) = str(raised.value).splitlines()
    assert line.startswith(message) and len(line) < 300


def test_a_parsed_document_with_an_unpaired_surrogate_names_the_field(config):
    document = parse_spec_document('{"name": "a\\ud800", "operation": {}}')

    assert rejected(document, config) == [
        "name: it is not valid Unicode text (an unpaired surrogate at character 1)"
    ]


def test_the_handler_turns_a_deep_or_huge_input_into_a_spec_validation_error(config, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "functions"))
    handler = importlib.import_module("validate_spec.app").handler
    execution = {"id": "arn:x", "name": "hostile", "startTime": "t"}

    for spec, message in (
        (nested(100_000), "spec: nests objects and lists more than 32 levels deep"),
        (spec_with(filter={"prefixes": ["p" * 40_000]}), "spec: is 40,"),
    ):
        with pytest.raises(SpecValidationError) as raised:
            handler({"spec": spec, "execution": execution}, LambdaContext())
        assert str(raised.value).startswith(message)


def test_the_stackless_check_applies_the_document_limits_too():
    from batchpipe_core.spec_model import check_spec_model

    with pytest.raises(SpecValidationError, match=r"^spec: nests objects and lists more than 32 levels deep"):
        check_spec_model(spec_with(name=nested(100_000)))
    with pytest.raises(SpecValidationError, match=r"^maxObjects: is beyond 64-bit integers"):
        check_spec_model(spec_with(maxObjects=10**100))
