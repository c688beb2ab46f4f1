"""A run's objects from the bucket's S3 Metadata live inventory table, through Athena (issue #26 §1).

The live inventory table (S3 user guide, "S3 Metadata live inventory tables schema") is an Apache
Iceberg table that S3 keeps in the AWS managed table bucket ``aws-s3``: one row per object version
(delete markers included), updated typically within an hour of a change, with the object's tags and
user metadata as ``map<string, string>`` columns. Athena reads it through the S3 Tables catalog:
catalog ``s3tablescatalog/aws-s3``, database the table's namespace (typically ``b_<bucket name>``),
table ``inventory`` (S3 user guide, "Creating metadata table configurations" and "Querying metadata
tables with AWS analytics services"; the namespace must be double-quoted).

The statement has the shape of the inventory one (``batchpipe_core.query``): an inner SELECT presents
the columns, the filter is written once against it, and the outer SELECT encodes each key for the
manifest. Differences, all from the schema page:

* keys are stored as they are (not URL-encoded, unlike an S3 Inventory CSV), so they are compared
  as read and encoded once for the manifest with the same ``replace(url_encode(key), '+', '%20')``;
* there is no ``is_latest``: for each key the row with the lexicographically largest
  ``sequence_number`` is the newest ("a lexicographically larger sequence_number value implies that
  the record was introduced to the bucket more recently"), so ``latestOnly`` keeps a row only when it
  is its key's newest and not a delete marker (a key whose newest row is a delete marker has no
  current version); delete markers are never selected, as with an all-versions inventory;
* an unencrypted object has ``encryption_status`` NULL where S3 Inventory writes ``NOT-SSE``;
* ``storage_class`` takes fewer values than S3 Inventory's (no OUTPOSTS, no SNOW);
* ``filter.tags`` and ``filter.metadata`` compare the map columns: a pair by its value
  (``element_at``), a key present (``contains(map_keys(...))``), a key absent (its negation). A row
  whose map is NULL (the schema: versions that no longer existed when an event was processed) matches
  no tag or metadata condition at all, not even "absent": what is not known is never selected.
"""

from __future__ import annotations

from typing import Any

from batchpipe_core.errors import SpecValidationError
from batchpipe_core.generator_rules import GENERATOR_SOURCE, generator_only_problems, one_source_problems
from batchpipe_core.inventory_layout import INVENTORY_STORAGE_CLASSES, VERSIONS_CURRENT
from batchpipe_core.query import (
    FILTER_COLUMNS,
    MAX_QUERY_BYTES,
    UNLOAD_OPTIONS,
    check_query,
    filter_conditions,
    quote_literal,
)
from batchpipe_core.where import columns_used, normalize_where

SOURCE = "metadataTable"
# Athena's name for the AWS managed table bucket's catalog (S3 user guide, "Querying metadata tables
# with AWS analytics services"), and the table's name in it ("Creating metadata table configurations").
CATALOG = "s3tablescatalog/aws-s3"
TABLE_BUCKET = "aws-s3"
TABLE = "inventory"
NAMESPACE_PREFIX = "b_"

# The live inventory table's columns and types, in the schema page's order (Long is bigint,
# Timestamp NTZ a timestamp without zone).
COLUMN_TYPES: tuple[tuple[str, str], ...] = (
    ("bucket", "string"),
    ("key", "string"),
    ("sequence_number", "string"),
    ("version_id", "string"),
    ("is_delete_marker", "boolean"),
    ("size", "bigint"),
    ("last_modified_date", "timestamp"),
    ("e_tag", "string"),
    ("storage_class", "string"),
    ("is_multipart", "boolean"),
    ("encryption_status", "string"),
    ("is_bucket_key_enabled", "boolean"),
    ("kms_key_arn", "string"),
    ("checksum_algorithm", "string"),
    ("object_tags", "map<string,string>"),
    ("user_metadata", "map<string,string>"),
)
COLUMNS: tuple[str, ...] = tuple(name for name, _ in COLUMN_TYPES)
MAP_COLUMNS = {"tags": "object_tags", "metadata": "user_metadata"}
# What filter.where may name: every scalar column. The maps are compared through filter.tags and
# filter.metadata, whose conditions are built here.
WHERE_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c not in MAP_COLUMNS.values())
# The schema page's storage_class values: S3 Inventory's but OUTPOSTS and SNOW.
STORAGE_CLASSES: tuple[str, ...] = tuple(
    c for c in INVENTORY_STORAGE_CLASSES if c not in ("OUTPOSTS", "SNOW")
)
NOT_ENCRYPTED = "NOT-SSE"  # S3 Inventory's word for what this table leaves NULL
_NEWEST = "newest_sequence_number"

