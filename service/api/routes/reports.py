"""Reports: submit one or a batch, exactly once; read them back as GeoJSON."""

from __future__ import annotations

import dataclasses
import functools
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from service.api import audit
from service.api.body import read_json
from service.api.cancel import until_disconnected
from service.api.deps import (
    CallerDep,
    IndexDep,
    SettingsDep,
    StoreDep,
    border_reloader,
    get_caller,
)
from service.api.openapi import request_body
from service.api.problems import DocumentedRoute
from service.api.responses import GeoJSONResponse, JSONResponse
from service.api.schemas.lists import ReportSearchQuery
from service.api.schemas.pages import encode_cursor, report_query
from service.api.schemas.reports import (
    batch_item,
    parse_report,
    raise_for_outcome,
    report_feature,
)
from service.api.state import app_state
from service.domain.access import Caller
from service.domain.errors import MalformedBody
from service.domain.reports import IngestOutcome
from service.domain.segments import SegmentIndex
from service.settings import Settings
from service.usecases.links import group_ids
from service.usecases.query_reports import get_report, list_reports
from service.usecases.submit_reports import ItemOutcome, check_batch_size, submit_batch

router = APIRouter(
    prefix="/v1", tags=["reports"], dependencies=[Depends(get_caller)], route_class=DocumentedRoute
)


def _is_feature(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("type") == "Feature"


def submission(*models: str) -> dict[str, Any]:
    """The route options of a submission of one report (``submit_single``): its body's models,
    201 when created, 200 for a replay."""
    replay = {"description": "A replay: the report was already stored with this content"}
    return {"status_code": 201, "openapi_extra": request_body(*models), "responses": {200: replay}}


@router.post("/reports", **submission("ReportIn", "ReportFeatureIn"))
async def create_report(
    request: Request, store: StoreDep, index: IndexDep, settings: SettingsDep, caller: CallerDep
) -> Response:
    """Submit one report (a plain object or a GeoJSON Feature). It is snapped to the border and
    stored once: replaying the same `id` with the same content answers 200 with the original;
    the same `id` with other content answers 409. Answers 201 with `Location` when created."""
    return await submit_single(
        request, store, caller, index, settings, location=f"{request.base_url}v1/reports/{{id}}"
    )


async def submit_single(
    request: Request,
    store: StoreDep,
    caller: Caller,
    index: SegmentIndex,
    settings: Settings,
    *,
    location: str,
) -> Response:
    """One report from the body, stored exactly once: 201 created, 200 replay, or a problem.
    ``location`` is the URL template of the stored report (``{id}`` is filled in)."""
    body = await read_json(request, max_bytes=settings.max_body_bytes)
    item = parse_report(body)
    (outcome,) = await run_in_threadpool(
        lambda: submit_batch(
            store,
            index,
            [item],
            settings=settings,
            posted_by=caller.key_id,
            reload_border=border_reloader(request),
        )
    )
    _count(request, [outcome])
    report = raise_for_outcome(outcome, is_feature=_is_feature(body))
    created = outcome.result.outcome is IngestOutcome.CREATED
    return GeoJSONResponse(
        report_feature(report),
        status_code=201 if created else 200,
        headers={"Location": location.format(id=report.id)},
    )


@router.post(
    "/reports/batch",
    openapi_extra=request_body("ReportBatchIn", "ReportFeatureCollectionIn"),
)
async def create_reports(
    request: Request, store: StoreDep, index: IndexDep, settings: SettingsDep, caller: CallerDep
) -> Response:
    """Submit up to `CROSSINGS_BATCH_MAX_ITEMS` reports as a JSON array or a FeatureCollection.
    Each item is answered in request order as `created`, `duplicate`, `conflict` or `invalid`
    (with its problem), with its `id`, `snap_status` and `segment_id`; valid items are stored even
    when others are not. Send `Prefer: return=representation` to get each stored report too."""
    body = await read_json(request, max_bytes=settings.batch_max_body_bytes)
    items = (
        body.get("features")
        if isinstance(body, dict) and body.get("type") == "FeatureCollection"
        else body
    )
    if not isinstance(items, list):
        raise MalformedBody("send a JSON array of reports or a GeoJSON FeatureCollection")
    check_batch_size(len(items), settings=settings)
    parsed = [parse_report(item) for item in items]
    outcomes = await run_in_threadpool(
        lambda: submit_batch(
            store,
            index,
            parsed,
            settings=settings,
            posted_by=caller.key_id,
            reload_border=border_reloader(request),
        )
    )
    _count(request, outcomes)
    with_report = "return=representation" in request.headers.get("prefer", "")
    results = [
        batch_item(o, position=i, is_feature=_is_feature(items[i]), with_report=with_report)
        for i, o in enumerate(outcomes)
    ]
    summary = {s.value: 0 for s in IngestOutcome}
    for r in results:
        summary[r["status"]] += 1
    return JSONResponse({"summary": summary, "results": results})


@router.get("/reports/{report_id}", response_class=GeoJSONResponse)
async def read_report(
    report_id: UUID, request: Request, store: StoreDep, caller: CallerDep
) -> Response:
    """One stored report as a GeoJSON Feature (a reporter key: only one it posted)."""
    report = await until_disconnected(
        request,
        audit.recorded(
            store,
            audit.entry(request, caller),
            lambda: get_report(store, report_id, posted_by=caller.posted_by),
        ),
    )
    groups = await run_in_threadpool(lambda: group_ids(store, [report], caller=caller))
    return GeoJSONResponse(report_feature(report, group_id=groups.get(report.id)))


@router.get("/reports", response_class=GeoJSONResponse)
async def search_reports(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    caller: CallerDep,
    params: Annotated[ReportSearchQuery, Query()],
) -> Response:
    """Reports as a GeoJSON FeatureCollection in a stable order (observed_at, id), filtered, a
    page at a time; follow the `next` link for the following page. For analyst and admin keys,
    each report carries `group_id`: the group of reports of one crossing it belongs to (its own
    id when no other monitor's report is linked to it; docs/linking.md)."""
    query = report_query(
        bbox=params.bbox, start=params.start, end=params.end, segment_id=params.segment_id,
        kind=params.kind, limit=params.limit, cursor=params.cursor,
        max_limit=settings.page_max_items,
    )  # fmt: skip
    query = dataclasses.replace(query, posted_by=caller.posted_by)
    entry = audit.entry(request, caller)
    # Its statement is cancelled if the client goes away (api/cancel.py).
    page = await until_disconnected(
        request, functools.partial(list_reports, store, query, audit=entry)
    )
    groups = await run_in_threadpool(lambda: group_ids(store, page.reports, caller=caller))
    links = [{"rel": "self", "href": str(request.url), "type": "application/geo+json"}]
    if page.next_key is not None:
        href = request.url.include_query_params(cursor=encode_cursor(page.next_key))
        links.append({"rel": "next", "href": str(href), "type": "application/geo+json"})
    return GeoJSONResponse(
        {
            "type": "FeatureCollection",
            "features": [report_feature(r, group_id=groups.get(r.id)) for r in page.reports],
            "numberReturned": len(page.reports),
            "links": links,
        }
    )


def _count(request: Request, outcomes: list[ItemOutcome]) -> None:
    """Ingest outcomes and snap distances into the metrics."""
    app_state(request.app).metrics.ingest(
        (o.result.outcome, None if o.result.report is None else o.result.report.snap.distance_m)
        for o in outcomes
    )
