"""Map tiles over HTTP, on both stores: a posted report lands in the right tile at the right pixel,
clusters add up, ETags change exactly when content does, filters and errors behave.

Where a tile and pixel are expected, they are computed here with PROJ (pyproj, EPSG:3857), not with
the service's own arithmetic.
"""

from __future__ import annotations

import gzip
import math
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import mapbox_vector_tile
import pytest
from pyproj import Transformer

from tests.factories import report_body
from tests.problems import refused_fields

MVT = "application/vnd.mapbox-vector-tile"
T0 = datetime(2026, 2, 1, tzinfo=UTC)
_HALF = math.pi * 6378137.0
_TO_3857 = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
# Places on (or near) the border with reports, and one far from everything.
PLACES = [(-73.45, 45.01), (-122.75, 49.0), (-97.2, 49.0), (-67.8, 45.6)]
OCEAN = (-140.0, 30.0)


def world_fraction(lon: float, lat: float) -> tuple[float, float]:
    """Where a position lies in the Web Mercator square: 0-1 east and 0-1 south."""
    x, y = _TO_3857.transform(lon, lat)
    return (x + _HALF) / (2 * _HALF), (_HALF - y) / (2 * _HALF)


def tile_and_pixel(lon: float, lat: float, z: int) -> tuple[int, int, float, float]:
    fx, fy = world_fraction(lon, lat)
    n = 2**z
    tx, ty = math.floor(fx * n), math.floor(fy * n)
    return tx, ty, (fx * n - tx) * 4096, (fy * n - ty) * 4096


