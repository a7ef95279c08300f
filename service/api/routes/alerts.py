"""Alerts: one per episode of a series far above its own normal (issue #19). Analyst and admin
keys only; every read is audited."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from service.api.deps import CallerDep, SettingsDep, StoreDep, get_caller
from service.api.problems import DocumentedRoute
from service.api.responses import JSONResponse
from service.api.schemas.common import LIST_PAGE, LIST_PAGE_MAX, NAME_MAX_LENGTH
from service.api.schemas.pages import decode_cursor, encode_cursor, parse_time
from service.domain.alerts import AlertQuery, AlertState, alert_fields
from service.domain.queries import PageKey
from service.usecases import alerts

router = APIRouter(
    prefix="/v1", tags=["alerts"], dependencies=[Depends(get_caller)], route_class=DocumentedRoute
)


def _detail(request: Request) -> dict[str, Any]:
    return {"method": request.method, "path": request.url.path, "query": request.url.query}


@router.get("/alerts")
async def list_alerts(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    caller: CallerDep,
    state: Annotated[AlertState | None, Query(description="open or closed")] = None,
    border: Annotated[str | None, Query(max_length=NAME_MAX_LENGTH)] = None,
    segment: Annotated[
        str | None, Query(max_length=NAME_MAX_LENGTH, description="A segment id")
    ] = None,
    since: Annotated[str | None, Query(description="Updated at or after (RFC 3339)")] = None,
    limit: Annotated[int, Query(ge=1, le=LIST_PAGE_MAX)] = LIST_PAGE,
    cursor: Annotated[
        str | None,
        Query(description="From the previous page's next link", max_length=NAME_MAX_LENGTH),
    ] = None,
) -> Response:
    """Alerts, the most recently updated first: each is one episode of a series (a segment, a
    region or a whole border; one kind or all; reports or people) above its threshold, with
    its days, observed and expected counts and statistic. Follow `next` for the next page."""
    after = None if cursor is None else decode_cursor(cursor)
    query = AlertQuery(
        state=state,
        border=border,
        segment_id=segment,
        since=parse_time("since", since),
        limit=min(limit, settings.page_max_items),
        after=None if after is None else (after.observed_at, after.id),
    )
    page = await run_in_threadpool(
        lambda: alerts.list_alerts(store, query, caller=caller, detail=_detail(request))
    )
    body: dict[str, Any] = {"alerts": [alert_fields(a) for a in page.alerts]}
    if page.next_key is not None:
        key = PageKey(observed_at=page.next_key[0], id=page.next_key[1])
        body["next"] = str(request.url.include_query_params(cursor=encode_cursor(key)))
    return JSONResponse(body)


@router.get("/alerts/{alert_id}")
async def get_alert(
    alert_id: UUID, request: Request, store: StoreDep, caller: CallerDep
) -> Response:
    """One alert."""
    found = await run_in_threadpool(
        lambda: alerts.get_alert(store, alert_id, caller=caller, detail=_detail(request))
    )
    return JSONResponse(alert_fields(found))
