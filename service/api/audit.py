"""Audit what the issue asks to audit from the API: every read of precise reports by a caller who
sees everything (who, when, what query): reports and their pages, OGC items (CSV included),
unsuppressed aggregates (JSON and CSV), and tiles that draw single reports (point zooms)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request

from service.api.cancel import until_disconnected
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


def detail(request: Request, caller: Caller, *, precise: bool = True) -> dict[str, Any] | None:
    """What an audit entry of this request says; None when the read is not audited."""
    return _detail(request) if caller.sees_everything and precise else None


def read_and_record(
    store: AccessStore, caller: Caller, detail: dict[str, Any] | None, read: Callable[[], T]
) -> Callable[[], T]:
    """``read``, then its audit entry (when ``detail``): one function for the thread pool."""

    def read_then_record() -> T:
        result = read()
        if detail is not None:
            record(store, caller, "reports.read", detail)
        return result

    return read_then_record


async def audited(
    request: Request,
    store: AccessStore,
    caller: Caller,
    read: Callable[[], T],
    *,
    precise: bool = True,
) -> T:
    """``read()`` in the thread pool, then its audit entry (precise_read) in the same trip there:
    written after the read succeeded and before its answer can be sent. ``precise=False``: this
    read shows nothing precise even to a caller who sees everything (not audited). If the client
    goes away first, the read's statement is cancelled (api/cancel.py) and nothing is audited."""
    return await until_disconnected(
        request, read_and_record(store, caller, detail(request, caller, precise=precise), read)
    )
