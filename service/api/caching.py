"""HTTP caching for computed resources (tiles): a strong ETag from the content, 304 for a client
that has it, gzip for clients that take it (compressed off the event loop), 204 when empty."""

from __future__ import annotations

import gzip
import hashlib

from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

GZIP_MIN_BYTES = 512  # below this, gzip saves less than its own header and the CPU
_GZIP_SUFFIX = "-gzip"


def etag_of(body: bytes) -> str:
    """A strong validator: the same bytes give the same tag, other bytes another tag."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def _client_has(request: Request, tag: str) -> bool:
    """Whether If-None-Match names this content, in either encoding (RFC 9110 13.1.2 compares
    weakly: a W/ prefix does not matter)."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    for candidate in header.split(","):
        value = candidate.strip().removeprefix("W/").strip('"')
        if value == "*" or value.removesuffix(_GZIP_SUFFIX) == tag:
            return True
    return False


def _accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


async def revalidated(
    request: Request, body: bytes, media_type: str, *, max_age: int, private: bool = False
) -> Response:
    """The response for ``body``: 204 when empty, 304 when the client holds it, else 200 (gzipped
    when accepted and worth it) with its ETag. Caches may keep it ``max_age`` seconds; after that
    they revalidate, and a changed tile has a new tag."""
    # What only a keyed caller may see must never sit in a shared cache.
    scope = "private" if private else "public"
    headers = {
        "Cache-Control": f"{scope}, max-age={max_age}",
        "Vary": "Accept-Encoding, Authorization, X-API-Key",
    }
    if not body:
        return Response(status_code=204, headers=headers)
    tag = etag_of(body)
    use_gzip = len(body) >= GZIP_MIN_BYTES and _accepts_gzip(request)
    headers["ETag"] = f'"{tag}{_GZIP_SUFFIX}"' if use_gzip else f'"{tag}"'
    if _client_has(request, tag):
        return Response(status_code=304, headers=headers)
    if use_gzip:
        body = await run_in_threadpool(gzip.compress, body, 6, mtime=0)
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=media_type, headers=headers)
