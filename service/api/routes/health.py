"""Liveness and readiness for orchestrators and load balancers."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from service.api.deps import IndexDep, StoreDep, get_caller
from service.api.problems import DocumentedRoute
from service.api.responses import JSONResponse
from service.api.state import app_state
from service.domain.errors import ShuttingDown

router = APIRouter(tags=["health"], dependencies=[Depends(get_caller)], route_class=DocumentedRoute)


@router.get("/healthz")
async def healthz() -> Response:
    """The process is up (it says nothing of the store): also while start-up waits for it."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request, store: StoreDep, index: IndexDep) -> Response:
    """The store answers and the border is loaded; 503 with Retry-After otherwise, saying why
    (waiting for the database, its schema not current, the server draining after SIGTERM)."""
    if app_state(request.app).drain.draining:
        raise ShuttingDown("the server is shutting down: send requests to another instance")
    await run_in_threadpool(store.ping)
    return JSONResponse({"status": "ready", "segments": len(index)})
