"""source.metadataTable: a run that selects from the bucket's S3 Metadata live inventory table, and the
filter fields (tags, metadata) only that table has."""

from __future__ import annotations

import pytest

from batchpipe_core.config import Config
from batchpipe_core.metadata_table import build_metadata_unload_sql
from batchpipe_core.spec import normalize_spec

from .test_spec import TAGGING, rejected, stack_env  # noqa: F401 - fixtures

BUCKET = "my-source-bucket"
OUTPUT = "s3://pipe/runs/r/e/s/athena/"


@pytest.fixture
def config(stack_env) -> Config:  # noqa: F811
    stack_env.setenv("METADATA_TABLE_BUCKET", BUCKET)
    return Config.from_env()


def test_a_metadata_table_run_reads_the_stacks_table_and_pins_versions(config):
    normalized = normalize_spec(
        {
            "source": {"metadataTable": {}},
            "filter": {
                "prefixes": ["a b+/"],
                "tags": {"allOf": [{"key": "project", "value": "atlas"}], "absent": ["tmp"]},
                "metadata": {"anyOf": [{"key": "owner"}]},
                "where": "is_multipart AND kms_key_arn IS NULL",
            },
            "operation": TAGGING,
        },
        config,
    )

    assert normalized["source"] == {
        "metadataTable": {
            "bucket": BUCKET,
            "catalog": "s3tablescatalog/aws-s3",
            "namespace": f"b_{BUCKET}",
            "table": "inventory",
        }
    }
    assert "inventory" not in normalized
    assert normalized["filter"]["versions"] == "pinned"  # every row has its version ID
    assert normalized["filter"]["tags"] == {
        "allOf": [{"key": "project", "value": "atlas"}],
        "absent": ["tmp"],
    }
    assert normalized["filter"]["metadata"] == {"anyOf": [{"key": "owner"}]}
    assert normalize_spec(normalized, config) == normalized


def test_the_stack_default_source_is_the_metadata_table(config, stack_env):  # noqa: F811
    stack_env.setenv("DEFAULT_SOURCE", "metadataTable")
    stack_env.setenv("METADATA_TABLE_NAMESPACE", "b_custom")

    normalized = normalize_spec(
        {"filter": {"tags": {"anyOf": [{"key": "k"}]}}, "operation": TAGGING}, Config.from_env()
    )

    assert normalized["source"]["metadataTable"]["namespace"] == "b_custom"
    # An inventory named in the spec is still the inventory, where tags are refused.
    lines = rejected(
        {"inventory": {}, "filter": {"tags": {"anyOf": [{"key": "k"}]}}, "operation": TAGGING},
        Config.from_env(),
    )
    assert lines[0].startswith("filter.tags: object tags are only in the S3 Metadata live inventory table")


