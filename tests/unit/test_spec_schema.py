"""The committed JSON Schema of the job spec is the model's, every shipped example satisfies it, and it
accepts exactly the specs ValidateSpec accepts wherever JSON Schema can say the rule."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from batchpipe.cli import main
from batchpipe.local.template import load_template
from batchpipe.spec_schema import COMMITTED_PATH, spec_schema
from batchpipe_core.config import Config
from batchpipe_core.errors import SpecValidationError
from batchpipe_core.jobs import MAX_ATTEMPTS_LIMIT
from batchpipe_core.runlock import unwrap_scheduled_input
from batchpipe_core.spec import normalize_spec
from tests.unit.test_spec import STACK_ENV, TAGGING

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


# ---------------------------------------------------------------- the schema says what ValidateSpec says

PIPELINE_BUCKET = STACK_ENV["PIPELINE_BUCKET"]
SOURCE_BUCKET = STACK_ENV["SOURCE_BUCKETS"]


@pytest.fixture(scope="module")
def all_versions_stack() -> Config:
    """An all-versions stack: every version choice is open to a spec, as the schema allows."""
    with mock.patch.dict(os.environ, STACK_ENV | {"INVENTORY_VERSIONS": "All"}):
        return Config.from_env()


def validate_spec(raw: Any, config: Config) -> list[str]:
    """ValidateSpec's verdict (its handler's two steps): the problems, or [] for a spec it accepts."""
    try:
        spec, _ = unwrap_scheduled_input(raw)
        normalize_spec(spec, config)
    except SpecValidationError as error:
        return str(error).splitlines()
    return []


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(ABSENT), st.none(), values)


ABSENT = object()  # the field is left out (null is a different input: "not given" too, but written)


def _object(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(fields).map(lambda d: {k: v for k, v in d.items() if v is not ABSENT})


def _ints(low: int, high: int) -> st.SearchStrategy[Any]:
    """In range, just outside it, and what is not an integer (a fraction, a string, a boolean)."""
    return st.one_of(st.integers(low, high), st.sampled_from([low - 1, high + 1, 2.5, str(low), True]))


def _names(valid: str, invalid: list[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.from_regex(valid, fullmatch=True), st.sampled_from(invalid))


def _enums(valid: tuple[str, ...]) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(valid), st.sampled_from([valid[0].lower() + "x", "", 1]))


def _lists(items: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(items, min_size=0, max_size=3), items)


TIMESTAMPS = ["2020-01-01T00:00:00Z", "2023-06-30T12:30:00.5Z", "2024-01-01T00:00:00.123456Z"]
# Values JSON Schema can say nothing against (a real date, a regex's syntax, a predicate's grammar,
# min <= max) are drawn valid: the property is about what it can say.
SPECS = _object(
    name=_maybe(_names(r"[A-Za-z0-9._-]{1,64}", ["", ".", "..", "a/b", "x" * 65, "naïve", 7])),
    inventory=_maybe(
        _object(
            database=_maybe(_names(r"[A-Za-z0-9_]{1,20}", ["", "my-db", "db.x", 1])),
            table=_maybe(_names(r"[A-Za-z0-9_]{1,20}", ["", "inv table"])),
            date=_maybe(
                st.sampled_from(
                    ["latest", "2024-05-01", "2024-05-01-00-00", "LATEST", "2024-5-1", "May 1", 20240501]
                )
            ),
        )
    ),
    source=_maybe(
        st.one_of(
            _object(bucket=st.sampled_from([SOURCE_BUCKET, "My_Bucket", "s3://" + SOURCE_BUCKET, 3])),
            st.just({}),
            st.just({"bucket": SOURCE_BUCKET, "prefix": "x/"}),
        )
    ),
    filter=_maybe(
        _object(
            prefixes=_maybe(_lists(st.sampled_from(["photos/", "logs/2024/", "", "k" * 1025, 5]))),
            suffixes=_maybe(_lists(st.sampled_from([".jpg", " +%é", "", "k" * 1025, 5]))),
            substrings=_maybe(_lists(st.sampled_from(["/raw/", "a b", "", 5]))),
            keyRegex=_maybe(st.sampled_from(["\\.jpe?g$", "^logs/", "", "a" * 4097, 5])),
            storageClasses=_maybe(_lists(_enums(("STANDARD", "GLACIER", "OUTPOSTS", "SNOW")))),
            minSizeBytes=_maybe(_ints(0, 1000)),
            maxSizeBytes=_maybe(st.one_of(st.integers(1000, 2**63 - 1), st.sampled_from([2**63, -1, 1e3]))),
            modifiedBefore=_maybe(st.sampled_from([*TIMESTAMPS[2:], "2024-01-01", "2024-01-01 00:00:00Z"])),
            modifiedAfter=_maybe(st.sampled_from([*TIMESTAMPS[:2], "2020-01-01T00:00:00+00:00", 0])),
            encryptionStatuses=_maybe(_lists(_enums(("NOT-SSE", "SSE-KMS")))),
            replicationStatuses=_maybe(_lists(_enums(("NONE", "FAILED", "PENDING")))),
            eligibleForReplication=_maybe(st.sampled_from([True, False, "true", 1])),
            latestOnly=_maybe(st.sampled_from([True, False, "true", 1])),
            versions=_maybe(st.sampled_from(["pinned", "current", "Pinned", "all"])),
            where=_maybe(st.sampled_from(["size > 0", "storage_class = 'GLACIER'", 1])),
        )
    ),
    rerun=_maybe(
        st.one_of(
            _object(
                failures=st.sampled_from(
                    [
                        f"s3://{PIPELINE_BUCKET}/runs/r/e/s/permanent-failures.csv",
                        f"s3://{PIPELINE_BUCKET}/",
                        f"https://{PIPELINE_BUCKET}/f.csv",
                        7,
                    ]
                ),
                errorCodes=_maybe(_lists(st.sampled_from(["AccessDenied", "SlowDown", "", 403]))),
                versions=_maybe(st.sampled_from(["pinned", "current", "latest"])),
            ),
            st.just({"errorCodes": ["AccessDenied"]}),
        )
    ),
    operation=st.sampled_from(
        [
            {"S3PutObjectTagging": {"TagSet": [{"Key": "k", "Value": "v"}]}},
            {"S3InitiateRestoreObject": {"ExpirationInDays": 1, "GlacierJobTier": "BULK"}},
            {"S3InitiateRestoreObject": {"GlacierJobTier": "FAST"}},
            {"S3PutObjectTagging": {"TagSet": [{"Key": "k"}]}},
            {},
            {"S3PutObjectTagging": {"TagSet": []}, "S3DeleteObjectTagging": {}},
            ABSENT,
        ]
    ),
    report=_maybe(_object(scope=_maybe(_enums(("AllTasks", "FailedTasksOnly"))))),
    retry=_maybe(
        _object(maxAttempts=_maybe(_ints(1, MAX_ATTEMPTS_LIMIT)), backoffSeconds=_maybe(_ints(0, 86_400)))
    ),
    priority=_maybe(_ints(0, 2_147_483_647)),
    confirmationRequired=_maybe(st.sampled_from([True, False, "false", 0])),
    dryRun=_maybe(st.sampled_from([True, False, "true", 1])),
    maxObjects=_maybe(_ints(1, 2**63 - 1)),
    concurrency=_maybe(_enums(("skip", "wait", "force"))),
    priorty=st.sampled_from([ABSENT, ABSENT, ABSENT, 1]),  # a typo is an unknown field
)
SCHEDULED_TIMES = [
    "2026-12-06T03:00:00Z",
    "2026-12-06T03:00:00.123Z",
    "<aws.scheduler.scheduled-time>",
    "today",
]


def _inexpressible(spec: Any) -> bool:
    """Rules between fields that JSON Schema cannot compare: size bounds, date order, and the
    all-versions stack's "current needs latestOnly" (a stack rule: a current-versions stack allows it)."""
    filter_ = spec.get("filter") if isinstance(spec, dict) else None
    if not isinstance(filter_, dict):
        return False
    low, high = filter_.get("minSizeBytes"), filter_.get("maxSizeBytes")
    after, before = filter_.get("modifiedAfter"), filter_.get("modifiedBefore")
    return (
        (type(low) is int and type(high) is int and low > high)
        or (after in TIMESTAMPS and before in TIMESTAMPS and after >= before)
        or (filter_.get("versions") == "current" and filter_.get("latestOnly") is False)
    )


