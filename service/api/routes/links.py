"""Links between reports of one crossing made by different monitors (issue #20,
docs/linking.md). Analyst and admin keys only; every read and review is audited."""

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
from service.api.schemas.lists import LinkListQuery
from service.api.schemas.pages import cursor_after, next_href, parse_time
from service.domain.links import LinkQuery, LinkState, link_fields
from service.usecases import links

router = APIRouter(
    prefix="/v1", tags=["links"], dependencies=[Depends(get_caller)], route_class=DocumentedRoute
)


@router.get("/links")
async def list_links(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    caller: CallerDep,
    params: Annotated[LinkListQuery, Query()],
) -> Response:
    """Links between two reports that are probably one group seen by two monitors, in the order
    they were proposed. Each gives its two reports, the match weight (bits) and, for each field
    compared, the level the pair fell in and the bits it added, so that a reviewer sees why the
    pair was linked. Follow `next` for the next page."""
    query = LinkQuery(
        state=params.state,
        segment_id=params.segment,
        since=parse_time("since", params.since),
        limit=min(params.limit, settings.page_max_items),
        after=cursor_after(params.cursor),
    )
    page = await run_in_threadpool(
        lambda: links.list_links(store, query, caller=caller, detail=request_detail(request))
    )
    body: dict[str, Any] = {"links": [link_fields(k) for k in page.links]}
    if (href := next_href(request.url, page.next_key)) is not None:
        body["next"] = href
    return JSONResponse(body)


async def _review(
    link_id: UUID, state: LinkState, request: Request, store: StoreDep, caller: CallerDep
) -> Response:
    reviewed = await run_in_threadpool(
        lambda: links.review_link(
            store, link_id, state=state, caller=caller, detail=request_detail(request)
        )
    )
    return JSONResponse(link_fields(reviewed))


@router.post("/links/{link_id}/confirm")
async def confirm_link(
    link_id: UUID, request: Request, store: StoreDep, caller: CallerDep
) -> Response:
    """Confirm that the two reports are one group: the pair is grouped before every
    unconfirmed link, and confirmed pairs feed the estimate of how true duplicates compare."""
    return await _review(link_id, LinkState.CONFIRMED, request, store, caller)


@router.post("/links/{link_id}/reject")
async def reject_link(
    link_id: UUID, request: Request, store: StoreDep, caller: CallerDep
) -> Response:
    """Reject the link: the two reports are different groups, and the pair is never proposed
    again; their groups are made again without it."""
    return await _review(link_id, LinkState.REJECTED, request, store, caller)
