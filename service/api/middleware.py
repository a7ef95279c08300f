"""ASGI middleware: a request id on every request and response (pure ASGI: no body buffering)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Collection, Iterable

import orjson
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class _AddsHeaders:
    """Pure ASGI middleware adding the headers ``headers_for`` gives a request (asked once, before
    the app runs) to its response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def headers_for(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.headers_for(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _RandomIds:
    """Random version-4 UUIDs as 32 hex digits (what ``uuid.uuid4().hex`` gives), drawn from the
    operating system's generator 256 at a time. ``uuid.uuid4()`` asks the kernel for 16 bytes
    on every call, and ``os.urandom`` lets go of the GIL around that system call: on the event
    loop, while a worker thread computes, taking it back can wait for a whole switch interval."""

    _BATCH = 256

    def __init__(self) -> None:
        self._pool: list[int] = []

    def next_hex(self) -> str:
        try:
            n = self._pool.pop()  # atomic: safe if apps in several threads share this
        except IndexError:
            raw = os.urandom(16 * self._BATCH)
            pool = [int.from_bytes(raw[i : i + 16]) for i in range(0, len(raw), 16)]
            n = pool.pop()
            self._pool = pool
        # RFC 4122 version 4, variant 10 (as uuid.UUID(version=4) sets them)
        n = (n & ~(0xC000 << 48) | (0x8000 << 48)) & ~(0xF000 << 64) | (4 << 76)
        return f"{n:032x}"


_request_ids = _RandomIds()
# A forked child starts with no ids drawn, so that it never repeats its parent's.
os.register_at_fork(after_in_child=lambda: setattr(_request_ids, "_pool", []))


# On every response. The pages (the map, /docs, HTML encodings) load their scripts from this
# server only; MapLibre draws in web workers made from blobs.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"geolocation=(), camera=(), microphone=()"),
]
# Same-origin only, on every page: /docs and /redoc too (their scripts are vendored copies).
_CSP = (
    b"default-src 'self'; img-src 'self' data: blob:; worker-src 'self' blob:; "
    b"child-src blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
)
_SECURITY = [*SECURITY_HEADERS, (b"content-security-policy", _CSP)]


class RequestIdAndSecurityHeaders(_AddsHeaders):
    """Take a client's X-Request-ID when it is a safe token, else make one; echo it back, after
    the standard security headers and a strict Content-Security-Policy, on every response (one
    layer for both: one wrapper of ``send`` a request instead of two)."""

    def headers_for(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        request_id = _last_header(scope, b"x-request-id")
        if not _SAFE_ID.match(request_id):
            request_id = _request_ids.next_hex()
        scope.setdefault("state", {})["request_id"] = request_id
        return [*_SECURITY, (b"x-request-id", request_id.encode())]


# --- Hardening (issue #13): keys never in URLs or logs; only the hosts this server answers to ---

# Query parameters that carry a key in other APIs, and anything shaped like one of ours.
_KEY_NAMES = frozenset(
    {"api_key", "apikey", "api-key", "x-api-key", "key", "access_token", "token", "auth",
     "authorization", "bearer"}
)  # fmt: skip
_KEY_SHAPE = re.compile(r"crs_[0-9a-f]{12}")
_REDACTED = "[redacted]"


def _is_secret(name: str, value: str) -> bool:
    return name.strip().lower() in _KEY_NAMES or bool(
        _KEY_SHAPE.search(name) or _KEY_SHAPE.search(value)
    )


def redact_query(query: str) -> tuple[str, list[str]]:
    """``query`` with the value of every key-bearing parameter replaced, and those parameters'
    names (a key sent as a bare name is itself replaced)."""
    from urllib.parse import unquote_plus

    kept, found = [], []
    for part in query.split("&"):
        raw_name, eq, raw_value = part.partition("=")
        name, value = unquote_plus(raw_name), unquote_plus(raw_value)
        if part and _is_secret(name, value):
            shown = _REDACTED if _KEY_SHAPE.search(name) else raw_name
            found.append(shown)
            kept.append(f"{shown}{eq}{_REDACTED if eq else ''}")
        else:
            kept.append(part)
    return "&".join(kept), found


def redact_text(text: str) -> str:
    """``text`` (a logged line or path with query) with anything key-like replaced."""
    path, mark, query = text.partition("?")
    if mark:
        text = path + mark + redact_query(query)[0]
    return re.sub(r"crs_[0-9A-Za-z_-]+", "crs_" + _REDACTED, text)


class RedactKeys(logging.Filter):
    """On uvicorn's access log: a request line never shows a key (the middleware below has
    already replaced it in the request; this also covers what reaches the log another way)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_text(a) if isinstance(a, str) else a for a in record.args)
        return True


def install_log_redaction() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactKeys) for f in access.filters):
        access.addFilter(RedactKeys())


def _problem(scope: Scope, detail: str, field: str, reason: str) -> bytes:
    from service.api.problems import problem_body
    from service.domain.errors import FieldError, InvalidParameter

    body = problem_body(
        InvalidParameter, detail, errors=[FieldError(field, reason)], instance=scope.get("path")
    )
    body["request_id"] = scope.get("state", {}).get("request_id")
    return orjson.dumps(body)


async def _send_problem(send: Send, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class KeysNotInUrls:
    """A key in the query string is refused (400, saying to send it in a header) before anything
    reads the request, and is replaced in the request itself, so that neither uvicorn's access
    log nor the audit log nor the database ever holds it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        redacted, found = redact_query(scope["query_string"].decode("latin-1"))
        if not found:
            await self.app(scope, receive, send)
            return
        scope["query_string"] = redacted.encode("latin-1")
        reason = "an API key goes in the Authorization (Bearer) or X-API-Key header, never in a URL"
        await _send_problem(
            send,
            _problem(scope, f"a key was sent in the URL ({', '.join(found)})", found[0], reason),
        )


def _host_name(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    name, colon, port = header.rpartition(":")
    return name if colon and port.isdigit() else header


class HostGuard:
    """Links are built from the request's Host. With ``public_url``, every request is given that
    scheme and host (whatever Host it came with); without it, only ``allowed_hosts`` are served
    and any other Host gets a 400 problem (Starlette's TrustedHostMiddleware answers plain text
    and cannot rewrite)."""

    def __init__(
        self, app: ASGIApp, *, public_url: str | None, allowed_hosts: Iterable[str]
    ) -> None:
        from urllib.parse import urlsplit

        self.app = app
        self.allowed = frozenset(h.lower().strip("[]") for h in allowed_hosts)
        self.public: tuple[str, bytes, tuple[str, int]] | None = None
        if public_url:
            parts = urlsplit(public_url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            self.public = (parts.scheme, parts.netloc.encode(), (parts.hostname or "", port))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.public is not None:
            scheme, netloc, server = self.public
            scope["scheme"], scope["server"] = scheme, server
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"host"] + [
                (b"host", netloc)
            ]
        elif "*" not in self.allowed and (
            _host_name(_last_header(scope, b"host")) not in self.allowed
        ):
            reason = "not a host this server answers to (CROSSINGS_ALLOWED_HOSTS)"
            await _send_problem(send, _problem(scope, "the Host is not served", "Host", reason))
            return
        await self.app(scope, receive, send)


def _last_header(scope: Scope, name: bytes) -> str:
    """The last value of header ``name`` (lower case), as ``dict(scope["headers"])`` keeps; ""
    when there is none."""
    sent = b""
    for key, value in scope["headers"]:
        if key == name:
            sent = value
    return sent.decode("latin-1")


def _first_header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case), as Starlette's ``Headers.get`` gives."""
    for key, value in scope["headers"]:
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


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
        origin = _first_header(scope, b"origin")  # most requests have none: no Headers made
        if origin is None or origin in self.listed or "*" in self.listed:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
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
