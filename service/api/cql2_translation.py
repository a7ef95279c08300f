"""A CQL2 filter as pygeofilter parsed it, translated into the domain's filter tree (service/
domain/filters.py): every property checked against the queryables, every value typed (numbers,
UUIDs, aware datetimes, Shapely geometries), temporal operators turned into comparisons on the
instant, and the work counted (conditions, values, vertices) as it goes."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import shapely
import shapely.geometry
from pygeofilter import ast, values
from pygeofilter.cql2 import TEMPORAL_PREDICATES_MAP

from service.api.schemas.common import parse_instant
from service.domain import filters as f
from service.domain.errors import FieldError, InvalidParameter

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
MAX_NODES = 256  # conditions and values in the translated filter
MAX_VERTICES = 1_000  # over every geometry in a filter
MAX_IN_VALUES = 100

SUPPORTED = (
    "=, <>, <, <=, >, >=, AND, OR, NOT, IN, BETWEEN, LIKE, IS NULL, S_INTERSECTS, S_DISJOINT, "
    "T_INTERSECTS, T_DURING, T_AFTER, T_BEFORE, T_EQUALS, T_DISJOINT"
)


def bad(reason: str, field: str = "filter") -> InvalidParameter:
    return InvalidParameter(f"{field} {reason}", errors=[FieldError(field, reason)])


_COMPARISONS: dict[type[ast.Node], f.Op] = {
    ast.Equal: f.Op.EQ,
    ast.NotEqual: f.Op.NE,
    ast.LessThan: f.Op.LT,
    ast.LessEqual: f.Op.LE,
    ast.GreaterThan: f.Op.GT,
    ast.GreaterEqual: f.Op.GE,
}
_FLIPPED = {f.Op.EQ: f.Op.EQ, f.Op.NE: f.Op.NE, f.Op.LT: f.Op.GT, f.Op.LE: f.Op.GE,
            f.Op.GT: f.Op.LT, f.Op.GE: f.Op.LE}  # fmt: skip
GEOMETRY = "geometry"
_TEMPORAL_NAMES = {kind: name.upper() for name, kind in TEMPORAL_PREDICATES_MAP.items()}
_MICROSECOND = timedelta(microseconds=1)


class _Translator:
    """pygeofilter's tree into the domain's, counting nodes and vertices as it goes."""

    def __init__(self) -> None:
        self.nodes = 0
        self.vertices = 0

    def _count(self, n: int = 1) -> None:
        self.nodes += n
        if self.nodes > MAX_NODES:
            raise bad(f"has more than {MAX_NODES} conditions and values")

    def condition(self, node: Any) -> f.Filter:
        self._count()
        if isinstance(node, ast.And | ast.Or):
            items = tuple(self.condition(n) for n in _flatten(node, type(node)))
            return f.And(items) if isinstance(node, ast.And) else f.Or(items)
        if isinstance(node, ast.Not):
            return f.Not(self.condition(node.sub_node))
        if type(node) in _COMPARISONS:
            return self._comparison(node)
        if isinstance(node, ast.Between):
            prop = self._property(node.lhs)
            low, high = self._value(prop, node.low), self._value(prop, node.high)
            both = f.And((f.Compare(prop, f.Op.GE, low), f.Compare(prop, f.Op.LE, high)))
            return f.Not(both) if node.not_ else both
        if isinstance(node, ast.In):
            prop = self._property(node.lhs)
            if not 1 <= len(node.sub_nodes) <= MAX_IN_VALUES:
                raise bad(f"IN takes from 1 to {MAX_IN_VALUES} values")
            self._count(len(node.sub_nodes))
            inside = f.InList(prop, tuple(self._value(prop, v) for v in node.sub_nodes))
            return f.Not(inside) if node.not_ else inside
        if isinstance(node, ast.IsNull):
            is_null = f.IsNull(self._property(node.lhs))
            return f.Not(is_null) if node.not_ else is_null
        if isinstance(node, ast.Like):
            return self._like(node)
        if isinstance(node, ast.TemporalPredicate):
            return self._temporal(node)
        if isinstance(node, ast.GeometryIntersects | ast.GeometryDisjoint):
            shape = self._spatial_operand(node.lhs, node.rhs)
            return f.Not(shape) if isinstance(node, ast.GeometryDisjoint) else shape
        if isinstance(node, ast.BBox):
            if node.crs not in (None, CRS84):
                raise bad(f"BBOX: only {CRS84} is supported")
            self._geometry_property(node.lhs)
            return self._box([node.minx, node.miny, node.maxx, node.maxy])
        if isinstance(node, bool):
            raise bad("boolean literals are not conditions here: compare a property")
        raise bad(f"uses an operator or expression that is not supported (supported: {SUPPORTED})")

    def _comparison(self, node: ast.Comparison) -> f.Filter:
        op = _COMPARISONS[type(node)]
        lhs, rhs = node.lhs, node.rhs
        if not isinstance(lhs, ast.Attribute) and isinstance(rhs, ast.Attribute):
            lhs, rhs, op = rhs, lhs, _FLIPPED[op]
        prop = self._property(lhs)
        return f.Compare(prop, op, self._value(prop, rhs))

    def _like(self, node: ast.Like) -> f.Filter:
        prop = self._property(node.lhs)
        if f.FILTER_PROPERTIES[prop] != "string":
            raise bad(f"LIKE applies to text properties; {prop} is not one")
        if node.nocase:
            raise bad("case-insensitive LIKE is not supported")
        if not isinstance(node.pattern, str):
            raise bad("LIKE needs a text pattern")
        if (len(node.pattern) - len(node.pattern.rstrip("\\"))) % 2:
            raise bad("LIKE pattern ends with a lone escape character (\\)")
        like = f.Like(prop, node.pattern)
        return f.Not(like) if node.not_ else like

    def _property(self, node: Any) -> str:
        if isinstance(node, ast.Function):
            raise bad(f"functions are not supported ({node.name})")
        if not isinstance(node, ast.Attribute):
            raise bad("compares no property: each condition needs a queryable property on one side")
        if node.name == GEOMETRY:
            raise bad("geometry can only be used with S_INTERSECTS or S_DISJOINT")
        if node.name not in f.FILTER_PROPERTIES:
            known = ", ".join([GEOMETRY, *f.FILTER_PROPERTIES])
            raise bad(f"names an unknown property {node.name!r} (queryables: {known})")
        return str(node.name)

    def _value(self, prop: str, value: Any) -> f.Value:
        """``value`` as the type of ``prop``, or InvalidParameter saying why it cannot be."""
        kind = f.FILTER_PROPERTIES[prop]
        if isinstance(value, ast.Attribute):
            raise bad(f"compares {prop} with another property; compare it with a value")
        if isinstance(value, ast.Node):
            raise bad(f"compares {prop} with an expression; compare it with a value")
        if kind == "uuid":
            try:
                return UUID(str(value)) if isinstance(value, str) else _wrong(prop, "a UUID", value)
            except ValueError as error:
                raise bad(f"{value!r} is not a UUID (for {prop})") from error
        if kind == "string":
            return value if isinstance(value, str) else _wrong(prop, "text", value)
        if kind in ("integer", "number"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return _wrong(prop, "a number", value)
            if not math.isfinite(value):
                raise bad(f"{value!r} is not a finite number (for {prop})")
            return value
        return _instant(prop, value)[0]

    def _temporal(self, node: ast.TemporalPredicate) -> f.Filter:
        prop = self._property(node.lhs)
        if f.FILTER_PROPERTIES[prop] != "datetime":
            raise bad(f"temporal operators apply to observed_at and received_at, not {prop}")
        start, end = _period(prop, node.rhs)
        at_or_after = None if start is None else f.Compare(prop, f.Op.GE, start)
        at_or_before = None if end is None else f.Compare(prop, f.Op.LE, end)
        if isinstance(node, ast.TimeOverlaps | ast.TimeDisjoint):  # T_INTERSECTS / T_DISJOINT
            parts = tuple(p for p in (at_or_after, at_or_before) if p is not None)
            inside = f.And(parts) if parts else f.Not(f.IsNull(prop))
            return f.Not(inside) if isinstance(node, ast.TimeDisjoint) else inside
        if isinstance(node, ast.TimeDuring):
            if start is None or end is None:
                raise bad("T_DURING needs an interval with both ends")
            return f.And((f.Compare(prop, f.Op.GT, start), f.Compare(prop, f.Op.LT, end)))
        if isinstance(node, ast.TimeAfter):
            if end is None:
                raise bad("T_AFTER needs an instant or an interval with an end")
            return f.Compare(prop, f.Op.GT, end)
        if isinstance(node, ast.TimeBefore):
            if start is None:
                raise bad("T_BEFORE needs an instant or an interval with a start")
            return f.Compare(prop, f.Op.LT, start)
        if isinstance(node, ast.TimeEquals):
            if start != end or start is None:
                raise bad("T_EQUALS on an instant property needs an instant")
            return f.Compare(prop, f.Op.EQ, start)
        name = _TEMPORAL_NAMES.get(type(node), type(node).__name__)
        raise bad(f"does not support the temporal operator {name} (supported: {SUPPORTED})")

    def _geometry_property(self, node: Any) -> None:
        if not (isinstance(node, ast.Attribute) and node.name == GEOMETRY):
            raise bad(f"spatial operators take the property {GEOMETRY!r} and a geometry")

    def _spatial_operand(self, lhs: Any, rhs: Any) -> f.Filter:
        if not isinstance(lhs, ast.Attribute):
            lhs, rhs = rhs, lhs
        self._geometry_property(lhs)
        if isinstance(rhs, ast.Function) and rhs.name.lower() == "bbox":
            return self._box(rhs.arguments)
        if isinstance(rhs, values.Envelope):  # ENVELOPE(min_lon max_lon min_lat max_lat)
            return self._box([rhs.x1, rhs.y1, rhs.x2, rhs.y2])
        if not isinstance(rhs, values.Geometry):
            raise bad("S_INTERSECTS needs a geometry: POINT, POLYGON, ... or BBOX(...)")
        return self._shape(rhs.geometry)

    def _box(self, numbers: list[Any]) -> f.Filter:
        if len(numbers) == 6:
            raise bad("3D boxes (6 numbers) are not supported: send 4 numbers")
        if len(numbers) != 4 or not all(_is_number(n) for n in numbers):
            raise bad("BBOX takes 4 numbers: min_lon, min_lat, max_lon, max_lat")
        min_lon, min_lat, max_lon, max_lat = (float(n) for n in numbers)
        if min_lon > max_lon:
            raise bad("BBOX across the antimeridian is not supported: split it in two (OR)")
        if min_lat > max_lat:
            raise bad("BBOX has min_lat above max_lat")
        return f.InBox(min_lon, min_lat, max_lon, max_lat)

    def _shape(self, geojson: dict[str, Any]) -> f.Filter:
        if "crs" in geojson:
            raise bad(f"geometries are in {CRS84}; an SRID or crs is not supported")
        try:
            geometry = shapely.geometry.shape(geojson)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as error:
            raise bad(f"has a geometry that cannot be read ({error})") from error
        self.vertices += int(shapely.get_num_coordinates(geometry))
        if self.vertices > MAX_VERTICES:
            raise bad(f"has geometries of more than {MAX_VERTICES} vertices in all")
        coords = shapely.get_coordinates(geometry)
        if coords.size == 0 or not bool(shapely.is_valid(geometry)):
            reason = shapely.is_valid_reason(geometry) if coords.size else "it is empty"
            raise bad(f"has a geometry that is not valid ({reason})")
        if not bool(math.isfinite(float(abs(coords).max()))):
            raise bad("has a geometry with a coordinate that is not a finite number")
        geometry = shapely.force_2d(geometry)
        if isinstance(geometry, shapely.Point):
            return f.InBox(geometry.x, geometry.y, geometry.x, geometry.y)
        shapely.prepare(geometry)
        return f.Intersects(geometry)


def _flatten(node: Any, kind: type[ast.Node]) -> Iterator[Any]:
    """The operands of a chain of one operator (a AND b AND c), without recursing per link."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, kind):
            stack += [current.rhs, current.lhs]
        else:
            yield current


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _wrong(prop: str, expected: str, value: Any) -> f.Value:
    raise bad(f"compares {prop} with {value!r}; {prop} takes {expected}")


