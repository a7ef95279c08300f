"""Audit what the issue asks to audit from the API: every read of precise reports by a caller who
sees everything (an export: who, when, what query)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request

from service.domain.access import AuditEntry, Caller
from service.storage.base import AccessStore
from service.usecases.access import audit_entry, record

T = TypeVar("T")


def _detail(request: Request) -> dict[str, Any]:
    return {"method": request.method, "path": request.url.path, "query": request.url.query}


def entry(request: Request, caller: Caller) -> AuditEntry | None:
    """The audit entry of a read of precise reports by ``caller`` (None for a caller whose reads
    are not audited), for a store method that writes it with the read."""
    if not caller.sees_everything:
        return None
    return audit_entry(caller, "reports.read", _detail(request))


async def precise_read(request: Request, store: AccessStore, caller: Caller) -> None:
    if caller.sees_everything:
        await run_in_threadpool(record, store, caller, "reports.read", _detail(request))


async def audited(request: Request, store: AccessStore, caller: Caller, read: Callable[[], T]) -> T:
    """``read()`` in the thread pool, then its audit entry (precise_read) in the same trip there:
    written after the read succeeded and before its answer can be sent."""
    detail = _detail(request) if caller.sees_everything else None

    def read_then_record() -> T:
        result = read()
        if detail is not None:
            record(store, caller, "reports.read", detail)
        return result

    return await run_in_threadpool(read_then_record)
