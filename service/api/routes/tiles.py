"""Map tiles: vector (MVT) and GeoJSON tiles of the segments and reports, and their TileJSON."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from service.api import audit
from service.api.caching import revalidated
from service.api.cancel import until_disconnected
from service.api.deps import CallerDep, IndexDep, ReleaseDep, SettingsDep, StoreDep, get_caller
from service.api.schemas.pages import parse_time
from service.domain import tiles
from service.domain.access import Caller
from service.domain.errors import FieldError, InvalidParameter
from service.domain.segments import SegmentIndex
from service.domain.tiles import TileQuery
from service.settings import Settings
from service.usecases import tile_encoding
from service.usecases import tiles as usecase
from service.usecases.public_release import CurrentRelease, public_tile

T = TypeVar("T")
router = APIRouter(prefix="/v1", tags=["tiles"], dependencies=[Depends(get_caller)])
MVT = "application/vnd.mapbox-vector-tile"
GEOJSON = "application/geo+json"
FILTERS = ("start", "end", "kind")

_Start = Annotated[
    str | None, Query(description="Reports observed at or after this instant (RFC 3339)")
]
_End = Annotated[str | None, Query(description="Reports observed before this instant (RFC 3339)")]
_Kind = Annotated[str | None, Query(description="Reports of this kind only")]


def _filter(request: Request, settings: Settings) -> tiles.TileFilter:
    unknown = sorted(set(request.query_params) - set(FILTERS))
    if unknown:
        reason = f"is not a parameter of tiles (they take {', '.join(FILTERS)})"
        raise InvalidParameter(
            f"{unknown[0]} {reason}", errors=[FieldError(name, reason) for name in unknown]
        )
    params = request.query_params
    flt = tiles.TileFilter(
        start=parse_time("start", params.get("start")),
        end=parse_time("end", params.get("end")),
        kind=params.get("kind"),
    )
    return tiles.check_filter(flt, settings.report_kinds)


def _query(z: int, x: int, y: int, request: Request, settings: Settings) -> TileQuery:
    tile = tiles.tile_address(z, x, y)
    return TileQuery(
        tile=tile,
        filter=_filter(request, settings),
        points=tiles.shows_points(tile, settings.tile_points_min_zoom),
        max_points=settings.tile_max_points,
    )


def _content(
    query: TileQuery,
    *,
    precise: bool,
    store: StoreDep,
    release: CurrentRelease,
    index: SegmentIndex,
    settings: Settings,
) -> tiles.TileContent:
    """Exact content for a caller who reads everything; for everyone else, the segments with
    their public release figures and no reports."""
    if precise:
        return usecase.tile_content(store, index, query)
    return public_tile(release.view(), index, query.tile, query.filter, rule=settings.public_rule)


def _mvt(
    query: TileQuery,
    *,
    precise: bool,
    store: StoreDep,
    release: CurrentRelease,
    index: SegmentIndex,
    settings: Settings,
) -> bytes:
    if precise:
        return usecase.mvt_tile(store, index, query)
    content = _content(
        query, precise=False, store=store, release=release, index=index, settings=settings
    )
    return tile_encoding.encode_mvt(content)


async def _read(
    make: Callable[..., T],
    query: TileQuery,
    request: Request,
    *,
    store: StoreDep,
    release: CurrentRelease,
    index: SegmentIndex,
    settings: Settings,
    caller: Caller,
) -> T:
    """The tile made by ``make`` in the thread pool, audited when it places single reports."""
    precise = caller.sees_everything
    read = functools.partial(
        make, query, precise=precise, store=store, release=release, index=index, settings=settings
    )
    entry = audit.entry(request, caller, precise=precise and query.points)
    return await until_disconnected(request, audit.recorded(store, entry, read))


@router.get(
    "/tiles/{z}/{x}/{y}.mvt",
    response_class=Response,
    responses={
        200: {"content": {MVT: {}}, "description": "The tile (Mapbox Vector Tile 2.1)"},
        204: {"description": "Nothing to draw in this tile"},
        304: {"description": "Unchanged since the ETag sent in If-None-Match"},
    },
)
async def vector_tile(
    z: int,
    x: int,
    y: int,
    request: Request,
    store: StoreDep,
    release: ReleaseDep,
    index: IndexDep,
    settings: SettingsDep,
    caller: CallerDep,
    start: _Start = None,
    end: _End = None,
    kind: _Kind = None,
) -> Response:
    """A vector tile (EPSG:3857, extent 4096, 64 px buffer) with layers `segments` (each segment
    with its reports and people in the window) and, with an analyst or admin key, `reports`
    (points from the configured zoom, clusters of 64 px cells below it or where a tile would hold
    too many points). Without one: the segments with the public release's figures (whole days),
    and no reports."""
    query = _query(z, x, y, request, settings)
    body = await _read(
        _mvt,
        query,
        request,
        store=store,
        release=release,
        index=index,
        settings=settings,
        caller=caller,
    )
    return await revalidated(
        request, body, MVT, max_age=settings.tile_max_age_s, private=caller.sees_everything
    )


@router.get(
    "/tiles/{z}/{x}/{y}.geojson",
    response_class=Response,
    responses={
        200: {"content": {GEOJSON: {}}, "description": "The tile as a GeoJSON FeatureCollection"},
        204: {"description": "Nothing to draw in this tile"},
        304: {"description": "Unchanged since the ETag sent in If-None-Match"},
    },
)
async def geojson_tile(
    z: int,
    x: int,
    y: int,
    request: Request,
    store: StoreDep,
    release: ReleaseDep,
    index: IndexDep,
    settings: SettingsDep,
    caller: CallerDep,
    start: _Start = None,
    end: _End = None,
    kind: _Kind = None,
) -> Response:
    """The same content as the vector tile, as GeoJSON in WGS84: every feature says its `layer`;
    reports at their own positions, clusters at their cell's centre, lines clipped to the tile
    and its buffer."""
    query = _query(z, x, y, request, settings)
    content = await _read(
        _content,
        query,
        request,
        store=store,
        release=release,
        index=index,
        settings=settings,
        caller=caller,
    )
    doc = {"type": "FeatureCollection", "features": tile_encoding.geojson_features(content)}
    body = orjson.dumps(doc) if doc["features"] else b""
    return await revalidated(
        request, body, GEOJSON, max_age=settings.tile_max_age_s, private=caller.sees_everything
    )


@router.get("/tiles.json")
async def tilejson(
    request: Request,
    index: IndexDep,
    settings: SettingsDep,
    start: _Start = None,
    end: _End = None,
    kind: _Kind = None,
) -> Response:
    """TileJSON 3.0 for MapLibre, QGIS and mobile SDKs: the tile URL (carrying these filters),
    zooms, bounds and each layer's fields."""
    _filter(request, settings)  # refuse bad filters here, rather than in every tile
    query = urlencode([(k, v) for k, v in request.query_params.items() if k in FILTERS])
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
