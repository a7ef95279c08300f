"""OGC API - Features Part 3 (Filtering) for the reports: the ``filter`` parameter in CQL2 text or
JSON, parsed by pygeofilter and translated into the domain's filter tree (service/domain/
filters.py), and the queryables document that names what a filter may use.

pygeofilter 0.4's CQL2 text grammar writes the temporal operators infix (``t T_AFTER x``), not as
CQL2's functions (``T_AFTER(t, x)``), and stops a string at the first quote (no ``''``); its
CQL2 JSON reader takes BETWEEN's bounds as a pair and reads a ``bbox`` out of order. So the text
grammar is extended here (Lark's ``%extend`` / ``%override`` on pygeofilter's own grammar and
transformer), and a JSON filter is normalised to the forms pygeofilter reads before it is read.

Every value the stores see comes out of this translation typed (numbers, UUIDs, aware
datetimes, Shapely geometries): the stores bind them as parameters, never as SQL text.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import shapely
import shapely.geometry
from lark import Lark, Token, v_args
from lark.exceptions import LarkError, UnexpectedInput, VisitError
from pygeofilter import ast, values
from pygeofilter.cql2 import TEMPORAL_PREDICATES_MAP
from pygeofilter.parsers.cql2_json import parse as parse_cql2_json
from pygeofilter.parsers.cql2_text import parser as cql2_text
from starlette.requests import Request

from service.api.schemas.common import parse_instant
from service.domain import filters as f
from service.domain.errors import FieldError, InvalidParameter
from service.domain.reports import SnapStatus

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
SCHEMA_JSON = "application/schema+json"
PARAMS = ("filter", "filter-lang", "filter-crs")
# "cql-text" is the name drafts before CQL2 1.0 gave the text encoding; GDAL 3.6 sends it.
LANGS = ("cql2-text", "cql2-json", "cql-text")
MAX_FILTER_CHARS = 16_384
MAX_DEPTH = 48  # nested brackets (text) or objects and arrays (JSON)
MAX_NODES = 256  # conditions and values in the translated filter
MAX_VERTICES = 1_000  # over every geometry in a filter
MAX_IN_VALUES = 100

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
]
_SUPPORTED = (
    "=, <>, <, <=, >, >=, AND, OR, NOT, IN, BETWEEN, LIKE, IS NULL, S_INTERSECTS, S_DISJOINT, "
    "T_INTERSECTS, T_DURING, T_AFTER, T_BEFORE, T_EQUALS, T_DISJOINT"
)


def bad(reason: str, field: str = "filter") -> InvalidParameter:
    return InvalidParameter(f"{field} {reason}", errors=[FieldError(field, reason)])


def parse_filter(params: Mapping[str, str]) -> f.Filter | None:
    """The domain filter of an items request's ``filter``, ``filter-lang`` and ``filter-crs``
    (None without a filter); InvalidParameter naming the parameter and the reason otherwise."""
    crs = params.get("filter-crs", CRS84)
    if crs != CRS84:
        raise bad(f"only {CRS84} is supported", "filter-crs")
    lang = params.get("filter-lang", "cql2-text")
    if lang not in LANGS:
        raise bad(f"must be one of: {', '.join(LANGS)}", "filter-lang")
    text = params.get("filter")
    if text is None:
        return None
    if len(text) > MAX_FILTER_CHARS:
        raise bad(f"is longer than {MAX_FILTER_CHARS} characters")
    if not text.strip():
        raise bad("is empty")
    try:
        node = _parse_json(text) if lang == "cql2-json" else _parse_text(text)
        return _Translator().condition(node)
    except RecursionError as error:
        raise bad(f"is nested too deeply (at most {MAX_DEPTH} levels)") from error


# --- CQL2 text ------------------------------------------------------------------------------

_TEXT_EXTENSION = r"""
%extend ?predicate: TEMPORAL_FUNCTION "(" expression "," expression ")" -> temporal_function
TEMPORAL_FUNCTION.3: /T_[A-Z]+(?=\s*\()/i
%override SINGLE_QUOTED: /'(?:[^']|'')*'/
%override ?interval: "INTERVAL"i "(" _interval_end "," _interval_end ")"
_interval_end: "'" (DATETIME | DATE | OPEN_END) "'"
OPEN_END: ".."
%ignore /[\t\r\n]+/
"""


@v_args(inline=True)
class _Transformer(cql2_text.CQLTransformer):  # type: ignore[misc]
    """pygeofilter's CQL2 text transformer, with CQL2's temporal functions and '' in strings."""

    def temporal_function(self, name: Token, lhs: Any, rhs: Any) -> ast.Node:
        return _temporal(str(name), lhs, rhs)

    def binary_temporal_predicate(self, lhs: Any, op: Token, rhs: Any) -> ast.Node:
        return _temporal(str(op), lhs, rhs)

    def wkt__geometry_with_srid(self, srid: Any, geometry: Any) -> Any:
        raise _Refused(f"geometries are in {CRS84}; an SRID is not supported")

    def wkt__multipoint_2(self, *coordinates: Any) -> dict[str, Any]:
        return {"type": "MultiPoint", "coordinates": coordinates}  # (pygeofilter's prints)

    def interval(self, start: Any, end: Any) -> values.Interval:
        return values.Interval(start, end)

    def OPEN_END(self, token: Token) -> str:
        return ".."

    def SINGLE_QUOTED(self, token: Token) -> str:
        return str(token)[1:-1].replace("''", "'")


def _temporal(name: str, lhs: Any, rhs: Any) -> ast.Node:
    op = name.lower()
    # pygeofilter reads T_INTERSECTS as TimeOverlaps; T_OVERLAPS itself is refused here, so
    # that TimeOverlaps means T_INTERSECTS alone.
    if op == "t_overlaps" or op not in TEMPORAL_PREDICATES_MAP:
        raise _Refused(
            f"does not support the temporal operator {name.upper()} (supported: {_SUPPORTED})"
        )
    node: ast.Node = TEMPORAL_PREDICATES_MAP[op](lhs, rhs)
    return node


class _Refused(Exception):
    """A reason to refuse the filter, raised from inside the parser's transformer."""


