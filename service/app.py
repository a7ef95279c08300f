"""create_app(settings) -> FastAPI: lifespan, routers, error handlers. Wiring only."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles

from service import __version__
from service.api import openapi, problems
from service.api.middleware import (
    HostGuard,
    KeysNotInUrls,
    PublicCors,
    RequestId,
    SecurityHeaders,
    install_log_redaction,
)
from service.api.ratelimit import make_limiter
from service.api.routes import (
    admin,
    aggregates,
    docs,
    health,
    map,
    ogc,
    reports,
    segments,
    snap,
    tiles,
)
from service.domain.errors import StoreUnavailable
from service.settings import Settings
from service.storage import open_store
from service.storage.base import Store
from service.usecases.public_release import CurrentRelease
from service.usecases.release import cut_release, release_is_due
from service.usecases.segments import CurrentBorder, ensure_segments

log = logging.getLogger("crossings")


def _open_store_waiting(settings: Settings) -> Store:
    """Open the store, waiting up to ``startup_wait_s`` for a database that is still starting."""
    deadline = time.monotonic() + settings.startup_wait_s
    while True:
        store = open_store(settings)
        try:
            store.ping()
            return store
        except StoreUnavailable:
            store.close()
            if time.monotonic() >= deadline:
                raise
            log.warning("store not reachable yet; retrying")
            time.sleep(1.0)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    store = await run_in_threadpool(_open_store_waiting, settings)
    try:
        app.state.store = store
        index = await run_in_threadpool(ensure_segments, store, settings.segments_path)
        app.state.border = CurrentBorder(store, index)
        # What start-up built lives as long as the process: keep it out of every later full
        # garbage collection (those paused big pages by ~100 ms each in bench/features.py).
        gc.collect()
        gc.freeze()
        app.state.release = CurrentRelease(store, check_s=settings.release_check_s)
        if await run_in_threadpool(store.release_info) is None:  # a new store: cut one now
            await run_in_threadpool(_cut_now, store, settings)
        tasks = [
            asyncio.create_task(_watch_border(app.state.border, settings.border_check_s)),
            asyncio.create_task(_keep_release(store, app.state.release, settings)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        store.close()
        app.state.limiter.close()


async def _watch_border(border: CurrentBorder, every_s: float) -> None:
    """Take up a border that another process (``crossings segments load``) stored, within
    ``every_s``: tiles, segments and aggregates then use it. Ingest does not wait for this: it
    finds a changed border in its own transaction (service/usecases/submit_reports.py)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            before = border.index
            if await run_in_threadpool(border.refresh) is not before:
                log.info("took up border version %s", border.index.version)
        except StoreUnavailable:
            continue  # the database is away: look again next time
        except Exception:  # never let the watcher die with the server still up
            log.exception("could not check the border's version")


def _cut_now(store: Store, settings: Settings) -> None:
    info = cut_release(store, now=datetime.now(UTC), delay_h=settings.public_delay_h)
    log.info("cut public release %s (days before %s)", info.release_id, info.through)


async def _keep_release(store: Store, release: CurrentRelease, settings: Settings) -> None:
    """Cut the public release again when it is due: a new day came of age, or late reports,
    deletions or a new border may have changed it (every ``release_refresh_s``). Several servers
    may each cut; the store takes one cut at a time, and each is whole."""
    every_s = min(settings.release_refresh_s, 60.0)
    while True:
        await asyncio.sleep(every_s * (0.75 + random.random() / 2))  # servers drift apart
        try:
            now = datetime.now(UTC)
            due = await run_in_threadpool(
                release_is_due,
                store,
                now=now,
                delay_h=settings.public_delay_h,
                refresh_s=settings.release_refresh_s,
            )
            if due:
                await run_in_threadpool(_cut_now, store, settings)
                await run_in_threadpool(release.refresh_now)  # this process's own cut, at once
        except StoreUnavailable:
            continue  # the database is away: try again next time
        except Exception:  # never let the task die with the server still up
            log.exception("could not cut the public release")


def allowed_hosts(settings: Settings) -> tuple[str, ...]:
    """The Host names served without a public URL: the setting's, and the bind host unless it
    is a wildcard address (then the operator names the hosts)."""
    extra = () if settings.host in ("0.0.0.0", "::", "") else (settings.host,)
    return (*settings.allowed_hosts, *extra)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="crossings",
        version=__version__,
        description=(
            "Reports of people crossing an international land border: ingest exactly once, "
            "geodesic snapping to border segments, GeoJSON out. Errors are RFC 9457 "
            "application/problem+json."
        ),
        lifespan=lifespan,
        # Served from vendored copies under the same CSP as the rest (routes/docs.py), not a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.limiter = make_limiter(settings)
    app.state.key_cache = {}
    problems.install(app)
    openapi.install(app)
    for router in (
        health.router,
        reports.router,
        snap.router,
        segments.router,
        ogc.router,
        tiles.router,
        aggregates.router,
        admin.router,
        map.router,
        docs.router,
    ):
        app.include_router(router)
    # The map page's script and the vendored MapLibre GL JS, from the installed package.
    app.mount("/static", StaticFiles(packages=[("service", "static")]), name="static")
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "If-None-Match"],
            expose_headers=["ETag", "Location", "Retry-After", "X-Request-ID"],
        )
    if settings.cors_public:
        app.add_middleware(PublicCors, listed=settings.cors_origins)
    # Inside the request id and security headers (their 400s carry both), outside all else.
    app.add_middleware(
        HostGuard, public_url=settings.public_url, allowed_hosts=allowed_hosts(settings)
    )
    app.add_middleware(KeysNotInUrls)
    install_log_redaction()
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestId)
    return app
