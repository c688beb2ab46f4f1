"""The spec checks that depend on the stack's parameters (its buckets, inventory versions, allowed
operations, table columns) and the Athena statement the spec will make: what ValidateSpec checks after
the model (batchpipe_core.spec_model), with the stack's Config.
"""

from __future__ import annotations

from typing import Any

from batchpipe_core import metadata_table
from batchpipe_core.config import Config
from batchpipe_core.errors import SpecValidationError, shown
from batchpipe_core.generator_rules import generator_only_problems, generator_problems
from batchpipe_core.inventory_layout import VERSIONS_CURRENT, known_columns
from batchpipe_core.query import build_unload_sql
from batchpipe_core.rerun import rerun_buckets
from batchpipe_core.s3uri import split_s3_uri
from batchpipe_core.where import normalize_where

# A spec that reaches Athena is checked by building its statement against a placeholder delivery
# and output location at least as long as any real one (a run's folder is a few hundred bytes).
_PLACEHOLDER_PARTITION = "9999-12-31-23-59"
_PLACEHOLDER_FOLDER = "x" * 512


def statement_problems(normalized: dict[str, Any], config: Config) -> list[str]:
    """The Athena statement this spec will make: every value reads back as itself, within limits."""
    if metadata_table.SOURCE in (normalized.get("source") or {}):
        try:
            metadata_table.build_metadata_unload_sql(
                normalized, output_uri=f"s3://{config.pipeline_bucket}/{_PLACEHOLDER_FOLDER}/"
            )
        except SpecValidationError as error:
            return str(error).splitlines()
        return []
    if "filter" not in normalized or "source" in normalized:
        return []  # a rerun reads its failures file, a source run lists its bucket: no inventory
    try:
        build_unload_sql(
            normalized,
            database=normalized["inventory"]["database"],
            table=normalized["inventory"]["table"],
            partition=_PLACEHOLDER_PARTITION,
            inventory_format=config.inventory_format,
            versions=config.inventory_versions,
            output_uri=f"s3://{config.pipeline_bucket}/{_PLACEHOLDER_FOLDER}/",
        )
    except SpecValidationError as error:
        return str(error).splitlines()
    return []


def stack_problems(raw: Any, problems: list[str], config: Config) -> list[str]:
    """Checks that depend on the stack's parameters: filter.where, rerun.failures."""
    return (
        _where_problems(raw, problems, config)
        + _versions_problems(raw, problems, config)
        + _rerun_problems(raw, problems, config)
        + _source_problems(raw, problems, config)
        + _metadata_table_problems(raw, problems, config)
        + _allowed_operation_problems(raw, problems, config)
    )


INVENTORY = "inventory"
SOURCES = (INVENTORY, metadata_table.SOURCE)


def chosen_source(raw: Any, config: Config) -> str:
    """Where the spec's objects come from: "rerun", "bucket", "metadataTable" or "inventory" (the stack's
    DefaultSource when the spec names none)."""
    if not isinstance(raw, dict):
        return INVENTORY
    source = raw.get("source")
    if isinstance(source, dict):
        return metadata_table.SOURCE if metadata_table.SOURCE in source else "bucket"
    if "rerun" in raw:
        return "rerun"
    if "inventory" in raw:
        return INVENTORY
    return config.default_source


