"""Administration: API keys, the audit log, deleting a report. Admin keys only (see access.py)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from service.api.body import read_json
from service.api.deps import CallerDep, SettingsDep, StoreDep, get_caller
from service.api.problems import DocumentedRoute
from service.api.responses import JSONResponse
from service.api.schemas.lists import AuditQuery
from service.api.schemas.pages import parse_time
from service.api.state import app_state
from service.domain.errors import FieldError, InvalidInput
from service.usecases import access

router = APIRouter(
    prefix="/v1", tags=["admin"], dependencies=[Depends(get_caller)], route_class=DocumentedRoute
)


@router.get("/keys")
async def list_keys(store: StoreDep) -> Response:
    """Every key: id, name, role, when made, expires, revoked. Never a secret or a digest."""
    keys = await run_in_threadpool(store.list_keys)
    return JSONResponse({"keys": [access.key_fields(k) for k in keys]})


@router.post("/keys", status_code=201)
async def create_key(
    request: Request, store: StoreDep, settings: SettingsDep, caller: CallerDep
) -> Response:
    """Make a key: `{"role": "reporter"|"analyst"|"admin", "name": "...", "expires_at": RFC 3339
    or null}`. The answer holds the key itself, once: only its digest is stored."""
    body = await read_json(request, max_bytes=settings.max_body_bytes)
    if not isinstance(body, dict):
        raise InvalidInput("send a JSON object", errors=[FieldError("body", "must be an object")])
    role, name = body.get("role"), body.get("name")
    if not isinstance(role, str) or not isinstance(name, str):
        raise InvalidInput(
            "role and name are text",
            errors=[FieldError(f, "must be text") for f in ("role", "name")
                    if not isinstance(body.get(f), str)],
        )  # fmt: skip
    raw_expiry = body.get("expires_at")
    if raw_expiry is not None and not isinstance(raw_expiry, str):
        raise InvalidInput("expires_at", errors=[FieldError("expires_at", "must be text")])
    expires = parse_time("expires_at", raw_expiry)
    key, token = await run_in_threadpool(
        lambda: access.create_key(store, role=role, name=name, expires_at=expires, actor=caller)
    )
    return JSONResponse(access.key_fields(key) | {"key": token}, status_code=201)


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, request: Request, store: StoreDep, caller: CallerDep) -> Response:
    """Revoke a key: from now on it is refused (by other server processes within
    CROSSINGS_KEY_CACHE_S seconds)."""
    await run_in_threadpool(lambda: access.revoke_key(store, key_id, actor=caller))
    app_state(request.app).key_cache.pop(key_id, None)
    return Response(status_code=204)


@router.get("/audit")
async def audit_log(store: StoreDep, params: Annotated[AuditQuery, Query()]) -> Response:
    """The audit log, oldest first: key creation and revocation, deletions, border loads, and
    every read of precise reports by an analyst or admin (who, when, what query)."""
    entries = await run_in_threadpool(
        store.list_audit, parse_time("since", params.since), params.limit
    )
    out: list[dict[str, Any]] = [
        {"at": e.at.isoformat(), "key_id": e.key_id, "role": e.role.value, "action": e.action,
         "detail": e.detail}
        for e in entries
    ]  # fmt: skip
    return JSONResponse({"entries": out})


@router.delete("/reports/{report_id}", status_code=204)
async def delete_report(report_id: UUID, store: StoreDep, caller: CallerDep) -> Response:
    """Delete a report; every count it was in (tiles, aggregates) is counted down with it."""
    await run_in_threadpool(lambda: access.delete_report(store, report_id, actor=caller))
    return Response(status_code=204)
