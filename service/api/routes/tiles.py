"""Map tiles: vector (MVT) and GeoJSON tiles of the segments and reports, and their TileJSON."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from service.api import audit
from service.api.caching import revalidated
from service.api.cancel import until_disconnected
from service.api.deps import IndexDep, SettingsDep, Sources, SourcesDep, get_caller
from service.api.problems import DocumentedRoute
from service.api.schemas.tiles import TileFilterQuery
from service.domain import tiles
from service.domain.tiles import TileQuery
from service.settings import Settings
from service.usecases import tile_encoding
from service.usecases import tiles as usecase
from service.usecases.public_release import public_tile

router = APIRouter(
    prefix="/v1", tags=["tiles"], dependencies=[Depends(get_caller)], route_class=DocumentedRoute
)
MVT = "application/vnd.mapbox-vector-tile"
GEOJSON = "application/geo+json"
Filters = Annotated[TileFilterQuery, Query()]
TILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    204: {"description": "Nothing to draw in this tile"},
    304: {"description": "Unchanged since the ETag sent in If-None-Match"},
}


def _query(z: int, x: int, y: int, filters: TileFilterQuery, settings: Settings) -> TileQuery:
    tile = tiles.tile_address(z, x, y)
    return TileQuery(
        tile=tile,
        filter=filters.to_filter(settings.report_kinds),
        points=tiles.shows_points(tile, settings.tile_points_min_zoom),
        max_points=settings.tile_max_points,
    )


def _content(query: TileQuery, src: Sources) -> tiles.TileContent:
    """Exact content for a caller who reads everything; for everyone else, the segments with
    their public release figures and no reports."""
    if src.caller.sees_everything:
        return usecase.tile_content(src.store, src.index, query)
    release = src.release.view()
    return public_tile(release, src.index, query.tile, query.filter, rule=src.settings.public_rule)


def _mvt(query: TileQuery, src: Sources) -> bytes:
    if src.caller.sees_everything:
        return usecase.mvt_tile(src.store, src.index, query)
    return tile_encoding.encode_mvt(_content(query, src))


def _geojson(query: TileQuery, src: Sources) -> bytes:
    features = tile_encoding.geojson_features(_content(query, src))
    return orjson.dumps({"type": "FeatureCollection", "features": features}) if features else b""


async def _tile(
    request: Request,
    make: Callable[[TileQuery, Sources], bytes],
    media: str,
    query: TileQuery,
    src: Sources,
) -> Response:
    """The tile made by ``make`` in the thread pool (audited when it places single reports),
    answered with its ETag."""
    precise = src.caller.sees_everything
    entry = audit.entry(request, src.caller, precise=precise and query.points)
    read = functools.partial(make, query, src)
    body = await until_disconnected(request, audit.recorded(src.store, entry, read))
    max_age = src.settings.tile_max_age_s
    return await revalidated(request, body, media, max_age=max_age, private=precise)


@router.get(
    "/tiles/{z}/{x}/{y}.mvt",
    response_class=Response,
    responses={
        200: {"content": {MVT: {}}, "description": "The tile (Mapbox Vector Tile 2.1)"},
        **TILE_RESPONSES,
    },
)
async def vector_tile(
    z: int, x: int, y: int, request: Request, filters: Filters, src: SourcesDep
) -> Response:
    """A vector tile (EPSG:3857, extent 4096, 64 px buffer) with layers `segments` (each segment
    with its reports and people in the window) and, with an analyst or admin key, `reports`
    (points from the configured zoom, clusters of 64 px cells below it or where a tile would hold
    too many points). Without one: the segments with the public release's figures (whole days),
    and no reports."""
    return await _tile(request, _mvt, MVT, _query(z, x, y, filters, src.settings), src)


@router.get(
    "/tiles/{z}/{x}/{y}.geojson",
    response_class=Response,
    responses={
        200: {"content": {GEOJSON: {}}, "description": "The tile as a GeoJSON FeatureCollection"},
        **TILE_RESPONSES,
    },
)
async def geojson_tile(
    z: int, x: int, y: int, request: Request, filters: Filters, src: SourcesDep
) -> Response:
    """The same content as the vector tile, as GeoJSON in WGS84: every feature says its `layer`;
    reports at their own positions, clusters at their cell's centre, lines clipped to the tile
    and its buffer."""
    return await _tile(request, _geojson, GEOJSON, _query(z, x, y, filters, src.settings), src)


@router.get("/tiles.json")
async def tilejson(
    request: Request, index: IndexDep, settings: SettingsDep, filters: Filters
) -> Response:
    """TileJSON 3.0 for MapLibre, QGIS and mobile SDKs: the tile URL (carrying these filters),
    zooms, bounds and each layer's fields."""
    filters.to_filter(settings.report_kinds)  # refuse bad filters here, rather than in every tile
    query = filters.query_string()
    base = str(request.base_url).rstrip("/")
    suffix = f"?{query}" if query else ""
    doc = _tilejson(base, suffix, index, settings)
    return Response(orjson.dumps(doc), media_type="application/json")


def _tilejson(base: str, suffix: str, index: Any, settings: Settings) -> dict[str, Any]:
    bounds = list(index.bounds) if index.bounds else [-180.0, -85.0511, 180.0, 85.0511]
    points_from = settings.tile_points_min_zoom
    return {
        "tilejson": "3.0.0",
        "name": "crossings",
        "description": (
            "Border segments with their report counts, and reports: clusters of 64 px cells "
            f"(features with `count`) below zoom {points_from} or where a tile would hold more "
            f"than {settings.tile_max_points} reports, individual reports (features with `id`) "
            f"from zoom {points_from}. The same tiles as GeoJSON: "
            f"{base}/v1/tiles/{{z}}/{{x}}/{{y}}.geojson{suffix}"
        ),
        "version": "1.0.0",
        "scheme": "xyz",
        "tiles": [f"{base}/v1/tiles/{{z}}/{{x}}/{{y}}.mvt{suffix}"],
        "minzoom": 0,
        "maxzoom": tiles.MAX_ZOOM,
        "bounds": bounds,
        "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, 3],
        "vector_layers": [
            {
                "id": "segments",
                "description": "Border segments; reports and people in the requested window",
                "minzoom": 0,
                "maxzoom": tiles.MAX_ZOOM,
                "fields": tile_encoding.SEGMENT_FIELDS,
            },
            {
                "id": "reports",
                "description": "Report clusters (with `count`) or individual reports (with `id`)",
                "minzoom": 0,
                "maxzoom": tiles.MAX_ZOOM,
                "fields": tile_encoding.REPORT_FIELDS,
            },
        ],
    }
