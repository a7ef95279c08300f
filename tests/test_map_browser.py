"""The /map page in a real browser: Chromium (Debian's, headless, WebGL in software through
SwiftShader) driven by Playwright against the real server. MapLibre fetches the style, the
TileJSON and the vector tiles, and `map.queryRenderedFeatures()` tells what it drew.

Skipped when Chromium is missing; .ci/run fails if these tests were skipped."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.factories import ROXHAM_ROAD, report_body
from tests.live import auth, http_server, live_key, running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt: chromium)"),
]
# No GPU here: ANGLE on SwiftShader gives WebGL 2 in software. Chromium only allows that fallback
# when asked (--enable-unsafe-swiftshader); without WebGL, maplibregl.Map throws.
WEBGL_IN_SOFTWARE = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
TIMEOUT_MS = 60_000  # software rendering on two busy cores is slow
PEMBINA = (-97.2376, 49.0005)
SAN_YSIDRO = (-117.0297, 32.5433)


@dataclass
class Served:
    base: str
    roxham: dict[str, str]  # report id -> kind, the reports posted around Roxham Road
    key: str  # an analyst key: the map shows single reports and small clusters to it


@dataclass
class MapPage:
    page: Page
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def run(self, script: str, arg: Any = None) -> Any:
        return self.page.evaluate(script, arg)

    def jump_and_wait(self, lon_lat: tuple[float, float], zoom: float) -> None:
        """Move the map and wait until its tiles are loaded and drawn."""
        self.run(
            "async ([center, zoom]) => { map.jumpTo({center, zoom}); await map.once('idle'); }",
            [list(lon_lat), zoom],
        )

    def rendered(self, group: str) -> list[dict[str, Any]]:
        """The properties of the features the map drew in one group of layers (the style draws
        a group in a layer per class: "segments-10", "points-crossing"), in the whole viewport."""
        script = (
            "(group) => { const layers = map.getStyle().layers.map(l => l.id)"
            ".filter(id => id.split('-')[0] === group);"
            " return map.queryRenderedFeatures({layers}).map(f => f.properties); }"
        )
        result: list[dict[str, Any]] = self.run(script, group)
        return result


def _post_reports(base: str, key: str) -> dict[str, str]:
    """Three reports a few hundred metres apart at Roxham Road, one each at Pembina and San
    Ysidro; returns the Roxham ones' ids and kinds."""
    lon, lat = ROXHAM_ROAD
    roxham = [
        report_body(lon=lon, lat=lat, kind="crossing"),
        report_body(lon=lon + 0.002, lat=lat + 0.001, kind="attempt", people_count=1),
        report_body(lon=lon - 0.002, lat=lat + 0.001, kind="crossing", people_count=6),
    ]
    others = [
        report_body(lon=PEMBINA[0], lat=PEMBINA[1]),
        report_body(lon=SAN_YSIDRO[0], lat=SAN_YSIDRO[1], direction="US"),
    ]
    with httpx.Client(base_url=base, timeout=30, headers=auth(key)) as http:
        response = http.post("/v1/reports/batch", json=roxham + others)
        assert response.status_code == 200, response.text
        assert {r["status"] for r in response.json()["results"]} == {"created"}
    return {body["id"]: body["kind"] for body in roxham}


