"""Prometheus metrics, for an admin key or a scraper at an allowed address."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from service.api.deps import get_caller
from service.api.metrics import CONTENT_TYPE
from service.api.problems import DocumentedRoute
from service.api.state import app_state

router = APIRouter(
    tags=["operations"], dependencies=[Depends(get_caller)], route_class=DocumentedRoute
)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format: requests, latency, ingest outcomes, snap distances, the database
    pool and its errors, rate-limit refusals, the public release's lag, the folder's backlog.
    Needs an admin key, or no key from an address in CROSSINGS_METRICS_ALLOW."""
    registry = app_state(request.app).metrics
    return Response(registry.exposition(), media_type=CONTENT_TYPE)