@pytest.mark.parametrize(
    ("spec", "line"),
    [
        (
            {"filter": {"tags": {"allOf": [{"key": "project", "value": "atlas"}]}}},
            'filter.tags: object tags are only in the S3 Metadata live inventory table; use "source": '
            '{"metadataTable": {}} (the stack\'s MetadataTableBucket), not the S3 Inventory source',
        ),
        (
            {"source": {"bucket": BUCKET}, "filter": {"metadata": {"absent": ["owner"]}}},
            "filter.metadata: user metadata are only in the S3 Metadata live inventory table",
        ),
        (
            {"source": {"metadataTable": {"bucket": "other-bucket"}}},
            "source.metadataTable.bucket: 'other-bucket' is not the table this stack may read",
        ),
        (
            {"source": {"metadataTable": {"namespace": "b_other"}}},
            "source.metadataTable.namespace: 'b_other' is not the table this stack may read",
        ),
        (
            {"source": {"metadataTable": {}}, "filter": {"storageClasses": ["SNOW"]}},
            "filter.storageClasses: the S3 Metadata live inventory table never lists SNOW",
        ),
        (
            {"source": {"metadataTable": {}}, "filter": {"where": "replication_status = 'FAILED'"}},
            "filter.where: column 'replication_status' is an S3 Inventory column",
        ),
        (
            {"source": {"metadataTable": {}}, "filter": {"where": "element_at(object_tags, 'a') = 'b'"}},
            "filter.where: unknown column 'object_tags'",
        ),
        (
            {
                "source": {"metadataTable": {}},
                "filter": {"metadata": {"allOf": [{"key": "Owner", "value": "x"}]}},
            },
            "filter.metadata.allOf[0].key: S3 stores user-defined metadata names in lowercase",
        ),
        (
            {"source": {"metadataTable": {}}, "filter": {"metadata": {"absent": ["x-amz-meta-owner"]}}},
            "filter.metadata.absent[0]: give the name without its x-amz-meta- prefix, e.g. 'owner'",
        ),
        ({"source": {"metadataTable": {}}, "filter": {"tags": {}}}, "filter.tags: give at least one of"),
        (
            {"source": {"metadataTable": {}}, "filter": {"tags": {"anyOf": []}}},
            "filter.tags.anyOf: is an empty list",
        ),
        (
            {"source": {"metadataTable": {}}, "filter": {"tags": {"allOf": [{"key": "k" * 129}]}}},
            "filter.tags.allOf[0].key: must be 1-128 characters",
        ),
        (
            {"source": {"metadataTable": {}}, "filter": {"tags": {"allOf": [{"key": "k", "value": 3}]}}},
            "filter.tags.allOf[0].value: must be a string",
        ),
        (
            {"source": {"metadataTable": {}}, "filter": {"tags": {"allOf": [{"key": "k", "vaule": "v"}]}}},
            "filter.tags.allOf[0].vaule: unknown field",
        ),
        ({"source": {"metadataTable": {}, "bucket": BUCKET}}, "source: give exactly one of bucket"),
    ],
)
def test_what_the_metadata_table_source_cannot_do_is_refused_by_name(config, spec, line):
    problems = rejected({**spec, "operation": TAGGING}, config)

    assert any(problem.startswith(line) for problem in problems), problems


def test_a_stack_without_the_table_refuses_the_source(stack_env):  # noqa: F811
    lines = rejected({"source": {"metadataTable": {}}, "operation": TAGGING}, Config.from_env())

    assert lines == [
        "source.metadataTable: this stack reads no S3 Metadata live inventory table; deploy it with "
        "MetadataTableBucket set to the bucket whose table to read (docs/DEPLOY.md), or omit source"
    ]


def test_pinned_versions_need_no_all_versions_inventory_with_the_table(config):
    assert config.inventory_versions == "Current"

    normalized = normalize_spec(
        {"source": {"metadataTable": {}}, "filter": {"versions": "pinned"}, "operation": TAGGING}, config
    )

    assert normalized["filter"]["versions"] == "pinned"


def _spec(filter_: dict, config: Config) -> dict:
    return normalize_spec({"source": {"metadataTable": {}}, "filter": filter_, "operation": TAGGING}, config)


def test_the_statement_keeps_each_keys_newest_row_and_encodes_keys_once(config):
    spec = _spec(
        {
            "prefixes": ["photos/"],
            "tags": {
                "allOf": [{"key": "project", "value": "atl'as"}],
                "anyOf": [{"key": "a"}, {"key": "b", "value": "c"}],
            },
            "metadata": {"absent": ["owner"]},
            "encryptionStatuses": ["NOT-SSE", "SSE-S3"],
        },
        config,
    )

    assert build_metadata_unload_sql(spec, output_uri=OUTPUT) == (
        "UNLOAD (\n"
        "SELECT bucket, replace(url_encode(key), '+', '%20') AS key, coalesce(version_id, 'null') AS version_id\n"
        "FROM (\n"
        "  SELECT\n"
        "    bucket,\n"
        "    key,\n"
        "    sequence_number,\n"
        "    nullif(version_id, '') AS version_id,\n"
        "    is_delete_marker,\n"
        "    encryption_status,\n"
        "    object_tags,\n"
        "    user_metadata,\n"
        "    max(sequence_number) OVER (PARTITION BY key) AS newest_sequence_number\n"
        '  FROM "s3tablescatalog/aws-s3"."b_my-source-bucket"."inventory"\n'
        ") AS inventory\n"
        "WHERE is_delete_marker = false\n"
        "  AND sequence_number = newest_sequence_number\n"
        "  AND starts_with(key, 'photos/')\n"
        "  AND (encryption_status IN ('SSE-S3') OR encryption_status IS NULL)\n"
        "  AND element_at(object_tags, 'project') = 'atl''as'\n"
        "  AND (contains(map_keys(object_tags), 'a') OR element_at(object_tags, 'b') = 'c')\n"
        "  AND NOT contains(map_keys(user_metadata), 'owner')\n"
        f") TO '{OUTPUT}' WITH (format = 'TEXTFILE', field_delimiter = ',', compression = 'NONE')"
    )


