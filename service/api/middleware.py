"""ASGI middleware: a request id on every request and response (pure ASGI: no body buffering)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.responses import Response
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


_CREDENTIALS = frozenset({"authorization", "x-api-key", "cookie"})
_PUBLIC_METHODS = frozenset({"GET", "HEAD"})
_EXPOSED = b"ETag, Retry-After, X-Request-ID"


class PublicCors:
    """CORS for the public: a key-less GET from any origin is answered with
    ``Access-Control-Allow-Origin: *`` (no credentials), so a third-party page can draw the public
    tiles and read the segments. That opens nothing a key opens: keys travel in headers a page
    must ask leave to send, and a preflight asking to send one from an origin not in
    ``listed`` is refused. Requests from ``listed`` origins go on to Starlette's CORSMiddleware
    (keyed cross-origin use, opt-in through CROSSINGS_CORS_ORIGINS)."""

    def __init__(self, app: ASGIApp, *, listed: Collection[str]) -> None:
        self.app = app
        self.listed = frozenset(listed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None or origin in self.listed or "*" in self.listed:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(headers)(scope, receive, send)
            return
        if method not in _PUBLIC_METHODS or _CREDENTIALS & set(headers.keys()):
            await self.app(scope, receive, send)
            return

        async def send_public(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"access-control-allow-origin", b"*"),
                    (b"access-control-expose-headers", _EXPOSED),
                ]
            await send(message)

        await self.app(scope, receive, send_public)

    @staticmethod
    def _preflight(headers: Headers) -> Response:
        """Leave for a key-less GET (and the headers a cached read sends); refused for anything
        else, a key above all."""
        method = headers["access-control-request-method"].strip().upper()
        asked = {
            h.strip().lower()
            for h in headers.get("access-control-request-headers", "").split(",")
            if h.strip()
        }
        if method not in _PUBLIC_METHODS or asked & _CREDENTIALS:
            body = (
                b'{"type":"about:blank","title":"Cross-origin request not allowed","status":403,'
                b'"detail":"only key-less GET requests are open to every origin; keyed use needs'
                b' the origin in CROSSINGS_CORS_ORIGINS"}'
            )
            return Response(body, status_code=403, media_type="application/problem+json")
        allowed = {
            "access-control-allow-origin": "*",
            "access-control-allow-methods": "GET, HEAD",
            "access-control-max-age": "600",
        }
        if asked:
            allowed["access-control-allow-headers"] = ", ".join(sorted(asked))
        return Response(status_code=204, headers=allowed)
