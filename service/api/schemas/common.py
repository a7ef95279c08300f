"""Wire types shared by every schema: strict numbers, RFC 3339 instants, safe text."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr

from service.domain.errors import FieldError

_ZERO = timedelta(0)
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_instant(value: str) -> datetime:
    """An RFC 3339 timestamp with an offset, as an aware UTC datetime; ValueError otherwise."""
    if not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 timestamp with an offset, e.g. 2026-05-01T14:30:00Z")
    text = value.upper().replace(" ", "T")
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError) as error:
        raise ValueError(f"is not a real date and time ({error})") from error


def format_instant(value: datetime) -> str:
    """RFC 3339 in UTC with a Z, microseconds only when present (as ``isoformat`` writes them).

    orjson writes it: a third of the time of ``isoformat`` and a replace (two a report)."""
    if value.utcoffset() != _ZERO:
        value = value.astimezone(UTC)
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)[1:-1].decode()


def _instant(value: str) -> datetime:
    return parse_instant(value)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean_text(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and lone surrogates cannot be encoded: refuse both here
    # so that no store ever sees them (a regex: a loop over the characters cost ~1 us a report).
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if _SURROGATE.search(value):
        raise ValueError("must not contain unpaired UTF-16 surrogates")
    return value


Instant = Annotated[
    StrictStr, AfterValidator(_instant), Field(json_schema_extra={"format": "date-time"})
]
Text = Annotated[StrictStr, AfterValidator(_clean_text)]


# The maximum of a page's ``limit`` is a setting: api/openapi.py writes its value into the document.
PAGE_MAX_ITEMS: dict[str, Any] = {"x-maximum-setting": "page_max_items"}

# The operators' lists (alerts, a webhook's deliveries, the audit log): page sizes by default and
# at most (each page is read whole; alerts are also held to page_max_items), and how long a name
# (border, segment id) or cursor, and a delivery state, in their queries may be.
LIST_PAGE = 100
LIST_PAGE_MAX = 1_000
AUDIT_PAGE = 1_000
AUDIT_PAGE_MAX = 10_000
NAME_MAX_LENGTH = 200
STATE_MAX_LENGTH = 20


class FormatQuery(BaseModel):
    """``f``, the encoding asked for over the Accept header (encodings.negotiate), declared once
    for every resource that offers more than one; a query model of such a resource extends it.
    Any other parameter is refused (OGC API Features /req/core/query-param-unknown)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    f: str | None = Field(
        default=None,
        description="The encoding, over the Accept header: json, or another this resource offers"
        " (html, csv, jsonseq)",
    )


class Strict(BaseModel):
    """Wire models refuse unknown fields: a typo (``people`` for ``people_count``) is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# Positions are checked by position_errors (for messages that name lon or lat); this schema only
# documents them, with their ranges, in the OpenAPI document.
POSITION_SCHEMA: dict[str, Any] = {
    "type": "array",
    "prefixItems": [
        {"type": "number", "minimum": -180, "maximum": 180, "description": "longitude"},
        {"type": "number", "minimum": -90, "maximum": 90, "description": "latitude"},
    ],
    "items": {"type": "number", "description": "altitude (ignored)"},
    "minItems": 2,
    "maxItems": 3,
}
Position = Annotated[
    list[Any], Field(min_length=2, max_length=3, json_schema_extra=POSITION_SCHEMA)
]


class PointIn(Strict):
    """A GeoJSON Point in WGS84 longitude, latitude (an altitude, if sent, is ignored)."""

    type: Literal["Point"]
    coordinates: Position


_LIMITS = ((-180.0, 180.0, "longitude"), (-90.0, 90.0, "latitude"), (None, None, "altitude"))


def position_errors(position: object, where: str) -> list[FieldError]:
    """What is wrong with a GeoJSON position [lon, lat(, alt)] at ``where``; empty when valid."""
    if not isinstance(position, list) or not 2 <= len(position) <= 3:
        return [FieldError(where, "a position is [longitude, latitude], optionally with altitude")]
    errors = []
    for i, value in enumerate(position):
        low, high, name = _LIMITS[i]
        field = f"{where}.{i}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors.append(FieldError(field, f"{name} must be a number, not {type(value).__name__}"))
        elif low is not None and high is not None and not low <= value <= high:
            errors.append(FieldError(field, f"{name} {value} is outside [{low:g}, {high:g}]"))
    return errors


class ProblemField(BaseModel):
    field: str = Field(description="Dotted path of the value refused (e.g. location.coordinates.0)")
    reason: str


class Problem(BaseModel):
    """An RFC 9457 problem (application/problem+json): what every error answer is."""

    type: str = Field(description="/problems/<slug>: what happened")
    title: str
    status: int
    detail: str
    instance: str | None = Field(default=None, description="The path asked for")
    errors: list[ProblemField] | None = Field(
        default=None, description="Each value refused, for validation problems"
    )
    request_id: str | None = None