def _metadata_table_problems(raw: Any, problems: list[str], config: Config) -> list[str]:
    """filter.tags/metadata only with the metadata table; the table only as the stack allows it."""
    source = chosen_source(raw, config)
    filter_ = raw.get("filter") if isinstance(raw, dict) else None
    if source != metadata_table.SOURCE:
        if source == "rerun" or any(line.startswith("filter") for line in problems):
            return []
        named = {"bucket": "source.bucket", INVENTORY: "the S3 Inventory source"}[source]
        filter_ = filter_ if isinstance(filter_, dict) else None
        found = metadata_table.metadata_only_problems(filter_, named)
        return found if source == "bucket" else found + generator_only_problems(filter_, named)
    if any(line.startswith("source") for line in problems):
        return []
    found = []
    if not config.metadata_table_bucket:
        found.append(
            "source.metadataTable: this stack reads no S3 Metadata live inventory table; deploy it with "
            "MetadataTableBucket set to the bucket whose table to read (docs/DEPLOY.md), or omit source"
        )
    else:
        given = ((raw.get("source") or {}).get(metadata_table.SOURCE) or {}) if "source" in raw else {}
        for field, value in metadata_table_location(config).items():
            if given.get(field) not in (None, value):
                found.append(
                    f"source.metadataTable.{field}: {shown(str(given[field]))} is not the table this stack may read "
                    f"({value!r}: its MetadataTableBucket and MetadataTableNamespace parameters); omit "
                    f"source.metadataTable.{field} or deploy a stack for that table"
                )
    if isinstance(filter_, dict) and not any(line.startswith("filter") for line in problems):
        found += metadata_table.source_filter_problems(filter_)
    return found


def metadata_table_location(config: Config) -> dict[str, str]:
    """The live inventory table the stack's parameters name (normalized spec's source.metadataTable)."""
    return {
        "bucket": config.metadata_table_bucket,
        "catalog": metadata_table.CATALOG,
        "namespace": config.metadata_table_namespace
        or metadata_table.default_namespace(config.metadata_table_bucket),
        "table": metadata_table.TABLE,
    }


def _source_problems(raw: Any, problems: list[str], config: Config) -> list[str]:
    """source.bucket: a bucket the stack may act on, a filter the manifest generator can apply."""
    source = raw.get("source") if isinstance(raw, dict) else None
    bucket = source.get("bucket") if isinstance(source, dict) else None
    if not isinstance(bucket, str) or any(line.startswith("source") for line in problems):
        return []
    found = []
    # The buckets a rerun of this stack may act on (batchpipe_core.rerun): a run whose failures could
    # not be rerun would break the promise that every failure can be.
    allowed = rerun_buckets(config.source_buckets, config.inventory_prefix)
    if bucket not in allowed.names:
        found.append(
            f"source.bucket: {shown(bucket)} is not {allowed.described} "
            f"({', '.join(sorted(allowed.names)) or 'none'}), the buckets its Batch Operations role may list and "
            "act on and its reruns may touch; use that bucket, or a stack whose SourceBuckets and InventoryPrefix "
            "name this one"
        )
    filter_ = raw.get("filter")
    if isinstance(filter_, dict) and not any(line.startswith("filter") for line in problems):
        found += generator_problems(filter_)
    return found


# AllowedOperations entries beyond the operation names: the two uses of S3PutObjectRetention (and
# of a copy's Object Lock settings) that cannot be undone or that shorten a protection. The Batch
# Operations role is granted them only when named (template.yaml, BatchOperationsRole).
COMPLIANCE_RETENTION = "S3PutObjectRetention:COMPLIANCE"
BYPASS_GOVERNANCE = "S3PutObjectRetention:BypassGovernanceRetention"


