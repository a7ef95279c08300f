"""Report filters (OGC API - Features Part 3, CQL2) as the domain sees them: a small typed tree
over report properties, and its reference evaluation in Python.

The API translates a parsed CQL2 filter into this tree (service/api/cql2.py) and each store
translates the tree into its own SQL with bound values; the stores never see CQL2 itself. The
evaluation here is the reference the stores are tested against: a filter selects exactly the
reports for which ``matches`` is True.

Logic is SQL's three-valued logic: a comparison with a property that is null is unknown (None),
NOT unknown is unknown, and only reports whose filter is True are selected. So
``direction <> 'CA'`` leaves out reports without a direction, as SQL does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal
from uuid import UUID

import shapely

from service.domain.reports import Report

PropertyType = Literal["uuid", "string", "integer", "number", "datetime"]

# The properties a filter may name, with their types (the queryables of the reports).
FILTER_PROPERTIES: dict[str, PropertyType] = {
    "id": "uuid",
    "observed_at": "datetime",
    "received_at": "datetime",
    "people_count": "integer",
    "direction": "string",
    "kind": "string",
    "accuracy_m": "number",
    "notes": "string",
    "device_id": "string",
    "snap_status": "string",
    "segment_id": "string",
    "snap_distance_m": "number",
    "chainage_km": "number",
    "side": "string",
}

Value = str | int | float | datetime | UUID


class Op(StrEnum):
    EQ = "="
    NE = "<>"
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


@dataclass(frozen=True, slots=True)
class Compare:
    """``property op value``; the value has the property's type (ints and floats for numbers,
    aware datetimes for times)."""

    prop: str
    op: Op
    value: Value


@dataclass(frozen=True, slots=True)
class InList:
    prop: str
    values: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class IsNull:
    prop: str


@dataclass(frozen=True, slots=True)
class Like:
    """A string property matching ``pattern``: ``%`` any run of characters, ``_`` one
    character, ``\\`` makes the next character literal. Case-sensitive."""

    prop: str
    pattern: str


@dataclass(frozen=True, slots=True)
class InBox:
    """The report's position lies in the box, edges included (CRS84: lon, lat)."""

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float


@dataclass(frozen=True, slots=True)
class Intersects:
    """The report's position intersects ``geometry`` (a valid Shapely geometry in lon/lat),
    boundary included."""

    geometry: shapely.Geometry


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Filter


Filter = Compare | InList | IsNull | Like | InBox | Intersects | And | Or | Not


def property_value(report: Report, prop: str) -> Value | None:
    """The value of a filter property of ``report`` (None when it has none)."""
    d, s = report.draft, report.snap
    values: dict[str, Value | None] = {
        "id": d.id,
        "observed_at": d.observed_at,
        "received_at": report.received_at,
        "people_count": d.people_count,
        "direction": d.direction,
        "kind": d.kind,
        "accuracy_m": d.accuracy_m,
        "notes": d.notes,
        "device_id": d.device_id,
        "snap_status": s.status.value,
        "segment_id": s.segment_id,
        "snap_distance_m": s.distance_m,
        "chainage_km": s.chainage_km,
        "side": s.side,
    }
    return values[prop]


class LikePattern:
    """A compiled LIKE pattern, matched in time linear in the pattern times the text: the pattern
    is cut at each ``%`` into pieces of fixed length (characters and ``_``), the first matched at
    the start, the last at the end, and each one between at its leftmost place after the one
    before (leftmost is never worse for a piece of fixed length). A regular expression of
    ``.*``s would backtrack exponentially on patterns like ``%a%a%a%a%b``."""

    def __init__(self, pattern: str) -> None:
        pieces: list[list[str]] = [[]]
        escaped = False
        for char in pattern:
            if escaped:
                pieces[-1].append(re.escape(char))
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == "%":
                pieces.append([])
            elif char == "_":
                pieces[-1].append(".")
            else:
                pieces[-1].append(re.escape(char))
        if escaped:
            pieces[-1].append(re.escape("\\"))
        self._pieces = [re.compile("".join(p), re.DOTALL) for p in pieces]
        self._lengths = [len(p) for p in pieces]

    def matches(self, text: str) -> bool:
        pieces, lengths = self._pieces, self._lengths
        if len(pieces) == 1:
            return pieces[0].fullmatch(text) is not None
        first, last = pieces[0], pieces[-1]
        end = len(text) - lengths[-1]
        if end < lengths[0] or not first.match(text, 0, lengths[0]):
            return False
        if not last.fullmatch(text, end):
            return False
        at = lengths[0]
        for piece in pieces[1:-1]:
            found = piece.search(text, at, end)
            if found is None:
                return False
            at = found.end()
        return True


def _compare(left: Value, op: Op, right: Value) -> bool:
    if op is Op.EQ:
        return left == right
    if op is Op.NE:
        return left != right
    if op is Op.LT:
        return left < right  # type: ignore[operator]
    if op is Op.LE:
        return left <= right  # type: ignore[operator]
    if op is Op.GT:
        return left > right  # type: ignore[operator]
    return left >= right  # type: ignore[operator]


def evaluate(flt: Filter, report: Report) -> bool | None:
    """True, False or unknown (None) for ``report``, with SQL's three-valued logic."""
    if isinstance(flt, Compare | InList | IsNull | Like):
        value = property_value(report, flt.prop)
        if isinstance(flt, IsNull):
            return value is None
        if value is None:
            return None
        if isinstance(flt, Compare):
            return _compare(value, flt.op, flt.value)
        if isinstance(flt, InList):
            return value in flt.values
        return LikePattern(flt.pattern).matches(str(value))
    if isinstance(flt, InBox):
        lon, lat = report.draft.lon, report.draft.lat
        return flt.min_lon <= lon <= flt.max_lon and flt.min_lat <= lat <= flt.max_lat
    if isinstance(flt, Intersects):
        return bool(shapely.intersects_xy(flt.geometry, report.draft.lon, report.draft.lat))
    if isinstance(flt, Not):
        inner = evaluate(flt.item, report)
        return None if inner is None else not inner
    results = [evaluate(item, report) for item in flt.items]
    if isinstance(flt, And):
        if False in results:
            return False
        return None if None in results else True
    if True in results:
        return True
    return None if None in results else False


def matches(flt: Filter, report: Report) -> bool:
    """Whether the filter selects ``report`` (True, not unknown)."""
    return evaluate(flt, report) is True


def geometries(flt: Filter) -> list[shapely.Geometry]:
    """Every Intersects geometry in the filter, in the order a depth-first walk meets them."""
    if isinstance(flt, Intersects):
        return [flt.geometry]
    if isinstance(flt, Not):
        return geometries(flt.item)
    if isinstance(flt, And | Or):
        return [g for item in flt.items for g in geometries(item)]
    return []