def decode(body: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = mapbox_vector_tile.decode(
        body, default_options={"y_coord_down": True}
    )
    return decoded


def body_near(lon: float, lat: float, rng: random.Random, **extra: object) -> dict[str, Any]:
    position = [round(lon + rng.gauss(0, 0.05), 6), round(lat + rng.gauss(0, 0.03), 6)]
    return report_body(location={"type": "Point", "coordinates": position}, **extra)


async def post(client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> None:
    for start in range(0, len(bodies), 500):
        response = await client.post("/v1/reports/batch", json=bodies[start : start + 500])
        assert response.json()["summary"]["created"] == len(bodies[start : start + 500])


async def tile(client: httpx.AsyncClient, path: str, **headers: str) -> httpx.Response:
    return await client.get(path, headers={"Accept-Encoding": "identity", **headers})


async def test_a_posted_report_is_in_its_tile_at_its_pixel(client: httpx.AsyncClient) -> None:
    lon, lat = -73.461234, 45.012345
    body = report_body(
        location={"type": "Point", "coordinates": [lon, lat]}, people_count=3, kind="attempt"
    )
    await post(client, [body])
    for z in (10, 12, 16, 22):
        tx, ty, px, py = tile_and_pixel(lon, lat, z)
        response = await tile(client, f"/v1/tiles/{z}/{tx}/{ty}.mvt")
        assert response.status_code == 200 and response.headers["content-type"] == MVT
        layer = decode(response.content)["reports"]
        (feature,) = [f for f in layer["features"] if f["properties"].get("id") == body["id"]]
        x, y = feature["geometry"]["coordinates"]
        assert abs(x - px) <= 0.5 + 1e-6 and abs(y - py) <= 0.5 + 1e-6, (z, x, y, px, py)
        assert feature["id"] == int(body["id"].replace("-", "")[:15], 16)
        props = feature["properties"]
        assert props["kind"] == "attempt" and props["people_count"] == 3
        assert props["observed_at"] == body["observed_at"].replace("+00:00", "Z")[:19] + "Z"
        assert "notes" not in props and "device_id" not in props
        assert layer["extent"] == 4096


async def test_clusters_add_up_to_the_reports_in_each_tile(client: httpx.AsyncClient) -> None:
    rng = random.Random(5)
    bodies = [
        body_near(*rng.choice(PLACES), rng, people_count=rng.randint(1, 9)) for _ in range(600)
    ]
    await post(client, bodies)
    positions = [b["location"]["coordinates"] for b in bodies]
    for z in range(10):
        truth: Counter[tuple[int, int]] = Counter()
        people: Counter[tuple[int, int]] = Counter()
        for (lon, lat), b in zip(positions, bodies, strict=True):
            tx, ty, _, _ = tile_and_pixel(lon, lat, z)
            truth[tx, ty] += 1
            people[tx, ty] += b["people_count"]
        for (tx, ty), expected in truth.items():
            response = await tile(client, f"/v1/tiles/{z}/{tx}/{ty}.mvt")
            features = decode(response.content)["reports"]["features"]
            assert all("id" not in f["properties"] for f in features)  # clusters only
            assert sum(f["properties"]["count"] for f in features) == expected, (z, tx, ty)
            assert sum(f["properties"]["people"] for f in features) == people[tx, ty]
            assert len(features) <= 64 * 64
            for f in features:  # drawn at the centre of a 64 px cell
                x, y = f["geometry"]["coordinates"]
                assert x % 64 == 32 and y % 64 == 32


async def test_too_many_points_become_clusters(client: httpx.AsyncClient) -> None:
    """Above the points zoom, a tile that would hold more than CROSSINGS_TILE_MAX_POINTS (4,000)
    reports draws clusters instead, so it stays small."""
    rng = random.Random(9)
    lon, lat = -73.45, 45.01
    bodies = [
        report_body(location={"type": "Point", "coordinates": [
            round(lon + rng.uniform(-0.01, 0.01), 6), round(lat + rng.uniform(-0.01, 0.01), 6)]})
        for _ in range(4_100)
    ]  # fmt: skip
    await post(client, bodies)
    tx, ty, _, _ = tile_and_pixel(lon, lat, 11)
    response = await tile(client, f"/v1/tiles/11/{tx}/{ty}.mvt")
    features = decode(response.content)["reports"]["features"]
    assert all("count" in f["properties"] for f in features)
    assert sum(f["properties"]["count"] for f in features) == 4_100
    assert len(response.content) < 100_000


async def test_segments_layer_counts_the_window(client: httpx.AsyncClient) -> None:
    lon, lat = -73.45, 45.0
    bodies = [
        report_body(
            location={"type": "Point", "coordinates": [lon + i * 1e-4, lat]},
            observed_at=(T0 + timedelta(days=i)).isoformat(),
            people_count=2,
            kind="crossing" if i % 2 else "attempt",
        )
        for i in range(10)
    ]
    await post(client, bodies)
    snapped = (await client.post("/v1/snap", json=bodies[0]["location"])).json()
    segment_id = snapped["result"]["segment_id"]
    tx, ty, _, _ = tile_and_pixel(lon, lat, 8)

    async def counts(query: str) -> tuple[int, int]:
        response = await tile(client, f"/v1/tiles/8/{tx}/{ty}.mvt{query}")
        (feature,) = [
            f for f in decode(response.content)["segments"]["features"]
            if f["properties"]["segment_id"] == segment_id
        ]  # fmt: skip
        return feature["properties"]["reports"], feature["properties"]["people"]

    assert await counts("") == (10, 20)
    assert await counts("?kind=attempt") == (5, 10)
    window = (
        f"?start={(T0 + timedelta(days=2)).isoformat()}&end={(T0 + timedelta(days=5)).isoformat()}"
    )
    assert await counts(window.replace("+", "%2B")) == (3, 6)
    # Clusters follow the same filters.
    response = await tile(client, f"/v1/tiles/8/{tx}/{ty}.mvt?kind=attempt")
    assert (
        sum(f["properties"]["count"] for f in decode(response.content)["reports"]["features"]) == 5
    )


async def test_etag_changes_when_and_only_when_the_tile_does(client: httpx.AsyncClient) -> None:
    rng = random.Random(3)
    lon, lat = PLACES[0]
    await post(client, [body_near(lon, lat, rng) for _ in range(20)])
    tx, ty, _, _ = tile_and_pixel(lon, lat, 9)
    path = f"/v1/tiles/9/{tx}/{ty}.mvt"
    first = await tile(client, path)
    tag = first.headers["etag"]
    assert first.status_code == 200 and tag.startswith('"')
    assert "max-age=" in first.headers["cache-control"]
    again = await tile(client, path, **{"If-None-Match": tag})
    assert again.status_code == 304 and again.headers["etag"] == tag and not again.content
    # A report far away leaves this tile, and its tag, alone.
    far_lon, far_lat = PLACES[1]
    await post(client, [body_near(far_lon, far_lat, rng)])
    assert (await tile(client, path, **{"If-None-Match": tag})).status_code == 304
    # A report inside it is in the very next response, under a new tag.
    inside = report_body(location={"type": "Point", "coordinates": [lon, lat]})
    await post(client, [inside])
    fresh = await tile(client, path, **{"If-None-Match": tag})
    assert fresh.status_code == 200 and fresh.headers["etag"] != tag
    counts = [f["properties"]["count"] for f in decode(fresh.content)["reports"]["features"]]
    assert sum(counts) == 21


async def test_gzip_when_accepted(client: httpx.AsyncClient) -> None:
    path = "/v1/tiles/0/0/0.mvt"
    plain = await tile(client, path)
    zipped = await client.get(path, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == plain.content  # httpx has decoded it
    assert zipped.headers["etag"] != plain.headers["etag"]
    assert "accept-encoding" in zipped.headers["vary"].lower()
    raw = await client.send(
        client.build_request("GET", path, headers={"Accept-Encoding": "gzip"}), stream=True
    )
    compressed = b"".join([chunk async for chunk in raw.aiter_raw()])
    assert gzip.decompress(compressed) == plain.content and len(compressed) < len(plain.content)
    revalidated = await tile(client, path, **{"If-None-Match": zipped.headers["etag"]})
    assert revalidated.status_code == 304


async def test_an_empty_tile_is_204(client: httpx.AsyncClient) -> None:
    tx, ty, _, _ = tile_and_pixel(*OCEAN, 10)
    for suffix in ("mvt", "geojson"):
        response = await tile(client, f"/v1/tiles/10/{tx}/{ty}.{suffix}")
        assert response.status_code == 204 and not response.content


async def test_geojson_tile_holds_the_same_content(client: httpx.AsyncClient) -> None:
    rng = random.Random(4)
    bodies = [body_near(*PLACES[0], rng) for _ in range(30)]
    await post(client, bodies)
    for z in (6, 12):
        tx, ty, _, _ = tile_and_pixel(*PLACES[0], z)
        mvt = decode((await tile(client, f"/v1/tiles/{z}/{tx}/{ty}.mvt")).content)
        response = await tile(client, f"/v1/tiles/{z}/{tx}/{ty}.geojson")
        assert response.headers["content-type"] == "application/geo+json"
        features = response.json()["features"]
        for layer in ("segments", "reports"):
            from_geojson = sorted(
                str({k: v for k, v in f["properties"].items() if k != "layer"})
                for f in features if f["properties"]["layer"] == layer
            )  # fmt: skip
            from_mvt = sorted(str(f["properties"]) for f in mvt[layer]["features"])
            assert from_geojson == from_mvt, (z, layer)
        for f in features:  # WGS84, within the tile and its buffer
            if f["properties"]["layer"] == "reports" and "id" in f["properties"]:
                body = next(b for b in bodies if b["id"] == f["properties"]["id"])
                assert f["geometry"]["coordinates"] == body["location"]["coordinates"]


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/v1/tiles/23/0/0.mvt", 404, "z"),
        ("/v1/tiles/3/8/0.mvt", 404, "x"),
        ("/v1/tiles/3/0/-1.geojson", 404, "y"),
        ("/v1/tiles/3/0/a.mvt", 400, "y"),
        ("/v1/tiles/3/0/0.mvt?kind=smuggling", 400, "kind"),
        ("/v1/tiles/3/0/0.mvt?start=yesterday", 400, "start"),
        ("/v1/tiles/3/0/0.mvt?start=2026-02-02T00:00:00Z&end=2026-02-01T00:00:00Z", 400, "end"),
        ("/v1/tiles/3/0/0.mvt?kinds=crossing", 400, "kinds"),
        ("/v1/tiles.json?kind=smuggling", 400, "kind"),
    ],
)
async def test_bad_tile_requests_are_problems(
    client: httpx.AsyncClient, path: str, status: int, field: str
) -> None:
    assert field in refused_fields(await client.get(path), status)


async def test_an_unknown_tile_parameter_is_refused_naming_the_known_ones(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/tiles/3/0/0.mvt?kinds=crossing")
    assert response.status_code == 400
    problem = response.json()
    assert problem["type"] == "/problems/invalid-parameter"
    (error,) = problem["errors"]
    assert error == {
        "field": "kinds",
        "reason": "is not a parameter of this resource (known: end, kind, start)",
    }


async def test_tilejson_describes_the_source(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/v1/tiles.json?kind=crossing&start=2026-01-01T00:00:00Z")).json()
    assert doc["tilejson"] == "3.0.0"
    (template,) = doc["tiles"]
    assert template.startswith("http://testserver/v1/tiles/{z}/{x}/{y}.mvt?")
    assert "kind=crossing" in template and "start=2026-01-01T00%3A00%3A00Z" in template
    assert (doc["minzoom"], doc["maxzoom"]) == (0, 22)
    west, south, east, north = doc["bounds"]
    assert -180 <= west < east <= 180 and -90 <= south < north <= 90
    layers = {layer["id"]: layer for layer in doc["vector_layers"]}
    assert set(layers) == {"segments", "reports"}
    assert {"segment_id", "region_pair", "reports", "people"} <= set(layers["segments"]["fields"])
    assert {"count", "people", "id", "observed_at"} <= set(layers["reports"]["fields"])


async def test_extreme_positions_are_stored_and_tiled(client: httpx.AsyncClient) -> None:
    """Latitudes a hair off the equator or at Web Mercator's edge and beyond, and the
    antimeridian, are reports like any other (PostgreSQL once refused a tiny latitude's cell)."""
    positions = [(10.0, 1e-300), (-10.0, -5e-324), (179.999999, 89.9), (-180.0, -89.9)]
    bodies = [report_body(location={"type": "Point", "coordinates": list(p)}) for p in positions]
    await post(client, bodies)
    for z in (0, 3):
        total = 0
        for tx in range(2**z):
            for ty in range(2**z):
                response = await tile(client, f"/v1/tiles/{z}/{tx}/{ty}.mvt")
                if response.status_code == 200:
                    layers = decode(response.content)
                    total += sum(
                        f["properties"]["count"]
                        for f in layers.get("reports", {"features": []})["features"]
                    )
        assert total == len(positions), z
