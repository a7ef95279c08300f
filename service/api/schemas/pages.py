"""Query parameters of report listings, and the opaque keyset cursor of their pages."""

from __future__ import annotations

import base64
import binascii
import math
from datetime import UTC, datetime
from uuid import UUID

from starlette.datastructures import URL

from service.api.schemas.common import parse_instant
from service.domain.errors import FieldError, InvalidParameter
from service.domain.queries import PageKey, ReportQuery


def encode_cursor(key: PageKey) -> str:
    micros = (key.observed_at - datetime(1970, 1, 1, tzinfo=UTC)) // _MICROSECOND
    raw = f"1|{micros}|{key.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> PageKey:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        version, micros, report_id = raw.split("|")
        if version != "1":
            raise ValueError(version)
        observed = datetime(1970, 1, 1, tzinfo=UTC) + int(micros) * _MICROSECOND
        return PageKey(observed_at=observed, id=UUID(report_id))
    except (ValueError, UnicodeDecodeError, binascii.Error, OverflowError) as error:
        raise _bad("cursor", "is not a cursor this service issued; follow the next link") from error


def cursor_after(token: str | None) -> tuple[datetime, UUID] | None:
    """The (observed_at, id) key a listing's page starts after, from its ``cursor`` parameter."""
    if token is None:
        return None
    key = decode_cursor(token)
    return key.observed_at, key.id


def next_href(url: URL, next_key: tuple[datetime, UUID] | None) -> str | None:
    """The link to a listing's next page (this request's URL with the cursor after
    ``next_key``), or None on the last page."""
    if next_key is None:
        return None
    key = PageKey(observed_at=next_key[0], id=next_key[1])
    return str(url.include_query_params(cursor=encode_cursor(key)))


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    parts = text.split(",")
    if len(parts) != 4:
        raise _bad("bbox", "must be four numbers: min_lon,min_lat,max_lon,max_lat")
    try:
        values = [float(p) for p in parts]
    except ValueError as error:
        raise _bad("bbox", "must be four numbers: min_lon,min_lat,max_lon,max_lat") from error
    if not all(math.isfinite(v) for v in values):
        raise _bad("bbox", "numbers must be finite")
    x0, y0, x1, y1 = values
    if not (-180 <= x0 <= 180 and -180 <= x1 <= 180 and -90 <= y0 <= 90 and -90 <= y1 <= 90):
        raise _bad("bbox", "longitudes must lie in [-180, 180] and latitudes in [-90, 90]")
    if y0 > y1:
        raise _bad("bbox", "min_lat is greater than max_lat")
    if x0 > x1:
        raise _bad(
            "bbox",
            "min_lon is greater than max_lon (boxes across the antimeridian are not supported)",
        )
    return x0, y0, x1, y1


def parse_time(name: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_instant(text)
    except ValueError as error:
        raise _bad(name, str(error)) from error


def report_query(
    *,
    bbox: str | None,
    start: str | None,
    end: str | None,
    segment_id: str | None,
    kind: str | None,
    limit: int,
    cursor: str | None,
    max_limit: int,
) -> ReportQuery:
    """A ReportQuery from raw parameters; InvalidParameter naming each one that is wrong."""
    if not 1 <= limit <= max_limit:
        raise _bad("limit", f"must be between 1 and {max_limit}")
    begin, finish = parse_time("start", start), parse_time("end", end)
    if begin is not None and finish is not None and begin > finish:
        raise _bad("end", "is before start")
    return ReportQuery(
        bbox=None if bbox is None else parse_bbox(bbox),
        start=begin,
        end=finish,
        segment_id=segment_id,
        kind=kind,
        limit=limit,
        after=None if cursor is None else decode_cursor(cursor),
    )


def _bad(field: str, reason: str) -> InvalidParameter:
    return InvalidParameter(f"{field} {reason}", errors=[FieldError(field, reason)])
