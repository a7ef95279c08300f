"""Alerts: one per episode of a series far above its own normal (issue #19). Analyst and admin
keys only; every read is audited."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from service.api.audit import request_detail
from service.api.deps import CallerDep, SettingsDep, StoreDep, get_caller
from service.api.problems import DocumentedRoute
from service.api.responses import JSONResponse
from service.api.schemas.lists import AlertListQuery
from service.api.schemas.pages import cursor_after, next_href, parse_time
from service.domain.alerts import AlertQuery, alert_fields
from service.usecases import alerts

router = APIRouter(
    prefix="/v1", tags=["alerts"], dependencies=[Depends(get_caller)], route_class=DocumentedRoute
)


@router.get("/alerts")
async def list_alerts(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    caller: CallerDep,
    params: Annotated[AlertListQuery, Query()],
) -> Response:
    """Alerts, the most recently updated first: each is one episode of a series (a segment, a
    region or a whole border; one kind or all; reports or people) above its threshold, with
    its days, observed and expected counts and statistic. Follow `next` for the next page."""
    query = AlertQuery(
        state=params.state,
        border=params.border,
        segment_id=params.segment,
        since=parse_time("since", params.since),
        limit=min(params.limit, settings.page_max_items),
        after=cursor_after(params.cursor),
    )
    page = await run_in_threadpool(
        lambda: alerts.list_alerts(store, query, caller=caller, detail=request_detail(request))
    )
    body: dict[str, Any] = {"alerts": [alert_fields(a) for a in page.alerts]}
    if (href := next_href(request.url, page.next_key)) is not None:
        body["next"] = href
    return JSONResponse(body)


@router.get("/alerts/{alert_id}")
async def get_alert(
    alert_id: UUID, request: Request, store: StoreDep, caller: CallerDep
) -> Response:
    """One alert."""
    found = await run_in_threadpool(
        lambda: alerts.get_alert(store, alert_id, caller=caller, detail=request_detail(request))
    )
    return JSONResponse(alert_fields(found))
