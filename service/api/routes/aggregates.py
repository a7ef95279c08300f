"""Aggregates for services and reports: counts by group and period, as JSON, CSV or GeoJSON."""

from __future__ import annotations

import dataclasses
import functools
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from service.api import audit
from service.api import encodings as enc
from service.api.cancel import until_disconnected
from service.api.deps import Sources, SourcesDep, get_caller
from service.api.problems import DocumentedRoute
from service.api.routes.segments import segment_feature
from service.api.schemas import aggregates as wire
from service.domain.segments import SegmentIndex
from service.settings import Settings
from service.usecases.aggregates import Aggregate, AggregateLimits, AggregateRequest, aggregate
from service.usecases.public_release import CurrentRelease, PublicAnswer, public_aggregate


async def _answer(
    request: Request, req: AggregateRequest, src: Sources
) -> tuple[Aggregate, dict[str, Any]]:
    """Exact figures for a caller who reads everything (analysts, admins); for everyone else the
    public release's, with what the answer counts (its whole periods, the segments a box
    selected) and the rule its figures went through."""
    if src.caller.sees_everything:
        return await _exact(request, req, src), {}
    answer = await run_in_threadpool(_public, src.release, src.index, req, src.settings)
    return answer.aggregate, wire.public_fields(answer, src.settings)


async def _exact(request: Request, req: AggregateRequest, src: Sources) -> Aggregate:
    """The exact aggregate, refused before any work when it asks for more than the caps, and
    stopped (its statement cancelled) if the client goes away; audited like any precise read
    (exact figures can single out a report)."""
    settings, store = src.settings, src.store
    limits = AggregateLimits(
        max_cells=settings.aggregate_max_cells,
        max_range_days=settings.aggregate_max_range_days,
        max_parts=settings.aggregate_max_parts,
        kinds=settings.report_kinds,
    )
    entry = audit.entry(request, src.caller)
    read = functools.partial(aggregate, store, src.index, req, limits=limits)
    return await until_disconnected(request, audit.recorded(store, entry, read))


def _public(
    release: CurrentRelease, index: SegmentIndex, req: AggregateRequest, settings: Settings
) -> PublicAnswer:
    return public_aggregate(
        release.view(),
        index,
        req,
        rule=settings.public_rule,
        max_cells=settings.public_max_cells,
        kinds=settings.report_kinds,
    )


def _table(result: Aggregate, meta: dict[str, Any]) -> Response:
    body = enc.rows_csv(wire.rows(result, hidden_as=wire.hidden_text(meta)), wire.columns(result))
    return Response(body, media_type="text/csv; charset=utf-8")


router = APIRouter(
    prefix="/v1",
    tags=["aggregates"],
    dependencies=[Depends(get_caller)],
    route_class=DocumentedRoute,
)
TABLE = (enc.JSON, enc.CSV)


@router.get("/aggregates", response_class=Response)
async def aggregates(
    request: Request,
    src: SourcesDep,
    query: Annotated[wire.AggregatesQuery, Query()],
) -> Response:
    """Reports and people per group and period, and `groups` and `people_est` (linked reports of
    one crossing counted once: docs/linking.md). With an analyst or admin key, exact, over any
    window, box and time zone. Without one (and for reporters), from the public release: whole
    UTC periods that ended at least CROSSINGS_PUBLIC_DELAY_H ago (`start`/`end` move out to them,
    and `window` says what was counted), whole segments for a `bbox` (`selected_segments`), every
    figure below CROSSINGS_PUBLIC_MIN_COUNT (zero included) null with `suppressed: true` (`<5` in
    CSV) and every other rounded to CROSSINGS_PUBLIC_ROUND_TO. Reports beyond reach of the border
    form their own group (`snap_status: beyond_max_distance`) when grouping by a segment key."""
    media = enc.negotiate(request, query.f, offered=TABLE)
    req = wire.parse_request(query, index=src.index, kinds=src.settings.report_kinds)
    result, meta = await _answer(request, req, src)
    if media == enc.CSV:
        return _table(result, meta)
    return Response(orjson.dumps(wire.document(result) | meta), media_type=enc.JSON)


@router.get("/aggregates/segments.geojson", response_class=Response)
async def segments_choropleth(
    request: Request,
    src: SourcesDep,
    query: Annotated[wire.ChoroplethQuery, Query()],
) -> Response:
    """Every border segment as a GeoJSON line with its reports and people in the window (for the
    public: from the release, as for aggregates): a choropleth GIS tools open directly."""
    req = wire.parse_request(query, index=src.index, kinds=src.settings.report_kinds)
    req = dataclasses.replace(req, group_by=("segment",), all_segments=True)
    result, meta = await _answer(request, req, src)
    figures = {row.group[0]: row.figure for row in result.rows}
    features = []
    for segment in src.index.segments:
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
    } | meta
    return Response(orjson.dumps(doc), media_type=enc.GEOJSON)


@router.get("/segments/{segment_id}/timeseries", response_class=Response)
async def segment_timeseries(
    segment_id: str,
    request: Request,
    src: SourcesDep,
    query: Annotated[wire.TimeseriesQuery, Query()],
) -> Response:
    """One segment's reports and people per period (default month), every period of the range
    present (zeros included)."""
    from service.usecases.segments import get_segment

    get_segment(src.index, segment_id)  # 404 for an unknown segment
    media = enc.negotiate(request, query.f, offered=TABLE)
    req = wire.parse_request(
        query, index=src.index, kinds=src.settings.report_kinds, segment_id=segment_id
    )
    req = dataclasses.replace(req, fill=True)
    if req.bucket is None:
        req = dataclasses.replace(req, bucket="month")
    result, meta = await _answer(request, req, src)
    if media == enc.CSV:
        return _table(result, meta)
    doc = wire.document(result) | meta | {"segment_id": segment_id}
    return Response(orjson.dumps(doc), media_type=enc.JSON)
