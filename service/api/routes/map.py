"""A web map of the border and its reports: a MapLibre style over the vector tiles (for MapLibre,
QGIS and other style-aware clients) and a page at /map that shows it. The page's script and the
vendored MapLibre GL JS are static files under /static."""

from __future__ import annotations

import html
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import HTMLResponse, Response

from service.api.deps import IndexDep, SettingsDep, get_caller
from service.api.problems import DocumentedRoute
from service.api.responses import JSONResponse
from service.api.schemas.tiles import StyleFilterQuery

router = APIRouter(tags=["map"], dependencies=[Depends(get_caller)], route_class=DocumentedRoute)

WORLD = (-180.0, -85.0, 180.0, 85.0)  # for a store without segments: nothing better to fit
# Reports on a segment -> its line colour: grey for none, then light to dark red (from this many).
SEGMENT_CLASSES = ((0, "#8c96a0"), (1, "#fdbb84"), (10, "#fc8d59"), (100, "#d7301f"),
                   (1000, "#7f0000"))  # fmt: skip
# Reports in a cluster -> its circle radius in pixels (from this many).
CLUSTER_CLASSES = ((1, 5), (10, 9), (100, 15), (1000, 24), (10000, 34))
KIND_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")
OTHER_KIND = "#555555"
# How wide the border draws at each zoom: an interpolation on zoom alone, which QGIS converts.
LINE_WIDTH = ["interpolate", ["linear"], ["zoom"], 2, 1.5, 10, 3, 14, 5]


