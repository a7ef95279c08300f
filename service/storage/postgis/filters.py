"""A report filter (service/domain/filters.py) as a SQLAlchemy condition on ``reports``, every
value a typed bound parameter.

Text is compared byte-wise (COLLATE "C"), as the domain (Python) and SQLite compare it: the
database's own collation would order 'a' and 'B' another way. Numbers are bound as bigint or
double precision by their Python type, never cast to the column's type (3.5 is not 4).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import shapely
from geoalchemy2.functions import ST_X, ST_Y, ST_GeomFromWKB, ST_Intersects, ST_MakeEnvelope
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Double,
    LargeBinary,
    Text,
    Uuid,
    and_,
    bindparam,
    case,
    cast,
    false,
    not_,
    null,
    or_,
    true,
)
from sqlalchemy.types import TypeEngine

from service.domain import filters as f
from service.storage.postgis.tables import reports


def _column(prop: str) -> ColumnElement[Any]:
    column: ColumnElement[Any] = reports.c[prop]
    if f.FILTER_PROPERTIES[prop] == "string":
        return cast(column, Text).collate("C")
    return column


def _bound(value: f.Value) -> ColumnElement[Any]:
    kind: TypeEngine[Any]
    if isinstance(value, datetime):
        kind = DateTime(timezone=True)
    elif isinstance(value, UUID):
        kind = Uuid()
    elif isinstance(value, str):
        kind = Text()
    elif isinstance(value, int):
        kind = BigInteger()
    else:
        kind = Double()
    return bindparam(None, value, type_=kind)


def _number(value: float) -> ColumnElement[Any]:
    return bindparam(None, float(value), type_=Double())


def condition(flt: f.Filter) -> ColumnElement[bool]:
    """The filter as a condition on the ``reports`` table."""
    if isinstance(flt, f.Compare):
        column, value = _column(flt.prop), _bound(flt.value)
        return {
            f.Op.EQ: column == value, f.Op.NE: column != value,
            f.Op.LT: column < value, f.Op.LE: column <= value,
            f.Op.GT: column > value, f.Op.GE: column >= value,
        }[flt.op]  # fmt: skip
    if isinstance(flt, f.InList):
        if not flt.values:  # unknown for a null, false otherwise, as the domain says
            return case((reports.c[flt.prop].is_(None), null()), else_=false())
        return _column(flt.prop).in_([_bound(v) for v in flt.values])
    if isinstance(flt, f.IsNull):
        return reports.c[flt.prop].is_(None)
    if isinstance(flt, f.Like):
        return _column(flt.prop).like(bindparam(None, flt.pattern, type_=Text()), escape="\\")
    if isinstance(flt, f.InBox):
        # && (the GiST index; float4 boxes, so a superset) then the exact, inclusive ranges.
        lon, lat = ST_X(reports.c.geom), ST_Y(reports.c.geom)
        box = ST_MakeEnvelope(_number(flt.min_lon), _number(flt.min_lat),
                              _number(flt.max_lon), _number(flt.max_lat), 4326)  # fmt: skip
        return and_(
            reports.c.geom.op("&&")(box),
            lon.between(_number(flt.min_lon), _number(flt.max_lon)),
            lat.between(_number(flt.min_lat), _number(flt.max_lat)),
        ).self_group()
    if isinstance(flt, f.Intersects):
        wkb = bindparam(None, shapely.to_wkb(flt.geometry), type_=LargeBinary())
        return ST_Intersects(reports.c.geom, ST_GeomFromWKB(wkb, 4326))
    if isinstance(flt, f.Not):
        return not_(condition(flt.item).self_group())
    if isinstance(flt, f.And):
        return and_(true(), *(condition(i) for i in flt.items)).self_group()
    return or_(false(), *(condition(i) for i in flt.items)).self_group()
