"""OGC API - Features (Part 1) wire formats: items parameters, links, and the documents."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ConfigDict, Field

from service.api.cql2 import FilterQuery
from service.api.schemas.common import PAGE_MAX_ITEMS, FormatQuery, format_instant, parse_instant
from service.api.schemas.pages import decode_cursor, parse_bbox
from service.domain.errors import FieldError, InvalidParameter
from service.domain.queries import ReportQuery

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
]
REPORT_FILTERS = ("segment_id", "kind", "border", "direction")
SEGMENT_FILTERS = ("border", "section", "segment_id")
SORTABLE = {"observed_at": False, "+observed_at": False, "-observed_at": True}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MICROSECOND = timedelta(microseconds=1)


class ItemsQuery(FormatQuery):
    """The parameters every collection's items take, declared once: FastAPI documents them (GDAL
    reads the document to learn which attribute filters it may send), reads them and refuses any
    other; ``parse_items_params`` checks their values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bbox: str | None = Field(default=None, description="min_lon,min_lat,max_lon,max_lat (CRS84)")
    bbox_crs: str = Field(default=CRS84, alias="bbox-crs", json_schema_extra={"enum": [CRS84]})
    datetime: str | None = Field(
        default=None, description="observed_at: an instant or an interval with .."
    )
    limit: int = Field(
        default=100,
        ge=1,
        description="Page size (at most CROSSINGS_PAGE_MAX_ITEMS)",
        json_schema_extra=PAGE_MAX_ITEMS,
    )
    sortby: str | None = Field(default=None, description="observed_at or -observed_at")
    properties: str | None = Field(default=None, description="Comma-separated properties to return")
    cursor: str | None = Field(default=None, description="From the next link")


class ReportItemsQuery(FilterQuery, ItemsQuery):
    segment_id: str | None = None
    kind: str | None = None
    border: str | None = None
    direction: str | None = None


class SegmentItemsQuery(ItemsQuery):
    border: str | None = None
    section: str | None = None
    segment_id: str | None = None


def bad(field: str, reason: str) -> InvalidParameter:
    return InvalidParameter(f"{field} {reason}", errors=[FieldError(field, reason)])


@dataclass(frozen=True, slots=True)
class ItemsParams:
    """The parsed query of an items request."""

    bbox: tuple[float, float, float, float] | None
    start: datetime | None
    end: datetime | None  # exclusive
    limit: int
    descending: bool
    properties: tuple[str, ...] | None
    filters: dict[str, str]
    cursor: str | None


def parse_items_params(
    query: ItemsQuery,
    *,
    filters: tuple[str, ...],
    max_limit: int,
    known_properties: AbstractSet[str],
    read_cursor: Callable[[str], object],
) -> ItemsParams:
    """The values of an items ``query``; InvalidParameter naming the first that is not valid.

    Each collection owns its cursor: ``read_cursor`` is the decoder of the collection's own
    tokens (the reports' keyset cursor, the segments' offset), called here so that a bad cursor
    is refused before any work."""
    params: dict[str, Any] = query.model_dump(by_alias=True, exclude_none=True)
    bbox = None
    if "bbox" in params:
        if len(params["bbox"].split(",")) == 6:
            raise bad("bbox", "3D boxes (6 numbers) are not supported: send 4 numbers")
        bbox = parse_bbox(params["bbox"])
    if query.bbox_crs != CRS84:
        raise bad("bbox-crs", f"only {CRS84} is supported")
    start, end = parse_datetime(params["datetime"]) if "datetime" in params else (None, None)
    if query.limit > max_limit:
        raise bad("limit", f"must be a whole number from 1 to {max_limit}")
    sortby = params.get("sortby", "observed_at")
    if sortby not in SORTABLE:
        raise bad("sortby", "supported: observed_at, -observed_at")
    properties = None
    if "properties" in params:
        properties = tuple(p for p in params["properties"].split(",") if p)
        unknown = [p for p in properties if p not in known_properties]
        if unknown:
            raise bad("properties", f"unknown: {', '.join(unknown)}")
    if query.cursor is not None:
        read_cursor(query.cursor)
    return ItemsParams(
        bbox=bbox,
        start=start,
        end=end,
        limit=query.limit,
        descending=SORTABLE[sortby],
        properties=properties,
        filters={k: params[k] for k in filters if k in params},
        cursor=query.cursor,
    )


def parse_datetime(text: str) -> tuple[datetime | None, datetime | None]:
    """An OGC datetime (instant, or closed/open interval with ..) as [start, end) in UTC."""
    if "/" not in text:
        instant_start, instant_end = _moment(text, "datetime")
        return instant_start, instant_end
    first, _, second = text.partition("/")
    start = None if first in ("..", "") else _moment(first, "datetime")[0]
    end = None if second in ("..", "") else _moment(second, "datetime")[1]
    if start is not None and end is not None and start >= end:
        raise bad("datetime", "the interval ends before it starts")
    return start, end


