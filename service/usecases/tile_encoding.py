"""A tile's content (service/domain/tiles.py) encoded: as Mapbox Vector Tile 2.1 in Python (what
the SQLite store's tiles and the public's tiles are; the PostGIS store encodes its own with
ST_AsMVT, with the same layers and attributes), or as GeoJSON features in WGS84."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import mapbox_vector_tile
import numpy as np
import shapely

from service.domain.segments import BorderSegment
from service.domain.tiles import (
    BUFFER,
    EXTENT,
    SegmentCount,
    TileAddress,
    TileContent,
    TilePoint,
    cluster_centre_px,
    cluster_feature_id,
    lonlat_of_pixel,
    pixels,
    point_feature_id,
)


def point_properties(p: TilePoint) -> dict[str, Any]:
    """Attributes of a point feature. MVT has no null: unknown values are left out."""
    props: dict[str, Any] = {
        "id": str(p.id),
        "observed_at": p.observed_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kind": p.kind,
        "people_count": p.people_count,
        "snap_status": p.snap_status,
    }
    for key, value in (("direction", p.direction), ("segment_id", p.segment_id), ("side", p.side)):
        if value is not None:
            props[key] = value
    return props


def segment_properties(
    segment: BorderSegment, count: SegmentCount | None, *, hidden: bool = False
) -> dict[str, Any]:
    """A segment's attributes; a count ``hidden`` by the public release's rule is left out, with
    ``suppressed`` set (MVT has no null)."""
    count = count or SegmentCount(0, 0)
    props: dict[str, Any] = {
        "segment_id": segment.segment_id,
        "border": segment.border,
        "region_pair": str(segment.properties.get("region_pair") or ""),
    }
    if hidden:
        props["suppressed"] = True
    else:
        props |= {"reports": count.reports, "people": count.people}
        if count.groups is not None:
            props |= {"groups": count.groups, "people_est": count.people_est}
    return props


@functools.lru_cache(maxsize=8_192)
def _line_pixels(tile: TileAddress, coords: Sequence[tuple[float, float]]) -> list[Any]:
    """A segment's line in tile pixels: clipped to the buffered tile, snapped to whole pixels,
    repeated points dropped; empty when nothing of it is left. Kept per tile and line: the
    border does not change between requests, and a low-zoom tile holds hundreds of segments
    (tile 0/0/0: 478 lines, 2/3 of the public tile's cost before). Callers must not change the
    list or its lines (shapely's are immutable)."""
    xy = np.asarray(coords, dtype=np.float64)
    px, py = pixels(tile, xy[:, 0], xy[:, 1])
    line = shapely.linestrings(np.stack([px, py], axis=1))
    clipped = shapely.clip_by_rect(line, -BUFFER, -BUFFER, EXTENT + BUFFER, EXTENT + BUFFER)
    parts = []
    for part in shapely.get_parts(clipped):
        if part.geom_type != "LineString":
            continue
        pts = np.rint(shapely.get_coordinates(part))
        keep = np.ones(len(pts), dtype=bool)
        keep[1:] = np.any(pts[1:] != pts[:-1], axis=1)
        pts = pts[keep]
        if len(pts) >= 2:
            parts.append(shapely.linestrings(pts))
    return parts


def encode_mvt(content: TileContent) -> bytes:
    """The tile as Mapbox Vector Tile 2.1 (extent 4096), encoded in Python: the same layers and
    attributes as the PostGIS store's ST_AsMVT query."""
    tile = content.tile
    layers: list[dict[str, Any]] = []
    seg_features = []
    for ts in content.segments:
        parts = _line_pixels(tile, ts.segment.coords)
        if not parts:
            continue
        geom = parts[0] if len(parts) == 1 else shapely.multilinestrings(parts)
        seg_features.append(
            {
                "geometry": geom,
                "properties": segment_properties(ts.segment, ts.count, hidden=ts.hidden),
                "id": ts.fid,
            }
        )
    if seg_features:
        layers.append({"name": "segments", "features": seg_features})
    report_features = list(_report_features(content))
    if report_features:
        layers.append({"name": "reports", "features": report_features})
    if not layers:
        return b""
    options = {"y_coord_down": True, "extents": EXTENT}
    return bytes(mapbox_vector_tile.encode(layers, default_options=options))


def _report_features(content: TileContent) -> Iterable[dict[str, Any]]:
    tile = content.tile
    if content.reports.points:
        pts = content.reports.points
        px, py = pixels(tile, [p.lon for p in pts], [p.lat for p in pts])
        for p, x, y in zip(pts, np.rint(px), np.rint(py), strict=True):
            yield {
                "geometry": shapely.Point(x, y),
                "properties": point_properties(p),
                "id": point_feature_id(p.id),
            }
    for c in content.reports.clusters:
        x, y = cluster_centre_px(tile, c)
        yield {
            "geometry": shapely.Point(x, y),
            "properties": {"count": c.reports, "people": c.people},
            "id": cluster_feature_id(c.cx, c.cy),
        }


def geojson_features(content: TileContent) -> list[dict[str, Any]]:
    """The tile's content as GeoJSON features in WGS84, each with its MVT ``layer`` name: lines
    clipped to the buffered tile, reports at their own positions, clusters at their cell centres."""
    tile = content.tile
    out: list[dict[str, Any]] = []
    for ts in content.segments:
        parts = _line_pixels(tile, ts.segment.coords)
        if not parts:
            continue
        lines = []
        for part in parts:
            xy = shapely.get_coordinates(part)
            lines.append([list(lonlat_of_pixel(tile, float(x), float(y))) for x, y in xy])
        geometry: dict[str, Any] = (
            {"type": "LineString", "coordinates": lines[0]}
            if len(lines) == 1
            else {"type": "MultiLineString", "coordinates": lines}
        )
        props = segment_properties(ts.segment, ts.count, hidden=ts.hidden)
        out.append(_geojson("segments", ts.segment.segment_id, geometry, props))
    for p in content.reports.points:
        point = {"type": "Point", "coordinates": [p.lon, p.lat]}
        out.append(_geojson("reports", str(p.id), point, point_properties(p)))
    for c in content.reports.clusters:
        lon, lat = lonlat_of_pixel(tile, *cluster_centre_px(tile, c))
        centre = {"type": "Point", "coordinates": [lon, lat]}
        props = {"count": c.reports, "people": c.people}
        out.append(_geojson("reports", cluster_feature_id(c.cx, c.cy), centre, props))
    return out


def _geojson(
    layer: str, fid: str | int, geometry: dict[str, Any], props: dict[str, Any]
) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": fid,
        "geometry": geometry,
        "properties": {"layer": layer, **props},
    }


# Each layer's attributes and their TileJSON types (what vector_layers declares).
SEGMENT_FIELDS = {
    "segment_id": "String",
    "border": "String",
    "region_pair": "String",
    "reports": "Number",
    "people": "Number",
}
REPORT_FIELDS = {
    "count": "Number (clusters: reports in the cell)",
    "people": "Number (clusters: people in the cell)",
    "id": "String (points: the report's id)",
    "observed_at": "String (points: UTC, to the second)",
    "kind": "String (points)",
    "people_count": "Number (points)",
    "direction": "String (points: country entered, if known)",
    "snap_status": "String (points)",
    "segment_id": "String (points: nearest segment, when snapped)",
    "side": "String (points: country whose side the report lies on)",
}