def _allowed_operation_problems(raw: Any, problems: list[str], config: Config) -> list[str]:
    """An operation the stack's Batch Operations role is not granted: refused here, by name, rather
    than as a job whose every task fails 403 AccessDenied."""
    allowed = config.allowed_operations
    operation = raw.get("operation") if isinstance(raw, dict) else None
    if allowed is None or not isinstance(operation, dict) or len(operation) != 1:
        return []
    if any(line.startswith("operation") for line in problems):
        return []
    ((name, body),) = operation.items()
    fix = "redeploy the stack with {} added to its AllowedOperations parameter, or choose another operation"
    if name not in allowed:
        return [
            f"operation: {name} is not allowed by this stack (AllowedOperations: {', '.join(allowed)}); "
            + fix.format(name)
        ]
    body = body if isinstance(body, dict) else {}
    found = []
    lock_mode = (
        (body.get("Retention") or {}).get("Mode")
        if name == "S3PutObjectRetention"
        else body.get("ObjectLockMode")
    )
    if lock_mode == "COMPLIANCE" and COMPLIANCE_RETENTION not in allowed:
        where = "Retention.Mode" if name == "S3PutObjectRetention" else "ObjectLockMode"
        found.append(
            f"operation.{name}.{where}: COMPLIANCE retention cannot be shortened or removed by anyone once set, "
            f"and this stack does not allow it; " + fix.format(COMPLIANCE_RETENTION) + " (or use GOVERNANCE)"
        )
    if (
        name == "S3PutObjectRetention"
        and body.get("BypassGovernanceRetention") is True
        and BYPASS_GOVERNANCE not in allowed
    ):
        found.append(
            f"operation.{name}.BypassGovernanceRetention: shortening or removing GOVERNANCE retention is not "
            "allowed by this stack; " + fix.format(BYPASS_GOVERNANCE)
        )
    return found


def _versions_problems(raw: Any, problems: list[str], config: Config) -> list[str]:
    """filter.versions and rerun.versions: a choice only an all-versions inventory (with latestOnly) offers."""
    found = []
    for part in ("filter", "rerun"):
        section = raw.get(part) if isinstance(raw, dict) else None
        versions = section.get("versions") if isinstance(section, dict) else None
        field = f"{part}.versions"
        if versions is None or any(line.startswith(f"{field}:") for line in problems):
            continue
        # The live inventory table lists every version with its ID, whatever the S3 Inventory lists, and a
        # stack that reads it reruns its runs' failures with their version IDs too.
        has_versions = (
            config.inventory_versions == "All"
            or (part == "filter" and chosen_source(raw, config) == metadata_table.SOURCE)
            or (part == "rerun" and bool(config.metadata_table_bucket))
        )
        if not has_versions:
            if versions != VERSIONS_CURRENT:  # "current" is what a current-versions inventory always does
                found.append(
                    f'{field}: "{versions}" needs an inventory that lists version IDs, but the stack\'s '
                    "InventoryVersions is Current (jobs act on each key's current version); remove "
                    f"{field} or use a stack with InventoryVersions=All"
                )
        elif part == "filter" and versions == VERSIONS_CURRENT and section.get("latestOnly") is False:
            found.append(
                'filter.versions: "current" acts on each key\'s current version, which only means something '
                'with filter.latestOnly true; remove latestOnly: false or use filter.versions "pinned"'
            )
    return found


def _rerun_problems(raw: Any, problems: list[str], config: Config) -> list[str]:
    """A failures file outside the pipeline bucket: the stack may read only its own bucket."""
    rerun = raw.get("rerun") if isinstance(raw, dict) else None
    uri = rerun.get("failures") if isinstance(rerun, dict) else None
    if not isinstance(uri, str) or any(line.startswith("rerun.failures:") for line in problems):
        return []
    bucket, _ = split_s3_uri(uri)  # an s3:// URI: the model refused any other (rerun.failures above)
    if bucket == config.pipeline_bucket:
        return []
    return [
        f"rerun.failures: is in bucket {shown(bucket)}, but the stack reads failures files only from its pipeline "
        f"bucket {config.pipeline_bucket!r}, where runs write them; copy the file there"
    ]


def _where_problems(raw: Any, problems: list[str], config: Config) -> list[str]:
    """filter.where against this stack's inventory table, whose columns depend on its parameters."""
    filter_ = raw.get("filter") if isinstance(raw, dict) else None
    where = filter_.get("where") if isinstance(filter_, dict) else None
    if not isinstance(where, str) or any(line.startswith("filter.where:") for line in problems):
        return []
    columns = (
        metadata_table.WHERE_COLUMNS
        if chosen_source(raw, config) == metadata_table.SOURCE
        else known_columns(config.inventory_versions)
    )
    try:
        normalize_where(where, columns)
    except SpecValidationError as error:
        return str(error).splitlines()
    return []