def _root(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def map_style(
    *, tilejson_url: str, kinds: tuple[str, ...], center: tuple[float, float]
) -> dict[str, Any]:
    """A MapLibre style (v8) with one vector source: the border coloured by its report count,
    report clusters (features with ``count``) sized by count, single reports coloured by kind.
    It has no text layers, so it needs no glyphs.

    Every data-driven colour and size is a layer per class, with a filter and constant paint,
    rather than one layer with ``interpolate``/``match`` on a property: QGIS 3.22's MapBox GL
    converter drops those (segments drew black and every point grey) but converts filters. Each
    layer's id is its group (``segments``, ``clusters``, ``points``), a dash, and its class.

    It has no background layer: QGIS paints one into every tile that has content, hiding the
    user's own background map there (and leaving it visible in empty tiles: a patchwork). The
    /map page gives its container that colour instead."""
    return {
        "version": 8,
        "name": "crossings",
        "center": list(center),
        "zoom": 3,
        "sources": {"crossings": {"type": "vector", "url": tilejson_url}},
        "layers": [
            *_segment_layers(),
            *_cluster_layers(),
            *_point_layers(kinds),
        ],
    }


def _classes(name: str, classes: tuple[tuple[int, Any], ...]) -> list[tuple[int, Any, list[Any]]]:
    """(lower bound, value, conditions) of each class of the numeric property ``name``: from its
    bound up to the next one's."""
    out = []
    for i, (low, value) in enumerate(classes):
        conditions: list[Any] = [[">=", ["get", name], low]] if i else []
        if i + 1 < len(classes):
            conditions.append(["<", ["get", name], classes[i + 1][0]])
        out.append((low, value, conditions))
    return out


def _segment_layers() -> list[dict[str, Any]]:
    """A layer per class of report count; the first also draws segments without a count."""
    layers = []
    for i, (low, colour, conditions) in enumerate(_classes("reports", SEGMENT_CLASSES)):
        if i == 0:
            test: list[Any] = ["any", ["!", ["has", "reports"]], *conditions]
        else:
            test = ["all", ["has", "reports"], *conditions]
        layers.append(
            {
                "id": f"segments-{low}",
                "type": "line",
                "source": "crossings",
                "source-layer": "segments",
                "filter": test,
                "layout": {"line-cap": "round", "line-join": "round"},
                "paint": {"line-color": colour, "line-width": LINE_WIDTH},
            }
        )
    return layers


def _cluster_layers() -> list[dict[str, Any]]:
    """Clusters (features with ``count``): a layer per class of count, sized by it."""
    return [
        {
            "id": f"clusters-{low}",
            "type": "circle",
            "source": "crossings",
            "source-layer": "reports",
            "filter": ["all", ["has", "count"], *conditions],
            "paint": {
                "circle-radius": radius,
                "circle-color": "#d7301f",
                "circle-opacity": 0.7,
                "circle-stroke-color": "#ffffff",
                "circle-stroke-width": 1,
            },
        }
        for low, radius, conditions in _classes("count", CLUSTER_CLASSES)
    ]


def _point_layers(kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    """Single reports (features without ``count``): a layer per configured kind, and one for
    any other kind (``points-*``)."""
    single = ["!", ["has", "count"]]

    def layer(name: str, test: list[Any] | bool, colour: str) -> dict[str, Any]:
        return {
            "id": f"points-{name}",
            "type": "circle",
            "source": "crossings",
            "source-layer": "reports",
            "filter": ["all", single, test],
            "paint": {
                "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 4, 16, 8],
                "circle-color": colour,
                "circle-stroke-color": "#ffffff",
                "circle-stroke-width": 1,
            },
        }

    layers = [
        layer(kind, ["==", ["get", "kind"], kind], KIND_COLOURS[i % len(KIND_COLOURS)])
        for i, kind in enumerate(kinds)
    ]
    other: list[Any] | bool = (
        ["match", ["get", "kind"], list(kinds), False, True] if kinds else True
    )
    return [*layers, layer("*", other, OTHER_KIND)]


@router.get("/v1/tiles/style.json", name="map_style")
async def style(
    request: Request,
    settings: SettingsDep,
    index: IndexDep,
    filters: Annotated[StyleFilterQuery, Query()],
) -> Response:
    """A MapLibre style (v8) for the vector tiles at `/v1/tiles.json`: border segments coloured
    by their report count, report clusters (below zoom 10, and in very dense tiles) and single
    reports.
    `start`, `end` and `kind` are passed on to `/v1/tiles.json` (which checks them)."""
    query = filters.query_string()
    tilejson_url = f"{_root(request)}/v1/tiles.json" + (f"?{query}" if query else "")
    min_x, min_y, max_x, max_y = index.bounds or WORLD
    center = ((min_x + max_x) / 2, (min_y + max_y) / 2)
    doc = map_style(tilejson_url=tilejson_url, kinds=settings.report_kinds, center=center)
    return JSONResponse(doc)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>crossings: map</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{maplibre_css}">
<link rel="stylesheet" href="{page_css}">
</head>
<body>
<div id="map" data-style="{style}" data-bounds="{bounds}"></div>
<form id="filters" class="panel">
<label>From <input type="datetime-local" name="start"></label>
<label>To <input type="datetime-local" name="end"></label>
<label>Kind <select name="kind"><option value="">any</option>{kinds}</select></label>
<label title="An analyst key shows single reports; without one, the map shows what the public
may see">Key <input type="password" name="key" autocomplete="off" size="12"></label>
<button type="submit">Show</button>
<p id="status" role="status"></p>
</form>
<script src="{maplibre_js}"></script>
<script src="{page_js}"></script>
</body>
</html>
"""


@router.get("/map", response_class=HTMLResponse)
async def map_page(request: Request, settings: SettingsDep, index: IndexDep) -> Response:
    """A web map of the border segments and the reports, with filters by time and kind.
    `/map?start=...&end=...&kind=...` opens it filtered."""

    def static(path: str) -> str:
        return html.escape(str(request.url_for("static", path=path)))

    kinds = "".join(f"<option>{html.escape(k)}</option>" for k in settings.report_kinds)
    page = PAGE.format(
        maplibre_css=static("vendor/maplibre-gl/maplibre-gl.css"),
        maplibre_js=static("vendor/maplibre-gl/maplibre-gl.js"),
        page_css=static("map.css"),
        page_js=static("map.js"),
        style=html.escape(str(request.url_for("map_style"))),
        bounds=html.escape(orjson.dumps(index.bounds or WORLD).decode()),
        kinds=kinds,
    )
    return HTMLResponse(page)
