"""Dependencies every route takes, as Annotated aliases.

``get_caller`` is the one every router depends on: it identifies the caller from its API key (or
none: the public), counts the request against the rate limit, and refuses what the caller's role
may not do according to service/api/access.py.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from service.api.access import permission_for
from service.api.lifecycle import current_border, current_release, current_store
from service.api.state import app_state
from service.domain.access import PUBLIC, ApiKey, Caller, Permission, matches, parse_token
from service.domain.errors import Forbidden, TooManyRequests, Unauthenticated
from service.domain.segments import SegmentIndex
from service.settings import Settings
from service.storage.base import Store
from service.usecases.public_release import CurrentRelease


async def get_settings(request: Request) -> Settings:
    return app_state(request.app).settings


async def get_store(request: Request) -> Store:
    return current_store(request.app)


async def get_index(request: Request) -> SegmentIndex:
    return current_border(request.app).index


def border_reloader(request: Request) -> Callable[[SegmentIndex], SegmentIndex]:
    """What ingest calls when it finds the border it snapped to replaced (another process loaded
    one): the stored border, which every later request then uses too."""
    border = current_border(request.app)
    return lambda stale: border.refresh(stale=stale)


def _token(request: Request) -> str | None:
    """The key the request carries: ``Authorization: Bearer <key>``, ``Authorization: Basic``
    with the key as the password (any user name: what QGIS's Basic authentication and GDAL's
    GDAL_HTTP_USERPWD send), or ``X-API-Key``."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            return value
        if scheme.lower() == "basic" and value:
            return _basic_password(value)
        raise Unauthenticated(
            "send the key as 'Authorization: Bearer <key>', or as the password of HTTP Basic"
        )
    return request.headers.get("x-api-key")


def _basic_password(credentials: str) -> str:
    """The password of HTTP Basic credentials (RFC 7617: base64 of user-id ":" password)."""
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as error:
        raise Unauthenticated("the API key is not valid") from error
    _, colon, password = decoded.partition(":")
    if not colon or not password:
        raise Unauthenticated("the API key is not valid")
    return password


async def _key(request: Request, key_id: str) -> ApiKey | None:
    """The stored key, cached for ``key_cache_s`` (a revoked key stops working within that
    time on other processes, at once on the one that revoked it)."""
    state = app_state(request.app)
    cache = state.key_cache
    now = time.monotonic()
    hit = cache.get(key_id)
    if hit is not None and now - hit[0] < state.settings.key_cache_s:
        return hit[1]
    store = current_store(request.app)
    key = await run_in_threadpool(store.get_key, key_id)
    if len(cache) > 10_000:
        cache.clear()
    cache[key_id] = (now, key)
    return key


# Probes (a load balancer's, every few seconds from one address) are not counted.
UNLIMITED = frozenset({"/healthz", "/readyz"})


async def authenticate(request: Request) -> Caller:
    token = _token(request)
    if token is None:
        return PUBLIC
    parsed = parse_token(token)
    key = None if parsed is None else await _key(request, parsed[0])
    # One answer for every bad key (malformed, unknown, wrong secret, revoked, expired): it tells
    # nobody holding an old key whether it ever was one. The key is never logged or echoed.
    if (
        parsed is None
        or key is None
        or not matches(key, parsed[1])
        or not key.usable_at(datetime.now(UTC))
    ):
        raise Unauthenticated("the API key is not valid")
    return Caller(role=key.role, key_id=key.key_id, key_name=key.name)


def client_address(request: Request) -> str:
    """The client's address: the peer's, or what a trusted proxy says (the ProxyHeaders
    middleware in service/app.py has already decided which)."""
    return request.client.host if request.client else "unknown"


async def _rate_limit(request: Request, caller: Caller) -> None:
    state = app_state(request.app)
    settings = state.settings
    if caller.key_id is not None:
        bucket, limit = f"key:{caller.key_id}", settings.rate_limit_per_key
    else:
        bucket, limit = f"addr:{client_address(request)}", settings.rate_limit_public
    if limit <= 0:
        return
    wait = await state.limiter.hit(bucket, limit=limit, window_s=settings.rate_limit_window_s)
    if wait is not None:
        state.metrics.rate_limited.labels(bucket.partition(":")[0]).inc()
        raise TooManyRequests(
            f"more than {limit} requests in {settings.rate_limit_window_s} s",
            retry_after_s=max(1, math.ceil(wait)),
        )


def _in_networks(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


async def get_caller(request: Request) -> Caller:
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    limited = path not in UNLIMITED
    try:
        caller = await authenticate(request)
    except Unauthenticated:
        # A bad key counts against its address (guessing keys is rate-limited like the public).
        if limited:
            await _rate_limit(request, PUBLIC)
        raise
    if limited:
        await _rate_limit(request, caller)
    permission = permission_for(request.method, path, request.path_params)
    if permission is None:
        raise Forbidden("this route has no access rule")
    settings = app_state(request.app).settings
    anonymous_report = (
        permission is Permission.SUBMIT and caller.role == "public"
        and settings.allow_anonymous_reports
    )  # fmt: skip
    allowed_scraper = (
        permission is Permission.METRICS and caller.key_id is None
        and _in_networks(client_address(request), settings.metrics_allow)
    )  # fmt: skip
    if not caller.may(permission) and not anonymous_report and not allowed_scraper:
        if caller.key_id is None:
            raise Unauthenticated(f"this needs an API key ({_who(permission)})")
        raise Forbidden(f"a {caller.role} key may not do this ({_who(permission)})")
    request.state.caller = caller
    return caller


def _who(permission: Permission) -> str:
    return {
        Permission.SUBMIT: "a reporter or admin key",
        Permission.READ_OWN: "a reporter key for its own reports, or an analyst or admin key",
        Permission.READ_ALL: "an analyst or admin key",
        Permission.ADMIN: "an admin key",
        Permission.PUBLIC: "none",
        Permission.METRICS: "an admin key, or an address in CROSSINGS_METRICS_ALLOW",
    }[permission]


async def get_release(request: Request) -> CurrentRelease:
    return current_release(request.app)


SettingsDep = Annotated[Settings, Depends(get_settings)]
ReleaseDep = Annotated[CurrentRelease, Depends(get_release)]
StoreDep = Annotated[Store, Depends(get_store)]
IndexDep = Annotated[SegmentIndex, Depends(get_index)]
CallerDep = Annotated[Caller, Depends(get_caller)]


@dataclass(frozen=True, slots=True)
class Sources:
    """What a read that answers exactly or from the public release needs: the store, the
    release, the border, the settings, and who asks (tiles, aggregates)."""

    store: Store
    release: CurrentRelease
    index: SegmentIndex
    settings: Settings
    caller: Caller


async def get_sources(
    store: StoreDep, release: ReleaseDep, index: IndexDep, settings: SettingsDep, caller: CallerDep
) -> Sources:
    return Sources(store, release, index, settings, caller)


SourcesDep = Annotated[Sources, Depends(get_sources)]
