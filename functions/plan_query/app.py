"""PlanQuery: picks the inventory delivery (``dt`` partition) and builds the Athena UNLOAD statement.

The statement reads a table with exactly the delivery's columns (batchpipe_core.inventory_table), so
any selection of optional inventory fields works; a field the filter needs but the delivery lacks
fails the run here, before any query or job, naming the field to enable.

The statement runs in the state machine (StartQuery, then a GetQueryStatus loop), so no Lambda
waits on Athena; its output files under ``<run.prefix>athena/`` are the manifest rows.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.parser import parse
from pydantic import Field

from batchpipe_core.config import Config
from batchpipe_core.inventory_layout import check_delivery, resolve_delivery
from batchpipe_core.inventory_table import delivery_table
from batchpipe_core.jobs import RunRef, StatePart, transient_as_retryable
from batchpipe_core.keys import as_folder
from batchpipe_core.metadata_table import SOURCE as METADATA_SOURCE
from batchpipe_core.metadata_table import build_metadata_unload_sql
from batchpipe_core.observability import instrumented, logger
from batchpipe_core.query import build_unload_sql, needed_columns

# Athena's name for the account's Glue Data Catalog, where the stack's inventory table lives.
DEFAULT_CATALOG = "AwsDataCatalog"


class InventoryChoice(StatePart):
    database: str | None = None
    table: str | None = None
    date: str | None = None


class QuerySpec(StatePart):
    """The parts of the validated spec that shape the query (``filter`` is read by the SQL builder)."""

    inventory: InventoryChoice = Field(default_factory=InventoryChoice)
    source: dict[str, Any] | None = None
    filter: dict[str, Any] | None = None


class PlanQueryInput(StatePart):
    spec: QuerySpec
    run: RunRef


@instrumented
def handler(event: dict, context: Any) -> dict:
    request = parse(event=event, model=PlanQueryInput)
    return plan_query(request, Config.from_env(), boto3.client("s3"), boto3.client("glue"))


def plan_query(request: PlanQueryInput, config: Config, s3: Any, glue: Any) -> dict:
    """The ``query`` state document: sql, workGroup, catalog, database, table, partition, outputPrefix,
    delivery."""
    spec = request.spec.model_dump()
    output_prefix = f"s3://{config.pipeline_bucket}/{as_folder(request.run.prefix)}athena/"
    table = (request.spec.source or {}).get(METADATA_SOURCE)
    if table is not None:
        return plan_metadata_table_query(spec, table, config, output_prefix)
    inventory = request.spec.inventory
    database = inventory.database or config.inventory_database
    table = inventory.table or config.inventory_table
    # Validates filter.where against every inventory column before any request is made.
    columns = needed_columns(spec, versions=config.inventory_versions)
    with transient_as_retryable("resolving the inventory delivery"):
        delivery = resolve_delivery(
            s3,
            bucket=config.inventory_bucket,
            prefix=config.inventory_prefix,
            date=inventory.date or "latest",
        )
    check_delivery(
        delivery,
        inventory_format=config.inventory_format,
        versions=config.inventory_versions,
        needed=columns,
    )
    with transient_as_retryable("preparing the inventory table"):
        delivery_table_name = delivery_table(
            glue,
            database=database,
            base_table=table,
            delivery=delivery,
            bucket=config.inventory_bucket,
            prefix=config.inventory_prefix,
        )
    sql = build_unload_sql(
        spec,
        database=database,
        table=delivery_table_name,
        columns=delivery.columns,
        partition=delivery.partition,
        inventory_format=config.inventory_format,
        versions=config.inventory_versions,
        output_uri=output_prefix,
    )
    logger.info(
        "query planned",
        extra={
            "partition": delivery.partition,
            "manifest": delivery.manifest_key,
            "columns": columns,
            "table": delivery_table_name,
        },
    )
    return {
        "sql": sql,
        "workGroup": config.athena_workgroup,
        "catalog": DEFAULT_CATALOG,
        "database": database,
        "table": delivery_table_name,
        "partition": delivery.partition,
        "outputPrefix": output_prefix,
        "delivery": {
            "folder": delivery.folder,
            "manifest": f"s3://{config.inventory_bucket}/{delivery.manifest_key}",
            "files": delivery.files,
            "sizeBytes": delivery.size_bytes,
        },
    }


def plan_metadata_table_query(spec: dict, table: dict[str, Any], config: Config, output_prefix: str) -> dict:
    """A ``source.metadataTable`` run: one statement over the live inventory table, which has no
    deliveries to choose from (S3 keeps it current), so there is nothing to resolve first."""
    sql = build_metadata_unload_sql(spec, output_uri=output_prefix)
    logger.info("query planned", extra={"source": METADATA_SOURCE, "table": table})
    return {
        "sql": sql,
        "workGroup": config.athena_workgroup,
        # QueryExecutionContext as the S3 user guide says ("Querying metadata tables with AWS analytics
        # services"): the catalog s3tablescatalog/aws-s3 and the table's namespace as database.
        "catalog": table["catalog"],
        "database": table["namespace"],
        "table": table["table"],
        "partition": None,
        "outputPrefix": output_prefix,
        "delivery": None,
    }
