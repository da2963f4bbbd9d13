"""OpenAPI documentation of request bodies that routes read as plain JSON (so the
service can check every field at once and report each with its code)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def documented_body(model: type[BaseModel]) -> dict[str, Any]:
    """The request body's schema for OpenAPI. The routes read the body as a plain
    object so the service can check every field at once, values and rules
    together; the schema (with its definitions inlined) still documents it. A
    recursive definition (a step whose ``next`` is a step) is inlined once; below
    that it is named, as an object."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any, within: tuple[str, ...] = ()) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            rest = {k: inline(v, within) for k, v in node.items() if k != "$ref"}
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name in within:
                    return {"type": "object", "description": f"a {name}, as above", **rest}
                return {**inline(definitions[name], (*within, name)), **rest}
            return rest
        if isinstance(node, list):
            return [inline(item, within) for item in node]
        return node

    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline(schema)}},
        }
    }
