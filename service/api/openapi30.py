"""An OpenAPI 3.0 rendering of the service's 3.1 document, for OGC clients.

OGC API - Features asks for an OpenAPI 3.0 service description, and some GIS clients read only
3.0; FastAPI writes 3.1. The differences in what FastAPI emits are few and mechanical: null as a
type (3.0: ``nullable``), ``const``, numeric exclusive bounds, and ``prefixItems``.
"""

from __future__ import annotations

import copy
from typing import Any

OPENAPI_30 = "application/vnd.oai.openapi+json;version=3.0"


def to_openapi_30(doc: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["openapi"] = "3.0.3"
    out.pop("jsonSchemaDialect", None)
    out.pop("webhooks", None)
    return _walk(out)  # type: ignore[no-any-return]


def _walk(node: Any) -> Any:
    if isinstance(node, list):
        return [_walk(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _walk(value) for key, value in node.items()}
    return _schema(node) if _is_schema(node) else node


def _is_schema(node: dict[str, Any]) -> bool:
    keys = {
        "type",
        "anyOf",
        "oneOf",
        "const",
        "prefixItems",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "$ref",
    }
    return bool(keys & node.keys())


def _schema(node: dict[str, Any]) -> dict[str, Any]:
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node.get(bound), bool):
            node[plain] = node[bound]
            node[bound] = True
    node.pop("prefixItems", None)
    if isinstance(node.get("type"), list):
        kinds = [k for k in node["type"] if k != "null"]
        if len(kinds) < len(node["type"]):
            node["nullable"] = True
        node["type"] = kinds[0] if len(kinds) == 1 else kinds
        if isinstance(node["type"], list):
            node["anyOf"] = [{"type": k} for k in node.pop("type")]
    for combiner in ("anyOf", "oneOf"):
        options = node.get(combiner)
        if not isinstance(options, list):
            continue
        rest = [o for o in options if o != {"type": "null"}]
        if len(rest) == len(options):
            continue
        node["nullable"] = True
        if len(rest) == 1:
            node.pop(combiner)
            only = rest[0]
            if "$ref" in only:  # siblings of $ref are ignored in 3.0: wrap it
                node["allOf"] = [only]
            else:
                node.update(only)
        else:
            node[combiner] = rest
    if "$ref" in node and len(node) > 1:
        ref = {"$ref": node.pop("$ref")}
        node["allOf"] = [ref]
    return node
