"""The Athena statement that writes a spec's manifest rows straight to S3 (pure: text in, text out).

One inner query presents the chosen ``dt`` partition as a typed, decoded view with the same column
names and types for CSV, Parquet and ORC inventories (CSV columns are all strings and its keys are
URL-encoded); the filters are written once against that view, and the outer SELECT encodes each key
for the manifest. Only the columns the output, the filters and ``where`` use are selected, because
bytes scanned is what Athena charges for.

Key decoding, CSV inventories. S3 Inventory writes CSV keys form-encoded: a space as ``+``, a literal
``+`` as ``%2B`` (cloud-custodian issue #1997, "The S3 object key value supplied in S3 Inventory is
URL-encoded with space encoded as plus"; its fix decodes with ``unquote_plus``). Athena's ``url_decode``
is the inverse of ``url_encode`` (Trino: space -> ``+``), i.e. form-decoding, so ``url_decode(key)`` is
exact whether S3 writes a space as ``+`` or ``%20``.

Key encoding, manifest. ``url_encode`` writes a space as ``+`` and a literal ``+`` as ``%2B``; replacing
``+`` by ``%20`` leaves a text that percent-decoding and form-decoding both turn back into the exact key
(S3 user guide, "Specifying a manifest"; docs/FILTERS.md, "How keys are handled"). The result contains no comma, quote or newline, so Athena's unquoted
TEXTFILE output is a valid CSV manifest.

User text reaches the statement only as string literals (prefixes, keyRegex, storage classes,
encryption statuses), as quoted identifiers from a closed alphabet (database, table), as numbers and
timestamps written from parsed values, and as the validated ``where`` rendering. Each literal is
checked to read back as exactly its value, and the finished statement is parsed back and must be one
SELECT over one table with exactly the conditions that were built: a filter value can never become
SQL, whatever sqlglot or a later edit does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from batchpipe_core.errors import SpecValidationError, shown
from batchpipe_core.inventory_layout import (
    INVENTORY_FORMATS,
    INVENTORY_VERSIONS,
    REPLICATION_NONE,
    VERSIONS_CURRENT,
    is_partition,
    known_columns,
)
from batchpipe_core.where import columns_used, normalize_where

# Glue names: letters, digits and underscores, at most 255 (AWS Glue API, "Name" of Database and
# Table); always written double-quoted, so a leading digit is fine.
_IDENTIFIER = re.compile(r"[A-Za-z0-9_]{1,255}")
# StartQueryExecution's QueryString is 1-262,144 bytes long (Athena API reference; also listed in
# Athena's service quotas as not adjustable).
MAX_QUERY_BYTES = 262_144
# Athena's bigint: what the size column is and the largest integer literal compared with it.
MAX_BIGINT = 2**63 - 1
_DIALECT = "trino"

# How a CSV inventory's string column becomes the typed column Parquet and ORC inventories have.
# Empty strings are what CSV has where the columnar formats have NULL.
_CSV_TIMESTAMP = "CAST(from_iso8601_timestamp(nullif({c}, '')) AS timestamp)"
_CSV_BOOLEAN = "lower({c}) = 'true'"
_CSV_COLUMN_EXPRESSIONS = {
    "bucket": "{c}",
    "key": "url_decode({c})",
    "size": "CAST(nullif({c}, '') AS bigint)",
    "last_modified_date": _CSV_TIMESTAMP,
    "object_lock_retain_until_date": _CSV_TIMESTAMP,
    "lifecycle_expiration_date": _CSV_TIMESTAMP,
    "is_latest": _CSV_BOOLEAN,
    "is_delete_marker": _CSV_BOOLEAN,
    "is_multipart_uploaded": _CSV_BOOLEAN,
}
_CSV_STRING = "nullif({c}, '')"

# The column each filter field compares (the same name in the S3 Metadata live inventory table).
FILTER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("storageClasses", "storage_class"),
    ("encryptionStatuses", "encryption_status"),
    ("replicationStatuses", "replication_status"),
    ("minSizeBytes", "size"),
    ("maxSizeBytes", "size"),
    ("modifiedAfter", "last_modified_date"),
    ("modifiedBefore", "last_modified_date"),
)

UNLOAD_OPTIONS = "format = 'TEXTFILE', field_delimiter = ',', compression = 'NONE'"


def build_unload_sql(
    spec: dict,
    *,
    database: str,
    table: str,
    partition: str,
    inventory_format: str,
    versions: str,
    output_uri: str,
    columns: Sequence[str] | None = None,
) -> str:
    """The ``UNLOAD`` statement whose output files are the manifest rows of ``spec``'s filter.

    For ``{"filter": {"prefixes": ["photos/"], "minSizeBytes": 1}}`` over a CSV, current-versions
    inventory it builds::

        UNLOAD (
        SELECT bucket, replace(url_encode(key), '+', '%20') AS key
        FROM (
          SELECT
            bucket,
            url_decode(key) AS key,
            CAST(nullif(size, '') AS bigint) AS size
          FROM "db"."inventory"
          WHERE dt = '2024-05-01-00-00'
        ) AS inventory
        WHERE starts_with(key, 'photos/')
          AND size >= 1
        ) TO 's3://pipe/run/athena/' WITH (format = 'TEXTFILE', field_delimiter = ',', compression = 'NONE')

    With ``versions="All"`` every row also gets its version ID (``null`` for null versions) unless
    ``filter.versions`` is ``"current"`` (the job then acts on each key's current version when it runs),
    delete markers are always excluded and ``latestOnly`` keeps current versions only. A Parquet or ORC
    inventory differs only in the inner SELECT (its columns are typed and its keys are not encoded).
    Filter semantics: prefixes OR-ed, every field AND-ed; sizes inclusive; ``modifiedAfter`` inclusive
    and ``modifiedBefore`` exclusive, so adjacent ranges never overlap.
    """
    if inventory_format not in INVENTORY_FORMATS:
        raise ValueError(f"inventory_format must be one of {INVENTORY_FORMATS}, not {inventory_format!r}")
    if versions not in INVENTORY_VERSIONS:
        raise ValueError(f"versions must be one of {INVENTORY_VERSIONS}, not {versions!r}")
    if not is_partition(partition):
        raise ValueError(f"partition must be a dt value YYYY-MM-DD-HH-MM, not {partition!r}")
    if not output_uri.startswith("s3://") or not output_uri.endswith("/"):
        raise ValueError(f"output_uri must be an s3:// prefix ending in '/', not {output_uri!r}")

    conditions, where_text = filter_conditions(spec.get("filter") or {}, versions=versions)
    output = ["bucket", "replace(url_encode(key), '+', '%20') AS key"]
    if versions == "All" and (spec.get("filter") or {}).get("versions") != VERSIONS_CURRENT:
        output.append("coalesce(version_id, 'null') AS version_id")
    needed = needed_columns(spec, versions=versions, columns=columns)
    inner = ",\n".join(f"    {_inner_column(c, inventory_format)}" for c in needed)
    lines = [
        "SELECT " + ", ".join(output),
        "FROM (",
        "  SELECT",
        inner,
        f"  FROM {quote_identifier(database, 'inventory.database')}.{quote_identifier(table, 'inventory.table')}",
        f"  WHERE dt = {quote_literal(partition, 'inventory.date')}",
        ") AS inventory",
    ]
    if where_text is not None:
        conditions.append(f"({where_text})")
    for index, condition in enumerate(conditions):
        lines.append(f"{'WHERE' if index == 0 else '  AND'} {condition}")
    query = "\n".join(lines)
    check_query(query, table=table, conditions=len(conditions))
    statement = f"UNLOAD (\n{query}\n) TO {quote_literal(output_uri, 'outputUri')} WITH ({UNLOAD_OPTIONS})"
    size = len(statement.encode())
    if size > MAX_QUERY_BYTES:
        raise SpecValidationError(
            f"filter: the Athena statement it makes is {size:,} bytes, over Athena's limit of "
            f"{MAX_QUERY_BYTES:,} bytes per query; use fewer or shorter filter.prefixes, or a shorter "
            "filter.keyRegex or filter.where"
        )
    return statement


def check_query(query: str, *, table: str, conditions: int, windows: int = 0) -> None:
    """The SELECT reads back as built: one SELECT over one table, with ``conditions`` AND-ed terms
    and ``windows`` window functions (the metadata table's newest-version test), no more."""
    try:
        tokens = sqlglot.tokenize(query, read=_DIALECT)
        trees = [tree for tree in sqlglot.parse(query, read=_DIALECT) if tree is not None]
    except (SqlglotError, ValueError, RecursionError) as error:
        raise _unsafe(f"it does not parse ({type(error).__name__})") from None
    if any(token.comments for token in tokens) or any(t.token_type == TokenType.SEMICOLON for t in tokens):
        raise _unsafe("it contains a comment or ';'")
    if len(trees) != 1 or not isinstance(trees[0], exp.Select):
        raise _unsafe("it is not exactly one SELECT")
    tree = trees[0]
    tables = [node.name for node in tree.find_all(exp.Table)]
    selects = list(tree.find_all(exp.Select))
    if tables != [table] or len(selects) != 2 or any(tree.find_all(exp.Union, exp.Join, exp.Lateral)):
        raise _unsafe("it reads something other than the inventory table")
    if len(list(tree.find_all(exp.Window))) != windows:
        raise _unsafe("it has a window function that was not built")
    where = tree.args.get("where")
    found = len(list(where.this.flatten())) if where is not None and isinstance(where.this, exp.And) else 0
    found = found or (1 if where is not None else 0)
    if found != conditions:
        raise _unsafe(f"it has {found} conditions instead of {conditions}")


def _unsafe(reason: str) -> SpecValidationError:
    return SpecValidationError(
        f"filter: the Athena statement built from it does not read back as built ({reason}); "
        "simplify filter.where and check the other filter values"
    )


def filter_conditions(filter_spec: dict, *, versions: str) -> tuple[list[str], str | None]:
    """The filter as conditions over the typed view, plus the validated ``where`` text (or None)."""
    conditions: list[str] = []
    if versions == "All":
        # A delete marker is not an object: no operation can act on it.
        conditions.append("is_delete_marker = false")
        if filter_spec.get("latestOnly"):
            conditions.append("is_latest = true")
    prefixes = filter_spec.get("prefixes") or []
    if prefixes:
        alternatives = [f"starts_with(key, {quote_literal(p, 'filter.prefixes')})" for p in prefixes]
        conditions.append(_any_of(alternatives))
    suffixes = filter_spec.get("suffixes") or []
    if suffixes:
        # Trino has no ends_with: the key's last len(suffix) code points (substr counts code points; a
        # start before the key's first gives '', so a shorter key never matches).
        alternatives = [f"substr(key, -{len(s)}) = {quote_literal(s, 'filter.suffixes')}" for s in suffixes]
        conditions.append(_any_of(alternatives))
    substrings = filter_spec.get("substrings") or []
    if substrings:
        alternatives = [f"strpos(key, {quote_literal(s, 'filter.substrings')}) > 0" for s in substrings]
        conditions.append(_any_of(alternatives))
    if filter_spec.get("keyRegex"):
        conditions.append(f"regexp_like(key, {quote_literal(filter_spec['keyRegex'], 'filter.keyRegex')})")
    if filter_spec.get("storageClasses"):
        classes = _literal_list(filter_spec["storageClasses"], "filter.storageClasses")
        conditions.append(f"storage_class IN ({classes})")
    if filter_spec.get("encryptionStatuses"):
        statuses = _literal_list(filter_spec["encryptionStatuses"], "filter.encryptionStatuses")
        conditions.append(f"encryption_status IN ({statuses})")
    if filter_spec.get("replicationStatuses"):
        # NONE is the inventory's empty ReplicationStatus (NULL in the typed view): not replicated.
        named = [s for s in filter_spec["replicationStatuses"] if s != REPLICATION_NONE]
        parts = (
            [f"replication_status IN ({_literal_list(named, 'filter.replicationStatuses')})"] if named else []
        )
        if REPLICATION_NONE in filter_spec["replicationStatuses"]:
            parts.append("replication_status IS NULL")
        conditions.append(_any_of(parts))
    if filter_spec.get("minSizeBytes") is not None:
        conditions.append(f"size >= {_integer(filter_spec['minSizeBytes'], 'minSizeBytes')}")
    if filter_spec.get("maxSizeBytes") is not None:
        conditions.append(f"size <= {_integer(filter_spec['maxSizeBytes'], 'maxSizeBytes')}")
    if filter_spec.get("modifiedAfter") is not None:
        conditions.append(f"last_modified_date >= {timestamp_literal(filter_spec['modifiedAfter'])}")
    if filter_spec.get("modifiedBefore") is not None:
        conditions.append(f"last_modified_date < {timestamp_literal(filter_spec['modifiedBefore'])}")
    return conditions, _validated_where(filter_spec.get("where"), versions=versions)


def _any_of(alternatives: list[str]) -> str:
    return alternatives[0] if len(alternatives) == 1 else f"({' OR '.join(alternatives)})"


def needed_columns(spec: dict, *, versions: str, columns: Sequence[str] | None = None) -> list[str]:
    """The inventory columns the statement reads, in the table's order (bytes scanned is money).

    ``columns``: the table's; a needed column that is not one is a SpecValidationError (PlanQuery
    checks the delivery first and names the field to enable).
    """
    filter_spec = spec.get("filter") or {}
    wanted = {"bucket", "key"}
    if versions == "All":
        wanted.add("is_delete_marker")
        if filter_spec.get("versions") != VERSIONS_CURRENT:
            wanted.add("version_id")
        if filter_spec.get("latestOnly"):
            wanted.add("is_latest")
    for field, column in FILTER_COLUMNS:
        if filter_spec.get(field) not in (None, [], ""):
            wanted.add(column)
    where_text = _validated_where(filter_spec.get("where"), versions=versions)
    if where_text is not None:
        wanted |= columns_used(where_text)
    order = list(columns) if columns is not None else list(known_columns(versions))
    absent = sorted(wanted - set(order))
    if absent:
        raise SpecValidationError(f"the inventory table has no column {', '.join(absent)}")
    return [column for column in order if column in wanted]


def _inner_column(column: str, inventory_format: str) -> str:
    if inventory_format != "CSV":
        # Parquet/ORC: typed already; an empty version ID means the same as a missing one.
        return "nullif(version_id, '') AS version_id" if column == "version_id" else column
    expression = _CSV_COLUMN_EXPRESSIONS.get(column, _CSV_STRING).format(c=column)
    return column if expression == column else f"{expression} AS {column}"


def _validated_where(where: Any, *, versions: str) -> str | None:
    """sqlglot's rendering of ``where`` once it is one condition over this table's columns, or None."""
    if where is None:
        return None
    if not isinstance(where, str):
        raise SpecValidationError(f"filter.where must be a string condition, not {shown(where)}")
    return normalize_where(where, known_columns(versions))


def quote_literal(value: str, field: str) -> str:
    """A SQL string literal: the only way any user text reaches the statement.

    It must read back as one string token with exactly ``value``, else ``field`` is refused.
    """
    if not isinstance(value, str):
        raise SpecValidationError(f"{field}: expected a string, got {type(value).__name__}")
    literal = "'" + value.replace("'", "''") + "'"
    try:
        literal.encode()
        tokens = sqlglot.tokenize(literal, read=_DIALECT)
    except (SqlglotError, ValueError):
        tokens = []
    if len(tokens) != 1 or tokens[0].token_type != TokenType.STRING or tokens[0].text != value:
        raise SpecValidationError(
            f"{field}: {shown(value)} cannot be written as an Athena string literal that reads back "
            "as itself; it must be valid Unicode text (no unpaired surrogates)"
        )
    return literal


def quote_identifier(name: str, field: str) -> str:
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise SpecValidationError(
            f"{field}: {shown(name)} is not a valid Glue database or table name (1-255 letters, digits "
            "and underscores)"
        )
    return f'"{name}"'


def timestamp_literal(value: str | datetime) -> str:
    """An ISO 8601 instant as a UTC ``TIMESTAMP`` literal, the type of the view's date columns.

    Inventory dates are UTC; a value without a zone is taken as UTC.
    """
    if isinstance(value, str):
        try:
            instant = datetime.fromisoformat(value)
        except ValueError as error:
            raise SpecValidationError(
                f"not an ISO 8601 timestamp: {shown(value)} (e.g. 2024-01-01T00:00:00Z)"
            ) from error
    else:
        instant = value
    if instant.tzinfo is not None:
        instant = instant.astimezone(UTC).replace(tzinfo=None)
    timespec = "milliseconds" if instant.microsecond % 1000 == 0 else "microseconds"
    return f"TIMESTAMP '{instant.isoformat(sep=' ', timespec=timespec)}'"


def _literal_list(values: Iterable[str], field: str) -> str:
    return ", ".join(quote_literal(v, field) for v in values)


def _integer(value: Any, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecValidationError(f"filter.{field} must be an integer number of bytes, not {shown(value)}")
    if not 0 <= value <= MAX_BIGINT:
        raise SpecValidationError(
            f"filter.{field}: must be between 0 and {MAX_BIGINT} (Athena's bigint), got {shown(value)}"
        )
    return str(value)
