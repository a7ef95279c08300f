"""What bench/tiles.py asks for and how it reads the answers: the tiles (drawn where the data is),
the true number of reports in each, the bare ``ST_AsMVT`` query that is the PostGIS limit, and a
reader that counts what a Mapbox Vector Tile holds.

Tiles: the tiles, at each zoom, of the positions of ``count`` reports drawn at random from the
table (a seeded hash of their ids, so the same database gives the same list), so that busy tiles
come up as often as the data makes them busy. At z4 only a handful of tiles hold any report, so
the list repeats them; at z12 most of it is distinct.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from mapbox_vector_tile.Mapbox import vector_tile_pb2
from psycopg import sql

# Half the width of the Web Mercator world (EPSG:3857), in metres: ST_TileEnvelope's default bounds.
WORLD_M = 20_037_508.342789244
EXTENT = 4096  # tile units across a tile
BUFFER = 64  # tile units of buffer the bare query keeps around a tile

_POINT = 1  # vector_tile.proto GeomType


@dataclass(frozen=True, slots=True, order=True)
class Tile:
    z: int
    x: int
    y: int

    @property
    def path(self) -> str:
        return f"{self.z}/{self.x}/{self.y}"

    def bounds_m(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in EPSG:3857, computed as ST_TileEnvelope computes them."""
        size = 2 * WORLD_M / 2**self.z
        return (
            -WORLD_M + self.x * size,
            WORLD_M - (self.y + 1) * size,
            -WORLD_M + (self.x + 1) * size,
            WORLD_M - self.y * size,
        )


