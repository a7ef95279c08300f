"""Dry-run snapping: a Point or a MultiPoint in, snap results out."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from service.api.schemas.common import PointIn, Position, Strict, position_errors
from service.domain.errors import FieldError, InvalidInput
from service.domain.reports import SnapResult


class MultiPointIn(Strict):
    type: Literal["MultiPoint"]
    coordinates: Annotated[list[Position], Field(min_length=1)]


SnapIn = PointIn | MultiPointIn


def parse_points(obj: object, *, max_points: int) -> tuple[list[tuple[float, float]], bool]:
    """(points, is_single) from a GeoJSON Point or MultiPoint; InvalidInput naming bad positions."""
    kind = obj.get("type") if isinstance(obj, dict) else None
    model: type[PointIn] | type[MultiPointIn] = MultiPointIn if kind == "MultiPoint" else PointIn
    try:
        parsed = model.model_validate(obj)
    except ValidationError as error:
        raise InvalidInput(
            "send a GeoJSON Point or MultiPoint",
            errors=[
                FieldError(".".join(map(str, e["loc"])) or "body", e["msg"]) for e in error.errors()
            ],
        ) from error
    positions = [parsed.coordinates] if isinstance(parsed, PointIn) else parsed.coordinates
    if len(positions) > max_points:
        raise InvalidInput(
            f"at most {max_points} points per request",
            errors=[
                FieldError("coordinates", f"has {len(positions)} points; the limit is {max_points}")
            ],
        )
    errors: list[FieldError] = []
    points: list[tuple[float, float]] = []
    for i, pos in enumerate(positions):
        where = "coordinates" if isinstance(parsed, PointIn) else f"coordinates.{i}"
        errors.extend(position_errors(pos, where))
        if len(pos) >= 2:
            points.append((pos[0], pos[1]))
    if errors:
        raise InvalidInput("a position is not valid", errors=errors[:50])
    return [(float(x), float(y)) for x, y in points], isinstance(parsed, PointIn)


def snap_json(s: SnapResult) -> dict[str, Any]:
    point = None if s.snapped_lon is None else [s.snapped_lon, s.snapped_lat]
    return {
        "status": s.status.value,
        "segment_id": s.segment_id,
        "distance_m": s.distance_m,
        "chainage_km": s.chainage_km,
        "side": s.side,
        "point": point,
    }
