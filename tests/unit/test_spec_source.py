"""spec.source: a run that lists its bucket with S3 Batch's manifest generator (no inventory)."""

from __future__ import annotations

import pytest

from batchpipe_core.generator_rules import generator_problems
from batchpipe_core.spec import normalize_spec

from .test_spec import TAGGING, config, rejected, stack_env  # noqa: F401 - fixtures

BUCKET = "my-source-bucket"


def test_a_source_run_replaces_the_inventory_and_acts_on_current_versions(config):  # noqa: F811
    normalized = normalize_spec(
        {
            "source": {"bucket": BUCKET},
            "filter": {"prefixes": ["a b+/"], "minSizeBytes": 1},
            "operation": TAGGING,
        },
        config,
    )

    assert normalized["source"] == {"bucket": BUCKET}
    assert "inventory" not in normalized
    assert normalized["filter"]["prefixes"] == ["a b+/"]
    assert normalized["filter"]["versions"] == "current"
    assert normalize_spec(normalized, config) == normalized


def test_an_all_versions_stack_still_runs_a_source_on_current_versions(config, stack_env):  # noqa: F811
    stack_env.setenv("INVENTORY_VERSIONS", "All")
    from batchpipe_core.config import Config

    normalized = normalize_spec({"source": {"bucket": BUCKET}, "operation": TAGGING}, Config.from_env())

    assert normalized["filter"]["versions"] == "current"


@pytest.mark.parametrize(
    ("spec", "line"),
    [
        (
            {"source": {"bucket": BUCKET}, "filter": {"keyRegex": "x$"}},
            "filter.keyRegex: a regular expression needs the inventory source (omit source)",
        ),
        ({"source": {"bucket": BUCKET}, "filter": {"prefixes": ["a/", "b/"]}}, "filter.prefixes: "),
        ({"source": {"bucket": BUCKET}, "filter": {"where": "size > 0"}}, "filter.where: "),
        (
            {"source": {"bucket": "other-bucket"}},
            "source.bucket: 'other-bucket' is not the bucket the stack's runs act on",
        ),
        ({"source": {"bucket": "arn:aws:s3:::my-source-bucket"}}, "source.bucket: "),
        (
            {"source": {"bucket": BUCKET}, "inventory": {"table": "t"}},
            "source: cannot be combined with inventory",
        ),
        ({"source": {}}, "source: give exactly one of bucket"),
        ({"source": {"bucket": BUCKET, "prefix": "x"}}, "source.prefix: unknown field"),
    ],
)
def test_what_a_source_run_cannot_do_is_refused_by_name(config, spec, line):  # noqa: F811
    problems = rejected(spec | {"operation": TAGGING}, config)

    assert any(problem.startswith(line) for problem in problems), problems


def test_a_rerun_cannot_name_a_source(config):  # noqa: F811
    spec = {
        "rerun": {"failures": "s3://batchpipe-pipelinebucket-1a2b3c4d5e6f/runs/x/permanent-failures.csv"},
        "source": {"bucket": BUCKET},
        "operation": TAGGING,
    }

    assert any("rerun: cannot be combined with source" in line for line in rejected(spec, config))


def test_the_generator_check_and_the_spec_agree(config):  # noqa: F811
    # Every filter the generator check accepts normalizes; each it refuses is refused by the spec.
    for filter_spec in (
        {"prefixes": ["p/"]},
        {"storageClasses": ["GLACIER"]},
        {"encryptionStatuses": ["SSE-C"]},
    ):
        assert generator_problems(filter_spec) == []
        normalize_spec({"source": {"bucket": BUCKET}, "filter": filter_spec, "operation": TAGGING}, config)


def test_a_source_must_be_a_bucket_the_stacks_reruns_may_act_on(config, stack_env):  # noqa: F811
    # Another SourceBuckets member than InventoryPrefix's bucket: its failures could not be rerun.
    stack_env.setenv("SOURCE_BUCKETS", f"{BUCKET},second-bucket")
    from batchpipe_core.config import Config

    problems = rejected({"source": {"bucket": "second-bucket"}, "operation": TAGGING}, Config.from_env())

    assert problems == [
        "source.bucket: 'second-bucket' is not the bucket the stack's runs act on ('my-source-bucket', the source "
        "bucket of InventoryPrefix) within SourceBuckets (my-source-bucket), the buckets its Batch Operations role "
        "may list and act on and its reruns may touch; use that bucket, or a stack whose SourceBuckets and "
        "InventoryPrefix name this one"
    ]