# Filter fields only this source can evaluate (S3 Inventory has no tags or user metadata).
METADATA_ONLY_FIELDS = {"tags": "object tags", "metadata": "user metadata"}


def default_namespace(bucket: str) -> str:
    """The namespace S3 typically gives a bucket's metadata tables (S3 user guide)."""
    return f"{NAMESPACE_PREFIX}{bucket}"


def metadata_only_problems(filter_spec: dict[str, Any] | None, source: str) -> list[str]:
    """filter.tags / filter.metadata on a source that has no such columns: one line each, naming the fix."""
    return one_source_problems(
        filter_spec,
        METADATA_ONLY_FIELDS,
        only="are only in the S3 Metadata live inventory table",
        use='"source": {"metadataTable": {}} (the stack\'s MetadataTableBucket)',
        source=source,
    )


def source_filter_problems(filter_spec: dict[str, Any] | None) -> list[str]:
    """Inventory filter values this table cannot hold (its storage classes are fewer, it has no
    replication status) and the manifest generator's own filters."""
    filter_spec = filter_spec or {}
    problems = []
    classes = [c for c in filter_spec.get("storageClasses") or [] if c not in STORAGE_CLASSES]
    if classes:
        problems.append(
            f"filter.storageClasses: the S3 Metadata live inventory table never lists {', '.join(classes)}; "
            f"use one of {', '.join(STORAGE_CLASSES)}, or the inventory source (omit source)"
        )
    if filter_spec.get("replicationStatuses") is not None:
        problems.append(
            "filter.replicationStatuses: the S3 Metadata live inventory table has no replication status column; "
            f"use the inventory source (omit source) or {GENERATOR_SOURCE}"
        )
    return problems + generator_only_problems(filter_spec, "the S3 Metadata source")


def map_conditions(filter_spec: dict[str, Any]) -> list[str]:
    """filter.tags and filter.metadata as conditions over ``object_tags`` and ``user_metadata``."""
    conditions: list[str] = []
    for field, column in MAP_COLUMNS.items():
        spec = filter_spec.get(field) or {}
        where = f"filter.{field}"
        for pair in spec.get("allOf") or []:
            conditions.append(_pair_condition(column, pair, f"{where}.allOf"))
        alternatives = [_pair_condition(column, pair, f"{where}.anyOf") for pair in spec.get("anyOf") or []]
        if alternatives:
            conditions.append(alternatives[0] if len(alternatives) == 1 else f"({' OR '.join(alternatives)})")
        for key in spec.get("absent") or []:
            conditions.append(f"NOT contains(map_keys({column}), {quote_literal(key, f'{where}.absent')})")
    return conditions


def _pair_condition(column: str, pair: dict[str, Any], field: str) -> str:
    key = quote_literal(pair["key"], f"{field}.key")
    if pair.get("value") is None:
        return f"contains(map_keys({column}), {key})"
    return f"element_at({column}, {key}) = {quote_literal(pair['value'], f'{field}.value')}"


def table_name(catalog: str, namespace: str, table: str) -> str:
    """The table's fully qualified Athena name, every part double-quoted (the catalog holds a '/')."""
    for part, field in ((catalog, "catalog"), (namespace, "namespace"), (table, "table")):
        if not part or '"' in part or not part.isprintable():
            raise SpecValidationError(f"source.metadataTable.{field}: {part!r} cannot name an Athena table")
    return f'"{catalog}"."{namespace}"."{table}"'


