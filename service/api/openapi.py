"""OpenAPI for bodies the routes read themselves, and what the document says of this deployment.

Report routes parse their bodies by hand (size limits, per-item errors in batches, 415 before
anything else), so FastAPI cannot see their schemas; they are declared here so the OpenAPI
document, and the fuzzing that runs from it, describe what the routes accept. Query parameters
are declared by the routes' query models, and documented from them by FastAPI; this module only
writes in the values that are settings (kinds, countries, page sizes).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.api.schemas.common import PointIn, Problem
from service.api.schemas.reports import (
    ReportBatchIn,
    ReportFeatureCollectionIn,
    ReportFeatureIn,
    ReportIn,
)
from service.api.schemas.snap import MultiPointIn
from service.api.state import app_state
from service.settings import Settings

BODY_MODELS: tuple[type[BaseModel], ...] = (
    ReportIn,
    ReportFeatureIn,
    ReportBatchIn,
    ReportFeatureCollectionIn,
    PointIn,
    MultiPointIn,
)
# What every error answer is: the operations refer to it (problems.DocumentedRoute).
ANSWER_MODELS: tuple[type[BaseModel], ...] = (Problem,)
_REF = "#/components/schemas/{model}"


def request_body(*models: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"oneOf": [{"$ref": _REF.format(model=m)} for m in models]}
    if len(models) == 1:
        schema = {"$ref": _REF.format(model=models[0])}
    content = {media: {"schema": schema} for media in ("application/json", "application/geo+json")}
    return {"requestBody": {"required": True, "content": content}}


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
                [(m, "validation") for m in BODY_MODELS]
                + [(m, "serialization") for m in ANSWER_MODELS],
                ref_template=_REF,
            )
            _describe_deployment(app, defs["$defs"])
            _settings_maxima(doc, app_state(app).settings)
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


def _settings_maxima(doc: dict[str, Any], settings: Settings) -> None:
    """A parameter whose maximum is a setting declares which (``x-maximum-setting``, e.g. the
    items' ``limit``): the document says this deployment's value."""
    for item in doc["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", ()):
                schema = parameter["schema"]
                name = schema.pop("x-maximum-setting", None)
                if name is not None:
                    schema["maximum"] = getattr(settings, name)