@given(
    spec=SPECS,
    scheduled=st.one_of(st.none(), st.sampled_from(SCHEDULED_TIMES), st.just({"scheduledTime": 1})),
)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_schema_accepts_exactly_what_validate_spec_accepts(
    validator, all_versions_stack, spec, scheduled
):
    assume(not _inexpressible(spec))
    if scheduled is None:
        raw = spec
    elif isinstance(scheduled, dict):
        raw = {"schedule": scheduled, "spec": spec}
    else:
        raw = {"schedule": {"scheduledTime": scheduled}, "spec": spec}

    problems = validate_spec(raw, all_versions_stack)
    schema_errors = [error.message for error in validator.iter_errors(raw)]

    assert (problems == []) == (schema_errors == []), (
        f"ValidateSpec: {problems or 'accepted'}; schema: {schema_errors[:3] or 'accepted'}"
    )


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ({"operation": TAGGING, "concurrency": "sometimes"}, "concurrency is one of skip, wait, force"),
        ({"operation": TAGGING, "retry": {"maxAttempts": 11}}, "at most 10 attempts"),
        ({"operation": TAGGING, "priority": -1}, "priority at least 0"),
        ({"operation": TAGGING, "priority": 10.5}, "priority is an integer"),
        ({"operation": TAGGING, "name": "nightly run"}, "a run name names S3 keys and tags"),
        (
            {"operation": TAGGING, "rerun": {"failures": "s3://b/f.csv"}, "filter": {"prefixes": ["a/"]}},
            "rerun replaces filter",
        ),
    ],
)
def test_the_schema_refuses_what_the_issue_found_it_accepting(validator, spec, why):
    assert list(validator.iter_errors(spec)), why


