"""A report filter (service/domain/filters.py) as an SQLite condition: constant SQL text over the
fixed column names, every value a named parameter.

SQLite has no spatial functions, and its LIKE ignores case: a filter's geometries and LIKE
patterns are tested by Python functions registered on the connection for the query
(``register``), with the same Shapely predicate and pattern rules the domain evaluates them by.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import shapely

from service.domain import filters as f
from service.storage.sqlite.rows import to_micros

# Filter property -> column of ``reports``: constants, never input.
_COLUMNS = {name: name for name in f.FILTER_PROPERTIES}
_OPS = {f.Op.EQ: "=", f.Op.NE: "<>", f.Op.LT: "<", f.Op.LE: "<=", f.Op.GT: ">", f.Op.GE: ">="}
_INTERSECTS = "crossings_filter_intersects"
_LIKE = "crossings_filter_like"


@dataclass
class Condition:
    """The SQL of a filter, its parameters, and the geometries and patterns its functions test."""

    sql: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    geometries: list[shapely.Geometry] = field(default_factory=list)
    patterns: list[Any] = field(default_factory=list)

    def bind(self, value: Any) -> str:
        name = f"flt{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    def register(self, conn: sqlite3.Connection) -> None:
        """Define the functions this condition calls on ``conn`` (for this query)."""
        geometries, patterns = self.geometries, self.patterns

        def intersects(number: int, lon: float, lat: float) -> int:
            return int(shapely.intersects_xy(geometries[number], lon, lat))

        def like(number: int, value: str | None) -> int | None:
            return None if value is None else int(patterns[number].matches(value))

        conn.create_function(_INTERSECTS, 3, intersects, deterministic=True)
        conn.create_function(_LIKE, 2, like, deterministic=True)


def condition(flt: f.Filter) -> Condition:
    out = Condition()
    out.sql = _sql(flt, out)
    return out


def _value(value: f.Value) -> Any:
    if isinstance(value, datetime):
        return to_micros(value)
    if isinstance(value, UUID):
        return str(value)
    return value


def _sql(flt: f.Filter, out: Condition) -> str:
    if isinstance(flt, f.Compare):
        return f"({_COLUMNS[flt.prop]} {_OPS[flt.op]} {out.bind(_value(flt.value))})"
    if isinstance(flt, f.InList):
        if not flt.values:
            # SQLite says "NULL IN ()" is false; SQL's unknown is what the domain says.
            return f"(CASE WHEN {_COLUMNS[flt.prop]} IS NULL THEN NULL ELSE 0 END)"
        values = ", ".join(out.bind(_value(v)) for v in flt.values)
        return f"({_COLUMNS[flt.prop]} IN ({values}))"
    if isinstance(flt, f.IsNull):
        return f"({_COLUMNS[flt.prop]} IS NULL)"
    if isinstance(flt, f.Like):
        out.patterns.append(f.LikePattern(flt.pattern))
        number = out.bind(len(out.patterns) - 1)
        return f"{_LIKE}({number}, {_COLUMNS[flt.prop]})"
    if isinstance(flt, f.InBox):
        return (
            f"(lon BETWEEN {out.bind(flt.min_lon)} AND {out.bind(flt.max_lon)}"
            f" AND lat BETWEEN {out.bind(flt.min_lat)} AND {out.bind(flt.max_lat)})"
        )
    if isinstance(flt, f.Intersects):
        out.geometries.append(flt.geometry)
        return f"{_INTERSECTS}({out.bind(len(out.geometries) - 1)}, lon, lat)"
    if isinstance(flt, f.Not):
        return f"(NOT {_sql(flt.item, out)})"
    joiner = " AND " if isinstance(flt, f.And) else " OR "
    if not flt.items:
        return "(1)" if isinstance(flt, f.And) else "(0)"
    return "(" + joiner.join(_sql(item, out) for item in flt.items) + ")"
