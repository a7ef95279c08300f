"""What bench/features.py asks for: the item queries of each case, as URLs for crossings and TiPG
and as the bare SQL page that is their floor, and what a response says (count, ids, next link).

Boxes are 0.5 x 0.5 degrees, a map view of a few tens of kilometres:

- ``hot``: centred on each of the five hot spots (tens of thousands of reports each);
- ``line``: centred on the border away from the hot spots (a few thousand each);
- ``sparse``: 0.05-0.55 degrees south of the 49th parallel, where reports thin out with distance
  from the line (tens each: fewer than a page, so whole answers can be compared report by report).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import numpy as np
import orjson
from psycopg import sql

from bench.synthetic import HOT_SPOTS, Border

Box = tuple[float, float, float, float]
HALF_BOX_DEG = 0.25
# Rough places on the border, away from the hot spots; each box is centred on the border vertex
# nearest to one (so that it surely holds a stretch of the line).
LINE_PLACES = {
    "alberta_montana": (-110.0, 49.0),
    "manitoba_north_dakota": (-100.5, 49.0),
    "ontario_minnesota": (-89.6, 48.0),
    "new_brunswick_maine": (-67.8, 46.5),
    "bc_alaska": (-135.0, 59.6),
}
SPARSE_CENTRES = {  # the 49th parallel is the border here: these lie 5-60 km south of it
    "south_of_alberta": (-113.0, 48.7),
    "south_of_saskatchewan": (-106.0, 48.7),
    "south_of_manitoba": (-102.0, 48.7),
}


@dataclass(frozen=True, slots=True)
class Query:
    """One items request: a page size and optional filters."""

    limit: int
    bbox: Box | None = None
    start: datetime | None = None
    end: datetime | None = None
    place: str = ""

    @property
    def label(self) -> str:
        parts = [f"limit={self.limit}"]
        if self.bbox:
            parts.append(f"bbox={self.place or _box_text(self.bbox)}")
        if self.start or self.end:
            parts.append(f"datetime={_interval(self.start, self.end)}")
        return " ".join(parts)

    def url(self, path: str, *, ogc: bool) -> str:
        """The request URL: OGC parameters (``datetime`` interval), or the service's own /v1
        ones (``start`` inclusive, ``end`` exclusive, as TiPG reads a closed interval)."""
        params = {"limit": str(self.limit)}
        if self.bbox:
            params["bbox"] = _box_text(self.bbox)
        if self.start or self.end:
            if ogc:
                params["datetime"] = _interval(self.start, self.end)
            else:
                params |= {
                    k: _instant(v) for k, v in (("start", self.start), ("end", self.end)) if v
                }
        return f"{path}?{urlencode(params)}"


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    description: str
    queries: tuple[Query, ...]  # cycled through, request after request
    requests: int  # in all, over every round
    aim: float  # crossings/TiPG req/s aimed for (docs/performance.md)

    @property
    def limit(self) -> int:
        return self.queries[0].limit

    def round_queries(self, round_no: int, rounds: int) -> list[Query]:
        """This round's share of the requests, continuing the cycle where the last round left."""
        per_round = max(1, round(self.requests / rounds))
        first = round_no * per_round
        return [self.queries[(first + i) % len(self.queries)] for i in range(per_round)]

    def warmup_queries(self, requests: int) -> list[Query]:
        return [
            self.queries[i % len(self.queries)] for i in range(max(requests, len(self.queries)))
        ]


def _box(lon: float, lat: float) -> Box:
    return (
        round(lon - HALF_BOX_DEG, 6),
        round(lat - HALF_BOX_DEG, 6),
        round(lon + HALF_BOX_DEG, 6),
        round(lat + HALF_BOX_DEG, 6),
    )


def _box_text(box: Box) -> str:
    return ",".join(repr(v) for v in box)  # the exact floats the SQL floor binds


