"""OpenAPI for bodies the routes read themselves.

Report routes parse their bodies by hand (size limits, per-item errors in batches, 415 before
anything else), so FastAPI cannot see their schemas; they are declared here so the OpenAPI
document, and the fuzzing that runs from it, describe what the routes accept.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.api.schemas.common import PointIn
from service.api.schemas.reports import (
    ReportBatchIn,
    ReportFeatureCollectionIn,
    ReportFeatureIn,
    ReportIn,
)
from service.api.schemas.snap import MultiPointIn
from service.api.state import app_state

BODY_MODELS: tuple[type[BaseModel], ...] = (
    ReportIn,
    ReportFeatureIn,
    ReportBatchIn,
    ReportFeatureCollectionIn,
    PointIn,
    MultiPointIn,
)
_REF = "#/components/schemas/{model}"


def request_body(*models: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"oneOf": [{"$ref": _REF.format(model=m)} for m in models]}
    if len(models) == 1:
        schema = {"$ref": _REF.format(model=models[0])}
    content = {media: {"schema": schema} for media in ("application/json", "application/geo+json")}
    return {"requestBody": {"required": True, "content": content}}


def query_parameters(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` listing ``model``'s fields as query parameters, for a route that reads
    its query itself: documented as FastAPI documents a query model, without FastAPI validating
    the model on every request (the route's own parser checks each parameter, naming it)."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            parameter["description"] = prop["description"]
        parameters.append(parameter)
    return {"parameters": parameters}


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _, defs = models_json_schema(
                [(m, "validation") for m in BODY_MODELS], ref_template=_REF
            )
            _describe_deployment(app, defs["$defs"])
            doc.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
            if app_state(app).border is None:  # before start-up: no countries yet, ask again
                return doc
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _describe_deployment(app: FastAPI, defs: dict[str, Any]) -> None:
    """Name this deployment's kinds and border countries as enums: the document is generated
    lazily, after start-up, so it describes what this service accepts, not the defaults."""
    props = defs["ReportProperties"]["properties"]
    state = app_state(app)
    props["kind"]["enum"] = list(state.settings.report_kinds)
    if state.border is not None:
        props["direction"]["anyOf"][0]["enum"] = sorted(state.border.index.countries)
