"""The job spec as a JSON Schema, generated from its two sources of truth, for editors.

The spec's own fields come from the pydantic model ValidateSpec uses (`batchpipe_core.spec.JobSpec`);
`operation` comes from botocore's model of S3 Batch Operations' `JobOperation`, the shape the spec
embeds verbatim. The schema is a help for writing specs, not the validator: ValidateSpec also checks
what JSON Schema cannot say (a `where` predicate, regexes, date order, the stack's buckets).
"""

from __future__ import annotations

from typing import Any

from batchpipe_core.operation import create_job_model

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://github.com/batchpipe/batchpipe/job-spec.schema.json"
COMMITTED_PATH = "docs/job-spec.schema.json"


def spec_schema() -> dict[str, Any]:
    from batchpipe_core.spec import JobSpec

    schema = JobSpec.model_json_schema(by_alias=True)
    _drop_titles(schema)
    defs = schema.setdefault("$defs", {})
    operation = _shape_schema(_job_operation_shape(), defs)
    # Exactly one operation per job (CreateJob accepts one member of JobOperation).
    operation.update(minProperties=1, maxProperties=1)
    schema["properties"]["operation"] = operation
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "batchpipe job spec",
        "description": (
            "The execution input of the batchpipe state machine. Every field but operation is optional; "
            "the stack's parameters give the defaults. operation is one S3 Batch Operations JobOperation, "
            "as in the CreateJob API."
        ),
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def _drop_titles(node: Any) -> None:
    """pydantic titles every property with its own name reworded ("Keyregex"): noise in an editor."""
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict):
            for value in properties.values():
                if isinstance(value, dict):
                    value.pop("title", None)
        for value in node.values():
            _drop_titles(value)
    elif isinstance(node, list):
        for value in node:
            _drop_titles(value)


def _job_operation_shape() -> Any:
    return create_job_model().input_shape.members["Operation"]


def _shape_schema(shape: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema of a botocore shape; structures become $defs (some shapes nest each other)."""
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        name = f"S3Control{shape.name}"
        if name not in defs:
            defs[name] = {}  # placeholder: a shape that refers to itself ends here
            properties = {member: _shape_schema(sub, defs) for member, sub in shape.members.items()}
            node: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
            if shape.required_members:
                node["required"] = list(shape.required_members)
            if shape.documentation:
                node["description"] = _plain(shape.documentation)
            defs[name] = node
        return {"$ref": f"#/$defs/{name}"}
    if kind == "list":
        node = {"type": "array", "items": _shape_schema(shape.member, defs)}
        _bounds(node, meta, "minItems", "maxItems")
        return node
    if kind == "map":
        return {"type": "object", "additionalProperties": _shape_schema(shape.value, defs)}
    if kind == "string":
        node = {"type": "string"}
        if shape.enum:
            node["enum"] = list(shape.enum)
        _bounds(node, meta, "minLength", "maxLength")
        return node
    if kind in ("integer", "long"):
        node = {"type": "integer"}
        _bounds(node, meta, "minimum", "maximum")
        return node
    if kind in ("float", "double"):
        return {"type": "number"}
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "timestamp":
        # botocore takes an ISO 8601 string or epoch seconds from JSON.
        return {"type": ["string", "integer"]}
    return {}  # blob and anything newer: no constraint rather than a wrong one


def _bounds(node: dict[str, Any], meta: dict[str, Any], low: str, high: str) -> None:
    if "min" in meta:
        node[low] = meta["min"]
    if "max" in meta:
        node[high] = meta["max"]


def _plain(html: str) -> str:
    import re

    text = re.sub(r"<[^>]+>", "", html)
    return " ".join(text.split())[:500]
