"""One access-log line and the request metrics for every HTTP request (pure ASGI middleware);
while the process drains, each response also closes its connection.

The line and the labels name the route template (``/v1/reports/{report_id}``), never the path:
a path can hold a tile address (a place) and a query string a position or a key.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.drain import Drain
from service.api.metrics import Metrics
from service.logs import ACCESS_LOGGER

access_log = logging.getLogger(ACCESS_LOGGER)


def route_template(scope: Scope) -> str:
    """The matched route's template, the mount's path (static files), or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


def caller_role(scope: Scope) -> str:
    """The role the request was served as; ``none`` before a caller was known (e.g. a bad key)."""
    caller: Any = scope.get("state", {}).get("caller")
    return str(caller.role) if caller is not None else "none"


class Observe:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, drain: Drain) -> None:
        self.app = app
        self.metrics = metrics
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before it answers

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if self.drain.draining:
                    message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, duration_s: float) -> None:
        route, method, role = route_template(scope), scope["method"], caller_role(scope)
        self.metrics.requests.labels(route, method, str(status), role).inc()
        self.metrics.latency.labels(route, method).observe(duration_s)
        request_id = scope.get("state", {}).get("request_id")
        access_log.info(
            "%s %s %d %.1f ms role=%s id=%s",
            method, route, status, duration_s * 1000, role, request_id,
            extra={
                "request_id": request_id, "method": method, "route": route, "status": status,
                "duration_ms": round(duration_s * 1000, 2), "role": role,
            },
        )  # fmt: skip