def _instant(prop: str, value: Any) -> tuple[datetime, datetime]:
    """The first and last microsecond of a time value (an instant is one microsecond, a date a
    whole UTC day). GDAL sends times as quoted text, so RFC 3339 text and dates are read too."""
    if isinstance(value, str):
        text = value.removesuffix("T")  # GDAL writes a date as 2026-01-01T
        try:
            value = date.fromisoformat(text) if len(text) == 10 else parse_instant(text)
        except ValueError as error:
            raise bad(f"{value!r} is not a date or an RFC 3339 instant (for {prop})") from error
    if isinstance(value, datetime):
        instant = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return instant, instant
    if isinstance(value, date):
        day = datetime(value.year, value.month, value.day, tzinfo=UTC)
        return day, day + timedelta(days=1) - _MICROSECOND
    return _wrong(prop, "a TIMESTAMP, a DATE or an RFC 3339 instant", value), datetime.min  # type: ignore[return-value]


def _period(prop: str, value: Any) -> tuple[datetime | None, datetime | None]:
    """The first and last microsecond of an instant, date or interval (None: an open end)."""
    if isinstance(value, values.Interval):
        ends = []
        for end in (value.start, value.end):
            if isinstance(end, timedelta):
                raise bad("intervals with durations are not supported")
            ends.append(None if end is None or end == ".." else _instant(prop, end))
        start = None if ends[0] is None else ends[0][0]
        last = None if ends[1] is None else ends[1][1]
        if start is not None and last is not None and start > last:
            raise bad("has an interval that ends before it starts")
        return start, last
    return _instant(prop, value)


def translate(node: Any) -> f.Filter:
    """The domain filter of a pygeofilter tree; InvalidParameter naming ``filter`` otherwise."""
    return _Translator().condition(node)