def test_every_version_and_no_version_column_when_asked(config):
    every_version = build_metadata_unload_sql(_spec({"latestOnly": False}, config), output_uri=OUTPUT)
    current = build_metadata_unload_sql(_spec({"versions": "current"}, config), output_uri=OUTPUT)

    assert "OVER" not in every_version and "sequence_number" not in every_version
    assert "WHERE is_delete_marker = false\n)" in every_version  # delete markers are never selected
    assert current.startswith("UNLOAD (\nSELECT bucket, replace(url_encode(key), '+', '%20') AS key\nFROM")
    assert "version_id" not in current


def test_plan_query_plans_the_table_in_its_catalog_without_any_request(config):
    from plan_query.app import PlanQueryInput, plan_query

    spec = _spec({"tags": {"anyOf": [{"key": "k"}]}}, config)
    run = {
        "name": "batchpipe",
        "executionId": "arn:aws:states:us-east-1:123456789012:execution:sm:e",
        "executionName": "e",
        "prefix": "runs/batchpipe/e/s/",
        "bucket": config.pipeline_bucket,
    }

    query = plan_query(PlanQueryInput.model_validate({"spec": spec, "run": run}), config, s3=None, glue=None)

    assert query["catalog"] == "s3tablescatalog/aws-s3"
    assert query["database"] == f"b_{BUCKET}"
    assert query["table"] == "inventory"
    assert query["delivery"] is None and query["partition"] is None
    assert query["sql"] == build_metadata_unload_sql(spec, output_uri=query["outputPrefix"])


def test_the_spec_schema_says_tags_need_the_metadata_table():
    import jsonschema

    from batchpipe.spec_schema import spec_schema

    validator = jsonschema.Draft202012Validator(spec_schema())
    tags = {"tags": {"anyOf": [{"key": "project"}]}}

    assert not list(
        validator.iter_errors({"source": {"metadataTable": {}}, "filter": tags, "operation": TAGGING})
    )
    assert list(validator.iter_errors({"filter": tags, "operation": TAGGING}))
    assert list(
        validator.iter_errors({"source": {"metadataTable": {}, "bucket": BUCKET}, "operation": TAGGING})
    )
    assert list(
        validator.iter_errors(
            {"source": {"metadataTable": {}}, "filter": {"storageClasses": ["SNOW"]}, "operation": TAGGING}
        )
    )
    # A metadata-table run may dry-run, unlike a source.bucket one.
    assert not list(
        validator.iter_errors({"source": {"metadataTable": {}}, "dryRun": True, "operation": TAGGING})
    )


def test_a_stack_reading_the_table_reruns_pinned_versions(config, stack_env):  # noqa: F811
    """A metadata-table run's failures carry version IDs; its Current-inventory stack may rerun them
    "pinned" (a stack without the table may not)."""
    from .test_spec import FAILURES_URI

    spec = {"rerun": {"failures": FAILURES_URI, "versions": "pinned"}, "operation": TAGGING}

    assert normalize_spec(spec, config)["rerun"]["versions"] == "pinned"
    stack_env.delenv("METADATA_TABLE_BUCKET")
    assert rejected(spec, Config.from_env())[0].startswith('rerun.versions: "pinned" needs an inventory')