def _instant(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _interval(start: datetime | None, end: datetime | None) -> str:
    return f"{_instant(start) if start else '..'}/{_instant(end) if end else '..'}"


def boxes(border: Border) -> dict[str, dict[str, Box]]:
    vertices = np.stack(
        [np.concatenate([border.ax, border.bx]), np.concatenate([border.ay, border.by])], 1
    )
    line = {}
    for name, (lon, lat) in LINE_PLACES.items():
        nearest = vertices[np.argmin(np.hypot(*(vertices - (lon, lat)).T))]
        line[name] = _box(float(nearest[0]), float(nearest[1]))
    return {
        "hot": {name: _box(*spot) for name, spot in HOT_SPOTS.items()},
        "line": line,
        "sparse": {name: _box(*centre) for name, centre in SPARSE_CENTRES.items()},
    }


def months_before(now: datetime, count: int) -> list[tuple[datetime, datetime]]:
    """The ``count`` whole calendar months before the month of ``now``, latest first."""
    year, month = now.year, now.month
    out = []
    for _ in range(count):
        end = datetime(year, month, 1, tzinfo=UTC)
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        out.append((datetime(year, month, 1, tzinfo=UTC), end))
    return out


def build_cases(
    *, now: datetime, border: Border, small_requests: int, big_requests: int
) -> list[Case]:
    b = boxes(border)

    def with_box(kind: str, limit: int) -> tuple[Query, ...]:
        return tuple(Query(limit, bbox=box, place=name) for name, box in b[kind].items())

    months = months_before(now, 2)
    hot_month = tuple(
        Query(100, bbox=box, start=start, end=end, place=name)
        for start, end in months
        for name, box in b["hot"].items()
    )
    return [
        Case("p100_all", "100 per page, no filter", (Query(100),), small_requests, 3.0),
        Case("p100_bbox_hot", "100, 0.5 deg box on a hot spot (5 boxes)", with_box("hot", 100), small_requests, 3.0),
        Case("p100_bbox_line", "100, 0.5 deg box on the border (5 boxes)", with_box("line", 100), small_requests, 3.0),
        Case("p100_bbox_sparse", "100, 0.5 deg box 5-60 km off the border (3 boxes, <100 hits)", with_box("sparse", 100), small_requests, 3.0),
        Case("p100_bbox_hot_month", "100, hot-spot box + 1 calendar month (10 queries)", hot_month, small_requests, 3.0),
        Case("p10000_all", "10,000 per page, no filter", (Query(10_000),), big_requests, 1.0),
        Case("p10000_bbox_hot", "10,000, 0.5 deg box on a hot spot (5 boxes)", with_box("hot", 10_000), big_requests, 1.0),
    ]  # fmt: skip


# --- the floor: the same page built by PostgreSQL alone ---------------------------------------

# The page as one JSON text, with the properties crossings returns; ORDER BY and LIMIT as
# crossings pages (observed_at, id), geometry through ST_AsGeoJSON.
_RAW_PAGE = """
SELECT json_build_object(
    'type', 'FeatureCollection',
    'numberReturned', count(*),
    'features', coalesce(json_agg(json_build_object(
        'type', 'Feature', 'id', id, 'geometry', ST_AsGeoJSON(geom)::json,
        'properties', json_build_object(
            'id', id, 'observed_at', observed_at, 'received_at', received_at,
            'people_count', people_count, 'direction', direction, 'kind', kind,
            'accuracy_m', accuracy_m, 'notes', notes, 'device_id', device_id,
            'snap_status', snap_status, 'segment_id', segment_id,
            'snap_distance_m', snap_distance_m, 'chainage_km', chainage_km, 'side', side,
            'snapped_lon', ST_X(snap_geom), 'snapped_lat', ST_Y(snap_geom)))
        ORDER BY observed_at, id), '[]'::json))::text
FROM (SELECT * FROM reports WHERE {where} ORDER BY observed_at, id LIMIT %s) AS page
"""


def raw_page_statement(query: Query) -> tuple[sql.Composed, list[Any]]:
    """The SQL page for ``query``, with bound parameters.

    The box test is a bare ``geom && envelope``, the fastest plan PostgreSQL has for it. It is not
    exact: ``&&`` compares float4-rounded boxes and admits points up to about a metre outside the
    box. Exact tests (``ST_Intersects``, or ST_X/ST_Y ranges added) change the planner's estimates
    and, on this data, its plans: 100 reports of a hot-spot box in one month took 12-14 ms
    instead of 0.3 ms (a bitmap scan and sort instead of walking the time index).
    """
    where: list[sql.Composable] = [sql.SQL("TRUE")]
    params: list[Any] = []
    if query.bbox:
        where.append(sql.SQL("geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326)"))
        params += list(query.bbox)
    if query.start:
        where.append(sql.SQL("observed_at >= %s"))
        params.append(query.start)
    if query.end:
        where.append(sql.SQL("observed_at < %s"))
        params.append(query.end)
    params.append(query.limit)
    return sql.SQL(_RAW_PAGE).format(where=sql.SQL(" AND ").join(where)), params


# --- reading answers -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """What one FeatureCollection said: features, numberReturned/numberMatched, a next link, and
    the ids when the page held every match (fewer than the limit)."""

    features: int
    number_returned: int | None
    number_matched: int | None
    has_next: bool
    ids: frozenset[str] | None
    problem: str | None = None


def read_answer(body: bytes, *, limit: int) -> Answer:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        return Answer(0, None, None, False, None, f"not JSON: {error}")
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        return Answer(0, None, None, False, None, "not a FeatureCollection")
    features = doc.get("features") or []
    links = doc.get("links") or []
    has_next = any(isinstance(link, dict) and link.get("rel") == "next" for link in links)
    ids = frozenset(str(f.get("id")) for f in features) if len(features) < limit else None
    problem = None
    if any(f.get("geometry", {}).get("type") != "Point" for f in features[:5]):
        problem = "features without a Point geometry"
    return Answer(
        len(features), doc.get("numberReturned"), doc.get("numberMatched"), has_next, ids, problem
    )
