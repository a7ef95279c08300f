"""Audit what the issue asks to audit from the API: every read of precise reports by a caller who
sees everything (an export: who, when, what query)."""

from __future__ import annotations

from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request

from service.domain.access import Caller
from service.storage.base import AccessStore
from service.usecases.access import record


async def precise_read(request: Request, store: AccessStore, caller: Caller) -> None:
    if caller.sees_everything:
        detail = {"method": request.method, "path": request.url.path, "query": request.url.query}
        await run_in_threadpool(record, store, caller, "reports.read", detail)
