"""Dry-run snapping: where would a report land, without storing anything."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from service.api.body import read_json
from service.api.deps import IndexDep, SettingsDep, get_caller
from service.api.openapi import request_body
from service.api.problems import DocumentedRoute
from service.api.responses import JSONResponse
from service.api.schemas.snap import parse_points, snap_json
from service.usecases.snap_points import snap_points

router = APIRouter(
    prefix="/v1", tags=["snap"], dependencies=[Depends(get_caller)], route_class=DocumentedRoute
)
MAX_SNAP_POINTS = 10_000


@router.post("/snap", openapi_extra=request_body("PointIn", "MultiPointIn"))
async def snap(
    request: Request,
    index: IndexDep,
    settings: SettingsDep,
    max_distance_m: Annotated[
        float | None,
        Query(gt=0, le=1_000_000, description="Defaults to CROSSINGS_MAX_SNAP_DISTANCE_M"),
    ] = None,
) -> Response:
    """Snap a GeoJSON Point (answer: `result`) or MultiPoint (answer: `results`, in order, up to
    10,000 points) to the border. Nothing is stored."""
    body = await read_json(request, max_bytes=settings.batch_max_body_bytes)
    points, is_single = parse_points(body, max_points=MAX_SNAP_POINTS)
    reach = max_distance_m or settings.max_snap_distance_m
    results = await run_in_threadpool(snap_points, index, points, max_distance_m=reach)
    if is_single:
        return JSONResponse({"result": snap_json(results[0])})
    return JSONResponse({"results": [snap_json(r) for r in results]})
