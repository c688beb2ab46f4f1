"""The Glue table over an inventory, exactly as template.yaml's ``InventoryTable`` declares it.

Tests and ``preview`` build the table from the template (conditions and parameters resolved), so the
columns, SerDe and partition projection the Athena stand-in reads are the ones that get deployed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import template as tpl
from .world import required_parameters


def inventory_table_input(parameters: Mapping[str, Any] | None = None) -> tuple[str, dict]:
    """(database name, Glue ``TableInput``) of ``InventoryTable`` for these stack parameters
    (e.g. ``InventoryFormat``, ``InventoryVersions``, ``InventoryBucket``, ``InventoryPrefix``)."""

    template = tpl.load_template()
    values = tpl.parameter_values(template, {**required_parameters(template), **(parameters or {})})

    def attr(logical_id: str, attribute: str | None) -> Any:
        resource = template["Resources"][logical_id]
        if resource["Type"] == "AWS::Glue::Database" and attribute is None:
            return values["InventoryDatabaseName"]
        raise tpl.UnresolvableError(f"inventory_table_input cannot resolve {logical_id}.{attribute}")

    resolver = tpl.Resolver(
        template=template,
        parameters=values,
        pseudo={"AWS::AccountId": "123456789012", "AWS::Region": "us-east-1", "AWS::Partition": "aws"},
        attr=attr,
    )
    props = resolver.resolve(template["Resources"]["InventoryTable"]["Properties"])
    return props["DatabaseName"], props["TableInput"]


def create_inventory_table(glue_client: Any, parameters: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """Creates the template's inventory database and table; returns (database, table)."""
    database, table_input = inventory_table_input(parameters)
    try:
        glue_client.create_database(DatabaseInput={"Name": database})
    except glue_client.exceptions.AlreadyExistsException:
        pass
    glue_client.create_table(DatabaseName=database, TableInput=table_input)
    return database, table_input["Name"]