def test_the_schema_accepts_the_templates_own_scheduled_input(validator):
    template = load_template()
    events = template["Resources"]["PipelineStateMachine"]["Properties"]["Events"]
    (schedule,) = (event for event in events.values() if event["Type"] == "ScheduleV2")
    default_spec = template["Parameters"]["ScheduleSpec"]["Default"]
    # What the scheduler sends: the stack's input with its time filled in.
    sent = (
        schedule["Properties"]["Input"]["Fn::Sub"]
        .replace("${ScheduleSpec}", default_spec)
        .replace("<aws.scheduler.scheduled-time>", "2026-12-06T03:00:00Z")
    )

    assert list(validator.iter_errors(json.loads(sent))) == []


def _properties(node: dict[str, Any], defs: dict[str, Any], path: str = "") -> dict[str, dict[str, Any]]:
    """Every field of the spec's own models (not botocore's operation), by its path."""
    found = {}
    for name, prop in node.get("properties", {}).items():
        found[path + name] = prop
        target = next((a["$ref"] for a in prop.get("anyOf", []) if "$ref" in a), None)
        if target and name != "operation":
            found |= _properties(defs[target.rsplit("/", 1)[1]], defs, f"{path}{name}.")
    return found


def test_every_field_has_a_description_and_no_null_default():
    schema = spec_schema()
    fields = _properties(schema["$defs"]["JobSpec"], schema["$defs"])

    assert len(fields) > 30
    assert [path for path, prop in fields.items() if not prop.get("description")] == []
    assert [path for path, prop in fields.items() if "default" in prop and prop["default"] is None] == []


def test_the_schemas_defaults_are_what_validate_spec_fills_in_on_a_default_stack(all_versions_stack):
    """The stack's parameters at template.yaml's defaults give the defaults the schema states."""
    parameters = load_template()["Parameters"]
    stack = dataclasses.replace(
        all_versions_stack,
        default_max_attempts=int(parameters["MaxAttempts"]["Default"]),
        default_backoff_seconds=int(parameters["BackoffSeconds"]["Default"]),
        default_priority=int(parameters["DefaultPriority"]["Default"]),
        default_max_objects=int(parameters["DefaultMaxObjects"]["Default"]),
    )
    schema = spec_schema()
    filled = normalize_spec({"operation": TAGGING}, stack)
    stated = {
        path: prop["default"]
        for path, prop in _properties(schema["$defs"]["JobSpec"], schema["$defs"]).items()
        if "default" in prop
    }

    assert stated  # and each is what ValidateSpec fills in for a spec that leaves it out
    for path, default in stated.items():
        section, _, field = path.rpartition(".")
        assert (filled[section] if section else filled)[field] == default, path
