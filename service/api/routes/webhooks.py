"""Webhook subscriptions (admin keys): Standard Webhooks deliveries of alerts to other services
(docs/webhooks.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from service.api.body import read_json
from service.api.deps import CallerDep, SettingsDep, StoreDep, get_caller
from service.api.problems import DocumentedRoute
from service.api.responses import JSONResponse
from service.api.schemas.lists import DeliveryListQuery
from service.domain.errors import FieldError, InvalidInput
from service.usecases import webhooks

router = APIRouter(
    prefix="/v1", tags=["webhooks"], dependencies=[Depends(get_caller)], route_class=DocumentedRoute
)


@router.post("/webhooks", status_code=201)
async def create_webhook(
    request: Request, store: StoreDep, settings: SettingsDep, caller: CallerDep
) -> Response:
    """Subscribe a URL to alerts: `{"url": "https://...", "description": "...", "filter":
    {"event_types": ["alert.opened", "alert.updated", "alert.closed"], "borders": [...],
    "sections": [...], "segment_ids": [...], "kinds": [...], "measures": ["reports",
    "people"]}}` (every filter field optional; null or absent: any). The answer holds the
    signing secret (`whsec_...`), once. Loopback and private addresses are refused unless
    CROSSINGS_WEBHOOK_ALLOW_PRIVATE is set."""
    body = await read_json(request, max_bytes=settings.max_body_bytes)
    if not isinstance(body, dict):
        raise InvalidInput("send a JSON object", errors=[FieldError("body", "must be an object")])
    hook, secret = await run_in_threadpool(
        lambda: webhooks.create_webhook(store, body, settings=settings, actor=caller)
    )
    return JSONResponse(
        webhooks.webhook_fields(hook) | {"secret": secret},
        status_code=201,
        headers={"Location": f"/v1/webhooks/{hook.id}"},
    )


@router.get("/webhooks")
async def list_webhooks(store: StoreDep) -> Response:
    """Every subscription, deleted and disabled ones too (never a secret)."""
    hooks = await run_in_threadpool(store.list_webhooks)
    return JSONResponse({"webhooks": [webhooks.webhook_fields(h) for h in hooks]})


@router.get("/webhooks/{webhook_id}")
async def get_webhook(webhook_id: str, store: StoreDep) -> Response:
    """One subscription (never a secret)."""
    hook = await run_in_threadpool(webhooks.get_webhook, store, webhook_id)
    return JSONResponse(webhooks.webhook_fields(hook))


@router.delete("/webhooks/{webhook_id}", status_code=204)
async def delete_webhook(webhook_id: str, store: StoreDep, caller: CallerDep) -> Response:
    """Stop a subscription: nothing more is sent to it, pending deliveries are given up. It
    stays listed (disabled, reason "deleted") with its deliveries."""
    await run_in_threadpool(lambda: webhooks.delete_webhook(store, webhook_id, actor=caller))
    return Response(status_code=204)


@router.post("/webhooks/{webhook_id}/rotate")
async def rotate_secret(
    webhook_id: str, store: StoreDep, settings: SettingsDep, caller: CallerDep
) -> Response:
    """A new signing secret, shown once. The old one signs too (a second `v1,` signature) for
    CROSSINGS_WEBHOOK_ROTATION_OVERLAP_S seconds, so receivers can switch without a gap."""
    hook, secret = await run_in_threadpool(
        lambda: webhooks.rotate_secret(store, webhook_id, settings=settings, actor=caller)
    )
    return JSONResponse(webhooks.webhook_fields(hook) | {"secret": secret})


@router.get("/webhooks/{webhook_id}/deliveries")
async def list_deliveries(
    webhook_id: str,
    store: StoreDep,
    params: Annotated[DeliveryListQuery, Query()],
) -> Response:
    """The subscription's deliveries, newest first: event type, state, attempts, the next
    attempt's time while pending, the last answer's status or error."""
    found = await run_in_threadpool(
        lambda: webhooks.list_deliveries(store, webhook_id, state=params.state, limit=params.limit)
    )
    return JSONResponse({"deliveries": [webhooks.delivery_fields(d) for d in found]})
