"""Border segments: the line reports are snapped to."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from service.api.deps import IndexDep, get_caller
from service.api.problems import DocumentedRoute
from service.api.responses import GeoJSONResponse
from service.api.schemas.lists import SegmentListQuery
from service.domain.segments import BorderSegment
from service.usecases.segments import get_segment

router = APIRouter(
    prefix="/v1", tags=["segments"], dependencies=[Depends(get_caller)], route_class=DocumentedRoute
)


def segment_feature(segment: BorderSegment) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": segment.segment_id,
        # orjson writes the tuples as arrays: no list per point (the choropleth has every one).
        "geometry": {"type": "LineString", "coordinates": segment.coords},
        "properties": dict(segment.properties),
    }


@router.get("/segments", response_class=GeoJSONResponse)
async def list_segments(index: IndexDep, params: Annotated[SegmentListQuery, Query()]) -> Response:
    """Every border segment as a GeoJSON FeatureCollection, in order along each line."""
    features = [segment_feature(s) for s in index.segments if params.border in (None, s.border)]
    return GeoJSONResponse({"type": "FeatureCollection", "features": features})


@router.get("/segments/{segment_id}", response_class=GeoJSONResponse)
async def read_segment(segment_id: str, index: IndexDep) -> Response:
    """One border segment as a GeoJSON Feature."""
    return GeoJSONResponse(segment_feature(get_segment(index, segment_id)))