@functools.cache
def _text_parser() -> Lark:
    grammar = Path(cql2_text.__file__).with_name("grammar.lark").read_text()
    return Lark(
        grammar + _TEXT_EXTENSION,
        parser="lalr",
        maybe_placeholders=False,
        transformer=_Transformer(),
        import_paths=[os.path.dirname(os.path.dirname(cql2_text.__file__))],
    )


def _parse_text(text: str) -> Any:
    depth = deepest = 0
    quoted = False
    for char in text:  # brackets outside strings, before the parser recurses into them
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif not quoted and char == ")":
            depth -= 1
    if deepest > MAX_DEPTH:
        raise bad(f"is nested too deeply (at most {MAX_DEPTH} levels)")
    try:
        return _text_parser().parse(text)
    except _Refused as error:
        raise bad(str(error)) from error
    except VisitError as error:
        if isinstance(error.orig_exc, _Refused):
            raise bad(str(error.orig_exc)) from error
        raise bad(f"is not valid CQL2 text ({error.orig_exc})") from error
    except UnexpectedInput as error:
        where = f"at line {error.line}, column {error.column}"
        found = getattr(error, "token", None) or getattr(error, "char", None)
        tail = f": unexpected {str(found)!r}" if found not in (None, "") else ": it ends too early"
        raise bad(f"is not valid CQL2 text {where}{tail}") from error
    except (LarkError, ValueError, TypeError, ArithmeticError) as error:
        # pygeofilter's transformer runs as the parser reduces: a date out of range, or a minus
        # before a text, raises from it directly.
        raise bad(f"is not valid CQL2 text ({error})") from error


# --- CQL2 JSON ------------------------------------------------------------------------------


def _parse_json(text: str) -> Any:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise bad(f"is not valid JSON ({error})") from error
    if not isinstance(doc, dict):
        raise bad("must be a JSON object (a CQL2 JSON expression)")
    if _depth(doc) > MAX_DEPTH:
        raise bad(f"is nested too deeply (at most {MAX_DEPTH} levels)")
    try:
        return parse_cql2_json(_normalised(doc))
    except _Refused as error:
        raise bad(str(error)) from error
    except RecursionError:
        raise
    except Exception as error:
        # pygeofilter's JSON reader raises bare Exceptions (and ValueError, KeyError, ...) for
        # documents it cannot read; each one is the client's document, named in the answer.
        raise bad(f"is not valid CQL2 JSON ({error})") from error


