"""Aggregates for services and reports: counts by group and period, as JSON, CSV or GeoJSON."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from service.api import audit
from service.api import encodings as enc
from service.api.cancel import until_disconnected
from service.api.deps import IndexDep, SettingsDep, StoreDep, get_caller
from service.api.routes.segments import segment_feature
from service.api.schemas import aggregates as wire
from service.domain.access import Caller
from service.domain.segments import SegmentIndex
from service.settings import Settings
from service.storage.base import Store
from service.usecases.aggregates import Aggregate, AggregateLimits, AggregateRequest, aggregate


def _below(request: Request, settings: Settings) -> int:
    """Small counts are suppressed except for callers who read everything (analysts, admins)."""
    caller: Caller = request.state.caller
    return 0 if caller.sees_everything else settings.suppress_below


async def _aggregate(
    request: Request, store: Store, index: SegmentIndex, req: AggregateRequest, settings: Settings
) -> Aggregate:
    """The aggregate, refused before any work when it asks for more than the caps, and stopped
    (its statement cancelled) if the client goes away; for a caller who reads everything
    (unsuppressed figures, which can single out a report) audited like any precise read."""
    below = _below(request, settings)
    caller: Caller = request.state.caller
    limits = AggregateLimits(
        max_cells=settings.aggregate_max_cells,
        max_range_days=settings.aggregate_max_range_days,
        max_parts=settings.aggregate_max_parts,
        kinds=settings.report_kinds,
    )
    return await until_disconnected(
        request,
        audit.read_and_record(
            store,
            caller,
            audit.detail(request, caller),
            lambda: aggregate(store, index, req, suppress_below=below, limits=limits),
        ),
    )


router = APIRouter(prefix="/v1", tags=["aggregates"], dependencies=[Depends(get_caller)])
_Text = Annotated[str | None, Query()]
TABLE = (enc.JSON, enc.CSV)


@router.get("/aggregates", response_class=Response)
async def aggregates(
    request: Request,
    store: StoreDep,
    index: IndexDep,
    settings: SettingsDep,
    group_by: Annotated[
        str | None,
        Query(
            description="Comma-separated: segment, section, border, region, side, kind, direction"
        ),
    ] = None,
    bucket: Annotated[
        str | None, Query(description="day, week (ISO, from Monday), month, quarter, year or none")
    ] = None,
    tz: Annotated[str | None, Query(description="IANA zone of the buckets (default UTC)")] = None,
    start: Annotated[str | None, Query(description="observed_at >= start (RFC 3339)")] = None,
    end: Annotated[str | None, Query(description="observed_at < end (RFC 3339)")] = None,
    bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat")] = None,
    segment_id: _Text = None,
    kind: _Text = None,
    border: _Text = None,
    fill: Annotated[
        str | None, Query(description="true: every bucket of the range, zeros included")
    ] = None,
    f: Annotated[str | None, Query(description="json or csv")] = None,
) -> Response:
    """Reports and people per group and period. Counts of 1 to CROSSINGS_SUPPRESS_BELOW - 1 are
    published as null with `suppressed: true`, and so are others where needed to keep them from
    being worked out from the totals. Reports beyond reach of the border form their own group
    (`snap_status: beyond_max_distance`) when grouping by a segment key."""
    media = enc.negotiate(request, offered=TABLE)
    req = wire.parse_request(dict(request.query_params), index=index, kinds=settings.report_kinds)
    result = await _aggregate(request, store, index, req, settings)
    if media == enc.CSV:
        body = enc.rows_csv(wire.rows(result), wire.columns(result))
        return Response(body, media_type="text/csv; charset=utf-8")
    return Response(orjson.dumps(wire.document(result)), media_type=enc.JSON)


@router.get("/aggregates/segments.geojson", response_class=Response)
async def segments_choropleth(
    request: Request,
    store: StoreDep,
    index: IndexDep,
    settings: SettingsDep,
    start: _Text = None,
    end: _Text = None,
    kind: _Text = None,
    border: _Text = None,
) -> Response:
    """Every border segment as a GeoJSON line with its reports and people (suppressed as above)
    in the window: a choropleth GIS tools open directly."""
    req = wire.parse_request(
        dict(request.query_params),
        index=index,
        kinds=settings.report_kinds,
        allowed=("start", "end", "kind", "border"),
    )
    req = dataclasses.replace(req, group_by=("segment",), all_segments=True)
    result = await _aggregate(request, store, index, req, settings)
    figures = {row.group[0]: row.figure for row in result.rows}
    features = []
    for segment in index.segments:
        if segment.segment_id not in figures:
            continue
        feature = segment_feature(segment)
        feature["properties"] = {
            "segment_id": segment.segment_id,
            "border": segment.border,
            "section": segment.section,
            "region": segment.properties.get("region_pair"),
            **wire.figure_fields(figures[segment.segment_id]),
        }
        features.append(feature)
    doc = {
        "type": "FeatureCollection",
        "features": features,
        "suppress_below": result.suppress_below,
        "totals": {"all": wire.figure_fields(result.total)},
    }
    return Response(orjson.dumps(doc), media_type=enc.GEOJSON)


@router.get("/segments/{segment_id}/timeseries", response_class=Response)
async def segment_timeseries(
    segment_id: str,
    request: Request,
    store: StoreDep,
    index: IndexDep,
    settings: SettingsDep,
    bucket: Annotated[str | None, Query(description="day, week, month, quarter or year")] = None,
    tz: _Text = None,
    start: _Text = None,
    end: _Text = None,
    kind: _Text = None,
    f: Annotated[str | None, Query(description="json or csv")] = None,
) -> Response:
    """One segment's reports and people per period (default month), every period of the range
    present (zeros included)."""
    from service.usecases.segments import get_segment

    get_segment(index, segment_id)  # 404 for an unknown segment
    media = enc.negotiate(request, offered=TABLE)
    params = dict(request.query_params)
    params.setdefault("bucket", "month")
    req = wire.parse_request(
        params,
        index=index,
        kinds=settings.report_kinds,
        allowed=("bucket", "tz", "start", "end", "kind", "f"),
        segment_id=segment_id,
    )
    req = dataclasses.replace(req, fill=True)
    if req.bucket is None:
        req = dataclasses.replace(req, bucket="month")
    result = await _aggregate(request, store, index, req, settings)
    if media == enc.CSV:
        body = enc.rows_csv(wire.rows(result), wire.columns(result))
        return Response(body, media_type="text/csv; charset=utf-8")
    doc = wire.document(result) | {"segment_id": segment_id}
    return Response(orjson.dumps(doc), media_type=enc.JSON)
