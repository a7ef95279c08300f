"""ASGI middleware: a request id on every request and response (pure ASGI: no body buffering)."""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestId:
    """Take a client's X-Request-ID when it is a safe token, else make one; echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = sent if _SAFE_ID.match(sent) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)


# On every response. The pages (the map, /docs, HTML encodings) load their scripts from this
# server only; MapLibre draws in web workers made from blobs.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"geolocation=(), camera=(), microphone=()"),
]
_DOCS_PATHS = (b"/docs", b"/redoc")
# FastAPI's /docs page loads Swagger UI from a CDN; everything else is same-origin only.
_CSP = (
    b"default-src 'self'; img-src 'self' data: blob:; worker-src 'self' blob:; "
    b"child-src blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
)


class SecurityHeaders:
    """Standard security headers on every response; a strict Content-Security-Policy on all but
    the interactive API documentation."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "").encode()
        extra = list(SECURITY_HEADERS)
        if not path.startswith(_DOCS_PATHS):
            extra.append((b"content-security-policy", _CSP))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
