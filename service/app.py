"""create_app(settings) -> FastAPI: lifespan, routers, error handlers. Wiring only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from service import __version__
from service.api import lifecycle, openapi, problems
from service.api.drain import Drain
from service.api.metrics import Metrics
from service.api.middleware import (
    HostGuard,
    KeysNotInUrls,
    PublicCors,
    RequestIdAndSecurityHeaders,
    install_log_redaction,
)
from service.api.observe import Observe
from service.api.ratelimit import make_limiter
from service.api.routes import (
    admin,
    aggregates,
    alerts,
    docs,
    health,
    links,
    map,
    metrics,
    ogc,
    reports,
    segments,
    snap,
    tiles,
    webhooks,
)
from service.api.state import AppState, app_state
from service.settings import Settings

log = logging.getLogger("crossings")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app_state(app)
    settings, drain = state.settings, state.drain
    drain.install()
    starter = asyncio.create_task(lifecycle.start(app))
    # A database that answers at once makes the server ready before it serves; one that does
    # not is waited for in the background while /healthz answers (service/api/lifecycle.py).
    await state.startup.wait(settings.startup_wait_s)
    try:
        yield
    finally:
        starter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starter
        drain.uninstall()
        if state.startup.store is not None:
            state.startup.store.close()
        await state.limiter.close()


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
        # FastAPI's own OpenTelemetry bridge: this service exports Prometheus metrics and JSON
        # logs (api/metrics.py, api/observe.py) and configures no OpenTelemetry provider; left
        # on, the bridge looks the providers up in the environment on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    state = AppState(
        settings=settings,
        limiter=make_limiter(settings),
        metrics=Metrics(),
        drain=Drain(settings.drain_s),
    )
    app.state.crossings = state
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
        alerts.router,
        links.router,
        webhooks.router,
        map.router,
        docs.router,
        metrics.router,
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
    app.add_middleware(Observe, metrics=state.metrics, drain=state.drain)
    app.add_middleware(RequestIdAndSecurityHeaders)
    # Outermost: the client's address is the peer's, or from X-Forwarded-For only when the peer
    # is a proxy named in CROSSINGS_TRUSTED_PROXIES (uvicorn's own middleware, run by the app so
    # that it holds however the app is served; `crossings serve` turns uvicorn's copy off).
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))
    return app