def tile_of(lon: float, lat: float, z: int) -> Tile:
    """The Web Mercator tile at zoom ``z`` holding (lon, lat)."""
    n = 2**z
    x = math.floor((lon + 180.0) / 360.0 * n)
    y = math.floor((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return Tile(z, min(max(x, 0), n - 1), min(max(y, 0), n - 1))


def choose_tiles(
    conn: psycopg.Connection[Any], *, zooms: Sequence[int], count: int, seed: int
) -> dict[int, list[Tile]]:
    """``count`` tiles per zoom: those holding ``count`` reports drawn at random (by a hash of
    id and seed), in the order drawn."""
    rows = conn.execute(
        "SELECT ST_X(geom), ST_Y(geom) FROM reports ORDER BY md5(id::text || %s) LIMIT %s",
        [str(seed), count],
    ).fetchall()
    conn.commit()
    return {z: [tile_of(lon, lat, z) for lon, lat in rows] for z in zooms}


# --- the truth and the PostGIS limit ---------------------------------------------------------

# Reports whose position lies in the tile proper, by the exact Web Mercator bounds (bound
# parameters computed like ST_TileEnvelope's; x in [xmin, xmax), y in (ymin, ymax], as tile
# indices are floor((x - west) / size) and floor((north - y) / size)). The && test on a box a
# little larger than the tile only picks candidates through the GiST index.
_TRUTH = """
SELECT count(*), coalesce(sum(people_count), 0)
FROM (SELECT ST_Transform(geom, 3857) AS g, people_count FROM reports
      WHERE geom && ST_Transform(ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => 1.0 / 4096), 4326)
     ) AS r
WHERE ST_X(g) >= %(xmin)s AND ST_X(g) < %(xmax)s AND ST_Y(g) > %(ymin)s AND ST_Y(g) <= %(ymax)s
"""


@dataclass(frozen=True, slots=True)
class Truth:
    reports: int
    people: int


def truth(conn: psycopg.Connection[Any], tile: Tile) -> Truth:
    xmin, ymin, xmax, ymax = tile.bounds_m()
    params: dict[str, float] = {"z": tile.z, "x": tile.x, "y": tile.y}
    params |= {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}
    reports, people = conn.execute(_TRUTH, params).fetchone()  # type: ignore[misc]
    conn.commit()
    return Truth(int(reports), int(people))


# The PostGIS limit: every report within the buffered tile, one feature each, through a single
# ST_AsMVT. The buffer is the one ST_AsMVTGeom keeps (64 of 4096 units).
_BARE = """
SELECT ST_AsMVT(t, 'reports', {extent}, 'geom')
FROM (SELECT ST_AsMVTGeom(ST_Transform(geom, 3857), ST_TileEnvelope(%(z)s, %(x)s, %(y)s),
                          {extent}, {buffer}, true) AS geom,
             {properties}
      FROM reports
      WHERE geom && ST_Transform(ST_TileEnvelope(%(z)s, %(x)s, %(y)s,
                                                 margin => {buffer}.0 / {extent}), 4326)
     ) AS t
"""


def bare_statement(tile: Tile, properties: Sequence[str]) -> tuple[sql.Composed, dict[str, int]]:
    """The bare tile query for ``tile`` carrying ``properties`` (columns of ``reports``)."""
    statement = sql.SQL(_BARE).format(
        extent=sql.Literal(EXTENT),
        buffer=sql.Literal(BUFFER),
        properties=sql.SQL(", ").join(sql.Identifier(p) for p in properties),
    )
    return statement, {"z": tile.z, "x": tile.x, "y": tile.y}


# --- reading tiles ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LayerFacts:
    """What one layer of a tile holds.

    A point feature with an integer ``count`` property is a cluster standing for that many
    reports; any other point feature stands for one. ``represented`` sums that over the layer;
    ``represented_in_tile`` over the points inside the tile proper (0..extent on both axes, edges
    included, as ST_AsMVTGeom rounds to whole units), not in its buffer; ``people_in_tile`` sums
    the clusters' ``people`` there (None if the layer has no such property). ``non_integer``
    counts ``count``/``people`` values that were not integers."""

    features: int
    points: int
    clusters: int
    represented: int
    represented_in_tile: int
    people_in_tile: int | None
    non_integer: int


def read_tile(body: bytes) -> dict[str, LayerFacts]:
    """The layers of a Mapbox Vector Tile (an empty body is a tile without layers)."""
    tile = vector_tile_pb2.tile()
    tile.ParseFromString(body)
    return {layer.name: _read_layer(layer) for layer in tile.layers}


def _read_layer(layer: Any) -> LayerFacts:
    keys = list(layer.keys)
    count_key = keys.index("count") if "count" in keys else -1
    people_key = keys.index("people") if "people" in keys else -1
    values = [_value(v) for v in layer.values] if count_key >= 0 or people_key >= 0 else []
    extent = layer.extent or EXTENT
    points = clusters = represented = in_tile = people = non_integer = 0
    for feature in layer.features:
        if feature.type != _POINT:
            continue
        points += 1
        x, y = _first_point(feature.geometry)
        inside = 0 <= x <= extent and 0 <= y <= extent
        count, people_here = 1, 0
        tags = feature.tags
        for k, v in zip(tags[::2], tags[1::2], strict=True):
            if k != count_key and k != people_key:
                continue
            value = values[v]
            if not isinstance(value, int) or isinstance(value, bool):
                non_integer += 1
            elif k == count_key:
                count = value
                clusters += 1
            else:
                people_here = value
        represented += count
        if inside:
            in_tile += count
            people += people_here
    return LayerFacts(
        features=len(layer.features),
        points=points,
        clusters=clusters,
        represented=represented,
        represented_in_tile=in_tile,
        people_in_tile=people if people_key >= 0 else None,
        non_integer=non_integer,
    )


def _value(value: Any) -> Any:
    """The one field a ``tile.value`` holds (None if it holds none)."""
    fields = value.ListFields()
    return fields[0][1] if fields else None


def _first_point(geometry: Sequence[int]) -> tuple[int, int]:
    """The first position of a point geometry: MoveTo(1), then two zigzag-encoded integers."""
    if len(geometry) < 3:
        return -1, -1
    return _unzigzag(geometry[1]), _unzigzag(geometry[2])


def _unzigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)