@pytest.fixture(scope="module")
def served(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The real server on a fresh store of each kind, with five reports posted over HTTP."""
    if store_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path_factory.mktemp('map') / 'map.db'}"
        admin, analyst = live_key(url), live_key(url, "analyst")
        with running_server(url) as base:
            yield Served(base, _post_reports(base, admin), analyst)
        return
    from tests.conftest import fresh_postgis_database

    with fresh_postgis_database() as url:
        admin, analyst = live_key(url), live_key(url, "analyst")
        with running_server(url) as base:
            yield Served(base, _post_reports(base, admin), analyst)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=WEBGL_IN_SOFTWARE
        )
        yield chromium
        chromium.close()


@contextmanager
def open_map(browser: Browser, url: str, key: str | None = None) -> Iterator[MapPage]:
    """The page opened in a fresh context; with ``key``, as if the user had entered it."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    if key is not None:
        context.add_init_script(f"sessionStorage.setItem('crossingsKey', {json.dumps(key)})")
    context.set_default_timeout(TIMEOUT_MS)
    opened = MapPage(context.new_page())
    # Recorded on the context, so requests from MapLibre's worker (the tiles) are seen too.
    context.on("request", lambda request: opened.requests.append(request.url))
    opened.page.on("pageerror", lambda error: opened.errors.append(str(error)))
    try:
        opened.page.goto(url)
        # Loaded: style, TileJSON and the visible tiles are in, or the page shows an error.
        opened.page.wait_for_function(
            "() => document.getElementById('status').textContent"
            " || (window.map && map.loaded() && !map.isMoving())"
        )
        yield opened
    finally:
        context.close()


@pytest.fixture
def map_page(served: Served, browser: Browser) -> Iterator[MapPage]:
    """/map freshly opened at its initial view, everything loaded."""
    with open_map(browser, f"{served.base}/map", served.key) as opened:
        yield opened


def test_map_draws_the_border_segments(map_page: MapPage) -> None:
    segments = map_page.rendered("segments")
    assert map_page.run("document.getElementById('status').textContent") == ""
    assert not map_page.errors
    assert {"segment_id", "region_pair", "reports", "people"} <= segments[0].keys()
    ids = {s["segment_id"] for s in segments}
    assert any(i.startswith("CA-US") for i in ids) and any(i.startswith("MX-US") for i in ids)
    assert max(s["reports"] for s in segments) >= 3  # the Roxham Road segment


def test_map_draws_report_clusters_at_the_initial_zoom(map_page: MapPage) -> None:
    assert map_page.run("map.getZoom()") < 10
    clusters = map_page.rendered("clusters")
    assert clusters and all(isinstance(c["count"], int) and c["count"] >= 1 for c in clusters)
    assert max(c["count"] for c in clusters) >= 3  # Roxham Road's three, in one cluster
    assert not map_page.rendered("points")


def test_map_draws_single_reports_at_zoom_12(map_page: MapPage, served: Served) -> None:
    map_page.jump_and_wait(ROXHAM_ROAD, 12)
    points = map_page.rendered("points")
    assert {p["id"] for p in points} == set(served.roxham)
    assert {"observed_at", "kind", "direction", "people_count", "segment_id", "side"} <= set(
        points[0]
    )
    assert not map_page.rendered("clusters")
    assert map_page.rendered("segments")


def test_map_loads_nothing_from_outside_the_server(map_page: MapPage, served: Served) -> None:
    map_page.jump_and_wait(ROXHAM_ROAD, 12)
    requests = map_page.requests
    assert any("/v1/tiles.json" in url for url in requests)
    assert any(".mvt" in url for url in requests), "tile requests were not recorded"
    outside = [url for url in requests if not url.startswith((f"{served.base}/", "blob:", "data:"))]
    assert outside == []


def test_filter_form_reloads_the_style_with_the_kind(map_page: MapPage, served: Served) -> None:
    map_page.page.select_option("select[name=kind]", "attempt")
    map_page.page.click("#filters button")
    map_page.page.wait_for_function(
        "() => map.getSource('crossings')?.url?.includes('kind=attempt') && map.loaded()"
    )
    assert map_page.run("location.search") == "?kind=attempt"
    map_page.jump_and_wait(ROXHAM_ROAD, 12)
    attempts = {i for i, kind in served.roxham.items() if kind == "attempt"}
    assert {p["id"] for p in map_page.rendered("points")} == attempts


def test_clicking_a_report_shows_its_properties(map_page: MapPage, served: Served) -> None:
    map_page.jump_and_wait(ROXHAM_ROAD, 12)
    x, y = map_page.run(
        "() => { const layers = map.getStyle().layers.map(l => l.id)"
        ".filter(id => id.startsWith('points-'));"
        " const f = map.queryRenderedFeatures({layers})[0];"
        " const p = map.project(f.geometry.coordinates); return [p.x, p.y]; }"
    )
    map_page.page.mouse.click(x, y)
    popup = map_page.page.locator(".maplibregl-popup table.properties")
    popup.wait_for()
    assert any(report_id in popup.inner_text() for report_id in served.roxham)


def test_map_opens_with_the_filters_in_its_address(served: Served, browser: Browser) -> None:
    url = f"{served.base}/map?kind=attempt&start=2000-01-01T00:00:00Z"
    with open_map(browser, url, served.key) as opened:
        source_url = opened.run("map.getSource('crossings').url")
        assert "kind=attempt" in source_url and "start=2000-01-01T00%3A00%3A00Z" in source_url
        assert opened.run("document.querySelector('select[name=kind]').value") == "attempt"


def test_a_rejected_filter_is_shown_on_the_page(served: Served, browser: Browser) -> None:
    problem = httpx.get(f"{served.base}/v1/tiles.json?start=yesterday").json()
    with open_map(browser, f"{served.base}/map?start=yesterday") as opened:
        status = opened.run("document.getElementById('status').textContent")
    assert problem["status"] == 400
    assert status == problem["detail"]


def test_without_a_key_the_map_shows_only_what_the_public_may_see(
    served: Served, browser: Browser
) -> None:
    """No single reports at any zoom, and no cluster of fewer than five: the three reports at
    Roxham Road are not drawn at all for the public."""
    with open_map(browser, f"{served.base}/map") as opened:
        assert opened.rendered("segments")
        assert not opened.rendered("clusters") and not opened.rendered("points")
        opened.jump_and_wait(ROXHAM_ROAD, 12)
        assert not opened.rendered("points") and not opened.rendered("clusters")


@contextmanager
def third_party_site(html_page: str) -> Iterator[str]:
    """A page served from another origin (a second local port): a third party's web site."""
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html_page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with http_server(Handler) as address:
        yield f"http://{address}/"


THIRD_PARTY_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>a third party's map</title>
<script src="{base}/static/vendor/maplibre-gl/maplibre-gl.js"></script></head>
<body style="margin:0"><div id="map" style="position:absolute;inset:0"></div>
<script>
window.map = new maplibregl.Map({{container: "map", style: "{base}/v1/tiles/style.json",
  center: [{lon}, {lat}], zoom: 6}});
</script></body></html>"""


def test_a_page_of_another_origin_draws_the_public_tiles(served: Served, browser: Browser) -> None:
    """No key and no CROSSINGS_CORS_ORIGINS: the style, the TileJSON and the tiles answer any
    origin, so a third party's MapLibre page draws the border segments."""
    page_html = THIRD_PARTY_PAGE.format(base=served.base, lon=ROXHAM_ROAD[0], lat=ROXHAM_ROAD[1])
    with third_party_site(page_html) as site:
        assert not site.startswith(served.base)
        context = browser.new_context(viewport={"width": 1024, "height": 700})
        context.set_default_timeout(TIMEOUT_MS)
        failed: list[str] = []
        context.on("requestfailed", lambda request: failed.append(request.url))
        page = context.new_page()
        try:
            page.goto(site)
            page.wait_for_function("() => window.map && map.loaded() && !map.isMoving()")
            drawn = page.evaluate(
                "() => { const layers = map.getStyle().layers.map(l => l.id)"
                ".filter(id => id.startsWith('segments-'));"
                " return map.queryRenderedFeatures({layers}).map(f => f.properties.segment_id); }"
            )
        finally:
            context.close()
    assert not failed, failed
    assert len(set(drawn)) > 10