def build_metadata_unload_sql(spec: dict, *, output_uri: str) -> str:
    """The ``UNLOAD`` statement whose output files are the manifest rows of ``spec`` over the table in
    ``spec.source.metadataTable``. For ``{"filter": {"prefixes": ["photos/"], "tags": {"allOf":
    [{"key": "project", "value": "atlas"}]}}}`` (latestOnly and "pinned" by default) it builds::

        UNLOAD (
        SELECT bucket, replace(url_encode(key), '+', '%20') AS key, coalesce(version_id, 'null') AS version_id
        FROM (
          SELECT
            bucket,
            key,
            sequence_number,
            nullif(version_id, '') AS version_id,
            is_delete_marker,
            object_tags,
            max(sequence_number) OVER (PARTITION BY key) AS newest_sequence_number
          FROM "s3tablescatalog/aws-s3"."b_my-bucket"."inventory"
        ) AS inventory
        WHERE is_delete_marker = false
          AND sequence_number = newest_sequence_number
          AND starts_with(key, 'photos/')
          AND element_at(object_tags, 'project') = 'atlas'
        ) TO 's3://pipe/run/athena/' WITH (format = 'TEXTFILE', field_delimiter = ',', compression = 'NONE')
    """
    if not output_uri.startswith("s3://") or not output_uri.endswith("/"):
        raise ValueError(f"output_uri must be an s3:// prefix ending in '/', not {output_uri!r}")
    location = (spec.get("source") or {}).get(SOURCE) or {}
    table = table_name(
        location.get("catalog", CATALOG), location.get("namespace", ""), location.get("table", TABLE)
    )
    filter_spec = dict(spec.get("filter") or {})
    latest = bool(filter_spec.get("latestOnly"))
    pinned = filter_spec.get("versions") != VERSIONS_CURRENT
    conditions = ["is_delete_marker = false"]
    if latest:
        conditions.append(f"sequence_number = {_NEWEST}")
    # The inventory's own conditions (prefixes, regex, classes, sizes, dates): versions "Current" so
    # that none of its version columns is added; NOT-SSE is this table's NULL.
    statuses = filter_spec.get("encryptionStatuses") or []
    inventory_filter = {
        name: value
        for name, value in filter_spec.items()
        if name
        not in ("latestOnly", "versions", "where", "encryptionStatuses", "replicationStatuses", *MAP_COLUMNS)
    }
    built, _ = filter_conditions(inventory_filter, versions="Current")
    conditions += built
    if statuses:
        conditions.append(_encryption_condition(statuses))
    conditions += map_conditions(filter_spec)
    where_text = validated_where(filter_spec.get("where"))
    if where_text is not None:
        conditions.append(f"({where_text})")
    needed = needed_columns(filter_spec, pinned=pinned, latest=latest, where_text=where_text)
    inner = [f"    {_inner_column(column)}" for column in needed]
    if latest:
        inner.append(f"    max(sequence_number) OVER (PARTITION BY key) AS {_NEWEST}")
    output = ["bucket", "replace(url_encode(key), '+', '%20') AS key"]
    if pinned:
        output.append("coalesce(version_id, 'null') AS version_id")
    lines = [
        "SELECT " + ", ".join(output),
        "FROM (",
        "  SELECT",
        ",\n".join(inner),
        f"  FROM {table}",
        ") AS inventory",
    ]
    for index, condition in enumerate(conditions):
        lines.append(f"{'WHERE' if index == 0 else '  AND'} {condition}")
    query = "\n".join(lines)
    check_query(query, table=location.get("table", TABLE), conditions=len(conditions), windows=int(latest))
    statement = f"UNLOAD (\n{query}\n) TO {quote_literal(output_uri, 'outputUri')} WITH ({UNLOAD_OPTIONS})"
    size = len(statement.encode())
    if size > MAX_QUERY_BYTES:
        raise SpecValidationError(
            f"filter: the Athena statement it makes is {size:,} bytes, over Athena's limit of "
            f"{MAX_QUERY_BYTES:,} bytes per query; use fewer or shorter filter values"
        )
    return statement


def _encryption_condition(statuses: list[str]) -> str:
    named = [s for s in statuses if s != NOT_ENCRYPTED]
    parts = []
    if named:
        parts.append(
            f"encryption_status IN ({', '.join(quote_literal(s, 'filter.encryptionStatuses') for s in named)})"
        )
    if NOT_ENCRYPTED in statuses:
        parts.append("encryption_status IS NULL")
    return parts[0] if len(parts) == 1 else f"({' OR '.join(parts)})"


def validated_where(where: Any) -> str | None:
    """sqlglot's rendering of ``where`` once it is one condition over this table's scalar columns."""
    if where is None:
        return None
    if not isinstance(where, str):
        raise SpecValidationError("filter.where must be a string condition")
    return normalize_where(where, WHERE_COLUMNS)


def needed_columns(filter_spec: dict, *, pinned: bool, latest: bool, where_text: str | None) -> list[str]:
    """The columns the statement reads, in the table's order (an Iceberg table is billed by the
    columns read, as Parquet is)."""
    wanted = {"bucket", "key", "is_delete_marker"}
    if pinned:
        wanted.add("version_id")
    if latest:
        wanted.add("sequence_number")
    for field, column in (*FILTER_COLUMNS, *MAP_COLUMNS.items()):
        if filter_spec.get(field) not in (None, [], ""):
            wanted.add(column)
    if where_text is not None:
        wanted |= columns_used(where_text)
    return [column for column in COLUMNS if column in wanted]


def _inner_column(column: str) -> str:
    # The schema page's example leaves an unversioned object's version_id empty: the same as none.
    return "nullif(version_id, '') AS version_id" if column == "version_id" else column
