"""The Glue table a run queries: the stack's inventory table, with the columns of the delivery it reads.

A CSV inventory is read by position, so a table must declare exactly the fields the delivery has, in
its order; ORC and Parquet are read by name, and a table declaring a type other than the file's fails
the query. Inventory configurations select any subset of optional fields (and S3 adds new ones), so
the stack's ``InventoryTable`` (CloudFormation's) is used as the template for everything else — its
location, SerDe, and partition projection on ``dt`` — and PlanQuery creates a sibling table whose
columns are the delivery's ``fileSchema``, named after a digest of its whole definition:

* the same definition always gets the same name, so concurrent runs agree and nothing is rewritten;
* a changed inventory configuration (or stack parameters) gets a new table on its first run: no
  redeploy;
* only the newest ``KEEP`` such tables of a base table are kept (tables of older definitions are
  deleted when a new one is made), so the catalog holds a few tables, never a growing pile. Only
  tables carrying this module's marker parameter are ever deleted.

Glue API: CreateTable, GetTable, GetTables, DeleteTable (AWS Glue API reference, "Table API").
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from batchpipe_core.inventory_layout import Delivery, InventorySchemaError

MARKER = "batchpipe.delivery_table_of"
DIGEST = "batchpipe.definition_sha256"
KEEP = 4
# Parameters CreateTable rejects or that describe another table (Glue returns them on GetTable).
_TABLE_INPUT_KEYS = (
    "Description",
    "Owner",
    "Retention",
    "StorageDescriptor",
    "PartitionKeys",
    "TableType",
    "Parameters",
)


class InventoryNotReadableError(InventorySchemaError):
    """The delivery exists but the table cannot read it (projection range, location): a setup problem."""


def delivery_table(
    glue: Any, *, database: str, base_table: str, delivery: Delivery, bucket: str, prefix: str
) -> str:
    """The name of a table over ``database.base_table``'s location with ``delivery``'s columns.

    Checks first that the base table can read the delivery at all (its location is the inventory's
    ``hive/`` folder and the delivery's ``dt`` lies inside its partition projection range), since a
    query over a partition the table cannot see returns no rows rather than an error.
    """
    try:
        base = glue.get_table(DatabaseName=database, Name=base_table)["Table"]
    except glue.exceptions.EntityNotFoundException:
        raise InventoryNotReadableError(
            f"The Glue table {database}.{base_table} does not exist: omit inventory.database and "
            "inventory.table to use the stack's own table, or name an existing one."
        ) from None
    check_readable(base, delivery=delivery, bucket=bucket, prefix=prefix, table=f"{database}.{base_table}")
    table_input = derived_table_input(base, delivery)
    name = table_input["Name"]
    try:
        glue.get_table(DatabaseName=database, Name=name)
        return name
    except glue.exceptions.EntityNotFoundException:
        pass
    try:
        glue.create_table(DatabaseName=database, TableInput=table_input)
    except glue.exceptions.AlreadyExistsException:
        return name  # a concurrent run made the same definition
    _prune(glue, database=database, base_table=base_table, keep=name)
    return name


def derived_table_input(base: dict, delivery: Delivery) -> dict:
    """Glue ``TableInput``: ``base`` with the delivery's columns (and types), named by its digest."""
    table_input = {k: copy.deepcopy(base[k]) for k in _TABLE_INPUT_KEYS if k in base}
    descriptor = table_input["StorageDescriptor"]
    csv = "OpenCSVSerde" in str((descriptor.get("SerdeInfo") or {}).get("SerializationLibrary", ""))
    # OpenCSVSerde reads every value as text; ORC and Parquet columns take the file's own types.
    descriptor["Columns"] = [
        {"Name": column, "Type": "string" if csv else kind} for column, kind in delivery.types
    ]
    parameters = {k: v for k, v in (table_input.get("Parameters") or {}).items() if k not in (MARKER, DIGEST)}
    digest = hashlib.sha256(json.dumps(table_input | {"Parameters": parameters}, sort_keys=True).encode())
    short = digest.hexdigest()[:16]
    table_input["Parameters"] = parameters | {MARKER: base["Name"], DIGEST: digest.hexdigest()}
    table_input["Name"] = f"{base['Name']}_{short}"[:255]
    table_input["Description"] = (
        f"Made by batchpipe for inventory deliveries with fileSchema {', '.join(delivery.columns)}"
    )[:2048]
    return table_input


def check_readable(base: dict, *, delivery: Delivery, bucket: str, prefix: str, table: str) -> None:
    """Raise :class:`InventoryNotReadableError` when ``base`` cannot see the delivery's partition."""
    location = str(base.get("StorageDescriptor", {}).get("Location", "")).rstrip("/")
    expected = f"s3://{bucket}/{prefix.strip('/')}/hive"
    if location != expected:
        raise InventoryNotReadableError(
            f"The table {table} reads {location or '(no location)'}, but the delivery {delivery.folder} was "
            f"found under s3://{bucket}/{prefix.strip('/')}/, whose table location is {expected}/: use the "
            "stack's own table (omit inventory.table), or deploy the stack with InventoryBucket and "
            "InventoryPrefix pointing at this table's inventory."
        )
    parameters = base.get("Parameters") or {}
    if str(parameters.get("projection.enabled", "")).lower() != "true":
        return
    start = _projection_start(parameters)
    if start is not None and delivery.partition < start:
        raise InventoryNotReadableError(
            f"The inventory delivery {delivery.folder} (dt={delivery.partition}) is before the first partition "
            f"{table}'s partition projection reads (dt={start}), so Athena would read no rows from it: deploy "
            f"the stack with InventoryStartDate={delivery.partition} or earlier, or choose a later delivery "
            "with inventory.date."
        )


def _projection_start(parameters: dict) -> str | None:
    """The range's start as a ``dt`` value, when the projection uses the inventory's own format."""
    if parameters.get("projection.dt.format") != "yyyy-MM-dd-HH-mm":
        return None
    start = str(parameters.get("projection.dt.range", "")).split(",", 1)[0].strip()
    try:
        datetime.strptime(start, "%Y-%m-%d-%H-%M")
    except ValueError:
        return None  # NOW-relative starts: Athena decides
    return start


def _prune(glue: Any, *, database: str, base_table: str, keep: str) -> None:
    """Deletes the older delivery tables of ``base_table`` beyond the newest ``KEEP``."""
    made = []
    for page in glue.get_paginator("get_tables").paginate(DatabaseName=database):
        for table in page.get("TableList", []):
            if (table.get("Parameters") or {}).get(MARKER) == base_table and table["Name"] != keep:
                made.append((table.get("CreateTime") or datetime.min, table["Name"]))
    made.sort(key=lambda item: _naive(item[0]), reverse=True)
    for _, name in made[KEEP - 1 :]:
        try:
            glue.delete_table(DatabaseName=database, Name=name)
        except glue.exceptions.EntityNotFoundException:
            pass  # another run pruned it first


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None) - (moment.utcoffset() or timedelta(0))