def _depth(doc: Any) -> int:
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        )
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _normalised(node: Any) -> Any:
    """The CQL2 JSON ``node`` in the forms pygeofilter 0.4 reads: BETWEEN's bounds as a pair, a
    ``bbox`` as the function BBOX (as CQL2 text reads it), T_OVERLAPS refused (pygeofilter reads
    T_INTERSECTS as T_OVERLAPS)."""
    if isinstance(node, list):
        return [_normalised(child) for child in node]
    if not isinstance(node, dict):
        return node
    if "bbox" in node and isinstance(node["bbox"], list):
        return {"function": {"name": "bbox", "arguments": node["bbox"]}}
    op = node.get("op")
    if isinstance(op, str) and op.lower() == "t_overlaps":
        raise _Refused(
            f"does not support the temporal operator T_OVERLAPS (supported: {_SUPPORTED})"
        )
    out = {key: _normalised(value) for key, value in node.items()}
    args = out.get("args")
    if op == "between" and isinstance(args, list) and len(args) == 3:
        out["args"] = [args[0], [args[1], args[2]]]
    if isinstance(op, str) and op != op.lower() and op != "isNull":
        out["op"] = op.lower()
    return out


# --- translation into the domain's filter ---------------------------------------------------

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
_GEOMETRY = "geometry"
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
        raise bad(f"uses an operator or expression that is not supported (supported: {_SUPPORTED})")

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
        if node.name == _GEOMETRY:
            raise bad("geometry can only be used with S_INTERSECTS or S_DISJOINT")
        if node.name not in f.FILTER_PROPERTIES:
            known = ", ".join([_GEOMETRY, *f.FILTER_PROPERTIES])
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
        raise bad(f"does not support the temporal operator {name} (supported: {_SUPPORTED})")

    def _geometry_property(self, node: Any) -> None:
        if not (isinstance(node, ast.Attribute) and node.name == _GEOMETRY):
            raise bad(f"spatial operators take the property {_GEOMETRY!r} and a geometry")

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


# --- queryables -----------------------------------------------------------------------------

_JSON_TYPES = {"uuid": "string", "string": "string", "integer": "integer", "number": "number",
               "datetime": "string"}  # fmt: skip


def queryables(
    url: str, *, title: str, kinds: tuple[str, ...], countries: frozenset[str]
) -> dict[str, Any]:
    """The reports' queryables as a JSON Schema (Part 3): each property a filter may name, its
    type and, for the closed sets, its values."""
    enums: dict[str, list[str]] = {
        "kind": list(kinds),
        "direction": sorted(countries),
        "side": sorted(countries),
        "snap_status": [status.value for status in SnapStatus],
    }
    props: dict[str, Any] = {
        _GEOMETRY: {"title": "Position", "format": "geometry-point",
                    "x-ogc-role": "primary-geometry"},
    }  # fmt: skip
    for name, kind in f.FILTER_PROPERTIES.items():
        prop: dict[str, Any] = {"title": name, "type": _JSON_TYPES[kind]}
        if kind == "uuid":
            prop["format"] = "uuid"
        if kind == "datetime":
            prop["format"] = "date-time"
        if name in enums:
            prop["enum"] = enums[name]
        if name == "observed_at":
            prop["x-ogc-role"] = "primary-instant"
        props[name] = prop
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": url,
        "type": "object",
        "title": title,
        "properties": props,
        "additionalProperties": False,
        # GDAL 3.6 reads the names it may send from this list (a draft of Part 3's format); it
        # is ignored by JSON Schema readers.
        "queryables": [{"id": name} for name in props],
    }


def with_filter_parameters(extra: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` of the reports' items with ``filter``, ``filter-lang`` and
    ``filter-crs`` added: GDAL 3.6 pushes a -where to the server only when ``filter-lang``
    lists "cql-text"."""
    described = [
        {"name": "filter", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "A CQL2 filter (OGC API - Features Part 3); see the queryables"},
        {"name": "filter-lang", "in": "query", "required": False,
         "schema": {"type": "string", "enum": list(LANGS), "default": "cql2-text"},
         "description": "cql2-text (the default; cql-text is read as it) or cql2-json"},
        {"name": "filter-crs", "in": "query", "required": False,
         "schema": {"type": "string", "enum": [CRS84], "default": CRS84}},
    ]  # fmt: skip
    return {**extra, "parameters": [*extra.get("parameters", []), *described]}


def queryables_media(request: Request) -> str:
    """application/schema+json, as Part 3 says, unless the client asks for JSON alone (GDAL 3.6
    asks for GeoJSON or JSON, and refuses any other answer)."""
    accept = request.headers.get("accept", "")
    if SCHEMA_JSON in accept or "*/*" in accept or not accept:
        return SCHEMA_JSON
    return "application/json"
