"""QGIS 3.22 (Debian's python3-qgis, headless) reads the service as a GIS user would: an OGC API -
Features layer with a Basic authentication configuration holding the key, the segments layer
with no key, and the vector tiles drawn with the service's own style.

QGIS's Python bindings are built for the system Python (/usr/bin/python3), not the test
virtualenv: each check runs tests/qgis_client.py in a subprocess against a live server.
Skipped when python3-qgis is missing; .ci/run fails if these tests were skipped."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyproj import Transformer

from tests.factories import ROXHAM_ROAD, report_body
from tests.live import auth, live_key, running_server

SYSTEM_PYTHON = "/usr/bin/python3"
CLIENT = Path(__file__).with_name("qgis_client.py")


def _has_qgis() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _has_qgis(), reason="QGIS is not installed (apt: python3-qgis)")
# Reports near Roxham Road on three segments: 1, 12 and 120 reports, so that the border draws in
# several classes of the style (1-9, 10-99, 100-999 reports; none elsewhere).
SPOTS = ((-73.5172, 45.0071, 1), (-73.35, 45.0105, 12), (-73.9, 45.0, 120))
SEGMENT_COLOURS = {"#8c96a0", "#fdbb84", "#fc8d59", "#d7301f", "#7f0000"}
BLUE = "#0000ff"  # the background layer under the tiles


@dataclass
class Served:
    base: str
    analyst: str
    reports: list[str]


@pytest.fixture(scope="module")
def served(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if store_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path_factory.mktemp('qgis') / 'qgis.db'}"
        with running_server(url) as base:
            yield _seed(base, url)
        return
    from tests.conftest import fresh_postgis_database

    with fresh_postgis_database() as url, running_server(url) as base:
        yield _seed(base, url)


def _seed(base: str, url: str) -> Served:
    bodies = [
        report_body(lon=lon + 0.0005 * (i % 5), lat=lat + 0.0002 * (i % 3))
        for lon, lat, n in SPOTS
        for i in range(n)
    ]
    with httpx.Client(base_url=base, headers=auth(live_key(url)), timeout=60) as http:
        response = http.post("/v1/reports/batch", json=bodies)
        assert response.json()["summary"]["created"] == len(bodies), response.text
    return Served(base, live_key(url, "analyst"), [b["id"] for b in bodies])


def qgis(*args: str) -> dict[str, Any]:
    """Run one check of tests/qgis_client.py under QGIS; its JSON answer (QGIS's authentication
    manager prints lines of its own first)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [SYSTEM_PYTHON, str(CLIENT), *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_an_oapif_layer_with_basic_authentication_counts_every_report(served: Served) -> None:
    layer = qgis("reports", served.base, served.analyst)
    assert layer["announced"] == len(served.reports)  # numberMatched: known before reading
    assert sorted(layer["ids"]) == sorted(served.reports)
    assert layer["fields"].count("id") == 1


def test_the_segments_layer_without_a_key_counts_every_segment(served: Served) -> None:
    expected = httpx.get(f"{served.base}/v1/segments", timeout=60).json()["features"]
    layer = qgis("segments", served.base, "")
    assert layer["announced"] == len(expected) > 400
    assert sorted(layer["ids"]) == sorted(s["id"] for s in expected)


def test_the_vector_tiles_draw_in_the_style_colours_over_the_background(
    served: Served, tmp_path: Path
) -> None:
    """The style converted by QGIS 3.22 colours segments by their report count (more than one
    colour), and tiles with content or none leave the background layer showing around them."""
    to_web = Transformer.from_crs(4326, 3857, always_xy=True)
    x0, y0 = to_web.transform(ROXHAM_ROAD[0] - 1.2, 44.4)
    x1, y1 = to_web.transform(ROXHAM_ROAD[0] + 1.2, 45.6)
    out = tmp_path / "tiles.png"
    drawn = qgis("render", served.base, served.analyst, str(out), f"{x0},{y0},{x1},{y1}", "400")
    assert drawn["styled"] and not drawn["errors"], drawn
    assert "segments-1" in drawn["styles"] and "segments-100" in drawn["styles"]
    colours: dict[str, int] = drawn["colours"]
    assert len(SEGMENT_COLOURS & colours.keys()) >= 3, sorted(colours.items(), key=lambda c: -c[1])[
        :12
    ]
    # The background layer shows everywhere nothing is drawn: no blank or painted tiles.
    assert colours.get(BLUE, 0) > 0.8 * 400 * 400
    assert "#eef1f4" not in colours  # the style paints no background of its own
