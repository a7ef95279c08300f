"""Audit, from the API, every read of precise reports by a caller who
sees everything (who, when, what query): reports and their pages, OGC items (CSV included),
unsuppressed aggregates (JSON and CSV), and tiles that draw single reports (point zooms).

One mechanism: a route makes the request's ``entry`` (None when not audited) and either hands it
to the store, which writes it in the read's transaction (pages of reports), or wraps its read in
``recorded``, which writes it after the read in the same trip to the thread pool."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request

from service.api.deps import StoreDep
from service.domain.access import AuditEntry, Caller
from service.usecases.access import audit_entry

T = TypeVar("T")


def request_detail(request: Request) -> dict[str, Any]:
    """What an audit entry records of a request: method, path and query string."""
    return {"method": request.method, "path": request.url.path, "query": request.url.query}


def entry(request: Request, caller: Caller, *, precise: bool = True) -> AuditEntry | None:
    """The audit entry of this request's read of precise reports, or None when the read is not
    audited: ``caller`` does not see everything, or the read shows nothing precise even to one
    who does (``precise=False``)."""
    if not (caller.sees_everything and precise):
        return None
    return audit_entry(caller, "reports.read", request_detail(request))


def recorded(store: StoreDep, entry: AuditEntry | None, read: Callable[[], T]) -> Callable[[], T]:
    """``read``, then its audit ``entry`` written (when there is one): one function for the
    thread pool, so the entry is written after the read succeeded and before its answer can be
    sent. A store that writes the entry in the read's own transaction takes ``entry`` itself
    instead (``query_reports(..., audit=entry)``)."""

    def read_then_record() -> T:
        result = read()
        if entry is not None:
            store.add_audit(entry)
        return result

    return read_then_record