def _moment(text: str, field: str) -> tuple[datetime, datetime]:
    """[start, end) of an instant (one microsecond) or a full date (one UTC day)."""
    if _DATE.match(text):
        try:
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError as error:
            raise bad(field, f"{text!r} is not a real date") from error
        return day, day + timedelta(days=1)
    try:
        instant = parse_instant(text)
    except ValueError as error:
        raise bad(field, f"{text!r}: {error}") from error
    return instant, instant + _MICROSECOND


def report_query(params: ItemsParams, *, border_segments: dict[str, frozenset[str]]) -> ReportQuery:
    f = params.filters
    segment_ids = None
    if "border" in f:
        segment_ids = border_segments.get(f["border"], frozenset())
    return ReportQuery(
        bbox=params.bbox,
        start=params.start,
        end=params.end,
        segment_id=f.get("segment_id"),
        segment_ids=segment_ids,
        kind=f.get("kind"),
        direction=f.get("direction", "").upper() or None,
        limit=params.limit,
        after=None if params.cursor is None else decode_cursor(params.cursor),
        descending=params.descending,
    )


def link(href: str, rel: str, media: str, title: str | None = None) -> dict[str, Any]:
    out = {"href": href, "rel": rel, "type": media}
    if title:
        out["title"] = title
    return out


def temporal(start: datetime | None, end: datetime | None) -> list[list[str | None]]:
    return [
        [
            None if start is None else format_instant(start),
            None if end is None else format_instant(end),
        ]
    ]


def flat_properties(props: dict[str, Any]) -> dict[str, Any]:
    """Properties with no nested values, so GDAL and QGIS map each to a column: lists become
    text joined by '; ', objects become one column per key (``parent_key``)."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        if isinstance(value, dict):
            for sub, inner in value.items():
                out[f"{key}_{sub}"] = inner
        elif isinstance(value, list):
            out[key] = "; ".join(str(v) for v in value)
        else:
            out[key] = value
    return out


def encode_offset(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o|{offset}".encode()).decode().rstrip("=")


def decode_offset(token: str | None) -> int:
    if token is None:
        return 0
    try:
        kind, value = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split("|")
        if kind != "o" or not value.isdigit():
            raise ValueError(token)
        return int(value)
    except (ValueError, UnicodeDecodeError, binascii.Error) as error:
        raise bad("cursor", "is not a cursor this service issued; follow the next link") from error


# Each report property's JSON type, in the order features carry them: the schema GIS tools read
# to type their columns without guessing from a first page (where a column may be all null).
# (name, JSON type, format, may be null)
REPORT_SCHEMA: tuple[tuple[str, str, str | None, bool], ...] = (
    ("id", "string", "uuid", False),
    ("observed_at", "string", "date-time", False),
    ("received_at", "string", "date-time", False),
    ("people_count", "integer", None, False),
    ("direction", "string", None, True),
    ("kind", "string", None, False),
    ("accuracy_m", "number", None, True),
    ("notes", "string", None, True),
    ("device_id", "string", None, True),
    ("snap_status", "string", None, False),
    ("segment_id", "string", None, True),
    ("snap_distance_m", "number", None, True),
    ("chainage_km", "number", None, True),
    ("side", "string", None, True),
    ("snapped_lon", "number", None, True),
    ("snapped_lat", "number", None, True),
    # Analysts' features only (issue #20): absent from everyone else's.
    ("group_id", "string", "uuid", True),
)


def schema_of_values(props: dict[str, list[Any]]) -> tuple[tuple[str, str, str | None, bool], ...]:
    """A schema for properties known only by their values (the loaded border's own attributes):
    the narrowest JSON type that holds every value."""
    out = []
    for name, values in props.items():
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, bool) for v in present):
            kind = "boolean"
        elif present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            kind = "integer"
        elif present and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in present
        ):
            kind = "number"
        else:
            kind = "string"
        out.append((name, kind, None, len(present) < len(values)))
    return tuple(out)


def feature_schema(
    url: str, title: str, geometry: str, properties: tuple[tuple[str, str, str | None, bool], ...]
) -> dict[str, Any]:
    """A JSON Schema of one GeoJSON Feature of a collection, with flat typed properties.

    A property that may be null says so with ``nullable`` rather than a list of types: GDAL reads
    ``type`` as one name, and a list would make every such column text."""
    props: dict[str, Any] = {}
    for name, kind, fmt, nullable in properties:
        prop: dict[str, Any] = {"type": kind}
        if fmt:
            prop["format"] = fmt
        if nullable:
            prop["nullable"] = True
        props[name] = prop
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": url,
        "title": title,
        "type": "object",
        "required": ["type", "geometry", "properties"],
        "properties": {
            "type": {"type": "string", "enum": ["Feature"]},
            "id": {"type": "string"},
            "geometry": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": [geometry]},
                    "coordinates": {"type": "array"},
                },
            },
            "properties": {"type": "object", "properties": props},
        },
    }
