"""Reading request bodies: media type, size limit (counted as it streams), strict JSON."""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import Request

from service.domain.errors import BodyTooLarge, FieldError, MalformedBody, UnsupportedMediaType

JSON_TYPES = ("application/json", "application/geo+json")


def check_media_type(request: Request) -> None:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in JSON_TYPES:
        shown = media or "none"
        raise UnsupportedMediaType(
            f"Content-Type {shown} is not accepted; send application/json or application/geo+json"
        )


async def read_json(request: Request, *, max_bytes: int) -> Any:
    """The parsed JSON body; BodyTooLarge as soon as it passes ``max_bytes``, however it is sent."""
    check_media_type(request)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(f"the body is {declared} bytes; the limit is {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(f"the body is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return parse_json(b"".join(chunks))


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise MalformedBody("the body is empty; a JSON document is expected")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        # NaN and Infinity are not JSON, and orjson refuses them like any strict parser; name the
        # field, since a client that sent them usually serialised a float it did not check.
        fields = _non_finite_fields(raw)
        if fields:
            raise MalformedBody(
                "NaN and Infinity are not JSON numbers; send finite numbers",
                errors=[FieldError(f, "is NaN or Infinity") for f in fields],
            ) from error
        raise MalformedBody(f"the body is not valid JSON: {error}") from error


class _NonFinite:
    pass


def _non_finite_fields(raw: bytes) -> list[str]:
    try:
        doc = json.loads(raw, parse_constant=lambda _: _NonFinite())
    except (ValueError, RecursionError):
        return []
    found: list[str] = []
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack and len(found) < 20:
        path, value = stack.pop()
        if isinstance(value, _NonFinite):
            found.append(path or "body")
        elif isinstance(value, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}" if path else str(i), v) for i, v in enumerate(value))
    return sorted(found)
